"""SemanticKITTI on disk: ``sequences/XX/{velodyne,labels,scribbles,image_2}``, calib, poses, times.

``.bin`` scans are float32 (N, 4) x, y, z, remission; ``.label`` files are uint32 (N,) with the
semantic id in the low 16 bits and the instance id in the high 16 bits. ``poses.txt`` holds cam0
poses, one line per frame id; the LiDAR pose is ``Tr^-1 @ P @ Tr``. ScribbleKITTI's
``scribbles/`` directory uses the ``.label`` format and is read with ``label_dir="scribbles"``.
Writers are atomic and refuse to replace an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.data.formats.files import write_bytes, write_text
from pcseg.data.formats.validation import (
    DataFormatError,
    build_lut,
    check_coords,
    check_count,
    classes_to_ids,
    map_ids,
    read_records,
)
from pcseg.data.meta import semantickitti as meta
from pcseg.data.sample import Sample, make_sample

# raw id -> class index 0..18, ignore -1; ids absent from the official map are unknown (-2).
_RAW_TO_CLASS = build_lut({raw: learn - 1 for raw, learn in meta.LEARNING_MAP.items()}, 1 << 16)
_CLASS_TO_RAW = np.array([meta.LEARNING_MAP_INV[i + 1] for i in range(meta.NUM_CLASSES)])


def read_scan(path: str | Path) -> np.ndarray:
    """Read a ``.bin`` scan as float32 (N, 4): x, y, z, remission."""
    points = read_records(path, np.float32, 4)
    check_coords(path, points[:, :3])
    if not np.isfinite(points[:, 3]).all():
        raise DataFormatError(path, "remission contains NaN or inf")
    return points


def read_label(path: str | Path, num_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``.label`` file into raw semantic ids and instance ids, both int64 (N,)."""
    raw = read_records(path, np.uint32, 1)[:, 0]
    if num_points is not None:
        check_count(path, "label", len(raw), num_points)
    return (raw & 0xFFFF).astype(np.int64), (raw >> 16).astype(np.int64)


def raw_to_class(path: str | Path, semantic_raw: np.ndarray) -> np.ndarray:
    """Map raw SemanticKITTI ids to class indices 0..18 (ignore -1); unknown ids are an error."""
    return map_ids(path, semantic_raw, _RAW_TO_CLASS, what="SemanticKITTI label")


def class_to_raw(classes: np.ndarray) -> np.ndarray:
    """Map class indices 0..18 back to raw ids through ``learning_map_inv`` (ignore -> 0)."""
    return classes_to_ids(classes, _CLASS_TO_RAW, ignore_id=0).astype(np.uint32)


def read_calib(path: str | Path) -> dict[str, np.ndarray]:
    """Read ``calib.txt`` into (3, 4) float64 matrices keyed "P0".."P3", "Tr"."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    calib: dict[str, np.ndarray] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, values = line.partition(":")
        try:
            matrix = np.array(values.split(), dtype=np.float64)
        except ValueError:
            matrix = np.empty(0)
        if not sep or matrix.size != 12 or not np.isfinite(matrix).all():
            raise DataFormatError(path, f"line {number}: expected 'KEY: 12 numbers', got {line!r}")
        calib[key.strip()] = matrix.reshape(3, 4)
    missing = {"P2", "Tr"} - calib.keys()
    if missing:
        raise DataFormatError(path, f"missing calibration entries {sorted(missing)}")
    return calib


def homogeneous(matrix: np.ndarray) -> np.ndarray:
    """Extend a (3, 4) transform to (4, 4)."""
    out = np.eye(4)
    out[:3, :] = matrix
    return out


def read_poses(path: str | Path, tr_velo_to_cam: np.ndarray) -> np.ndarray:
    """Read ``poses.txt`` (cam0 poses) as LiDAR-to-world poses (F, 4, 4), row i = frame id i."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            values = np.array(line.split(), dtype=np.float64)
        except ValueError:
            values = np.empty(0)
        if values.size != 12 or not np.isfinite(values).all():
            raise DataFormatError(path, f"line {number}: expected 12 numbers, got {line!r}")
        rows.append(values)
    cam = np.tile(np.eye(4), (len(rows), 1, 1))
    cam[:, :3, :] = np.asarray(rows).reshape(-1, 3, 4)
    tr = homogeneous(tr_velo_to_cam) if tr_velo_to_cam.shape == (3, 4) else tr_velo_to_cam
    try:
        tr_inv = np.linalg.inv(tr)
    except np.linalg.LinAlgError as error:
        raise DataFormatError(path, "the calibration's Tr is singular") from error
    return tr_inv @ cam @ tr


def lidar_to_cam_poses(lidar_poses: np.ndarray, tr_velo_to_cam: np.ndarray) -> np.ndarray:
    """LiDAR-to-world poses (F, 4, 4) -> the cam0 poses ``Tr @ L @ Tr^-1`` that ``poses.txt``
    stores: the inverse of :func:`read_poses`."""
    tr = homogeneous(tr_velo_to_cam) if tr_velo_to_cam.shape == (3, 4) else tr_velo_to_cam
    return tr @ lidar_poses @ np.linalg.inv(tr)


def read_times(path: str | Path) -> np.ndarray:
    """Read ``times.txt`` as float64 seconds (F,)."""
    try:
        times = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as error:
        raise DataFormatError(path, f"cannot read timestamps: {error}") from error
    if times.ndim != 1 or not np.isfinite(times).all():
        raise DataFormatError(path, "expected one finite timestamp per line")
    return times


def write_scan(path: str | Path, points: np.ndarray, *, overwrite: bool = False) -> None:
    """Write float32 (N, 4) x, y, z, remission as a ``.bin`` scan."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 4:
        raise ValueError(f"points must be (N, 4), got {points.shape}")
    write_bytes(path, points.tobytes(), overwrite=overwrite)


def write_label(
    path: str | Path,
    semantic: np.ndarray,
    instance: np.ndarray | None = None,
    *,
    overwrite: bool = False,
) -> None:
    """Write raw semantic ids (and instance ids) as a ``.label`` file."""
    semantic = np.asarray(semantic, dtype=np.uint32)
    inst = np.zeros_like(semantic) if instance is None else np.asarray(instance, dtype=np.uint32)
    if semantic.max(initial=0) > 0xFFFF or inst.max(initial=0) > 0xFFFF:
        raise ValueError("semantic and instance ids must fit in 16 bits")
    write_bytes(path, ((inst << 16) | semantic).astype(np.uint32).tobytes(), overwrite=overwrite)


def write_predictions(path: str | Path, classes: np.ndarray, *, overwrite: bool = False) -> None:
    """Write predicted class indices 0..18 as a benchmark ``.label`` file of raw ids."""
    write_label(path, class_to_raw(classes), overwrite=overwrite)


def _matrix_lines(entries: list[tuple[str, np.ndarray]]) -> bytes:
    return "".join(
        f"{key}{' '.join(f'{v:.12e}' for v in np.asarray(m, np.float64)[:3].ravel())}\n"
        for key, m in entries
    ).encode()


def write_calib(path: str | Path, calib: dict[str, np.ndarray], *, overwrite: bool = False) -> None:
    """Write "P0".."P3" and "Tr" (3, 4) matrices as ``calib.txt``."""
    lines = _matrix_lines([(f"{k}: ", m) for k, m in calib.items()])
    write_bytes(path, lines, overwrite=overwrite)


def write_poses(path: str | Path, poses: np.ndarray, *, overwrite: bool = False) -> None:
    """Write cam0 poses (F, 4, 4) as ``poses.txt``."""
    write_bytes(path, _matrix_lines([("", pose) for pose in poses]), overwrite=overwrite)


def write_times(path: str | Path, times: np.ndarray, *, overwrite: bool = False) -> None:
    """Write timestamps (F,) in seconds as ``times.txt``."""
    write_text(path, "".join(f"{t:.6e}\n" for t in times), overwrite=overwrite)


def frame_ids(sequence_dir: str | Path) -> list[int]:
    """Frame ids of a sequence, from its ``velodyne/*.bin`` names, sorted."""
    velodyne = Path(sequence_dir) / "velodyne"
    if not velodyne.is_dir():
        raise DataFormatError(velodyne, "no velodyne directory")
    return sorted(int(p.stem) for p in velodyne.glob("*.bin") if p.stem.isdigit())


def read_frame(
    sequence_dir: str | Path,
    frame_id: int,
    *,
    label_dir: str | None = "labels",
    label_path: str | Path | None = None,
    poses: np.ndarray | None = None,
) -> Sample:
    """Read one frame as a sample dict.

    Args:
        sequence_dir: ``.../sequences/XX``.
        frame_id: the frame number (file name), which also indexes ``poses``.
        label_dir: "labels", "scribbles" (ScribbleKITTI) or None for an unlabelled frame.
        label_path: the label file itself, wherever it lies (overrides ``label_dir``).
        poses: LiDAR poses from :func:`read_poses`; adds ``frame_pose`` when given.
    """
    sequence_dir = Path(sequence_dir)
    name = f"{frame_id:06d}"
    points = read_scan(sequence_dir / "velodyne" / f"{name}.bin")
    label = instance = None
    if label_path is None and label_dir is not None:
        label_path = sequence_dir / label_dir / f"{name}.label"
    if label_path is not None:
        semantic_raw, instance = read_label(label_path, len(points))
        label = raw_to_class(label_path, semantic_raw)
    pose = None
    if poses is not None:
        if frame_id >= len(poses):
            raise DataFormatError(sequence_dir / "poses.txt", f"no pose for frame {frame_id}")
        pose = poses[frame_id]
    remission = np.ascontiguousarray(points[:, 3])
    return make_sample(
        coord=points[:, :3],
        feat=remission[:, None],
        label=label,
        scene_id=f"{sequence_dir.name}/{name}",
        remission=remission,
        instance=instance,
        frame_pose=pose,
    )


def read_image(sequence_dir: str | Path, frame_id: int, camera: str = "image_2") -> np.ndarray:
    """Read a frame's camera image as uint8 (H, W, 3)."""
    from pcseg.data.cameras import read_rgb

    return read_rgb(Path(sequence_dir) / camera / f"{frame_id:06d}.png")


def read_sequence_poses(sequence_dir: str | Path) -> np.ndarray:
    """LiDAR poses (F, 4, 4) of a sequence from its ``calib.txt`` and ``poses.txt``."""
    sequence_dir = Path(sequence_dir)
    calib = read_calib(sequence_dir / "calib.txt")
    return read_poses(sequence_dir / "poses.txt", calib["Tr"])
