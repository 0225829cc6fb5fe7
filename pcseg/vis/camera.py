"""One pinhole camera shared by every backend, so a view looks the same whichever one renders.

World coordinates are z-up (LiDAR and the aligned indoor datasets all are). The camera looks
from ``eye`` at ``target``; ``fov_deg`` is the vertical field of view and pixels are square.
Camera coordinates follow the computer-vision convention (x right, y down, z forward), which is
what the software rasteriser and Open3D's pinhole parameters both use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VIEWS = ("oblique", "top")


@dataclass(frozen=True)
class Camera:
    """A look-at pinhole camera.

    Attributes:
        eye: camera centre (3,) in world metres.
        target: the point looked at (3,).
        up: world direction that appears upwards in the image.
        fov_deg: vertical field of view in degrees.
    """

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    fov_deg: float = 50.0

    def __post_init__(self) -> None:
        forward = np.subtract(self.target, self.eye)
        if not np.linalg.norm(forward) > 0:
            raise ValueError("camera eye and target must differ")
        if np.linalg.norm(np.cross(forward, self.up)) < 1e-9 * np.linalg.norm(forward):
            raise ValueError("camera up must not be parallel to the viewing direction")
        if not 1 <= self.fov_deg <= 170:
            raise ValueError(f"fov_deg must be in [1, 170], got {self.fov_deg}")

    def extrinsic(self) -> np.ndarray:
        """4x4 world -> camera transform (x right, y down, z forward)."""
        eye = np.asarray(self.eye, dtype=np.float64)
        forward = np.asarray(self.target, dtype=np.float64) - eye
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, np.asarray(self.up, dtype=np.float64))
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        rotation = np.stack([right, down, forward])
        matrix = np.eye(4)
        matrix[:3, :3] = rotation
        matrix[:3, 3] = -rotation @ eye
        return matrix

    def intrinsic(self, width: int, height: int) -> np.ndarray:
        """3x3 pinhole matrix for an image of ``width`` x ``height`` pixels.

        The principal point is the image centre in Open3D's convention (``size / 2 - 0.5``:
        pixel centres at integers), which the legacy Visualizer insists on.
        """
        focal = (height / 2) / math.tan(math.radians(self.fov_deg) / 2)
        return np.array(
            [[focal, 0, width / 2 - 0.5], [0, focal, height / 2 - 0.5], [0, 0, 1]],
            dtype=np.float64,
        )


def default_camera(coord: np.ndarray, *, view: str = "oblique", fov_deg: float = 50.0) -> Camera:
    """A camera that frames the bulk of ``coord`` (N, 3).

    The frame covers the 2nd-98th percentile box rather than the full extent: a LiDAR scan's
    few returns 80 m away would otherwise shrink the street to a dot. ``top`` looks straight
    down (x to the right); ``oblique`` looks down at 45 degrees from the -x, -y side.
    """
    if view not in VIEWS:
        raise ValueError(f"view {view!r}; valid: {', '.join(VIEWS)}")
    low, high = np.percentile(np.asarray(coord, dtype=np.float64), [2, 98], axis=0)
    target = (low + high) / 2
    radius = max(float(np.linalg.norm(high - low)) / 2, 1e-3)
    distance = radius / math.sin(math.radians(fov_deg) / 2)
    if view == "top":
        direction, up = np.array([0.0, 0.0, 1.0]), (0.0, 1.0, 0.0)
        distance *= 0.75  # a flat scene seen from above needs less room than its diagonal
    else:
        direction, up = np.array([-0.5, -0.5, math.sqrt(0.5)]), (0.0, 0.0, 1.0)
        distance *= 0.6  # corners of the box may leave the frame; the bulk fills it
    eye = target + direction * distance
    return Camera(eye=tuple(eye), target=tuple(target), up=up, fov_deg=fov_deg)


def project(
    coord: np.ndarray, camera: Camera, width: int, height: int, *, near: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel positions of points in front of the camera.

    Returns:
        ``(uv, depth, kept)``: float64 (M, 2) column and row of each point in front of
        ``near``, its depth (M,) in metres along the viewing axis, and the int64 indices (M,)
        of those points into ``coord``.
    """
    homogeneous = np.c_[np.asarray(coord, dtype=np.float64), np.ones(len(coord))]
    local = homogeneous @ camera.extrinsic()[:3].T
    kept = np.flatnonzero(local[:, 2] > near)
    local = local[kept]
    k = camera.intrinsic(width, height)
    u = k[0, 0] * local[:, 0] / local[:, 2] + k[0, 2]
    v = k[1, 1] * local[:, 1] / local[:, 2] + k[1, 2]
    return np.stack([u, v], axis=1), local[:, 2], kept
