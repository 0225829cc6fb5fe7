"""Synthetic outdoor LiDAR + camera sequences written in the SemanticKITTI layout.

A simulated spinning LiDAR (KITTI's HDL-64E geometry: 64 beams from +2° to -24.8°, 1.73 m above
the road) drives along a procedural street (:mod:`pcseg.data.synthetic.street`) and is ray-cast
against its analytic primitives; a camera renders ``image_2`` from the same scene through P2.
Each sequence directory gets::

    velodyne/XXXXXX.bin  labels/XXXXXX.label  image_2/XXXXXX.png  calib.txt  poses.txt  times.txt

Labels are raw SemanticKITTI ids with instance ids for things; cars of the opposite lane and the
car ahead move (raw id 252). ``poses.txt`` holds cam0 poses as KITTI does (LiDAR pose =
Tr⁻¹·P·Tr) relative to the first frame; the scene itself lives in street coordinates (see
:mod:`~pcseg.data.synthetic.street`). Everything is a function of ``seed`` and the sequence name.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pcseg.data.formats import semantickitti as kitti
from pcseg.data.formats.files import atomic_output
from pcseg.data.synthetic import street_objects as obj
from pcseg.data.synthetic.raycast import Scene
from pcseg.data.synthetic.street import EGO_Y, LIDAR_HEIGHT, build_street
from pcseg.data.synthetic.street_sensors import lidar_directions, render_image, simulate_scan

# Every class a sequence must contain (raw ids); moving cars come on top.
REQUIRED_CLASSES = (
    obj.CAR, obj.BICYCLE, obj.TRUCK, obj.PERSON, obj.BICYCLIST, obj.ROAD, obj.PARKING,
    obj.SIDEWALK, obj.OTHER_GROUND, obj.BUILDING, obj.FENCE, obj.VEGETATION, obj.TRUNK,
    obj.TERRAIN, obj.POLE, obj.TRAFFIC_SIGN,
)  # fmt: skip

KITTI_IMAGE_SIZE = (1241, 376)
FRAME_PERIOD = 0.1  # s, a 10 Hz LiDAR
# KITTI odometry projections for a 1241 x 376 image (rectified; P2 is the left colour camera).
_P_KITTI = {
    "P0": [[718.856, 0, 607.1928, 0], [0, 718.856, 185.2157, 0], [0, 0, 1, 0]],
    "P1": [[718.856, 0, 607.1928, -386.1448], [0, 718.856, 185.2157, 0], [0, 0, 1, 0]],
    "P2": [[718.856, 0, 607.1928, 45.38225], [0, 718.856, 185.2157, -0.1130887],
           [0, 0, 1, 0.003779761]],
    "P3": [[718.856, 0, 607.1928, -337.2877], [0, 718.856, 185.2157, 2.369057],
           [0, 0, 1, 0.004915215]],
}  # fmt: skip
# Velodyne -> cam0: x_cam = -y_velo, y_cam = -z_velo, z_cam = x_velo; cam0 sits 0.27 m ahead of
# and 0.08 m below the LiDAR.
TR_VELO_TO_CAM = np.array([[0.0, -1, 0, 0.0], [0, 0, -1, -0.08], [1, 0, 0, -0.27]])


def kitti_calib(image_size: tuple[int, int] | None = KITTI_IMAGE_SIZE) -> dict[str, np.ndarray]:
    """KITTI-like calibration: "P0".."P3" (3, 4) scaled to ``image_size`` (width, height) and
    "Tr" (3, 4) velodyne->cam0."""
    width, height = image_size or KITTI_IMAGE_SIZE
    scale = np.diag([width / KITTI_IMAGE_SIZE[0], height / KITTI_IMAGE_SIZE[1], 1.0])
    calib = {key: scale @ np.asarray(p, np.float64) for key, p in _P_KITTI.items()}
    calib["Tr"] = TR_VELO_TO_CAM.copy()
    return calib


def stop_and_go(frames: int, step: float, stop_fraction: float, rng: np.random.Generator):
    """Distance driven before each frame (F,): ``step`` metres a frame on average while moving,
    with the speed varying smoothly (0.5-1.5x), and standing still (waiting at a junction, in
    traffic) for about ``stop_fraction`` of the frames, in up to three stops."""
    if not 0 <= stop_fraction < 1:
        raise ValueError(f"stop_fraction must be in [0, 1), got {stop_fraction}")
    factor = np.ones(max(frames - 1, 0))
    if stop_fraction > 0 and len(factor):
        phase = rng.uniform(0, 2 * np.pi)
        factor = 1 + 0.5 * np.sin(phase + np.linspace(0, 3 * np.pi, len(factor)))
        still = round(stop_fraction * len(factor))
        stops = np.array_split(np.arange(still), min(3, max(still, 1)))
        starts = np.sort(rng.choice(len(factor) - still + 1, len(stops), replace=False))
        for offset, (start, run) in enumerate(zip(starts, stops, strict=True)):
            begin = start + sum(len(r) for r in stops[:offset])
            factor[begin : begin + len(run)] = 0.0
    return np.concatenate([[0.0], np.cumsum(step * factor)])


def lidar_trajectory(frames: int, step: float, distance: np.ndarray | None = None) -> np.ndarray:
    """LiDAR-to-street poses (F, 4, 4): straight down the ego lane, ``step`` metres a frame
    (or at the given ``distance`` driven before each frame)."""
    poses = np.tile(np.eye(4), (frames, 1, 1))
    poses[:, 0, 3] = step * np.arange(frames) if distance is None else distance
    poses[:, 1, 3] = EGO_Y
    poses[:, 2, 3] = LIDAR_HEIGHT
    return poses


def camera_pose(lidar_pose: np.ndarray, calib: dict[str, np.ndarray]) -> np.ndarray:
    """Camera-2-to-world pose (4, 4) from a LiDAR-to-world pose: cam2 is cam0 shifted by
    ``-K⁻¹·P2[:, 3]`` (KITTI's rectified cameras share cam0's orientation)."""
    cam0_to_lidar = np.linalg.inv(kitti.homogeneous(calib["Tr"]))
    cam2_to_cam0 = np.eye(4)
    cam2_to_cam0[:3, 3] = -np.linalg.solve(calib["P2"][:, :3], calib["P2"][:, 3])
    return lidar_pose @ cam0_to_lidar @ cam2_to_cam0


def _sequence_rng(seed: int, name: str, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), *stream])


def _write_metadata(seq_dir: Path, calib: dict[str, np.ndarray], lidar: np.ndarray) -> None:
    """calib.txt, times.txt and poses.txt: the LiDAR poses (F, 4, 4) relative to the first
    frame, stored as cam0 poses ``Tr·L·Tr⁻¹`` the way KITTI stores them."""
    relative = np.linalg.inv(lidar[0]) @ lidar
    kitti.write_calib(seq_dir / "calib.txt", calib)
    kitti.write_poses(seq_dir / "poses.txt", kitti.lidar_to_cam_poses(relative, calib["Tr"]))
    kitti.write_times(seq_dir / "times.txt", FRAME_PERIOD * np.arange(len(lidar)))


def _write_frame(
    seq_dir: Path,
    frame: int,
    scene: Scene,
    lidar_pose: np.ndarray,
    dirs: np.ndarray,
    calib: dict[str, np.ndarray],
    *,
    image_size: tuple[int, int] | None,
    max_range: float,
    rng: np.random.Generator,
    seen: set[int],
) -> int:
    """Write scan, labels and image of one frame; add its classes to ``seen``; return N."""
    points, semantic, instance = simulate_scan(scene, lidar_pose, dirs, rng, max_range=max_range)
    seen.update(np.unique(semantic).tolist())
    stem = f"{frame:06d}"
    kitti.write_scan(seq_dir / "velodyne" / f"{stem}.bin", points)
    kitti.write_label(seq_dir / "labels" / f"{stem}.label", semantic, instance)
    if image_size is not None:
        pose = camera_pose(lidar_pose, calib)
        image = render_image(scene, pose, calib["P2"][:, :3], image_size)
        with atomic_output(seq_dir / "image_2" / f"{stem}.png", overwrite=False) as tmp:
            Image.fromarray(image).save(tmp)
    return len(points)


def write_sequence(
    seq_dir: str | Path,
    *,
    frames: int = 5,
    azimuth_steps: int = 2048,
    beams: int = 64,
    image_size: tuple[int, int] | None = KITTI_IMAGE_SIZE,
    step: float = 0.7,
    stop_fraction: float = 0.0,
    max_range: float = 80.0,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Write one sequence into ``seq_dir`` (see the module docstring for the files).

    Args:
        frames: number of scans; azimuth_steps, beams: rays per scan = beams * azimuth_steps
            (about 98 % return a point); image_size: (width, height) of image_2, None for none;
        step: ego motion per frame (m); stop_fraction: share of frames standing still, with
            the speed varying between them (:func:`stop_and_go`; 0: constant speed);
        max_range: LiDAR range (m); seed: layout and noise.

    Raises:
        RuntimeError: if a class of ``REQUIRED_CLASSES`` never appears in the labels.
    """
    seq_dir = Path(seq_dir)
    name = seq_dir.name
    distance = None
    if stop_fraction > 0:
        distance = stop_and_go(frames, step, stop_fraction, _sequence_rng(seed, name, 2))
    scene = build_street(
        _sequence_rng(seed, name, 0),
        length=step * max(frames - 1, 1) if distance is None else max(distance[-1], step),
        ego_speed=step / FRAME_PERIOD,
        azimuth_steps=azimuth_steps,
    )
    calib = kitti_calib(image_size)
    lidar = lidar_trajectory(frames, step, distance)
    _write_metadata(seq_dir, calib, lidar)
    dirs = lidar_directions(beams, azimuth_steps)
    seen: set[int] = set()
    for frame in tqdm(range(frames), desc=f"sequence {name}", unit="scan", disable=not progress):
        _write_frame(
            seq_dir,
            frame,
            scene.at(FRAME_PERIOD * frame),
            lidar[frame],
            dirs,
            calib,
            image_size=image_size,
            max_range=max_range,
            rng=_sequence_rng(seed, name, 1, frame),
            seen=seen,
        )
    missing = sorted(set(REQUIRED_CLASSES) - seen)
    if missing:
        raise RuntimeError(
            f"sequence {name}: classes {missing} were never hit; use more azimuth steps or beams"
        )
    return seq_dir


def write_outdoor_sequences(
    root: str | Path,
    *,
    sequences: tuple[str, ...] = ("00",),
    frames: int = 5,
    azimuth_steps: int = 2048,
    beams: int = 64,
    image_size: tuple[int, int] | None = KITTI_IMAGE_SIZE,
    step: float = 0.7,
    stop_fraction: float = 0.0,
    seed: int = 0,
    progress: bool = False,
) -> list[Path]:
    """Write synthetic sequences to ``root/sequences/<name>/`` in SemanticKITTI format.

    Args:
        root: dataset root. sequences: sequence names ("00", ...); each gets its own street.
        frames: scans per sequence. azimuth_steps, beams: the scan has beams * azimuth_steps
            rays, ~98 % of which return a point (1900 x 64: ~120k points, 80 x 64: ~5k).
        image_size: (width, height) of ``image_2`` PNGs (P0..P3 are scaled to it), or None.
        step: ego motion per frame in metres (KITTI seq 00 drives ~0.7 m per 0.1 s frame).
        stop_fraction: share of frames the ego stands still (stop-and-go driving), 0: none.
        seed: seed of the layouts and noise; the same seed gives byte-identical files.
        progress: show a progress bar per sequence.

    Returns:
        The sequence directories, in the order of ``sequences``.
    """
    return [
        write_sequence(
            Path(root) / "sequences" / name,
            frames=frames,
            azimuth_steps=azimuth_steps,
            beams=beams,
            image_size=image_size,
            step=step,
            stop_fraction=stop_fraction,
            seed=seed,
            progress=progress,
        )
        for name in sequences
    ]
