"""Synthetic outdoor sequences: format, classes, remission, poses, geometry and images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcseg.data.formats import semantickitti as kitti
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.synthetic.outdoor import REQUIRED_CLASSES, write_outdoor_sequences
from pcseg.data.synthetic.raycast import SceneBuilder, cast_rays
from pcseg.data.synthetic.street import build_street
from pcseg.data.synthetic.street_sensors import MATERIALS

FRAMES, STEPS, BEAMS, SIZE = 3, 512, 64, (320, 96)
ROAD, BUILDING, VEGETATION, SIGN = 40, 50, 70, 81


@pytest.fixture(scope="module")
def seq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("outdoor")
    (seq_dir,) = write_outdoor_sequences(
        root, frames=FRAMES, azimuth_steps=STEPS, beams=BEAMS, image_size=SIZE, seed=0
    )
    return seq_dir


def _frame(seq_dir: Path, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    points = kitti.read_scan(seq_dir / "velodyne" / f"{frame:06d}.bin")
    semantic, instance = kitti.read_label(seq_dir / "labels" / f"{frame:06d}.label", len(points))
    return points, semantic, instance


def test_layout_and_point_counts(seq: Path) -> None:
    assert seq.name == "00" and seq.parent.name == "sequences"
    assert kitti.frame_ids(seq) == list(range(FRAMES))
    np.testing.assert_allclose(kitti.read_times(seq / "times.txt"), 0.1 * np.arange(FRAMES))
    rays = BEAMS * STEPS
    for frame in range(FRAMES):
        points, semantic, _ = _frame(seq, frame)
        assert 0.8 * rays <= len(points) <= rays
        assert np.all(np.isin(semantic, [*REQUIRED_CLASSES, 252]))
        ranges = np.linalg.norm(points[:, :3], axis=1)
        assert ranges.min() > 0.9 and ranges.max() < 80.1


def test_every_class_in_every_sequence(seq: Path) -> None:
    seen = set()
    for frame in range(FRAMES):
        seen |= set(_frame(seq, frame)[1].tolist())
    assert set(REQUIRED_CLASSES) <= seen
    assert 252 in seen  # the moving cars


def test_coarse_scan_still_has_every_class(tmp_path: Path) -> None:
    (seq_dir,) = write_outdoor_sequences(
        tmp_path, sequences=("07",), frames=1, azimuth_steps=80, image_size=None, seed=3
    )
    points, semantic, _ = _frame(seq_dir, 0)
    assert 4000 <= len(points) <= 64 * 80
    assert set(REQUIRED_CLASSES) <= set(semantic.tolist())
    assert not (seq_dir / "image_2").exists()


def test_instances_only_on_things(seq: Path) -> None:
    _, semantic, instance = _frame(seq, 0)
    things = np.isin(semantic, [10, 11, 18, 30, 31, 252])
    assert np.all(instance[things] > 0) and np.all(instance[~things] == 0)
    for inst in np.unique(instance[things]):
        assert len(np.unique(semantic[instance == inst])) == 1
    assert len(np.unique(instance[semantic == 10])) >= 2


def test_remission_range_and_classes(seq: Path) -> None:
    points, semantic, _ = _frame(seq, 0)
    remission = points[:, 3]
    assert remission.min() >= 0.0 and remission.max() <= 1.0
    road = remission[semantic == ROAD].mean()
    assert road < 0.3
    assert road + 0.3 < remission[semantic == SIGN].mean()
    assert road < remission[semantic == BUILDING].mean()


def test_poses_step_forward_in_lidar_frame(tmp_path: Path, seq: Path) -> None:
    poses = kitti.read_sequence_poses(seq)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-9)
    steps = np.linalg.inv(poses[:-1]) @ poses[1:]
    np.testing.assert_allclose(steps[:, :3, :3], np.tile(np.eye(3), (FRAMES - 1, 1, 1)), atol=1e-9)
    np.testing.assert_allclose(steps[:, :3, 3], [[0.7, 0.0, 0.0]] * (FRAMES - 1), atol=1e-9)
    (other,) = write_outdoor_sequences(
        tmp_path, frames=2, azimuth_steps=64, beams=16, image_size=None, step=1.3
    )
    step = np.linalg.inv(kitti.read_sequence_poses(other)[0]) @ kitti.read_sequence_poses(other)[1]
    np.testing.assert_allclose(step[:3, 3], [1.3, 0.0, 0.0], atol=1e-9)


def _median_gap(source: np.ndarray, target: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    return float(np.median(cKDTree(target).query(source)[0]))


def test_static_points_align_across_frames(seq: Path) -> None:
    pytest.importorskip("scipy")
    poses = kitti.read_sequence_poses(seq)
    p0, s0, _ = _frame(seq, 0)
    p1, s1, _ = _frame(seq, 1)
    to_frame0 = np.linalg.inv(poses[0]) @ poses[1]
    aligned = p1[:, :3] @ to_frame0[:3, :3].T + to_frame0[:3, 3]
    for classes in ([ROAD, BUILDING], [80, 71, 81]):
        a, b = np.isin(s0, classes), np.isin(s1, classes)
        assert _median_gap(aligned[b], p0[a, :3]) < 0.1
    # Thin vertical structures tell a wrong pose apart: unaligned they sit ~0.7 m off.
    thin0, thin1 = np.isin(s0, [80, 71]), np.isin(s1, [80, 71])
    assert _median_gap(p1[thin1, :3], p0[thin0, :3]) > 0.3


def test_image_matches_lidar(seq: Path) -> None:
    calib = kitti.read_calib(seq / "calib.txt")
    image = np.asarray(Image.open(seq / "image_2" / "000000.png").convert("RGB"), np.float64)
    assert image.shape == (SIZE[1], SIZE[0], 3)
    points, semantic, _ = _frame(seq, 0)
    homogeneous = np.c_[points[:, :3], np.ones(len(points))].T
    cam = calib["P2"] @ kitti.homogeneous(calib["Tr"]) @ homogeneous
    front = cam[2] > 2.0
    u, v = np.round(cam[0, front] / cam[2, front]), np.round(cam[1, front] / cam[2, front])
    inside = (u >= 0) & (u < SIZE[0]) & (v >= 0) & (v < SIZE[1])
    u, v, semantic = u[inside].astype(int), v[inside].astype(int), semantic[front][inside]
    colours = image[v, u]
    road = semantic == ROAD
    assert road.sum() > 200
    dist = {c: np.linalg.norm(colours - np.array(m.rgb), axis=1) for c, m in MATERIALS.items()}
    closer = (dist[ROAD] < dist[BUILDING]) & (dist[ROAD] < dist[VEGETATION])
    assert closer[road].mean() > 0.85
    # The nearest base colour names the LiDAR point's class for most points of large classes.
    names = np.array(list(dist))
    nearest = names[np.argmin(np.stack(list(dist.values())), axis=0)]
    for cls in (ROAD, 44, VEGETATION, BUILDING):
        assert (nearest[semantic == cls] == cls).mean() > 0.6, cls
    assert image[0, SIZE[0] // 2, 2] > image[0, SIZE[0] // 2, 0]  # sky above the road


def _files(seq_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(seq_dir)): p.read_bytes() for p in seq_dir.rglob("*") if p.is_file()}


def test_deterministic_per_seed(tmp_path: Path) -> None:
    kwargs = {"frames": 2, "azimuth_steps": 128, "image_size": (64, 24)}
    a = _files(write_outdoor_sequences(tmp_path / "a", seed=5, **kwargs)[0])
    b = _files(write_outdoor_sequences(tmp_path / "b", seed=5, **kwargs)[0])
    c = _files(write_outdoor_sequences(tmp_path / "c", seed=6, **kwargs)[0])
    assert len(a) == 2 * 3 + 3 and a == b
    assert a["velodyne/000000.bin"] != c["velodyne/000000.bin"]
    assert a["image_2/000000.png"] != c["image_2/000000.png"]


def test_cast_rays_analytic_distances() -> None:
    b = SceneBuilder()
    b.box((10, 0, 0), (2, 2, 2), 50, yaw=np.pi / 4)
    b.cylinder(0, 10, -1, 2, 1.0, 80)
    b.ellipsoid((0, 0, 10), (1, 2, 3), 70)
    b.box((-10, 0, 0), (2, 2, 2), 10, instance=7, velocity=(-1, 0, 0))
    scene = b.build()
    dirs = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0], [0, -1, 0]], np.float64)
    hits = cast_rays(np.zeros(3), dirs, scene)
    np.testing.assert_allclose(hits.depth[:4], [10 - np.sqrt(2), 9, 7, 9])
    assert hits.depth[4] == np.inf and hits.class_raw[4] == 0
    assert hits.class_raw[:4].tolist() == [50, 80, 70, 10] and hits.instance[3] == 7
    np.testing.assert_allclose(hits.normal[1:4], [[0, -1, 0], [0, 0, -1], [1, 0, 0]], atol=1e-9)
    np.testing.assert_allclose(cast_rays(np.zeros(3), dirs, scene.at(2.0)).depth[3], 11)
    top = cast_rays(np.array([0.0, 10.0, 5.0]), np.array([[0.0, 0.0, -1.0]]), scene)
    np.testing.assert_allclose([top.depth[0], *top.normal[0]], [3, 0, 0, 1])


def test_cast_rays_culling_matches_brute_force() -> None:
    scene = build_street(np.random.default_rng(1), length=5.0, ego_speed=7.0, azimuth_steps=256)
    rng = np.random.default_rng(2)
    dirs = rng.normal(size=(3000, 3)) * [1, 1, 0.3]
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origin = np.array([1.0, -1.75, 1.73])
    culled = cast_rays(origin, dirs, scene, max_range=80.0, chunk=64)
    brute = cast_rays(origin, dirs, scene, max_range=80.0, chunk=len(dirs))
    np.testing.assert_array_equal(culled.depth, brute.depth)
    np.testing.assert_array_equal(culled.class_raw, brute.class_raw)
    assert np.isfinite(culled.depth).mean() > 0.5


def test_cast_rays_across_the_azimuth_seam() -> None:
    # A box straight behind the origin straddles azimuth ±pi; rays on both sides must hit it.
    b = SceneBuilder()
    b.box((-10, 0, 0), (2, 2, 2), 50)
    dirs = np.array([[-1, 0.05, 0], [-1, -0.05, 0]])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    hits = cast_rays(np.zeros(3), dirs, b.build(), chunk=1)
    assert hits.class_raw.tolist() == [50, 50]
    np.testing.assert_allclose(hits.depth, 9 / dirs[:, 0] * -1)


def test_reader_gives_sample_dicts_and_images(seq: Path) -> None:
    poses = kitti.read_sequence_poses(seq)
    sample = kitti.read_frame(seq, 1, poses=poses)
    points, semantic, _ = _frame(seq, 1)
    assert sample["scene_id"] == "00/000001"
    np.testing.assert_array_equal(sample["coord"], points[:, :3])
    np.testing.assert_array_equal(sample["label"], kitti.raw_to_class(seq, semantic))
    assert sample["label"].min() >= 0  # every synthetic point carries a class
    np.testing.assert_allclose(sample["frame_pose"], poses[1])
    image = kitti.read_image(seq, 1)
    assert image.shape == (SIZE[1], SIZE[0], 3) and image.dtype == np.uint8
    (seq / "image_2" / "000099.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match=r"000099\.png: cannot decode image"):
        kitti.read_image(seq, 99)
    with pytest.raises(DataFormatError, match="file not found"):
        kitti.read_image(seq, 98)
