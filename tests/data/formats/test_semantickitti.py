"""SemanticKITTI reader/writer on the real seq-00 files and on written files, incl. bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcseg.data.formats import semantickitti as sk
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.meta import semantickitti as meta

REAL_RAW_IDS = {0, 1, 10, 40, 44, 48, 50, 51, 52, 60, 70, 71, 72, 80, 81, 99, 255}


@pytest.fixture(scope="module")
def seq00(shared_data: Path) -> Path:
    return shared_data / "semantickitti" / "sequences" / "00"


def test_real_scan_and_labels(seq00):
    points = sk.read_scan(seq00 / "velodyne" / "000000.bin")
    assert points.shape == (124_668, 4) and points.dtype == np.float32
    semantic, instance = sk.read_label(seq00 / "labels" / "000000.label", len(points))
    assert len(semantic) == 124_668
    assert set(np.unique(semantic).tolist()) == REAL_RAW_IDS
    assert (semantic == 255).sum() == 88  # moving-motorcyclist
    assert instance.max() > 0


def test_real_frame_sample_maps_through_learning_map(seq00):
    sample = sk.read_frame(seq00, 0, poses=sk.read_sequence_poses(seq00))
    semantic, _ = sk.read_label(seq00 / "labels" / "000000.label")
    label = sample["label"]
    assert label.dtype == np.int64 and sample["coord"].shape == (124_668, 3)
    # unlabeled/outlier/other-structure/other-object -> ignore; moving-motorcyclist -> motorcyclist
    assert (label[np.isin(semantic, [0, 1, 52, 99])] == -1).all()
    assert (label[semantic == 255] == meta.CLASS_NAMES.index("motorcyclist")).all()
    assert (label[semantic == 60] == meta.CLASS_NAMES.index("road")).all()
    assert sample["feat"].shape == (124_668, 1)
    assert np.array_equal(sample["feat"][:, 0], sample["remission"])
    assert sample["scene_id"] == "00/000000"
    np.testing.assert_allclose(sample["frame_pose"], np.eye(4), atol=1e-6)


def test_real_poses_move_forward_about_0_7_m_per_frame(seq00):
    calib = sk.read_calib(seq00 / "calib.txt")
    assert set(calib) == {"P0", "P1", "P2", "P3", "Tr"}
    poses = sk.read_poses(seq00 / "poses.txt", calib["Tr"])
    assert len(poses) == 4541 and len(sk.read_times(seq00 / "times.txt")) == 4541
    steps = np.diff(poses[:6, :3, 3], axis=0)
    assert np.all((np.linalg.norm(steps, axis=1) > 0.6) & (np.linalg.norm(steps, axis=1) < 0.8))
    # In the LiDAR frame, forward is +x: the motion is almost entirely along x.
    assert np.all(steps[:, 0] > 0.6) and np.all(np.abs(steps[:, 2]) < 0.1)


def test_real_poses_align_consecutive_scans(seq00):
    poses = sk.read_sequence_poses(seq00)
    frame0 = sk.read_scan(seq00 / "velodyne" / "000000.bin")[:, :3]
    frame5 = sk.read_scan(seq00 / "velodyne" / "000005.bin")[:, :3]
    moved = frame5 @ (np.linalg.inv(poses[0]) @ poses[5])[:3, :3].T
    moved += (np.linalg.inv(poses[0]) @ poses[5])[:3, 3]

    def overlap(a: np.ndarray, b: np.ndarray) -> float:
        va = {tuple(v) for v in np.floor(a / 0.2).astype(int)}
        vb = {tuple(v) for v in np.floor(b / 0.2).astype(int)}
        return len(va & vb) / len(vb)

    assert overlap(frame0, moved) > overlap(frame0, frame5) + 0.1


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    seq = tmp_path / "sequences" / "07"
    points = rng.normal(size=(500, 4)).astype(np.float32)
    raw_ids = np.array(sorted(meta.LEARNING_MAP))
    semantic = rng.choice(raw_ids, 500)
    instance = rng.integers(0, 50, 500)
    sk.write_scan(seq / "velodyne" / "000003.bin", points)
    sk.write_label(seq / "labels" / "000003.label", semantic, instance)
    tr = np.array([[0, -1, 0, 0.1], [0, 0, -1, -0.05], [1, 0, 0, -0.3]], dtype=float)
    p2 = np.array([[700.0, 0, 600, 45], [0, 700, 180, 0.1], [0, 0, 1, 0.003]])
    sk.write_calib(seq / "calib.txt", {"P0": p2, "P1": p2, "P2": p2, "P3": p2, "Tr": tr})
    lidar_poses = np.tile(np.eye(4), (4, 1, 1))
    lidar_poses[:, 0, 3] = np.arange(4) * 0.7
    sk.write_poses(seq / "poses.txt", sk.lidar_to_cam_poses(lidar_poses, tr))
    sk.write_times(seq / "times.txt", np.arange(4) * 0.1)

    assert sk.frame_ids(seq) == [3]
    sample = sk.read_frame(seq, 3, poses=sk.read_sequence_poses(seq))
    np.testing.assert_array_equal(sample["coord"], points[:, :3])
    np.testing.assert_array_equal(sample["instance"], instance)
    expected = np.array([meta.LEARNING_MAP[r] - 1 for r in semantic])
    np.testing.assert_array_equal(sample["label"], expected)
    np.testing.assert_allclose(sample["frame_pose"], lidar_poses[3], atol=1e-9)
    np.testing.assert_allclose(sk.read_times(seq / "times.txt"), np.arange(4) * 0.1)


def test_predictions_written_back_through_learning_map_inv(tmp_path):
    classes = np.array([-1, 0, 8, 18, 5])
    sk.write_predictions(tmp_path / "p.label", classes)
    raw, instance = sk.read_label(tmp_path / "p.label")
    assert raw.tolist() == [0, 10, 40, 81, 30] and not instance.any()
    np.testing.assert_array_equal(sk.raw_to_class(tmp_path / "p.label", raw), classes)
    with pytest.raises(ValueError, match="class indices"):
        sk.class_to_raw(np.array([19]))


def test_scribbles_directory_is_read_like_labels(tmp_path):
    seq = tmp_path / "00"
    sk.write_scan(seq / "velodyne" / "000000.bin", np.ones((3, 4), np.float32))
    sk.write_label(seq / "scribbles" / "000000.label", np.array([0, 40, 70]))
    sample = sk.read_frame(seq, 0, label_dir="scribbles")
    assert sample["label"].tolist() == [-1, 8, 14]
    assert (sk.read_frame(seq, 0, label_dir=None)["label"] == -1).all()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("truncated_bin", "not a multiple of the 16-byte record"),
        ("label_count", "label count 4 != point count 5"),
        ("nan", "NaN/inf coordinates"),
        ("empty", "empty scan"),
        ("unknown_id", "unknown SemanticKITTI label id"),
        ("calib", "line 2: expected 'KEY: 12 numbers'"),
        ("poses", "line 1: expected 12 numbers"),
        ("remission", "remission contains NaN or inf"),
        ("singular_tr", "Tr is singular"),
        ("times", "one finite timestamp per line"),
    ],
)
def test_bad_input_names_the_file_and_the_problem(tmp_path, case, message):
    seq = tmp_path / "00"
    points = np.ones((5, 4), np.float32)
    labels = np.full(5, 40)
    bad_file = seq / "velodyne" / "000000.bin"
    if case == "truncated_bin":
        points = points.ravel()[:-1]
    elif case == "label_count":
        labels, bad_file = labels[:4], seq / "labels" / "000000.label"
    elif case == "nan":
        points[2, 1] = np.nan
    elif case == "empty":
        points = np.zeros((0, 4), np.float32)
    elif case == "unknown_id":
        labels[1], bad_file = 41, seq / "labels" / "000000.label"
    elif case == "remission":
        points[3, 3] = np.inf
    (seq / "velodyne").mkdir(parents=True)
    points.astype(np.float32).tofile(seq / "velodyne" / "000000.bin")
    sk.write_label(seq / "labels" / "000000.label", labels)
    if case == "calib":
        bad_file = seq / "calib.txt"
        bad_file.write_text("P2: " + " ".join(["1"] * 12) + "\nTr: 1 2 3\n")
        call = lambda: sk.read_calib(bad_file)  # noqa: E731
    elif case == "poses":
        bad_file = seq / "poses.txt"
        bad_file.write_text("1 0 0 0 0 1 0 0 0 0 1 x\n")
        call = lambda: sk.read_poses(bad_file, np.eye(4))  # noqa: E731
    elif case == "singular_tr":
        bad_file = seq / "poses.txt"
        bad_file.write_text("1 0 0 0 0 1 0 0 0 0 1 0\n")
        call = lambda: sk.read_poses(bad_file, np.zeros((3, 4)))  # noqa: E731
    elif case == "times":
        bad_file = seq / "times.txt"
        bad_file.write_text("0.0\nnan\n")
        call = lambda: sk.read_times(bad_file)  # noqa: E731
    else:
        call = lambda: sk.read_frame(seq, 0)  # noqa: E731
    with pytest.raises(DataFormatError, match=message) as error:
        call()
    assert error.value.path == bad_file and str(bad_file) in str(error.value)
