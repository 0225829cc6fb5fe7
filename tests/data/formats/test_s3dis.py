"""S3DIS reader/writer: round trip, corrupt-line repair, class names, splits and bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pcseg.data.formats import s3dis
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.meta import s3dis as meta


def _room_arrays(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    # distinct millimetre-grid points, so rows can be matched after the writer regroups them
    grid = rng.choice(200**3, size=n, replace=False)
    coord = np.stack(np.unravel_index(grid, (200, 200, 200)), axis=1) * 0.013 - 1.0
    coord = np.round(coord, 3)
    color = rng.integers(0, 256, (n, 3))
    instance = rng.integers(1, 9, n)
    label = (instance * 5) % meta.NUM_CLASSES  # one class per instance
    return coord, color, label, instance


def _sorted_rows(coord: np.ndarray) -> np.ndarray:
    return np.lexsort(coord.T[::-1])


def test_round_trip_keeps_points_labels_and_instances(tmp_path):
    coord, color, label, instance = _room_arrays()
    room = s3dis.write_room(tmp_path / "Area_1" / "office_1", coord, color, label, instance)
    sample, reports = s3dis.read_room_with_report(room)
    assert reports == [] and sample["scene_id"] == "Area_1/office_1"
    a, b = _sorted_rows(coord), _sorted_rows(sample["coord"].astype(np.float64))
    np.testing.assert_allclose(sample["coord"][b], coord[a], atol=1e-6)
    np.testing.assert_allclose(sample["color"][b], color[a] / 255.0, atol=1e-6)
    assert np.array_equal(sample["feat"], sample["color"])
    assert np.array_equal(sample["label"][b], label[a])
    # instance ids are renumbered 1..K by file order: the partition must be the same
    pairs = set(zip(sample["instance"][b].tolist(), instance[a].tolist(), strict=True))
    assert len(pairs) == len(np.unique(instance)) == sample["instance"].max()
    assert len({p[0] for p in pairs}) == len({p[1] for p in pairs}) == len(pairs)
    whole = np.loadtxt(room / "office_1.txt")
    assert whole.shape == (len(coord), 6)
    names = sorted(p.name for p in (room / "Annotations").iterdir())
    assert all(s3dis.annotation_class(room / "Annotations" / n) >= 0 for n in names)


def test_instance_ids_follow_natural_file_order(tmp_path):
    ann = tmp_path / "Area_2" / "hall_1" / "Annotations"
    ann.mkdir(parents=True)
    for name, x in (("chair_10", 3), ("chair_2", 2), ("ceiling_1", 1)):
        (ann / f"{name}.txt").write_text(f"{x}.0 0.0 0.0 1 2 3\n")
    sample = s3dis.read_room(ann.parent)
    assert sample["coord"][:, 0].tolist() == [1.0, 2.0, 3.0]
    assert sample["instance"].tolist() == [1, 2, 3]
    assert sample["label"].tolist() == [0, 8, 8]


def test_corrupt_lines_are_repaired_or_dropped_and_reported(tmp_path, caplog):
    ann = tmp_path / "Area_5" / "hallway_6" / "Annotations"
    ann.mkdir(parents=True)
    path = ann / "ceiling_1.txt"
    path.write_bytes(
        b"1.000 2.000 3.000 10 20 30\n"
        b"185\x10.500 2.000 3.000 11 21 31\n"  # stray byte inside a number, as in hallway_6
        b"this line is garbage\n"
        b"4.000 5.000 6.000 40 5\xff0 60\n"  # non-ASCII byte
        b"7.0 8.0\n"  # too few numbers
        b"9.000 9.000 9.000 90 90 90\n"
        b"1,5 2,5 3,5 1 2 3\n"  # printable junk is not stripped into other numbers
    )
    with caplog.at_level(logging.WARNING, logger="pcseg.data.formats.s3dis"):
        sample, reports = s3dis.read_room_with_report(ann.parent)
    np.testing.assert_allclose(
        sample["coord"], [[1, 2, 3], [185.5, 2, 3], [4, 5, 6], [9, 9, 9]], atol=1e-5
    )
    np.testing.assert_allclose(sample["color"][1:3] * 255, [[11, 21, 31], [40, 50, 60]], atol=1e-4)
    (report,) = reports
    assert (report.path, report.repaired, report.dropped) == (path, 2, 3)
    assert report.repaired_lines == (2, 4) and report.dropped_lines == (3, 5, 7)
    assert "repaired 2" in caplog.text and "dropped 3" in caplog.text


def test_writer_never_replaces_an_existing_room_unless_asked(tmp_path):
    coord, color, label, instance = _room_arrays(50)
    room = s3dis.write_room(tmp_path / "Area_1" / "office_1", coord, color, label, instance)
    before = sorted((p.name, p.read_bytes()) for p in (room / "Annotations").iterdir())
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        s3dis.write_room(room, coord[:10], color[:10], label[:10], instance[:10])
    assert sorted((p.name, p.read_bytes()) for p in (room / "Annotations").iterdir()) == before
    s3dis.write_room(room, coord[:10], color[:10], label[:10], instance[:10], overwrite=True)
    assert len(s3dis.read_room(room)["coord"]) == 10


def test_clean_files_take_the_vectorised_path(tmp_path, monkeypatch):
    coord, color, label, instance = _room_arrays(200)
    room = s3dis.write_room(tmp_path / "Area_1" / "x_1", coord, color, label, instance)

    def forbidden(*args):
        raise AssertionError("per-line fallback used on a clean file")

    monkeypatch.setattr(s3dis, "_parse_lines", forbidden)
    assert len(s3dis.read_room(room)["coord"]) == 200


def test_stairs_fold_into_clutter(tmp_path):
    ann = tmp_path / "Area_2" / "stairs_1" / "Annotations"
    ann.mkdir(parents=True)
    (ann / "stairs_1.txt").write_text("0 0 0 1 1 1\n1 1 1 2 2 2\n")
    sample = s3dis.read_room(ann.parent)
    assert (sample["label"] == meta.CLASS_NAMES.index("clutter")).all()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("lamp_1.txt", "0 0 0 1 1 1\n", "unknown class name 'lamp'"),
        ("wall_1.txt", "", "empty file"),
        ("wall_1.txt", "0 0 0 1 1 1\nnan 0 0 1 1 1\n", "NaN/inf"),
        ("wall_1.txt", "0 0 0 1 1 300\n", "0..255"),
        ("wall_1.txt", "garbage\nmore garbage\n", "no readable points"),
    ],
)
def test_bad_annotation_files_name_the_file(tmp_path, name, content, problem):
    ann = tmp_path / "Area_1" / "room_1" / "Annotations"
    ann.mkdir(parents=True)
    (ann / "floor_1.txt").write_text("0 0 0 1 1 1\n")
    (ann / name).write_text(content)
    with pytest.raises(DataFormatError, match=problem) as info:
        s3dis.read_room(ann.parent)
    assert info.value.path == ann / name


def test_empty_room_and_missing_annotations(tmp_path):
    room = tmp_path / "Area_1" / "room_1"
    (room / "Annotations").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="empty room"):
        s3dis.read_room(room)
    with pytest.raises(DataFormatError, match="no Annotations"):
        s3dis.read_room(tmp_path / "Area_1" / "missing")


def test_writer_rejects_inconsistent_arrays(tmp_path):
    coord, color, label, instance = _room_arrays(50)
    with pytest.raises(ValueError):
        s3dis.write_room(tmp_path / "r", coord, color, label[:-1], instance)
    with pytest.raises(ValueError):
        s3dis.write_room(tmp_path / "r", coord, color, np.full(50, -1), instance)
    with pytest.raises(TypeError):
        s3dis.write_room(tmp_path / "r", coord, color / 255.0, label, instance)


def test_splits_and_folds(tmp_path):
    for area in meta.AREAS:
        for room in ("office_10", "office_2", "WC_1"):
            (tmp_path / f"Area_{area}" / room).mkdir(parents=True)
    assert s3dis.split_areas("train") == (1, 2, 3, 4, 6)
    assert s3dis.split_areas("val") == (5,)
    folds = s3dis.cross_validation_folds()
    assert len(folds) == 6 and all(held == (k,) and k not in train for k, (train, held) in
                                   zip(meta.AREAS, folds, strict=True))  # fmt: skip
    val = s3dis.split_rooms(tmp_path, "val")
    assert [r.name for r in val] == ["WC_1", "office_2", "office_10"]
    assert {r.parent.name for r in s3dis.split_rooms(tmp_path, "train", test_area=2)} == {
        f"Area_{a}" for a in (1, 3, 4, 5, 6)
    }
    with pytest.raises(ValueError):
        s3dis.split_areas("train", test_area=7)
    with pytest.raises(DataFormatError, match="area directory"):
        s3dis.list_rooms(tmp_path / "nowhere", (1,))


def test_split_file_paths_stay_inside_the_root(tmp_path):
    root = tmp_path / "s3dis"
    (root / "Area_1" / "office_1").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    good = tmp_path / "good.txt"
    good.write_text("Area_1/office_1\n\n")
    assert s3dis.read_split_file(root, good) == [(root / "Area_1" / "office_1").resolve()]
    for line in ("../outside", "/etc", "Area_1/../../outside"):
        bad = tmp_path / "bad.txt"
        bad.write_text(f"Area_1/office_1\n{line}\n")
        with pytest.raises(DataFormatError, match="line 2") as info:
            s3dis.read_split_file(root, bad)
        assert info.value.path == bad
    missing = tmp_path / "missing.txt"
    missing.write_text("Area_1/office_9\n")
    with pytest.raises(DataFormatError, match="not found"):
        s3dis.read_split_file(root, missing)


def test_meta_has_13_classes():
    assert meta.NUM_CLASSES == 13 and len(meta.PALETTE) == 13
    assert meta.NAME_TO_CLASS["stairs"] == meta.NAME_TO_CLASS["clutter"] == 12
