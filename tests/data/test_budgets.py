"""Sparse-label budgets: samplers, files, the ScanNet limited-annotation reader, the transform."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pcseg.data.budgets import (
    budget_from_limited_annotation,
    make_budget,
    read_limited_annotation,
    sample_fixed_count,
    sample_per_class,
    scene_rng,
)
from pcseg.data.datasets import ScanNetDataset, SemanticKITTIDataset
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.label_budget import (
    LabelBudget,
    SparseLabels,
    budget_paths,
    read_budget,
    write_budget,
)
from pcseg.data.synthetic import write_indoor_scannet
from pcseg.data.transforms import Compose, SphereCrop


def kitti(root: Path, *sequences: str, transforms: Compose | None = None) -> SemanticKITTIDataset:
    return SemanticKITTIDataset(root, sequences=list(sequences), transforms=transforms)


def expected_counts(label: np.ndarray, rate: float) -> dict[int, int]:
    classes, counts = np.unique(label[label >= 0], return_counts=True)
    return {int(c): max(int(n * rate), 1) for c, n in zip(classes, counts, strict=True)}


def chosen_counts(label: np.ndarray, chosen: np.ndarray) -> dict[int, int]:
    classes, counts = np.unique(label[chosen], return_counts=True)
    return dict(zip(classes.tolist(), counts.tolist(), strict=True))


def check_sorted_unique(chosen: np.ndarray) -> None:
    assert chosen.dtype == np.int64 and chosen.ndim == 1
    assert (np.diff(chosen) > 0).all()


# --- samplers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0001, 0.001, 0.01, 0.3, 1.0])
def test_per_class_rule_on_a_synthetic_scan(small_sequences: Path, rate: float) -> None:
    label = kitti(small_sequences, "00").read(0)["label"].copy()
    label[::7] = -1  # ignored points are never chosen
    chosen = sample_per_class(label, rate, scene_rng(0, "00/000000"))
    check_sorted_unique(chosen)
    assert (label[chosen] >= 0).all()
    assert chosen_counts(label, chosen) == expected_counts(label, rate)  # every class >= 1


def test_per_class_rule_on_the_real_scan(shared_data: Path) -> None:
    label = kitti(shared_data / "semantickitti", "00").read(0)["label"]
    for rate in (0.001, 0.0001):
        chosen = sample_per_class(label, rate, scene_rng(0, "00/000000"))
        assert chosen_counts(label, chosen) == expected_counts(label, rate)
    assert len(sample_per_class(label, 0.001, scene_rng(0, "x"))) > 100  # ~124k points


def test_sampler_arguments_are_checked() -> None:
    label = np.array([0, 1, -1, 1])
    for rate in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="rate"):
            sample_per_class(label, rate, scene_rng(0, "a"))
    for count in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="count"):
            sample_fixed_count(label, count, scene_rng(0, "a"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D integer"):
        sample_per_class(label.astype(float), 0.5, scene_rng(0, "a"))
    with pytest.raises(ValueError, match="seed"):
        scene_rng(-1, "a")
    assert len(sample_per_class(np.full(5, -1), 0.5, scene_rng(0, "a"))) == 0


def test_fixed_count() -> None:
    label = np.tile([0, 1, 2, -1], 50)
    chosen = sample_fixed_count(label, 20, scene_rng(3, "s"))
    check_sorted_unique(chosen)
    assert len(chosen) == 20 and (label[chosen] >= 0).all()
    few = np.array([-1, 4, -1, 2])
    np.testing.assert_array_equal(sample_fixed_count(few, 20, scene_rng(3, "s")), [1, 3])


# --- make_budget ------------------------------------------------------------------------------


def test_budget_is_per_scene_deterministic_and_order_free(small_sequences: Path) -> None:
    both = make_budget(kitti(small_sequences, "00", "01"), rate=0.01, seed=5, progress=False)
    again = make_budget(kitti(small_sequences, "00", "01"), rate=0.01, seed=5, progress=False)
    reverse = make_budget(kitti(small_sequences, "01", "00"), rate=0.01, seed=5, progress=False)
    subset = make_budget(kitti(small_sequences, "01"), rate=0.01, seed=5, progress=False)
    other = make_budget(kitti(small_sequences, "00", "01"), rate=0.01, seed=6, progress=False)
    assert list(both.indices) == ["00/000000", "00/000001", "01/000000", "01/000001"]
    assert list(reverse.indices) == ["01/000000", "01/000001", "00/000000", "00/000001"]
    for scene, chosen in both.indices.items():
        np.testing.assert_array_equal(chosen, again.indices[scene])
        np.testing.assert_array_equal(chosen, reverse.indices[scene])
        if scene in subset.indices:
            np.testing.assert_array_equal(chosen, subset.indices[scene])
        assert not np.array_equal(chosen, other.indices[scene])


def test_budget_manifest_counts(small_sequences: Path) -> None:
    dataset = kitti(small_sequences, "00", "01")
    budget = make_budget(dataset, rate=0.01, seed=0, split="train", progress=False)
    m = budget.manifest
    assert (m["mode"], m["rate"], m["count"], m["seed"], m["split"]) == (
        "rate",
        0.01,
        None,
        0,
        "train",
    )
    assert m["dataset"] == "semantickitti" and m["num_scenes"] == 4
    labels = [dataset.read(i)["label"] for i in range(4)]
    assert m["total_points"] == sum(map(len, labels))
    expected = [sum(expected_counts(label, 0.01).values()) for label in labels]
    assert [s["labelled"] for s in m["scenes"].values()] == expected
    assert m["labelled_points"] == sum(expected) == budget.num_labelled
    assert m["labelled_fraction"] == pytest.approx(sum(expected) / m["total_points"])
    names = [c["name"] for c in m["classes"]]
    assert names == list(dataset.class_names)
    every = np.concatenate(labels)
    for entry in m["classes"]:
        assert entry["points"] == int((every == entry["id"]).sum())
        assert (entry["labelled"] >= 1) == (entry["points"] > 0)  # each present class is labelled
    count = make_budget(dataset, count=30, seed=0, progress=False)
    assert count.manifest["mode"] == "count" and count.manifest["count"] == 30
    assert [len(v) for v in count.indices.values()] == [30] * 4
    with pytest.raises(ValueError, match="exactly one"):
        make_budget(dataset, rate=0.1, count=3, seed=0)
    with pytest.raises(ValueError, match="rate"):
        make_budget(dataset, rate=2.0, seed=0)


# --- files ------------------------------------------------------------------------------------


def test_write_read_round_trip_and_no_overwrite(small_sequences: Path, tmp_path: Path) -> None:
    budget = make_budget(kitti(small_sequences, "00", "01"), rate=0.001, seed=0, progress=False)
    stem = tmp_path / "budgets" / "train_rate0.001_seed0"  # a stem with a dot in it
    npz, manifest = write_budget(stem, budget)
    assert (npz.name, manifest.name) == ("train_rate0.001_seed0.npz", "train_rate0.001_seed0.json")
    with np.load(npz, allow_pickle=False) as plain:  # an ordinary .npz keyed by scene id
        assert sorted(plain.files) == sorted(budget.indices)
    for path in (stem, npz, manifest, str(npz)):
        loaded = read_budget(path)
        assert loaded.path == npz and loaded.manifest == budget.manifest
        assert loaded.indices.keys() == budget.indices.keys()
        for scene, chosen in budget.indices.items():
            assert loaded.indices[scene].dtype == np.int64
            np.testing.assert_array_equal(loaded.indices[scene], chosen)
    before = npz.read_bytes()
    with pytest.raises(FileExistsError, match=str(npz)):
        write_budget(stem, budget)
    manifest.unlink()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_budget(npz, budget)  # the .npz alone still blocks the pair
    assert npz.read_bytes() == before and not manifest.exists()
    assert not list(npz.parent.glob(".*tmp*"))


def test_any_scene_id_round_trips(tmp_path: Path) -> None:
    ids = ["00/000000", "Area_1/office_1", "file", "allow_pickle", "a b%c", "../up", "/abs", "é"]
    indices = {scene: np.arange(i + 1, dtype=np.int64) * 3 for i, scene in enumerate(ids)}
    scenes = {scene: {"points": 100, "labelled": len(v)} for scene, v in indices.items()}
    manifest = {"format": "pcseg.sparse_labels", "version": 1, "mode": "count", "scenes": scenes}
    manifest |= {"num_scenes": len(ids), "labelled_points": sum(map(len, indices.values()))}
    write_budget(tmp_path / "ids", LabelBudget(indices, manifest))
    loaded = read_budget(tmp_path / "ids.npz")
    assert list(loaded.indices) == ids
    for scene in ids:
        np.testing.assert_array_equal(loaded.indices[scene], indices[scene])
    assert not (tmp_path / "up.npy").exists() and not Path("/abs.npy").exists()
    with pytest.raises(ValueError, match="NUL"):
        write_budget(tmp_path / "nul", LabelBudget({"a\0b": np.arange(2)}, manifest))


@pytest.fixture
def written(small_sequences: Path, tmp_path: Path) -> tuple[Path, Path]:
    budget = make_budget(kitti(small_sequences, "00"), count=10, seed=0, progress=False)
    return write_budget(tmp_path / "b", budget)


def edit_manifest(path: Path, change) -> None:
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def rewrite_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.unlink()
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, value, allow_pickle=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["scenes"]["00/000000"].update(labelled=9), "10 indices, manifest says 9"),
        (lambda m: m["scenes"]["00/000000"].update(points=5), "index .* >= its 5 points"),
        (lambda m: m["scenes"].pop("00/000001"), "missing from the json file: 00/000001"),
        (lambda m: m["scenes"].update(extra={"points": 1, "labelled": 0}), "missing from the npz"),
        (lambda m: m.update(format="other"), "not a sparse-label manifest"),
        (lambda m: m.update(version=7), "version 7"),
        (lambda m: m.update(mode="guess"), "mode 'guess'"),
        (lambda m: m.update(labelled_points=3), "labelled_points is 3"),
    ],
)
def test_manifest_must_agree(written: tuple[Path, Path], change, message: str) -> None:
    npz, manifest = written
    edit_manifest(manifest, change)
    with pytest.raises(DataFormatError, match=message) as error:
        read_budget(npz)
    assert str(manifest) in str(error.value)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"00/000000": np.arange(10, dtype=np.int32)}, "must be int64, got int32"),
        ({"00/000000": np.array([1, 2, 2, 3], np.int64)}, "index 2 appears more than once"),
        ({"00/000000": np.array([-1, 2], np.int64)}, "negative index -1"),
        ({"00/000000": np.zeros((2, 2), np.int64)}, "1-D"),
        ({"00/000000": np.array([None, 1], dtype=object)}, "unreadable .npz"),
    ],
)
def test_bad_index_arrays(written: tuple[Path, Path], arrays: dict, message: str) -> None:
    npz, _ = written
    rewrite_npz(npz, arrays)
    with pytest.raises(DataFormatError, match=message) as error:
        read_budget(npz)
    assert str(npz) in str(error.value)


def test_damaged_or_missing_files(written: tuple[Path, Path]) -> None:
    npz, manifest = written
    np.save(npz.with_name("plain.npy"), np.arange(3))
    npz.write_bytes(npz.with_name("plain.npy").read_bytes())
    with pytest.raises(DataFormatError, match=r"not an \.npz archive"):
        read_budget(npz)
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.raises(DataFormatError, match=r"unreadable \.npz"):
        read_budget(npz)
    manifest.write_text("{not json")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        read_budget(manifest)
    npz.unlink()
    with pytest.raises(DataFormatError, match="not found"):
        read_budget(manifest)
    assert budget_paths("x/a.b.json") == (Path("x/a.b.npz"), Path("x/a.b.json"))


# --- ScanNet limited annotation ----------------------------------------------------------------


def legacy_save(data: object, path: Path) -> Path:
    torch.save(data, path, _use_new_zipfile_serialization=False)
    return path


def test_limited_annotation_legacy_file(tmp_path: Path) -> None:
    table = {"scene0000_00": np.array([7, 3, 5], np.int64), "scene0001_00": np.arange(20)}
    path = legacy_save(table, tmp_path / "points20")
    assert not zipfile.is_zipfile(path)
    loaded = read_limited_annotation(path)
    assert loaded.keys() == table.keys()
    np.testing.assert_array_equal(loaded["scene0000_00"], [3, 5, 7])
    assert all(v.dtype == np.int64 for v in loaded.values())
    # Files written under numpy 1.x name numpy.core instead of numpy._core.
    old = path.read_bytes().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray\n" in old
    (tmp_path / "old").write_bytes(old)
    np.testing.assert_array_equal(
        read_limited_annotation(tmp_path / "old")["scene0001_00"], np.arange(20)
    )
    other = {"a": torch.tensor([4, 1]), "b": [2, 0, 9], "c": np.array([1], np.int32), "d": []}
    loaded = read_limited_annotation(legacy_save(other, tmp_path / "mixed"))
    assert [v.tolist() for v in loaded.values()] == [[1, 4], [0, 2, 9], [1], []]
    torch.save(table, tmp_path / "zip.pth")  # the current zip format reads too
    assert read_limited_annotation(tmp_path / "zip.pth").keys() == table.keys()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([np.arange(3)], "expected a dict"),
        ({3: np.arange(3)}, "scene ids must be strings"),
        ({"s": np.zeros((2, 2), np.int64)}, "1-D"),
        ({"s": np.array([1.0, 2.0])}, "refused to unpickle"),  # float dtypes are not allowed
        ({"s": torch.tensor([1.5])}, "integers"),
        ({"s": np.array([1, 1])}, "appears more than once"),
        ({"s": [-2, 1]}, "negative index -2"),
        ({"s": "0 1 2"}, "expected indices"),
        ({"s": [1, "2"]}, "expected indices"),
    ],
)
def test_limited_annotation_validation(tmp_path: Path, data: object, message: str) -> None:
    path = legacy_save(data, tmp_path / "la")
    with pytest.raises(DataFormatError, match=message) as error:
        read_limited_annotation(path)
    assert str(path) in str(error.value)


class Hostile:
    """Unpickling this runs a shell command (the classic pickle exploit)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_hostile_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    legacy = legacy_save({"scene0000_00": Hostile(marker)}, tmp_path / "points20")
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"scene0000_00": Hostile(marker)}, protocol=2))
    for path in (legacy, raw):
        with pytest.raises(DataFormatError, match="refused to unpickle") as error:
            read_limited_annotation(path)
        assert str(path) in str(error.value) and "system" in str(error.value)
    assert not marker.exists()
    with pytest.raises(DataFormatError, match="not found"):
        read_limited_annotation(tmp_path / "missing")
    (tmp_path / "junk").write_bytes(b"\x00junk")
    with pytest.raises(DataFormatError, match=str(tmp_path / "junk")):
        read_limited_annotation(tmp_path / "junk")


@pytest.fixture(scope="module")
def scannet(tmp_path_factory: pytest.TempPathFactory) -> ScanNetDataset:
    root = tmp_path_factory.mktemp("scannet")
    write_indoor_scannet(root, num_scenes=4, points_per_scene=2000, seed=0)
    return ScanNetDataset(root, split="train")


def test_budget_from_limited_annotation(scannet: ScanNetDataset, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scenes = [scannet.scene_id(i) for i in range(len(scannet))]
    sizes = [len(scannet.read(i)["coord"]) for i in range(len(scannet))]
    table = {s: rng.choice(n, 20, replace=False) for s, n in zip(scenes, sizes, strict=True)}
    path = legacy_save({**table, "scene0999_00": np.arange(20)}, tmp_path / "points20")
    budget = budget_from_limited_annotation(scannet, path, split="train", progress=False)
    assert list(budget.indices) == scenes  # the file's other scenes are left out
    m = budget.manifest
    assert (m["mode"], m["count"], m["seed"], m["source"]) == (
        "limited_annotation",
        20,
        None,
        str(path),
    )
    assert m["source_scenes"] == len(scenes) + 1 and len(m["source_sha256"]) == 64
    assert m["labelled_points"] == 20 * len(scenes) and m["dataset"] == "scannet"
    write_budget(tmp_path / "train_la_points20", budget)
    assert read_budget(tmp_path / "train_la_points20").manifest == m

    partial = legacy_save({scenes[0]: np.arange(20)}, tmp_path / "partial")
    with pytest.raises(DataFormatError, match=f"no indices for {len(scenes) - 1} of"):
        budget_from_limited_annotation(scannet, partial, progress=False)
    table[scenes[1]] = np.array([0, sizes[1]])
    beyond = legacy_save(table, tmp_path / "beyond")
    with pytest.raises(DataFormatError, match=f"{scenes[1]}'?: index {sizes[1]} >= its"):
        budget_from_limited_annotation(scannet, beyond, progress=False)


# --- the transform ----------------------------------------------------------------------------


def test_sparse_labels_masks_exactly_the_budget(small_sequences: Path, tmp_path: Path) -> None:
    budget = make_budget(kitti(small_sequences, "00", "01"), rate=0.01, seed=0, progress=False)
    write_budget(tmp_path / "b", budget)
    sparse = SparseLabels(read_budget(tmp_path / "b"))
    dataset = kitti(small_sequences, "00", "01")
    for i in range(len(dataset)):
        sample = dataset[i]
        out = sparse(sample, np.random.default_rng(0))
        chosen = budget.indices[dataset.scene_id(i)]
        assert out["label_mask"].sum() == len(chosen)
        np.testing.assert_array_equal(np.flatnonzero(out["label_mask"]), chosen)
        assert sample["label_mask"].all()  # the input sample is left as it was
        partly = {**sample, "label_mask": sample["point_index"] % 2 == 0}
        kept = sparse(partly, np.random.default_rng(0))["label_mask"]
        np.testing.assert_array_equal(np.flatnonzero(kept), chosen[chosen % 2 == 0])


def test_sparse_labels_survive_a_crop_anywhere_in_the_chain(small_sequences: Path) -> None:
    budget = make_budget(kitti(small_sequences, "00"), rate=0.05, seed=0, progress=False)
    crop, sparse = SphereCrop(max_points=3000), SparseLabels(budget)
    before = kitti(small_sequences, "00", transforms=Compose([sparse, crop]))
    after = kitti(small_sequences, "00", transforms=Compose([crop, sparse]))
    for i in range(len(before)):
        a, b = before[i, 7], after[i, 7]
        np.testing.assert_array_equal(a["point_index"], b["point_index"])
        assert len(a["point_index"]) == 3000 < a["points_read"]
        np.testing.assert_array_equal(a["label_mask"], b["label_mask"])
        expected = np.isin(a["point_index"], budget.indices[a["scene_id"]])
        np.testing.assert_array_equal(b["label_mask"], expected)
        assert 0 < expected.sum() < len(budget.indices[a["scene_id"]])


def test_sparse_labels_refuse_other_data(small_sequences: Path, tmp_path: Path) -> None:
    budget = make_budget(kitti(small_sequences, "00"), count=5, seed=0, progress=False)
    npz, _ = write_budget(tmp_path / "b", budget)
    sparse = SparseLabels(read_budget(npz))
    sample = kitti(small_sequences, "01")[0]
    with pytest.raises(ValueError, match=f"'01/000000' is not in the sparse-label budget {npz}"):
        sparse(sample, np.random.default_rng(0))
    sample = {**kitti(small_sequences, "00")[0]}
    sample["points_read"] = 3
    with pytest.raises(
        ValueError, match=r"made for \d+ points of scene '00/000000', but its scan has 3"
    ):
        sparse(sample, np.random.default_rng(0))
    scenes = {"00/000000": {"points": 3, "labelled": 1}}
    manual = LabelBudget({"00/000000": np.array([4])}, {"scenes": scenes})
    with pytest.raises(ValueError, match="index 4, beyond the 3 points"):
        SparseLabels(manual)(sample, np.random.default_rng(0))
