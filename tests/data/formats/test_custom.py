"""User clouds: real LAS/LAZ with ASPRS codes, PLY/NPY/NPZ with a YAML spec, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.data.formats.custom import (
    CloudSpec,
    classes_to_raw,
    read_cloud,
    write_las_classification,
    write_ply,
)
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.meta import asprs

GROUND = asprs.CLASS_NAMES.index("ground")
ROAD = asprs.CLASS_NAMES.index("road-surface")

SPEC_YAML = """
classes: [ground, tree, building]
label_map: {2: 0, 5: 1, 6: 2}
ignore_ids: [0, 1]
fields:
  label: cls
  feat: [intensity]
  color: [red, green, blue]
"""


def test_real_las_files_map_asprs_codes(shared_data):
    simple = read_cloud(shared_data / "las" / "simple.las")
    assert simple["coord"].shape == (1065, 3)
    assert (simple["label"] == GROUND).sum() == 276 and (simple["label"] == -1).sum() == 789
    assert simple["color"].shape == (1065, 3) and 0 < simple["color"].max() <= 1
    # UTM-sized coordinates are re-centred in float64; the offset restores them.
    assert simple["coord"].min() >= 0 and simple["coord_offset"][0] > 600_000
    restored = simple["coord"].astype(np.float64) + simple["coord_offset"]
    assert 635_619 < restored[:, 0].min() < 635_620

    laz = read_cloud(shared_data / "las" / "autzen_trim.laz")
    assert len(laz["coord"]) == 110_000 and (laz["label"] == GROUND).sum() == 26_107
    veg = read_cloud(shared_data / "las" / "vegetation_1_3.las")
    assert len(veg["coord"]) == 10_683 and (veg["label"] == ROAD).all()
    assert "color" not in veg  # point format 1 has no RGB


def test_las_prediction_export_round_trip(shared_data, tmp_path):
    source = shared_data / "las" / "simple.las"
    predicted = np.where(np.arange(1065) % 3 == 0, asprs.CLASS_NAMES.index("building"), GROUND)
    predicted[5] = -1
    write_las_classification(source, tmp_path / "pred.las", predicted)
    back = read_cloud(tmp_path / "pred.las")
    np.testing.assert_array_equal(back["label"], predicted)
    np.testing.assert_allclose(back["coord"], read_cloud(source)["coord"])
    with pytest.raises(ValueError, match="refusing to overwrite"):
        write_las_classification(tmp_path / "pred.las", tmp_path / "pred.las", predicted)


def test_ply_with_yaml_spec_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    coord = rng.uniform(0, 10, (200, 3)).astype(np.float32)
    raw = rng.choice([0, 1, 2, 5, 6], 200).astype(np.int32)
    colour = rng.integers(0, 256, (200, 3)).astype(np.uint8)
    write_ply(
        tmp_path / "scan.ply",
        coord,
        cls=raw,
        intensity=rng.random(200).astype(np.float32),
        red=colour[:, 0],
        green=colour[:, 1],
        blue=colour[:, 2],
    )
    (tmp_path / "spec.yaml").write_text(SPEC_YAML)
    sample = read_cloud(tmp_path / "scan.ply", CloudSpec.from_yaml(tmp_path / "spec.yaml"))
    expected = np.select([raw == 2, raw == 5, raw == 6], [0, 1, 2], -1)
    np.testing.assert_array_equal(sample["label"], expected)
    np.testing.assert_allclose(sample["coord"] + sample["coord_offset"], coord, atol=1e-5)
    np.testing.assert_allclose(sample["color"], colour / 255.0, atol=1e-6)
    spec = CloudSpec.from_yaml(tmp_path / "spec.yaml")
    np.testing.assert_array_equal(classes_to_raw(np.array([0, 1, 2, -1]), spec), [2, 5, 6, 0])


def test_npy_columns_and_npz_arrays(tmp_path):
    table = np.array([[0, 0, 0, 0.5, 3], [1, 2, 3, 0.2, 4], [2, 2, 2, 0.9, 3]], dtype=np.float64)
    np.save(tmp_path / "cloud.npy", table)
    spec = CloudSpec.from_dict(
        {
            "classes": ["a", "b"],
            "label_map": {3: 0, 4: 1},
            "fields": {"coord": [0, 1, 2], "feat": [3], "label": 4, "color": None},
        }
    )
    sample = read_cloud(tmp_path / "cloud.npy", spec)
    assert sample["label"].tolist() == [0, 1, 0]
    np.testing.assert_allclose(sample["feat"][:, 0], [0.5, 0.2, 0.9])

    np.savez(tmp_path / "cloud.npz", coord=table[:, :3], intensity=table[:, 3], cls=table[:, 4])
    spec_npz = CloudSpec.from_dict(
        {
            "classes": ["a", "b"],
            "label_map": {3: 0, 4: 1},
            "fields": {"label": "cls", "color": None},
        }
    )
    assert read_cloud(tmp_path / "cloud.npz", spec_npz)["label"].tolist() == [0, 1, 0]


def test_bad_user_files_give_clear_errors(tmp_path):
    spec = CloudSpec.from_dict(
        {
            "classes": ["a"],
            "label_map": {1: 0},
            "fields": {"label": "cls", "feat": [], "color": None},
        }
    )
    np.savez(tmp_path / "short.npz", coord=np.zeros((3, 3)), cls=np.ones(2))
    with pytest.raises(DataFormatError, match=r"class \('cls'\) count 2 != point count 3"):
        read_cloud(tmp_path / "short.npz", spec)
    np.savez(tmp_path / "unknown.npz", coord=np.zeros((3, 3)), cls=np.array([1, 9, 1]))
    with pytest.raises(DataFormatError, match=r"unknown class \('cls'\) id\(s\): 9"):
        read_cloud(tmp_path / "unknown.npz", spec)
    np.savez(tmp_path / "nan.npz", coord=np.array([[0, 0, np.nan]]), cls=np.ones(1))
    with pytest.raises(DataFormatError, match="NaN/inf"):
        read_cloud(tmp_path / "nan.npz", spec)
    (tmp_path / "broken.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 9")
    with pytest.raises(DataFormatError, match=r"broken\.ply: cannot read PLY"):
        read_cloud(tmp_path / "broken.ply", spec)
    with pytest.raises(DataFormatError, match="need a CloudSpec"):
        read_cloud(tmp_path / "broken.ply")
    (tmp_path / "bad.yaml").write_text("classes: [a]\nlabelmap: {}\n")
    with pytest.raises(DataFormatError, match=r"unknown top-level key\(s\) \['labelmap'\]"):
        CloudSpec.from_yaml(tmp_path / "bad.yaml")
    (tmp_path / "evil.yaml").write_text("classes: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(DataFormatError, match="cannot read YAML"):
        CloudSpec.from_yaml(tmp_path / "evil.yaml")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"intensity": np.ones(6)}, r"feature \('intensity'\) count 6 != point count 3"),
        ({"intensity": np.array([0.1, np.nan, 0.2])}, "feature values contain NaN or inf"),
        ({"cls": np.array([1.0, 1.7, 1.0])}, "non-integer values"),
        ({"cls": np.array([1.0, np.nan, 1.0])}, "non-integer values"),
        ({"cls": np.array([1, 2**42, 1])}, r"unknown class \('cls'\) id\(s\): 4398046511104"),
        ({"coord": np.zeros((3, 2))}, r"'coord' must be \(N, 3\)"),
        ({"cls": None}, "class field 'cls' not in the file"),
    ],
)
def test_npz_fields_are_checked_before_use(tmp_path, arrays, message):
    spec = CloudSpec.from_dict(
        {
            "classes": ["a"],
            "label_map": {1: 0},
            "fields": {"label": "cls", "feat": ["intensity"], "color": None},
        }
    )
    content = {"coord": np.zeros((3, 3)), "intensity": np.ones(3), "cls": np.ones(3), **arrays}
    np.savez(tmp_path / "c.npz", **{k: v for k, v in content.items() if v is not None})
    with pytest.raises(DataFormatError, match=message):
        read_cloud(tmp_path / "c.npz", spec)


def test_truncated_npz_and_intensity_scaled_by_storage_type(tmp_path):
    spec = CloudSpec.from_dict(
        {
            "classes": ["a"],
            "label_map": {1: 0},
            "fields": {"label": None, "feat": ["intensity"], "color": None},
        }
    )
    np.savez(tmp_path / "a.npz", coord=np.zeros((2, 3)), intensity=np.array([200, 300], np.uint16))
    np.savez(tmp_path / "b.npz", coord=np.zeros((2, 3)), intensity=np.array([200, 9], np.uint16))
    for name in ("a.npz", "b.npz"):  # the same stored value means the same feature in every tile
        assert read_cloud(tmp_path / name, spec)["feat"][0, 0] == pytest.approx(200 / 65535)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "a.npz").read_bytes()[:40])
    with pytest.raises(DataFormatError, match="cannot read NPZ"):
        read_cloud(tmp_path / "cut.npz", spec)


def test_writers_refuse_to_replace_existing_files(tmp_path, shared_data):
    write_ply(tmp_path / "a.ply", np.zeros((2, 3)), cls=np.ones(2, np.int32))
    before = (tmp_path / "a.ply").read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_ply(tmp_path / "a.ply", np.ones((3, 3)))
    assert (tmp_path / "a.ply").read_bytes() == before
    write_ply(tmp_path / "a.ply", np.ones((3, 3)), overwrite=True)
    assert (tmp_path / "a.ply").read_bytes() != before
    source = shared_data / "las" / "simple.las"
    write_las_classification(source, tmp_path / "p.laz", np.zeros(1065, np.int64))
    with pytest.raises(FileExistsError):
        write_las_classification(source, tmp_path / "p.laz", np.zeros(1065, np.int64))
    assert (tmp_path / "p.laz").read_bytes()[:4] == b"LASF"
    assert read_cloud(tmp_path / "p.laz")["label"].tolist() == [0] * 1065
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ply", "p.laz"]  # no temp files left
