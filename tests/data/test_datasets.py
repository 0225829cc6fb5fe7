"""Datasets over tiny synthetic data in the native formats, and the real SemanticKITTI frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcseg.data.datasets import DATASETS, S3DISDataset, ScanNetDataset, SemanticKITTIDataset
from pcseg.data.formats import s3dis, scannet
from pcseg.data.formats import semantickitti as kitti
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.meta import s3dis as s3dis_meta
from pcseg.data.meta import scannet as scannet_meta
from pcseg.data.meta import semantickitti as kitti_meta
from pcseg.data.synthetic import write_indoor_s3dis, write_indoor_scannet, write_outdoor_sequences
from pcseg.data.transforms import build_transforms

TRAIN_TRANSFORMS = [
    {"name": "random_rotate", "axis": "z", "degrees": [-180, 180], "center": "origin"},
    {"name": "random_flip", "axes": ["x", "y"], "p": 0.5},
    {"name": "random_scale", "low": 0.9, "high": 1.1},
    {"name": "random_jitter", "sigma": 0.005, "clip": 0.02},
]


def test_every_dataset_is_registered() -> None:
    assert DATASETS.names() == ("s3dis", "scannet", "semantickitti")
    assert DATASETS.get("semantickitti") is SemanticKITTIDataset


# --- SemanticKITTI ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kitti_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sequences 00 and 08 with 3 frames each; frame 2 of 00 has no label file."""
    root = tmp_path_factory.mktemp("kitti")
    write_outdoor_sequences(
        root, sequences=("00", "08"), frames=3, azimuth_steps=80, beams=64, image_size=None
    )
    (root / "sequences" / "00" / "labels" / "000002.label").unlink()
    return root


def test_kitti_lists_labelled_frames(kitti_root: Path) -> None:
    dataset = SemanticKITTIDataset(kitti_root, sequences=["00"])
    assert len(dataset) == 2
    assert [dataset.scene_id(i) for i in range(2)] == ["00/000000", "00/000001"]
    unlabelled = SemanticKITTIDataset(kitti_root, sequences=["00"], label_dir=None)
    assert [unlabelled.scene_id(i) for i in range(3)] == ["00/000000", "00/000001", "00/000002"]
    assert (unlabelled.read(2)["label"] == -1).all()
    assert dataset.num_classes == kitti_meta.NUM_CLASSES == 19
    both = SemanticKITTIDataset(kitti_root, sequences=[0, "08"])
    assert len(both) == 5 and both.scene_id(4) == "08/000002"


def test_kitti_num_points_is_the_read_count(kitti_root: Path) -> None:
    dataset = SemanticKITTIDataset(kitti_root, sequences=["00", "08"])
    counts = [dataset.num_points(i) for i in range(len(dataset))]
    assert counts == [len(dataset.read(i)["coord"]) for i in range(len(dataset))]
    assert len(set(counts)) > 1 and min(counts) > 3000 and max(counts) <= 80 * 64


def test_kitti_frames_filter_and_split_names(kitti_root: Path) -> None:
    dataset = SemanticKITTIDataset(kitti_root, sequences=["00", "08"], frames=[1, 2])
    assert [dataset.scene_id(i) for i in range(len(dataset))] == [
        "00/000001",
        "08/000001",
        "08/000002",
    ]
    val = SemanticKITTIDataset(kitti_root, sequences="val")
    assert [val.scene_id(i) for i in range(len(val))] == ["08/000000", "08/000001", "08/000002"]
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        SemanticKITTIDataset(kitti_root, sequences="valid")


def test_kitti_missing_sequence_or_labels_are_clear_errors(kitti_root: Path) -> None:
    # "train" names 00-07, 09, 10: sequence 01 is missing here
    with pytest.raises(DataFormatError, match="no velodyne directory") as error:
        SemanticKITTIDataset(kitti_root, sequences="train")
    assert str(kitti_root / "sequences" / "01" / "velodyne") in str(error.value)
    with pytest.raises(DataFormatError, match="no labelled frames"):
        SemanticKITTIDataset(kitti_root, sequences=["00"], label_dir="scribbles")
    with pytest.raises(DataFormatError, match="no labelled frames"):
        SemanticKITTIDataset(kitti_root, sequences=["00"], frames=[7])


def test_kitti_items_are_deterministic_per_seed(kitti_root: Path) -> None:
    transforms = build_transforms(TRAIN_TRANSFORMS)
    dataset = SemanticKITTIDataset(kitti_root, sequences=["08"], transforms=transforms)
    raw = dataset.read(1)
    first, again, other = dataset[(1, 123)], dataset[(1, 123)], dataset[(1, 124)]
    np.testing.assert_array_equal(first["coord"], again["coord"])
    assert not np.allclose(first["coord"], other["coord"])
    assert not np.allclose(first["coord"], raw["coord"])
    n = len(raw["coord"])
    assert first["index"] == 1 and first["points_read"] == n == dataset.num_points(1)
    np.testing.assert_array_equal(first["point_index"], np.arange(n))
    np.testing.assert_array_equal(first["label"], raw["label"])
    # augmentation is rigid up to scale and jitter: distances to the origin change by <= 10 %
    radius = [np.linalg.norm(s["coord"][:, :2], axis=1) for s in (first, raw)]
    assert 0.85 < np.median(radius[0] / radius[1]) < 1.15
    plain = SemanticKITTIDataset(kitti_root, sequences=["08"])
    np.testing.assert_array_equal(plain[1]["coord"], raw["coord"])
    np.testing.assert_array_equal(plain[(1, 5)]["coord"], raw["coord"])


def test_kitti_export_writes_benchmark_labels(kitti_root: Path, tmp_path: Path) -> None:
    dataset = SemanticKITTIDataset(kitti_root, sequences=["00", "08"])
    n = dataset.num_points(3)
    classes = np.random.default_rng(0).integers(-1, kitti_meta.NUM_CLASSES, n)
    (path,) = dataset.export(3, classes, tmp_path)
    assert path == tmp_path / "sequences" / "08" / "predictions" / "000001.label"
    assert path.stat().st_size == 4 * n
    raw, instance = kitti.read_label(path, n)
    assert (instance == 0).all() and (raw[classes == -1] == 0).all()
    assert raw[classes == kitti_meta.CLASS_NAMES.index("car")][0] == 10
    np.testing.assert_array_equal(kitti.raw_to_class(path, raw), classes)
    assert dataset.prediction_path(3, tmp_path) == path
    np.testing.assert_array_equal(dataset.read_prediction(path), classes)
    with pytest.raises(FileExistsError):
        dataset.export(3, classes, tmp_path)


def test_kitti_real_frame(shared_data: Path) -> None:
    root = shared_data / "semantickitti"
    dataset = SemanticKITTIDataset(root, sequences=["00"])
    assert len(dataset) == 1 and dataset.scene_id(0) == "00/000000"
    assert dataset.num_points(0) == 124_668
    sample = dataset[0]
    assert sample["coord"].shape == (124_668, 3) and sample["points_read"] == 124_668
    assert (sample["label"] >= 0).sum() > 100_000


# --- S3DIS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3dis_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("s3dis")
    write_indoor_s3dis(root, num_areas=6, rooms_per_area=1, points_per_room=1500)
    return root


def test_s3dis_splits_by_test_area(s3dis_root: Path) -> None:
    train = S3DISDataset(s3dis_root, split="train")
    assert [train.scene_id(i) for i in range(len(train))] == [
        f"Area_{a}/office_1" for a in (1, 2, 3, 4, 6)
    ]
    val = S3DISDataset(s3dis_root, split="val")
    assert len(val) == 1 and val.scene_id(0) == "Area_5/office_1"
    fold2 = S3DISDataset(s3dis_root, split="test", test_area=2)
    assert [fold2.scene_id(0)] == ["Area_2/office_1"] and len(fold2) == 1
    assert "Area_2/office_1" not in {
        S3DISDataset(s3dis_root, test_area=2).scene_id(i) for i in range(5)
    }
    picked = S3DISDataset(s3dis_root, rooms=["Area_3/office_1", "Area_5/office_1"])
    assert len(picked) == 1 and picked.scene_id(0) == "Area_3/office_1"
    with pytest.raises(DataFormatError, match="no rooms"):
        S3DISDataset(s3dis_root, rooms=["Area_5/office_1"])
    assert val.num_classes == s3dis_meta.NUM_CLASSES == 13


def test_s3dis_num_points_bounds_the_true_count(s3dis_root: Path) -> None:
    dataset = S3DISDataset(s3dis_root, split="train")
    for i in range(len(dataset)):
        true = len(dataset.read(i)["coord"])
        files = len(s3dis.annotation_files(s3dis_root / dataset.scene_id(i)))
        assert true <= dataset.num_points(i) <= true + files
    assert true > 1000


def test_s3dis_export(s3dis_root: Path, tmp_path: Path) -> None:
    dataset = S3DISDataset(s3dis_root, split="val")
    n = len(dataset.read(0)["coord"])
    classes = np.random.default_rng(1).integers(0, 13, n)
    paths = dataset.export(0, classes, tmp_path)
    stem = tmp_path / "Area_5" / "office_1"
    assert paths == [stem.with_name("office_1.npy"), stem.with_name("office_1.txt")]
    saved = np.load(paths[0])
    assert saved.dtype == np.int64
    np.testing.assert_array_equal(saved, classes)
    np.testing.assert_array_equal(np.loadtxt(paths[1], dtype=np.int64), classes)
    assert len(paths[1].read_text().splitlines()) == n
    assert dataset.prediction_path(0, tmp_path) == paths[0]
    np.testing.assert_array_equal(dataset.read_prediction(paths[0]), classes)
    with pytest.raises(DataFormatError, match=r"office_1\.txt: not a prediction file"):
        dataset.read_prediction(paths[1])
    with pytest.raises(FileExistsError):
        dataset.export(0, classes, tmp_path)


# --- ScanNet ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scannet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scannet")
    write_indoor_scannet(root, num_scenes=4, points_per_scene=1200)
    return root


def test_scannet_splits_and_num_points(scannet_root: Path) -> None:
    train = ScanNetDataset(scannet_root, split="train")
    assert [train.scene_id(i) for i in range(len(train))] == [
        "scene0000_00",
        "scene0001_00",
        "scene0002_00",
    ]
    val = ScanNetDataset(scannet_root, split="val")
    assert len(val) == 1 and val.scene_id(0) == "scene0003_00"
    for dataset in (train, val):
        for i in range(len(dataset)):
            assert dataset.num_points(i) == len(dataset.read(i)["coord"]) == 1200
    with pytest.raises(DataFormatError, match="split list not found"):
        ScanNetDataset(scannet_root, split="test")
    assert val.num_classes == scannet_meta.NUM_CLASSES == 20


def test_scannet_alignment(scannet_root: Path) -> None:
    aligned = ScanNetDataset(scannet_root, split="val").read(0)["coord"]
    raw = ScanNetDataset(scannet_root, split="val", align=False).read(0)["coord"]
    matrix = scannet.read_axis_alignment(
        scannet_root / "scans" / "scene0003_00" / "scene0003_00.txt"
    )
    np.testing.assert_allclose(aligned, raw @ matrix[:3, :3].T + matrix[:3, 3], atol=1e-4)
    assert not np.allclose(aligned, raw, atol=0.1)


def test_scannet_export_writes_nyu40_ids(scannet_root: Path, tmp_path: Path) -> None:
    dataset = ScanNetDataset(scannet_root, split="val")
    classes = np.random.default_rng(2).integers(-1, 20, 1200)
    (path,) = dataset.export(0, classes, tmp_path)
    assert path == tmp_path / "scene0003_00.txt"
    ids = np.loadtxt(path, dtype=np.int64)
    np.testing.assert_array_equal(ids, scannet.class_to_nyu40(classes))
    assert (ids[classes == -1] == 0).all()
    assert (ids[classes == scannet_meta.CLASS_NAMES.index("picture")] == 11).all()
    assert (ids[classes == 19] == 39).all()  # otherfurniture
    assert dataset.prediction_path(0, tmp_path) == path
    np.testing.assert_array_equal(dataset.read_prediction(path), classes)
    (tmp_path / "bad.txt").write_text("3\n41\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt: unknown NYU40 id"):
        dataset.read_prediction(tmp_path / "bad.txt")
    with pytest.raises(FileExistsError):
        dataset.export(0, classes, tmp_path)
