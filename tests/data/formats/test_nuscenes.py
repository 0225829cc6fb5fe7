"""nuScenes readers on the real v1.0-mini keyframe: sweep, cameras from the sample's
calibration.json and from devkit tables (full chain through both ego poses), lidarseg labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pcseg.data.cameras import pair_points
from pcseg.data.formats import nuscenes
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.meta import nuscenes as meta


def matrix_quaternion(rotation: np.ndarray) -> list[float]:
    """(w, x, y, z) of a rotation matrix (Shepperd's method, largest diagonal term)."""
    r = rotation
    trace = np.trace(r)
    if trace > 0:
        s = 2 * np.sqrt(trace + 1)
        return [s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    i = int(np.argmax(np.diag(r)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2 * np.sqrt(1 + r[i, i] - r[j, j] - r[k, k])
    q = np.zeros(4)
    q[0] = (r[k, j] - r[j, k]) / s
    q[1 + i] = s / 4
    q[1 + j] = (r[j, i] + r[i, j]) / s
    q[1 + k] = (r[k, i] + r[i, k]) / s
    return q.tolist()


def pose_record(token: str, transform: np.ndarray, **extra) -> dict:
    return {
        "token": token,
        "translation": transform[:3, 3].tolist(),
        "rotation": matrix_quaternion(transform[:3, :3]),
        **extra,
    }


def write_devkit_tables(shared: Path, root: Path) -> dict:
    """A v1.0-mini table set for the real keyframe, from the values of its calibration.json.

    calibration.json holds lidar2ego, the LiDAR's ego2global, cam2ego and the chained lidar2cam;
    each camera's own ego pose follows as ego2global · lidar2ego · lidar2cam⁻¹ · cam2ego⁻¹."""
    info = json.loads((shared / "nuscenes/calibration.json").read_text())
    shutil.copytree(shared / "nuscenes/samples", root / "samples")
    lidar2ego = np.asarray(info["lidar_points"]["lidar2ego"])
    ego2global = np.asarray(info["ego2global"])
    sample = {"token": "s0", "timestamp": 0, "scene_token": "scene0"}
    lidar_file = f"samples/LIDAR_TOP/{info['lidar_points']['lidar_path']}"
    data = [{"token": "lidar0", "sample_token": "s0", "is_key_frame": True, "filename": lidar_file,
             "ego_pose_token": "ego_lidar", "calibrated_sensor_token": "cs_lidar", "width": 0,
             "height": 0}]  # fmt: skip
    sensors = [pose_record("cs_lidar", lidar2ego, camera_intrinsic=[])]
    poses = [pose_record("ego_lidar", ego2global)]
    for name, cam in info["images"].items():
        cam2ego = np.asarray(cam["cam2ego"])
        lidar2cam = np.asarray(cam["lidar2cam"])
        cam_ego2global = ego2global @ lidar2ego @ np.linalg.inv(lidar2cam) @ np.linalg.inv(cam2ego)
        sensors.append(pose_record(f"cs_{name}", cam2ego, camera_intrinsic=cam["cam2img"]))
        poses.append(pose_record(f"ego_{name}", cam_ego2global))
        data.append({"token": f"sd_{name}", "sample_token": "s0", "is_key_frame": True,
                     "filename": f"samples/{name}/{cam['img_path']}", "ego_pose_token":
                     f"ego_{name}", "calibrated_sensor_token": f"cs_{name}", "width": 1600,
                     "height": 900})  # fmt: skip
    tables = root / "v1.0-mini"
    tables.mkdir()
    for name, table in [("sample", [sample]), ("sample_data", data),
                        ("calibrated_sensor", sensors), ("ego_pose", poses)]:  # fmt: skip
        (tables / f"{name}.json").write_text(json.dumps(table))
    return info


def test_calibration_json_pairs_3000_to_4800_points_per_camera(shared_data):
    info = json.loads((shared_data / "nuscenes/calibration.json").read_text())
    sweep = shared_data / "nuscenes/samples/LIDAR_TOP" / info["lidar_points"]["lidar_path"]
    points = nuscenes.read_lidar(sweep)
    assert points.shape[1] == 5 and points[:, 3].min() >= 0 and points[:, 3].max() <= 255
    cams = nuscenes.cameras_from_calibration(
        shared_data / "nuscenes/calibration.json", shared_data / "nuscenes/samples"
    )
    assert sorted(c.name for c in cams) == sorted(meta.CAMERAS)
    assert all((c.width, c.height) == (1600, 900) for c in cams)
    pairing = pair_points(points[:, :3], cams)
    counts = np.bincount(pairing[:, 1], minlength=6).tolist()
    per_camera = dict(zip([c.name for c in cams], counts, strict=True))
    # 3,000-4,800 per camera as published for this sweep; 4,826 behind, where our rule keeps the
    # image's one-pixel border that SLidR's strict interior drops.
    assert per_camera == {
        "CAM_FRONT": 3067,
        "CAM_FRONT_RIGHT": 3079,
        "CAM_FRONT_LEFT": 3704,
        "CAM_BACK": 4826,
        "CAM_BACK_LEFT": 4097,
        "CAM_BACK_RIGHT": 3379,
    }


def test_devkit_chain_matches_the_calibration_json(shared_data, tmp_path):
    info = write_devkit_tables(shared_data, tmp_path)
    tables = nuscenes.NuScenesTables(tmp_path, "v1.0-mini")
    keyframe = tables.keyframe("s0")
    assert keyframe.label_path is None and len(keyframe.cameras) == 6
    points = nuscenes.read_lidar(keyframe.lidar_path)
    chained = pair_points(points[:, :3], keyframe.cameras)
    direct = pair_points(
        points[:, :3],
        [c for name in meta.CAMERAS for c in nuscenes.cameras_from_calibration(
            shared_data / "nuscenes/calibration.json", shared_data / "nuscenes/samples")
         if c.name == name],
    )  # fmt: skip
    assert len(info["images"]) == 6
    # Same points in the same cameras; pixels agree but for rounding at pixel borders.
    assert abs(len(chained) - len(direct)) <= 3
    common = {tuple(r[:2]): tuple(r[2:]) for r in direct.tolist()}
    same = [common.get(tuple(r[:2])) == tuple(r[2:]) for r in chained.tolist()]
    assert np.mean(same) > 0.995


def test_lidarseg_labels_map_to_the_16_classes(tmp_path):
    raw = np.array([0, 2, 17, 24, 30, 31, 9, 15], np.uint8)
    path = tmp_path / "x_lidarseg.bin"
    raw.tofile(path)
    labels = nuscenes.read_lidarseg(path, len(raw))
    names = [meta.CLASS_NAMES[c] if c >= 0 else None for c in labels]
    assert names == [None, "pedestrian", "car", "driveable_surface", "vegetation", None,
                     "barrier", "bus"]  # fmt: skip
    with pytest.raises(DataFormatError, match="labels count 8 != point count 9"):
        nuscenes.read_lidarseg(path, 9)
    np.array([40], np.uint8).tofile(path)
    with pytest.raises(DataFormatError, match="unknown lidarseg category id"):
        nuscenes.read_lidarseg(path, 1)


def test_truncated_sweep_and_missing_table_are_named(tmp_path):
    sweep = tmp_path / "a.pcd.bin"
    np.zeros(12, np.float32).tofile(sweep)
    with pytest.raises(DataFormatError, match=r"a\.pcd\.bin.*truncated"):
        nuscenes.read_lidar(sweep)
    (tmp_path / "v1.0-mini").mkdir()
    with pytest.raises(DataFormatError, match=r"sample\.json: devkit table not found"):
        nuscenes.NuScenesTables(tmp_path, "v1.0-mini")
