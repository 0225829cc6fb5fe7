"""nuScenes readers: LiDAR sweeps (``LIDAR_TOP/*.pcd.bin``, float32 x, y, z, intensity, ring),
lidarseg labels, the devkit metadata tables, and the camera chain of a keyframe.

A keyframe's cameras come from the devkit tables (``v1.0-*/sample_data.json``,
``calibrated_sensor.json``, ``ego_pose.json``; ``sample.json`` orders the keyframes) through the
full chain lidar -> ego(t_lidar) -> global -> ego(t_camera) -> camera -> pixels, or from a
per-sample ``calibration.json`` in the mmdetection3d info layout (``lidar2cam`` and ``cam2img``
per camera). Paths from the tables are resolved inside the data root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcseg.data.cameras import Camera, intrinsic_projection, quaternion_matrix, rigid_transform
from pcseg.data.formats.validation import (
    DataFormatError,
    build_lut,
    check_coords,
    check_count,
    map_ids,
    read_json,
    read_records,
    resolve_inside,
)
from pcseg.data.meta import nuscenes as meta


def read_lidar(path: str | Path) -> np.ndarray:
    """A ``.pcd.bin`` sweep as float32 (N, 5): x, y, z, intensity (0-255), ring."""
    points = read_records(path, np.float32, 5)
    check_coords(path, points[:, :3])
    return points


def read_lidarseg(
    path: str | Path, num_points: int, raw_names: tuple[str, ...] = meta.RAW_NAMES
) -> np.ndarray:
    """A ``*_lidarseg.bin`` (uint8 raw category per point) as int64 evaluation classes, -1 for
    the ignored categories; ``raw_names`` lists the raw categories in index order."""
    raw = read_records(path, np.uint8, 1)[:, 0]
    check_count(path, "labels", len(raw), num_points)
    mapping = {
        raw_id: meta.CLASS_NAMES.index(meta.RAW_NAME_TO_CLASS[name])
        if name in meta.RAW_NAME_TO_CLASS
        else -1
        for raw_id, name in enumerate(raw_names)
    }
    lut = build_lut(mapping, size=len(raw_names))
    return map_ids(path, raw.astype(np.int64), lut, what="lidarseg category")


def _pose(record: dict) -> np.ndarray:
    """(4, 4) transform of a calibrated_sensor or ego_pose record (rotation w, x, y, z)."""
    return rigid_transform(quaternion_matrix(record["rotation"]), record["translation"])


@dataclass(frozen=True)
class Keyframe:
    """One annotated sample: its LiDAR sweep, labels (when released) and cameras."""

    token: str
    lidar_path: Path
    label_path: Path | None
    cameras: tuple[Camera, ...]


class NuScenesTables:
    """The devkit tables of one version (e.g. ``v1.0-mini``) under a nuScenes root."""

    def __init__(self, root: str | Path, version: str) -> None:
        self.root = Path(root)
        self.table_dir = resolve_inside(self.root, version)
        self.samples = sorted(self._table("sample"), key=lambda s: s["timestamp"])
        data = self._table("sample_data")
        self.calibrated_sensor = {r["token"]: r for r in self._table("calibrated_sensor")}
        self.ego_pose = {r["token"]: r for r in self._table("ego_pose")}
        self.keyframe_data: dict[str, dict[str, dict]] = {}
        for record in data:
            if record.get("is_key_frame"):
                channel = Path(record["filename"]).parent.name
                self.keyframe_data.setdefault(record["sample_token"], {})[channel] = record
        self.lidarseg: dict[str, str] = {}
        if (self.table_dir / "lidarseg.json").is_file():
            self.lidarseg = {r["sample_data_token"]: r["filename"] for r in self._table("lidarseg")}
        self.raw_names = meta.RAW_NAMES
        if (self.table_dir / "category.json").is_file():
            categories = sorted(
                (r for r in self._table("category") if "index" in r), key=lambda r: r["index"]
            )
            if categories:
                self.raw_names = tuple(r["name"] for r in categories)

    def _table(self, name: str) -> list[dict]:
        path = self.table_dir / f"{name}.json"
        if not path.is_file():
            raise DataFormatError(path, "devkit table not found")
        table = read_json(path)
        if not isinstance(table, list):
            raise DataFormatError(path, "a devkit table must be a JSON list of records")
        return table

    def keyframe(self, sample_token: str, cameras: tuple[str, ...] = meta.CAMERAS) -> Keyframe:
        """The LiDAR sweep, label file and cameras (full projection chain) of one sample."""
        channels = self.keyframe_data.get(sample_token, {})
        if "LIDAR_TOP" not in channels:
            raise DataFormatError(
                self.table_dir / "sample_data.json", f"sample {sample_token}: no LIDAR_TOP keyframe"
            )
        lidar = channels["LIDAR_TOP"]
        lidar_to_global = _pose(self.ego_pose[lidar["ego_pose_token"]]) @ _pose(
            self.calibrated_sensor[lidar["calibrated_sensor_token"]]
        )
        views = []
        for name in cameras:
            if name not in channels:
                continue
            record = channels[name]
            sensor = self.calibrated_sensor[record["calibrated_sensor_token"]]
            camera_to_global = _pose(self.ego_pose[record["ego_pose_token"]]) @ _pose(sensor)
            projection = intrinsic_projection(
                np.asarray(sensor["camera_intrinsic"], np.float64),
                np.linalg.solve(camera_to_global, lidar_to_global),
            )
            path = resolve_inside(self.root, record["filename"])
            views.append(Camera(name, path, projection, record["width"], record["height"]))
        label = self.lidarseg.get(lidar["token"])
        return Keyframe(
            token=sample_token,
            lidar_path=resolve_inside(self.root, lidar["filename"]),
            label_path=resolve_inside(self.root, label) if label else None,
            cameras=tuple(views),
        )


def cameras_from_calibration(path: str | Path, image_root: str | Path) -> tuple[Camera, ...]:
    """Cameras of a sample from an mmdetection3d-style ``calibration.json`` (per camera
    ``img_path``, ``cam2img`` and ``lidar2cam``); images are found under
    ``image_root/<camera>/``. Sizes are read from the image headers."""
    from pcseg.data.cameras import image_size

    path = Path(path)
    try:
        images = read_json(path)["images"]
    except (KeyError, TypeError) as error:
        raise DataFormatError(path, f"needs an 'images' table: {error}") from error
    cameras = []
    for name, entry in images.items():
        try:
            projection = intrinsic_projection(entry["cam2img"], entry["lidar2cam"])
            image = resolve_inside(image_root, f"{name}/{entry['img_path']}")
        except (KeyError, ValueError) as error:
            raise DataFormatError(path, f"camera {name}: {error}") from error
        width, height = image_size(image)
        cameras.append(Camera(name, image, projection, width, height))
    return tuple(cameras)
