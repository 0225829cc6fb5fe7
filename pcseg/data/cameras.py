"""Cameras beside a LiDAR: projection of points into images, and the camera rigs of the formats
we read (SemanticKITTI ``image_2``, KITTI-object ``lidar2img``, RELLIS-3D intrinsics + transform,
nuScenes; the nuScenes readers live in :mod:`pcseg.data.formats.nuscenes`).

Every camera is reduced to one (3, 4) matrix ``lidar_to_pixel``: ``[u·d, v·d, d] = M @ [x, y, z,
1]`` for a LiDAR point (x, y, z), where d is the depth along the optical axis. A point pairs with
a pixel when d > ``min_depth`` (1 m by default, as SLidR) and the projection lies inside the
image, 0 <= u < W and 0 <= v < H; the pixel is (floor(v), floor(u)). (SLidR's code keeps the
strict interior 0 < u < W - 1 and rounds, losing a one-pixel border: 52 of the 17,238 points of
the camera-cropped KITTI-object frame 000008, all of which lie inside its image.)

``pairing`` rows are (point index, camera index, row, col), int64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from pcseg.data.formats import semantickitti as kitti
from pcseg.data.formats.validation import DataFormatError, read_json


@dataclass(frozen=True)
class Camera:
    """One image of a sample and how LiDAR points project into it."""

    name: str
    image_path: Path
    lidar_to_pixel: np.ndarray  # float64 (3, 4)
    width: int
    height: int


def _from_image(path: str | Path, use: Callable):
    """``use(image)`` on the opened image file, naming the file when it is missing or broken."""
    from PIL import Image, UnidentifiedImageError  # optional: only camera work needs images

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        with Image.open(path) as image:
            return use(image)
    except (OSError, UnidentifiedImageError) as error:
        raise DataFormatError(path, f"cannot decode image: {error}") from error


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3)."""
    return _from_image(path, lambda image: np.asarray(image.convert("RGB")))


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header only."""
    return _from_image(path, lambda image: image.size)


def intrinsic_projection(intrinsic: np.ndarray, lidar_to_camera: np.ndarray) -> np.ndarray:
    """``K @ T[:3]``: a (3, 3) pinhole matrix after a (4, 4) or (3, 4) LiDAR-to-camera transform."""
    intrinsic = np.asarray(intrinsic, np.float64)
    transform = np.asarray(lidar_to_camera, np.float64)
    if intrinsic.shape != (3, 3) or transform.shape not in {(3, 4), (4, 4)}:
        raise ValueError(
            f"intrinsic must be (3, 3) and lidar_to_camera (4, 4) or (3, 4), got "
            f"{intrinsic.shape} and {transform.shape}"
        )
    return intrinsic @ transform[:3]


def project_points(
    coord: np.ndarray, camera: Camera, *, min_depth: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of ``coord`` (N, 3) that land in ``camera``'s image: (point index, row, col)."""
    coord = np.asarray(coord, np.float64)
    projected = coord @ camera.lidar_to_pixel[:, :3].T + camera.lidar_to_pixel[:, 3]
    depth = projected[:, 2]
    in_front = depth > min_depth
    with np.errstate(divide="ignore", invalid="ignore"):
        u = projected[:, 0] / depth
        v = projected[:, 1] / depth
    inside = in_front & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    index = np.flatnonzero(inside)
    return index, np.floor(v[index]).astype(np.int64), np.floor(u[index]).astype(np.int64)


def pair_points(
    coord: np.ndarray, cameras: Sequence[Camera], *, min_depth: float = 1.0
) -> np.ndarray:
    """Pairings (P, 4) int64 over all ``cameras``: (point, camera, row, col)."""
    blocks = [np.zeros((0, 4), np.int64)]
    for number, camera in enumerate(cameras):
        index, row, col = project_points(coord, camera, min_depth=min_depth)
        blocks.append(np.stack([index, np.full_like(index, number), row, col], axis=1))
    return np.concatenate(blocks)


def semantickitti_camera(
    sequence_dir: str | Path, frame_id: int, *, camera: str = "image_2"
) -> Camera:
    """A SemanticKITTI / KITTI-odometry frame's camera: ``P·Tr`` from the sequence's calib.txt."""
    sequence_dir = Path(sequence_dir)
    calib = kitti.read_calib(sequence_dir / "calib.txt")
    key = "P" + camera.rsplit("_", 1)[-1]
    if key not in calib:
        raise DataFormatError(sequence_dir / "calib.txt", f"no {key} for camera {camera}")
    path = sequence_dir / camera / f"{frame_id:06d}.png"
    width, height = image_size(path)
    lidar_to_pixel = calib[key] @ kitti.homogeneous(calib["Tr"])
    return Camera(camera, path, lidar_to_pixel, width, height)


def kitti_object_camera(calibration_json: str | Path) -> Camera:
    """KITTI-object style camera: a JSON with ``image`` (beside it), ``width``, ``height`` and a
    4x4 ``lidar2img`` (= P2 · R0_rect · Tr_velo_to_cam)."""
    path = Path(calibration_json)
    data = read_json(path)
    try:
        lidar_to_image = np.asarray(data["lidar2img"], np.float64)
        width, height = int(data["width"]), int(data["height"])
        image = path.parent / data["image"]
    except (KeyError, TypeError, ValueError) as error:
        raise DataFormatError(path, f"needs image, width, height and lidar2img: {error}") from error
    if lidar_to_image.shape not in {(3, 4), (4, 4)}:
        raise DataFormatError(path, f"lidar2img must be 4x4 or 3x4, got {lidar_to_image.shape}")
    return Camera("image_2", image, lidar_to_image[:3], width, height)


def rellis_camera(camera_info: str | Path, transforms: str | Path, image: str | Path) -> Camera:
    """RELLIS-3D style camera: ``camera_info.txt`` (fx fy cx cy) and ``transforms.yaml`` holding
    the camera's pose in the LiDAR frame (quaternion ``q`` w/x/y/z, translation ``t``) under
    ``os1_cloud_node-pylon_camera_node``. Points go to the camera through the inverse pose: on
    frame 000104, 77 % of the projected points carry the label of their pixel in the 2-D label
    image, and none do with the pose itself."""
    camera_info, transforms = Path(camera_info), Path(transforms)
    try:
        fx, fy, cx, cy = np.loadtxt(camera_info, dtype=np.float64).reshape(4)
    except (OSError, ValueError) as error:
        raise DataFormatError(camera_info, f"expected four numbers fx fy cx cy: {error}") from error
    with open(transforms) as handle:
        data = yaml.safe_load(handle) or {}
    try:
        entry = data["os1_cloud_node-pylon_camera_node"]
        q = [float(entry["q"][k]) for k in "wxyz"]
        t = [float(entry["t"][k]) for k in "xyz"]
    except (KeyError, TypeError, ValueError) as error:
        problem = f"needs os1_cloud_node-pylon_camera_node q and t: {error}"
        raise DataFormatError(transforms, problem) from error
    camera_pose = rigid_transform(quaternion_matrix(q), t)
    intrinsic = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    width, height = image_size(image)
    projection = intrinsic_projection(intrinsic, np.linalg.inv(camera_pose))
    return Camera("pylon_camera", Path(image), projection, width, height)


def quaternion_matrix(wxyz: Sequence[float]) -> np.ndarray:
    """Rotation matrix (3, 3) of a quaternion (w, x, y, z), normalised first."""
    w, x, y, z = np.asarray(wxyz, np.float64) / np.linalg.norm(wxyz)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def rigid_transform(rotation: np.ndarray, translation: Sequence[float]) -> np.ndarray:
    """(4, 4) homogeneous transform from a (3, 3) rotation and a translation."""
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = translation
    return transform


def camera_keys(
    coord: np.ndarray, cameras: Sequence[Camera], superpixels, *, min_depth: float = 1.0
) -> dict:
    """The image-to-LiDAR keys of a sample (see :mod:`pcseg.data.sample`): each camera's image,
    its superpixel map from ``superpixels`` (a :class:`pcseg.data.superpixels.SuperpixelCache`)
    and the point-pixel pairings."""
    images = [read_rgb(camera.image_path) for camera in cameras]
    for camera, image in zip(cameras, images, strict=True):
        if image.shape[:2] != (camera.height, camera.width):
            raise DataFormatError(
                camera.image_path,
                f"image is {image.shape[1]}x{image.shape[0]}, its calibration says "
                f"{camera.width}x{camera.height}",
            )
    return {
        "images": images,
        "superpixels": [
            superpixels.read(camera.image_path, image.shape[:2])
            for camera, image in zip(cameras, images, strict=True)
        ],
        "pairing": pair_points(coord, cameras, min_depth=min_depth),
    }
