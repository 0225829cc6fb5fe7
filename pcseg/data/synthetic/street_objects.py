"""Street objects built from analytic primitives (sizes in metres, z = 0 on the road surface).

Each ``add_*`` function appends one object to a :class:`SceneBuilder` at ground position
(x, y) with heading ``yaw``; objects that are "things" in SemanticKITTI (vehicles, persons,
bicyclists, bicycles) get one instance id shared by all their parts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pcseg.data.meta.semantickitti import RAW_IDS
from pcseg.data.synthetic.raycast import SceneBuilder, Vec3

# Raw SemanticKITTI ids of the classes the street is made of.
CAR, BICYCLE, TRUCK, PERSON, BICYCLIST = (
    RAW_IDS[n] for n in ("car", "bicycle", "truck", "person", "bicyclist")
)
ROAD, PARKING, SIDEWALK, OTHER_GROUND = (
    RAW_IDS[n] for n in ("road", "parking", "sidewalk", "other-ground")
)
BUILDING, FENCE, VEGETATION, TRUNK, TERRAIN = (
    RAW_IDS[n] for n in ("building", "fence", "vegetation", "trunk", "terrain")
)
POLE, TRAFFIC_SIGN, MOVING_CAR = (RAW_IDS[n] for n in ("pole", "traffic-sign", "moving-car"))


def _frame(x: float, y: float, yaw: float) -> Callable[[float, float, float], Vec3]:
    cos, sin = np.cos(yaw), np.sin(yaw)

    def at(dx: float, dy: float, z: float) -> tuple[float, float, float]:
        return (x + cos * dx - sin * dy, y + sin * dx + cos * dy, z)

    return at


def add_car(
    b: SceneBuilder,
    x: float,
    y: float,
    yaw: float,
    *,
    cls: int = CAR,
    velocity: Vec3 = (0, 0, 0),
) -> int:
    """A 4.2 m car: body, cabin and four wheels; returns its instance id."""
    inst, at = b.new_instance(), _frame(x, y, yaw)
    kw = {"yaw": yaw, "instance": inst, "velocity": velocity}
    b.box(at(0, 0, 0.7), (4.2, 1.75, 0.75), cls, **kw)
    b.box(at(-0.3, 0, 1.35), (2.3, 1.55, 0.55), cls, **kw)
    for dx in (1.35, -1.35):
        for dy in (0.78, -0.78):
            b.box(at(dx, dy, 0.33), (0.64, 0.22, 0.64), cls, **kw)
    return inst


def add_truck(b: SceneBuilder, x: float, y: float, yaw: float, *, length: float = 8.5) -> int:
    """A box truck: cab, cargo box and six wheels; returns its instance id."""
    inst, at = b.new_instance(), _frame(x, y, yaw)
    kw = {"yaw": yaw, "instance": inst}
    cargo = length - 2.2
    b.box(at(0.5 * length - 1.0, 0, 1.8), (2.0, 2.3, 2.6), TRUCK, **kw)
    b.box(at(-0.5 * length + 0.5 * cargo, 0, 2.5), (cargo, 2.45, 3.2), TRUCK, **kw)
    for dx in (0.5 * length - 1.2, -0.5 * length + 1.4, -0.5 * length + 2.6):
        for dy in (0.95, -0.95):
            b.box(at(dx, dy, 0.5), (1.0, 0.35, 1.0), TRUCK, **kw)
    return inst


def add_person(b: SceneBuilder, x: float, y: float, *, height: float = 1.75) -> int:
    """A standing person: legs, torso and head; returns its instance id."""
    inst, s = b.new_instance(), height / 1.75
    b.cylinder(x, y, 0.0, 0.88 * s, 0.15, PERSON, instance=inst)
    b.ellipsoid((x, y, 1.2 * s), (0.2, 0.25, 0.36 * s), PERSON, instance=inst)
    b.ellipsoid((x, y, 1.63 * s), (0.11, 0.11, 0.13 * s), PERSON, instance=inst)
    return inst


def _bicycle_parts(b: SceneBuilder, x: float, y: float, yaw: float, cls: int, inst: int) -> None:
    at = _frame(x, y, yaw)
    kw = {"yaw": yaw, "instance": inst}
    for dx in (0.52, -0.52):
        b.box(at(dx, 0, 0.34), (0.66, 0.05, 0.66), cls, **kw)
    b.box(at(0, 0, 0.62), (0.95, 0.05, 0.3), cls, **kw)
    b.box(at(0.45, 0, 0.95), (0.06, 0.55, 0.06), cls, **kw)
    b.box(at(-0.2, 0, 0.9), (0.25, 0.12, 0.06), cls, **kw)


def add_bicycle(b: SceneBuilder, x: float, y: float, yaw: float) -> int:
    """A parked bicycle (wheels, frame, handlebar, saddle); returns its instance id."""
    inst = b.new_instance()
    _bicycle_parts(b, x, y, yaw, BICYCLE, inst)
    return inst


def add_bicyclist(b: SceneBuilder, x: float, y: float, yaw: float) -> int:
    """A rider on a bicycle; SemanticKITTI labels rider and bike together as bicyclist."""
    inst, at = b.new_instance(), _frame(x, y, yaw)
    _bicycle_parts(b, x, y, yaw, BICYCLIST, inst)
    b.ellipsoid(at(-0.1, 0, 1.3), (0.26, 0.22, 0.34), BICYCLIST, instance=inst)
    b.ellipsoid(at(0.0, 0, 1.75), (0.11, 0.11, 0.13), BICYCLIST, instance=inst)
    lx, ly, _ = at(-0.15, 0, 0)
    b.cylinder(lx, ly, 0.45, 1.05, 0.13, BICYCLIST, instance=inst)
    return inst


def add_street_lamp(b: SceneBuilder, x: float, y: float, *, height: float, towards: float) -> None:
    """A lamp post whose arm reaches ``towards`` the road (+1 = +y side, -1 = -y side)."""
    b.cylinder(x, y, 0.0, height, 0.12, POLE)
    b.box((x, y + towards * 0.9, height - 0.1), (0.1, 1.8, 0.1), POLE)
    b.box((x, y + towards * 1.7, height - 0.25), (0.5, 0.3, 0.2), POLE)


def add_sign(b: SceneBuilder, x: float, y: float, *, plate_z: float = 2.15) -> None:
    """A traffic sign on its own post (pole); the plate faces traffic coming along +x."""
    b.cylinder(x, y, 0.0, plate_z + 0.2, 0.05, POLE)
    b.box((x - 0.08, y, plate_z), (0.04, 0.7, 0.7), TRAFFIC_SIGN)


def add_tree(
    b: SceneBuilder, x: float, y: float, *, trunk: float, radius: float, crown: float
) -> None:
    """A trunk of height ``trunk`` and radius ``radius`` under an ellipsoidal crown."""
    b.cylinder(x, y, 0.0, trunk + 0.6, radius, TRUNK)
    b.ellipsoid((x, y, trunk + 0.85 * crown), (crown, crown, 0.9 * crown), VEGETATION)


def add_bush(b: SceneBuilder, x: float, y: float, radii: Vec3) -> None:
    """A bush: an ellipsoid half sunk in the ground."""
    b.ellipsoid((x, y, 0.45 * radii[2]), radii, VEGETATION)


def add_fence(b: SceneBuilder, x0: float, x1: float, y: float, *, height: float) -> None:
    """A fence panel along x from ``x0`` to ``x1`` at lateral position ``y``, with posts."""
    b.box((0.5 * (x0 + x1), y, 0.5 * height), (x1 - x0, 0.05, height), FENCE)
    for px in np.arange(x0, x1 + 1e-6, 2.5):
        b.box((px, y, 0.5 * height + 0.05), (0.08, 0.1, height + 0.1), FENCE)


def add_building(
    b: SceneBuilder, x0: float, x1: float, face: float, depth: float, height: float
) -> None:
    """A block from ``x0`` to ``x1`` whose street facade lies at ``face``; it extends ``depth``
    away from the road (towards the sign of ``face``)."""
    side = np.sign(face)
    b.box(
        (0.5 * (x0 + x1), face + side * 0.5 * depth, 0.5 * height),
        (x1 - x0, depth, height),
        BUILDING,
    )
