"""Procedural straight street in "street coordinates": x along the road, y to the left, z up,
z = 0 on the road surface. The ego LiDAR starts at (0, ``EGO_Y``, ``LIDAR_HEIGHT``) and drives
along +x in the right-hand lane.

Cross-section (y, metres): terrain | sidewalk -9..-6 | parking -6..-3.5 | road -3.5..3.5 |
sidewalk 3.5..6.5 | other-ground 6.5..10 | terrain; buildings stand beyond y < -15 and y > 12.5.

Around the start a fixed "showcase" holds one object of every object class, each placed on one of
the first scan's azimuth rays with nothing in between, so every class is hit in frame 0 even by
a coarse scan. Random street furniture fills the rest of the street but keeps out of that zone.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pcseg.data.synthetic import street_objects as obj
from pcseg.data.synthetic.raycast import Scene, SceneBuilder

LIDAR_HEIGHT = 1.73
EGO_Y = -1.75
MARGIN = 90.0  # beyond the LiDAR's 80 m range, so the street never visibly ends near the route
KEEP_OUT = (-25.0, 30.0)  # x range of the showcase, free of random furniture

# (y0, y1, top z, raw class) of the ground strips.
GROUND = (
    (-60.0, -9.0, 0.04, obj.TERRAIN),
    (-9.0, -6.0, 0.12, obj.SIDEWALK),
    (-6.0, -3.5, 0.0, obj.PARKING),
    (-3.5, 3.5, 0.0, obj.ROAD),
    (3.5, 6.5, 0.12, obj.SIDEWALK),
    (6.5, 10.0, 0.06, obj.OTHER_GROUND),
    (10.0, 60.0, 0.04, obj.TERRAIN),
)


def build_street(
    rng: np.random.Generator, *, length: float, ego_speed: float, azimuth_steps: int
) -> Scene:
    """Build a street for a route of ``length`` metres.

    Args:
        rng: source of all layout randomness.
        length: distance the ego drives (m); the street extends ``MARGIN`` beyond both ends.
        ego_speed: ego speed (m/s); sets the speed of the car driving ahead of it.
        azimuth_steps: azimuth samples per LiDAR turn; showcase objects sit on these rays.
    """
    b = SceneBuilder()
    x0, x1 = -MARGIN, length + MARGIN
    for y0, y1, top, cls in GROUND:
        b.box((0.5 * (x0 + x1), 0.5 * (y0 + y1), top - 0.25), (x1 - x0, y1 - y0, 0.5), cls)
    _add_buildings(b, rng, x0, x1)
    _add_showcase(b, rng, 2 * np.pi / azimuth_steps)
    _add_roadside(b, rng, x0, x1)
    _add_parked(b, rng, x0, x1)
    _add_traffic(b, rng, length, ego_speed)
    return b.build()


def _cursor(
    rng: np.random.Generator, x0: float, x1: float, gap: tuple[float, float]
) -> Iterator[float]:
    """Positions from ``x0`` to ``x1`` with random gaps, skipping the showcase zone."""
    x = x0 + rng.uniform(0, gap[1])
    while x < x1:
        if not KEEP_OUT[0] <= x <= KEEP_OUT[1]:
            yield x
        x += rng.uniform(*gap)


def _add_buildings(b: SceneBuilder, rng: np.random.Generator, x0: float, x1: float) -> None:
    for side, face in ((-1, -15.0), (1, 12.5)):
        x = x0 - rng.uniform(0, 10)
        while x < x1:
            size = rng.uniform(8, 28)
            setback = side * rng.uniform(0, 4)
            height = rng.uniform(5, 18)
            obj.add_building(b, x, x + size, face + setback, rng.uniform(8, 16), height)
            x += size + (0.0 if rng.random() < 0.4 else rng.uniform(2, 10))


def _anchored(dx: float, dy: float, step: float) -> tuple[float, float]:
    """Street (x, y) near offset (dx, dy) from the start LiDAR, moved along x so that its
    azimuth is a multiple of ``step``: one ray of the first scan then passes through it."""
    azimuth = np.round(np.arctan2(dy, dx) / step) * step
    return float(dy / np.tan(azimuth)), EGO_Y + dy


def _add_showcase(b: SceneBuilder, rng: np.random.Generator, step: float) -> None:
    # Offsets from the start LiDAR, in separate azimuth wedges so that none hides another.
    def at(dx: float, dy: float) -> tuple[float, float]:
        return _anchored(dx + rng.uniform(-0.3, 0.3), dy, step)

    obj.add_car(b, *at(9.0, -3.0), 0.0)
    obj.add_bush(b, *at(12.0, -8.5), (1.0, 0.9, 0.8))
    obj.add_bicycle(b, *at(4.0, -5.35), 0.0)
    obj.add_street_lamp(b, *at(1.0, -4.7), height=7.0, towards=1)
    obj.add_person(b, *at(-2.0, -5.25), height=rng.uniform(1.6, 1.85))
    obj.add_tree(b, *at(-6.0, -9.25), trunk=2.3, radius=0.25, crown=2.0)
    obj.add_truck(b, *at(-14.0, -3.0), 0.0)
    obj.add_sign(b, *at(14.0, 5.55))
    obj.add_bicyclist(b, *at(6.0, 4.75), np.pi)
    obj.add_fence(b, -4.0, 4.0, 10.1, height=1.5)


def _add_roadside(b: SceneBuilder, rng: np.random.Generator, x0: float, x1: float) -> None:
    for x in _cursor(rng, x0, x1, (25, 40)):
        obj.add_street_lamp(b, x, -6.45, height=rng.uniform(6, 8), towards=1)
    for x in _cursor(rng, x0 + 12, x1, (25, 40)):
        obj.add_street_lamp(b, x, 3.95, height=rng.uniform(6, 8), towards=-1)
    for x in _cursor(rng, x0, x1, (35, 80)):
        obj.add_sign(b, x, -6.7, plate_z=rng.uniform(1.9, 2.4))
    for y, gap in ((-13.0, (2, 12)), (10.1, (6, 20))):
        for start, size in _segments(rng, x0, x1, (5, 20), gap):
            obj.add_fence(b, start, start + size, y, height=rng.uniform(1.0, 1.8))
    _add_greenery(b, rng, x0, x1)
    _add_people(b, rng, x0, x1)


def _segments(
    rng: np.random.Generator,
    x0: float,
    x1: float,
    size: tuple[float, float],
    gap: tuple[float, float],
) -> Iterator[tuple[float, float]]:
    """(start, length) of random runs from ``x0`` to ``x1`` that miss the showcase zone."""
    x = x0 + rng.uniform(0, gap[1])
    while x < x1:
        length = rng.uniform(*size)
        if x + length < KEEP_OUT[0] or x > KEEP_OUT[1]:
            yield x, length
        x += length + rng.uniform(*gap)


def _add_greenery(b: SceneBuilder, rng: np.random.Generator, x0: float, x1: float) -> None:
    for x in _cursor(rng, x0, x1, (7, 15)):
        y, trunk, radius = rng.uniform(-12.0, -10.5), rng.uniform(1.8, 2.8), rng.uniform(0.15, 0.3)
        obj.add_tree(b, x, y, trunk=trunk, radius=radius, crown=rng.uniform(1.6, 2.6))
    for x in _cursor(rng, x0, x1, (12, 30)):
        y, trunk, radius = rng.uniform(11.5, 13.0), rng.uniform(2.0, 3.0), rng.uniform(0.15, 0.3)
        obj.add_tree(b, x, y, trunk=trunk, radius=radius, crown=rng.uniform(1.8, 3.0))
    for x in _cursor(rng, x0, x1, (4, 10)):
        radii = (rng.uniform(0.5, 1.2), rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.9))
        obj.add_bush(b, x, rng.uniform(-12.5, -9.8), radii)
    for start, size in _segments(rng, x0, x1, (3, 12), (3, 15)):
        height = rng.uniform(0.8, 1.5)
        b.box((start + 0.5 * size, 10.9, 0.5 * height), (size, 0.9, height), obj.VEGETATION)


def _add_people(b: SceneBuilder, rng: np.random.Generator, x0: float, x1: float) -> None:
    for lo, hi in ((-8.5, -6.8), (4.2, 6.2)):
        for x in _cursor(rng, x0, x1, (6, 25)):
            obj.add_person(b, x, rng.uniform(lo, hi), height=rng.uniform(1.55, 1.9))
    for x in _cursor(rng, x0, x1, (20, 60)):
        obj.add_bicycle(b, x, -8.6, rng.uniform(0, np.pi))
    for x in _cursor(rng, x0, x1, (40, 90)):
        obj.add_bicyclist(b, x, -3.1, 0.0)
    for x in _cursor(rng, x0, x1, (40, 90)):
        obj.add_bicyclist(b, x, 3.0, np.pi)


def _add_parked(b: SceneBuilder, rng: np.random.Generator, x0: float, x1: float) -> None:
    """Cars and trucks parked bumper to bumper in the parking lane, with some empty bays."""
    x = x0
    while x < x1:
        truck = rng.random() < 0.12
        size = rng.uniform(7.5, 9.5) if truck else 4.2
        if x + size < KEEP_OUT[0] or x > KEEP_OUT[1]:
            yaw = 0.0 if rng.random() < 0.8 else np.pi
            if truck:
                obj.add_truck(b, x + 0.5 * size, -4.75, yaw, length=size)
            else:
                obj.add_car(b, x + 0.5 * size, -4.75 + rng.uniform(-0.15, 0.15), yaw)
        x += size + (rng.uniform(6, 15) if rng.random() < 0.25 else rng.uniform(0.8, 3.0))


def _add_traffic(b: SceneBuilder, rng: np.random.Generator, length: float, speed: float) -> None:
    """Moving cars (raw id 252): one ahead of the ego in its lane, a stream in the other lane."""
    obj.add_car(b, 28.0, EGO_Y, 0.0, cls=obj.MOVING_CAR, velocity=(1.05 * speed, 0, 0))
    duration = length / max(speed, 1e-6)
    x = 40.0 + rng.uniform(0, 10)
    while x < length + MARGIN + 12.0 * duration:
        velocity = (-rng.uniform(8, 12), 0, 0)
        obj.add_car(b, x, -EGO_Y, np.pi, cls=obj.MOVING_CAR, velocity=velocity)
        x += rng.uniform(25, 70)
