"""Simulated sensors over a street scene: a spinning multi-beam LiDAR and a pinhole camera.

Both look up the same per-class materials (base colour, base remission, texture), evaluated at
the world position of each hit, so a road pixel and a road point agree and lane markings are
bright in the image and in the remission channel alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pcseg.data.synthetic import street_objects as obj
from pcseg.data.synthetic.raycast import Scene, cast_rays


@dataclass(frozen=True)
class Material:
    """Base RGB colour (0..255), base remission (0..1) and texture contrast of one class."""

    rgb: tuple[int, int, int]
    remission: float
    contrast: float


MATERIALS: dict[int, Material] = {
    obj.CAR: Material((190, 30, 30), 0.16, 0.1),
    obj.MOVING_CAR: Material((190, 30, 30), 0.16, 0.1),
    obj.BICYCLE: Material((40, 180, 200), 0.2, 0.1),
    obj.TRUCK: Material((230, 200, 40), 0.26, 0.15),
    obj.PERSON: Material((220, 70, 170), 0.22, 0.2),
    obj.BICYCLIST: Material((130, 40, 210), 0.22, 0.2),
    obj.ROAD: Material((70, 70, 75), 0.3, 0.25),
    obj.PARKING: Material((125, 85, 125), 0.35, 0.25),
    obj.SIDEWALK: Material((185, 180, 170), 0.4, 0.3),
    obj.OTHER_GROUND: Material((200, 170, 110), 0.38, 0.3),
    obj.BUILDING: Material((195, 110, 80), 0.5, 0.2),
    obj.FENCE: Material((60, 140, 140), 0.4, 0.4),
    obj.VEGETATION: Material((50, 130, 40), 0.42, 0.6),
    obj.TRUNK: Material((90, 55, 30), 0.32, 0.5),
    obj.TERRAIN: Material((150, 170, 80), 0.4, 0.45),
    obj.POLE: Material((120, 125, 160), 0.3, 0.1),
    obj.TRAFFIC_SIGN: Material((20, 70, 220), 0.85, 0.3),
}
PAINT_RGB, PAINT_REMISSION = (235, 235, 225), 0.75  # lane and parking markings
GLASS_RGB, GLASS_REMISSION = (55, 70, 95), 0.08  # building windows
SKY_TOP, SKY_HORIZON = np.array([120.0, 165.0, 225.0]), np.array([200.0, 220.0, 240.0])
SUN = np.array([-0.4, 0.3, 0.85]) / np.linalg.norm([-0.4, 0.3, 0.85])


def _noise(points: np.ndarray, cell) -> np.ndarray:
    """Value noise in [0, 1) per (N, 3) point: a hash of its grid cell, the same in every frame."""
    ijk = np.floor(points / np.asarray(cell)).astype(np.int64)
    h = ijk[:, 0] * 73856093 ^ ijk[:, 1] * 19349663 ^ ijk[:, 2] * 83492791
    h = (h ^ (h >> 13)) * 1274126177
    return ((h >> 7) & 0xFFFF) / 65536.0


def _facade_axis(points: np.ndarray, normal: np.ndarray) -> np.ndarray:
    # The horizontal coordinate that runs along a vertical face: x on faces looking along y.
    return np.where(np.abs(normal[:, 1]) > np.abs(normal[:, 0]), points[:, 0], points[:, 1])


def _road(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = p[:, 1]
    centre = (np.abs(y) < 0.08) & (np.mod(p[:, 0], 9.0) < 3.0)
    edges = np.abs(np.abs(y) - 3.3) < 0.08
    return _noise(p, 0.35), (centre | edges) & (n[:, 2] > 0.5)


def _parking(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _noise(p, 0.35), (np.mod(p[:, 0], 6.0) < 0.12) & (n[:, 2] > 0.5)


def _tiles(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    checker = (np.floor(p[:, 0] / 0.6) + np.floor(p[:, 1] / 0.6)) % 2
    return 0.6 * checker + 0.4 * _noise(p, 0.2), np.zeros(len(p), bool)


def _windows(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    along, z = np.mod(_facade_axis(p, n), 3.0), np.mod(p[:, 2], 3.2)
    glass = (along > 0.9) & (along < 2.1) & (z > 1.0) & (z < 2.3) & (p[:, 2] > 0.9)
    return 0.5 * _noise(p, (2.0, 2.0, 3.2)) + 0.25, glass & (np.abs(n[:, 2]) < 0.5)


def _planks(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.floor(_facade_axis(p, n) / 0.15) % 2, np.zeros(len(p), bool)


def _leaves(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return 0.6 * _noise(p, 0.3) + 0.4 * _noise(p, 0.09), np.zeros(len(p), bool)


def _bark(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _noise(p, (0.06, 0.06, 0.8)), np.zeros(len(p), bool)


def _plain(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _noise(p, 0.5), np.zeros(len(p), bool)


_TEXTURES: dict[int, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    obj.ROAD: _road,
    obj.PARKING: _parking,
    obj.SIDEWALK: _tiles,
    obj.OTHER_GROUND: _tiles,
    obj.BUILDING: _windows,
    obj.FENCE: _planks,
    obj.VEGETATION: _leaves,
    obj.TERRAIN: _leaves,
    obj.TRUNK: _bark,
}


def surface(
    class_raw: np.ndarray, points: np.ndarray, normal: np.ndarray, instance: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Colour and remission of surface hits.

    Args:
        class_raw: (N,) raw class ids (all in ``MATERIALS``).
        points: (N, 3) world hit positions; normal: (N, 3) unit normals; instance: (N,) ids.

    Returns:
        rgb (N, 3) float64 in 0..255 before lighting, and base remission (N,) before the
        incidence-angle falloff.
    """
    rgb = np.zeros((len(points), 3))
    remission = np.zeros(len(points))
    for cls in np.unique(class_raw):
        rows = np.flatnonzero(class_raw == cls)
        material = MATERIALS[int(cls)]
        tex, special = _TEXTURES.get(int(cls), _plain)(points[rows], normal[rows])
        gain = 1.0 + material.contrast * (tex - 0.5)
        rgb[rows] = np.asarray(material.rgb) * gain[:, None]
        remission[rows] = material.remission * gain
        if cls == obj.BUILDING:
            rgb[rows[special]], remission[rows[special]] = GLASS_RGB, GLASS_REMISSION
        elif special.any():
            rgb[rows[special]], remission[rows[special]] = PAINT_RGB, PAINT_REMISSION
    # Each vehicle gets its own paint shade, as real cars differ while staying one class.
    things = instance > 0
    shade = 0.85 + 0.3 * _noise(np.column_stack([instance, instance, instance])[things], 1.0)
    rgb[things] *= shade[:, None]
    return rgb, remission


def _transform(vectors: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``vectors @ matrix.T`` for (N, 3) @ (3, 3), written out: numpy's matmul is slow on it."""
    return (
        vectors[:, 0:1] * matrix[:, 0]
        + vectors[:, 1:2] * matrix[:, 1]
        + vectors[:, 2:3] * matrix[:, 2]
    )


def lidar_directions(
    beams: int, azimuth_steps: int, *, fov_up: float = 2.0, fov_down: float = -24.8
) -> np.ndarray:
    """Unit ray directions (beams * azimuth_steps, 3) in the sensor frame, beam-major from the
    top beam, each ring starting forward (+x) and turning counter-clockwise like KITTI's."""
    elevation = np.radians(np.linspace(fov_up, fov_down, beams))
    azimuth = 2 * np.pi * np.arange(azimuth_steps) / azimuth_steps
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    return np.stack(
        [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1
    ).reshape(-1, 3)


def simulate_scan(
    scene: Scene,
    pose: np.ndarray,
    dirs: np.ndarray,
    rng: np.random.Generator,
    *,
    max_range: float = 80.0,
    min_range: float = 1.0,
    range_noise: float = 0.015,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One LiDAR scan of ``scene`` from sensor-to-world ``pose`` (4, 4).

    Args:
        dirs: (R, 3) unit ray directions in the sensor frame (see :func:`lidar_directions`).
        rng: noise source (range and remission).

    Returns:
        points float32 (N, 4) x, y, z, remission in the sensor frame (rays without a hit inside
        ``min_range..max_range`` drop out), raw class ids (N,) and instance ids (N,), int64.
    """
    world_dirs = _transform(dirs, pose[:3, :3])
    hits = cast_rays(pose[:3, 3], world_dirs, scene, max_range=max_range)
    keep = np.flatnonzero(np.isfinite(hits.depth) & (hits.depth >= min_range))
    depth = hits.depth[keep]
    world = pose[:3, 3] + depth[:, None] * world_dirs[keep]
    normal = hits.normal[keep]
    _, base = surface(hits.class_raw[keep], world, normal, hits.instance[keep])
    incidence = np.abs(np.einsum("nk,nk->n", normal, world_dirs[keep]))
    remission = base * (0.55 + 0.45 * incidence) + rng.normal(0.0, 0.02, len(keep))
    # KITTI stores remission in steps of 0.01.
    remission = np.round(np.clip(remission, 0.0, 1.0), 2)
    noisy = depth + rng.normal(0.0, range_noise, len(keep))
    points = np.column_stack([noisy[:, None] * dirs[keep], remission]).astype(np.float32)
    return points, hits.class_raw[keep], hits.instance[keep]


def render_image(
    scene: Scene, cam_to_world: np.ndarray, intrinsics: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Render the scene through a pinhole camera (x right, y down, z forward).

    Args:
        cam_to_world: (4, 4) camera pose; intrinsics: (3, 3) K; size: (width, height).

    Returns:
        uint8 image (height, width, 3): per pixel the nearest hit's textured, sun-shaded class
        colour, sky where nothing is hit within 300 m. Pixel centres lie at integer (u, v).
    """
    width, height = size
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    to_world = cam_to_world[:3, :3] @ np.linalg.inv(intrinsics)
    dirs = _transform(np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1), to_world)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origin = cam_to_world[:3, 3]
    hits = cast_rays(origin, dirs, scene, max_range=300.0)
    image = np.empty((len(dirs), 3))
    hit = np.flatnonzero(np.isfinite(hits.depth))
    points = origin + hits.depth[hit, None] * dirs[hit]
    rgb, _ = surface(hits.class_raw[hit], points, hits.normal[hit], hits.instance[hit])
    # A strong ambient term keeps every surface near its class colour, as superpixels expect.
    light = 0.8 + 0.2 * np.maximum(hits.normal[hit] @ SUN, 0.0)
    image[hit] = rgb * light[:, None]
    sky = np.flatnonzero(~np.isfinite(hits.depth))
    up = np.clip(dirs[sky, 2] * 4.0, 0.0, 1.0)[:, None]
    image[sky] = SKY_HORIZON * (1 - up) + SKY_TOP * up
    return np.clip(np.round(image), 0, 255).astype(np.uint8).reshape(height, width, 3)
