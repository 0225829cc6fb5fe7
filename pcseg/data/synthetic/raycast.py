"""Analytic scene primitives and vectorised nearest-hit ray casting against them.

A :class:`Scene` holds three kinds of primitive, each as one parameter array:

* boxes (M, 7): centre x, y, z, full size sx, sy, sz, yaw (rotation about +z, radians);
* vertical cylinders (M, 5): axis x, y, bottom z0, top z1, radius (side and top cap);
* ellipsoids (M, 6): centre x, y, z, axis-aligned radii rx, ry, rz.

Every primitive carries a raw class id, an instance id (0 = none) and a velocity (m/s), so a
scene at time ``t`` is the same scene with moving primitives translated by ``velocity * t``.
Rays share one origin (a LiDAR or a pinhole camera); they are sorted by azimuth and cast in
chunks, each against only the primitives whose bounding sphere can meet the chunk's azimuth
wedge, which keeps the work near rays × (primitives in view) instead of rays × all primitives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

KINDS = ("box", "cylinder", "ellipsoid")
Vec3 = Sequence[float]
_PARAMS = {"box": 7, "cylinder": 5, "ellipsoid": 6}
_EPS = 1e-6


@dataclass(frozen=True)
class Primitives:
    """Primitives of one kind: ``params`` (M, P) float64, ``class_raw``/``instance`` (M,) int64,
    ``velocity`` (M, 3) float64 in m/s."""

    kind: str
    params: np.ndarray
    class_raw: np.ndarray
    instance: np.ndarray
    velocity: np.ndarray

    def __len__(self) -> int:
        return len(self.params)

    def at(self, time: float) -> Primitives:
        """The primitives at ``time`` seconds (moving ones translated; cylinders move in x, y)."""
        if not np.any(self.velocity):
            return self
        params = self.params.copy()
        axes = 2 if self.kind == "cylinder" else 3
        params[:, :axes] += self.velocity[:, :axes] * time
        return Primitives(self.kind, params, self.class_raw, self.instance, self.velocity)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounding spheres: centres (M, 3) and radii (M,)."""
        p = self.params
        if self.kind == "box":
            return p[:, :3], 0.5 * np.linalg.norm(p[:, 3:6], axis=1)
        if self.kind == "cylinder":
            centre = np.column_stack([p[:, 0], p[:, 1], 0.5 * (p[:, 2] + p[:, 3])])
            return centre, np.hypot(p[:, 4], 0.5 * (p[:, 3] - p[:, 2]))
        return p[:, :3], p[:, 3:6].max(axis=1)


@dataclass(frozen=True)
class Scene:
    """Boxes, vertical cylinders and ellipsoids; see the module docstring for their parameters."""

    parts: tuple[Primitives, Primitives, Primitives]

    def at(self, time: float) -> Scene:
        """The scene at ``time`` seconds."""
        a, b, c = (part.at(time) for part in self.parts)
        return Scene((a, b, c))

    def class_ids(self) -> set[int]:
        """The raw class ids of all primitives."""
        return {int(c) for part in self.parts for c in part.class_raw}


@dataclass
class SceneBuilder:
    """Collects primitives one by one and hands out instance ids for objects made of several."""

    _rows: dict[str, list[tuple]] = field(default_factory=lambda: {k: [] for k in KINDS})
    _next_instance: int = 1

    def new_instance(self) -> int:
        """A fresh instance id (1, 2, ...)."""
        self._next_instance += 1
        return self._next_instance - 1

    def _add(self, kind: str, params: list[float], cls: int, instance: int, velocity: Vec3) -> None:
        self._rows[kind].append((params, cls, instance, tuple(velocity)))

    def box(
        self,
        centre: Vec3,
        size: Vec3,
        cls: int,
        *,
        yaw: float = 0.0,
        instance: int = 0,
        velocity: Vec3 = (0, 0, 0),
    ) -> None:
        """Add a box with ``centre`` (3,), full ``size`` (3,) and ``yaw`` about +z."""
        self._add("box", [*centre, *size, yaw], cls, instance, velocity)

    def cylinder(
        self,
        x: float,
        y: float,
        z0: float,
        z1: float,
        radius: float,
        cls: int,
        *,
        instance: int = 0,
        velocity: Vec3 = (0, 0, 0),
    ) -> None:
        """Add a vertical cylinder from ``z0`` to ``z1`` around (x, y)."""
        self._add("cylinder", [x, y, z0, z1, radius], cls, instance, velocity)

    def ellipsoid(
        self, centre: Vec3, radii: Vec3, cls: int, *, instance: int = 0, velocity: Vec3 = (0, 0, 0)
    ) -> None:
        """Add an axis-aligned ellipsoid."""
        self._add("ellipsoid", [*centre, *radii], cls, instance, velocity)

    def build(self) -> Scene:
        """Freeze the collected primitives into a :class:`Scene`."""
        parts = []
        for kind in KINDS:
            rows = self._rows[kind]
            parts.append(
                Primitives(
                    kind,
                    np.array([r[0] for r in rows], np.float64).reshape(-1, _PARAMS[kind]),
                    np.array([r[1] for r in rows], np.int64),
                    np.array([r[2] for r in rows], np.int64),
                    np.array([r[3] for r in rows], np.float64).reshape(-1, 3),
                )
            )
        return Scene((parts[0], parts[1], parts[2]))


def _safe(values: np.ndarray) -> np.ndarray:
    # Avoids 0 * inf = nan in the slab and cap tests for rays parallel to a face.
    return np.where(np.abs(values) < 1e-12, 1e-12, values)


def _box_local(
    origin: np.ndarray, dirs: np.ndarray, p: np.ndarray
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Ray origin (3 x (B,)) and directions (3 x (R, B)) in the frames of boxes ``p`` (B, 7)."""
    cos, sin = np.cos(p[:, 6]), np.sin(p[:, 6])
    rel = origin - p[:, :3]
    o = (cos * rel[:, 0] + sin * rel[:, 1], -sin * rel[:, 0] + cos * rel[:, 1], rel[:, 2])
    dx, dy, dz = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]
    d = (dx * cos + dy * sin, -dx * sin + dy * cos, np.broadcast_to(dz, (len(dirs), len(p))))
    return o, d


def _hit_boxes(origin: np.ndarray, dirs: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Ray-box distances (R, B), inf where missed; slab test in each box's yawed frame."""
    o, d = _box_local(origin, dirs, p)
    near = np.full((len(dirs), len(p)), -np.inf)
    far = np.full((len(dirs), len(p)), np.inf)
    for axis in range(3):
        inv = 1.0 / _safe(d[axis])
        half = 0.5 * p[:, 3 + axis]
        t1, t2 = (-half - o[axis]) * inv, (half - o[axis]) * inv
        near = np.maximum(near, np.minimum(t1, t2))
        far = np.minimum(far, np.maximum(t1, t2))
    return np.where((far >= near) & (near > _EPS), near, np.inf)


def _hit_cylinders(origin: np.ndarray, dirs: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Ray-cylinder distances (R, C): the side wall and the top cap, inf where missed."""
    ox, oy = origin[0] - p[:, 0], origin[1] - p[:, 1]
    dx, dy, dz = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]
    a = np.maximum(dx * dx + dy * dy, 1e-12)
    b = dx * ox + dy * oy
    c = ox * ox + oy * oy - p[:, 4] ** 2
    disc = b * b - a * c
    t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    z = origin[2] + t_side * dz
    side = (disc >= 0) & (t_side > _EPS) & (z >= p[:, 2]) & (z <= p[:, 3])
    t = np.where(side, t_side, np.inf)
    t_cap = (p[:, 3] - origin[2]) / _safe(dz)
    cx, cy = ox + t_cap * dx, oy + t_cap * dy
    cap = (t_cap > _EPS) & (cx * cx + cy * cy <= p[:, 4] ** 2)
    return np.where(cap & (t_cap < t), t_cap, t)


def _hit_ellipsoids(origin: np.ndarray, dirs: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Ray-ellipsoid distances (R, E), solved as a unit sphere after scaling by the radii."""
    o = (origin - p[:, :3]) / p[:, 3:6]
    d = dirs[:, None, :] / p[:, 3:6]
    a = np.einsum("rek,rek->re", d, d)
    b = np.einsum("rek,ek->re", d, o)
    c = np.einsum("ek,ek->e", o, o) - 1.0
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    return np.where((disc >= 0) & (t > _EPS), t, np.inf)


_HIT: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "box": _hit_boxes,
    "cylinder": _hit_cylinders,
    "ellipsoid": _hit_ellipsoids,
}


@dataclass(frozen=True)
class Hits:
    """Nearest hits of R rays: ``depth`` (R,) float64 (inf = none), ``class_raw`` and
    ``instance`` (R,) int64 (0 where none), ``normal`` (R, 3) unit normals facing the ray."""

    depth: np.ndarray
    class_raw: np.ndarray
    instance: np.ndarray
    normal: np.ndarray


def _wedges(
    origin: np.ndarray, part: Primitives, max_range: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Primitives in range, with their azimuth (K,) and half-width (K,) seen from ``origin``."""
    centre, radius = part.bounds()
    rel = centre - origin
    keep = np.flatnonzero(np.linalg.norm(rel, axis=1) - radius < max_range)
    rel, radius = rel[keep], radius[keep]
    flat = np.hypot(rel[:, 0], rel[:, 1])
    # A ray meeting the sphere has its horizontal projection within `radius` of the centre.
    half = np.where(flat > radius, np.arcsin(np.minimum(radius / np.maximum(flat, 1e-9), 1)), 4)
    return keep, np.arctan2(rel[:, 1], rel[:, 0]), half


def _nearest(
    origin: np.ndarray,
    dirs: np.ndarray,
    scene: Scene,
    wedges: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    mid: float,
    half: float,
    max_range: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest depth (R,), kind (R,) (-1 = none) and index (R,) for rays within ``half`` of
    azimuth ``mid``, testing only primitives whose wedge overlaps theirs."""
    depth = np.full(len(dirs), max_range)
    kind = np.full(len(dirs), -1)
    index = np.zeros(len(dirs), np.int64)
    for k, (part, (keep, azimuth, width)) in enumerate(zip(scene.parts, wedges, strict=True)):
        gap = np.abs((azimuth - mid + np.pi) % (2 * np.pi) - np.pi)
        candidates = keep[gap <= half + width]
        if candidates.size == 0:
            continue
        t = _HIT[part.kind](origin, dirs, part.params[candidates])
        best = t.argmin(axis=1)
        t_best = t[np.arange(len(dirs)), best]
        closer = t_best < depth
        depth[closer], kind[closer] = t_best[closer], k
        index[closer] = candidates[best[closer]]
    return depth, kind, index


def cast_rays(
    origin: np.ndarray,
    dirs: np.ndarray,
    scene: Scene,
    *,
    max_range: float = np.inf,
    chunk: int = 4096,
) -> Hits:
    """Nearest hit of each ray from one ``origin`` (3,) along unit ``dirs`` (R, 3).

    Hits farther than ``max_range`` count as misses.
    """
    origin = np.asarray(origin, np.float64)
    dirs = np.asarray(dirs, np.float64)
    n = len(dirs)
    azimuth = np.arctan2(dirs[:, 1], dirs[:, 0])
    order = np.argsort(azimuth, kind="stable")
    wedges = [_wedges(origin, part, max_range) for part in scene.parts]
    depth = np.full(n, np.inf)
    kind = np.full(n, -1)
    index = np.zeros(n, np.int64)
    for start in range(0, n, chunk):
        rows = order[start : start + chunk]
        lo, hi = azimuth[rows[0]], azimuth[rows[-1]]
        d, k, i = _nearest(
            origin, dirs[rows], scene, wedges, 0.5 * (lo + hi), 0.5 * (hi - lo), max_range
        )
        depth[rows] = np.where(k >= 0, d, np.inf)
        kind[rows], index[rows] = k, i
    return _describe(origin, dirs, scene, depth, kind, index)


def _normals(part: Primitives, points: np.ndarray, index: np.ndarray) -> np.ndarray:
    p = part.params[index]
    if part.kind == "box":
        cos, sin = np.cos(p[:, 6]), np.sin(p[:, 6])
        rel = points - p[:, :3]
        local = np.column_stack(
            [cos * rel[:, 0] + sin * rel[:, 1], -sin * rel[:, 0] + cos * rel[:, 1], rel[:, 2]]
        )
        axis = np.abs(local / (0.5 * p[:, 3:6])).argmax(axis=1)
        n_local = np.zeros_like(local)
        rows = np.arange(len(p))
        n_local[rows, axis] = np.sign(local[rows, axis])
        return np.column_stack(
            [
                cos * n_local[:, 0] - sin * n_local[:, 1],
                sin * n_local[:, 0] + cos * n_local[:, 1],
                n_local[:, 2],
            ]
        )
    if part.kind == "cylinder":
        top = points[:, 2] >= p[:, 3] - 1e-4
        radial = np.column_stack([points[:, 0] - p[:, 0], points[:, 1] - p[:, 1], 0 * p[:, 0]])
        return np.where(top[:, None], np.array([0.0, 0.0, 1.0]), radial)
    return (points - p[:, :3]) / p[:, 3:6] ** 2


def _describe(
    origin: np.ndarray,
    dirs: np.ndarray,
    scene: Scene,
    depth: np.ndarray,
    kind: np.ndarray,
    index: np.ndarray,
) -> Hits:
    n = len(dirs)
    class_raw = np.zeros(n, np.int64)
    instance = np.zeros(n, np.int64)
    normal = np.zeros((n, 3))
    for k, part in enumerate(scene.parts):
        rows = np.flatnonzero(kind == k)
        if rows.size == 0:
            continue
        class_raw[rows] = part.class_raw[index[rows]]
        instance[rows] = part.instance[index[rows]]
        points = origin + depth[rows, None] * dirs[rows]
        normal[rows] = _normals(part, points, index[rows])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    # Normals face the viewer, so shading and incidence do not depend on primitive orientation.
    flip = np.einsum("rk,rk->r", normal, dirs) > 0
    normal[flip] *= -1
    return Hits(depth, class_raw, instance, normal)
