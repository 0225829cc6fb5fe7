"""Synthetic indoor rooms with colour, written as S3DIS rooms and ScanNet scenes.

A room is a box (floor, walls, optional ceiling and beam) with objects on its walls (door,
window, board, picture, curtains) and furniture on a jittered floor grid (a table with chairs
and things on it, sofa, bookcase, column, bed, ...). Every object is a union of axis-aligned
boxes whose surfaces are sampled uniformly; flush wall objects also take over the wall points
inside their outline, as a scan sees them. Colours are per-class base colours with per-object
and per-point noise. Each room contains every class of its dataset, so every dataset written
here holds all classes. Everything is a function of ``seed`` and the room's position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcseg.data.formats import s3dis, scannet
from pcseg.data.meta import s3dis as s3dis_meta
from pcseg.data.meta import scannet as scannet_meta

# kind -> (S3DIS class, NYU40 id, base RGB)
KINDS: dict[str, tuple[str, int, tuple[int, int, int]]] = {
    "ceiling": ("ceiling", 22, (228, 226, 220)), "floor": ("floor", 2, (150, 118, 88)),
    "wall": ("wall", 1, (205, 198, 186)), "beam": ("beam", 38, (188, 184, 176)),
    "column": ("column", 38, (176, 174, 168)), "door": ("door", 8, (128, 88, 56)),
    "window": ("window", 9, (168, 198, 228)), "board": ("board", 30, (238, 238, 236)),
    "table": ("table", 7, (158, 112, 72)), "chair": ("chair", 5, (62, 64, 74)),
    "sofa": ("sofa", 6, (122, 44, 42)), "bookcase": ("bookcase", 10, (138, 98, 60)),
    "clutter": ("clutter", 40, (86, 138, 160)), "cabinet": ("clutter", 3, (200, 180, 150)),
    "bed": ("clutter", 4, (222, 222, 238)), "picture": ("clutter", 11, (180, 62, 60)),
    "counter": ("clutter", 12, (210, 205, 200)), "desk": ("table", 14, (170, 130, 90)),
    "curtain": ("clutter", 16, (200, 170, 120)), "refrigerator": ("clutter", 24, (240, 240, 240)),
    "shower curtain": ("clutter", 28, (200, 220, 230)), "toilet": ("clutter", 33, (245, 245, 245)),
    "sink": ("clutter", 34, (230, 230, 230)), "bathtub": ("clutter", 36, (240, 240, 235)),
    "otherfurniture": ("clutter", 39, (110, 80, 60)),
}  # fmt: skip
KIND_NAMES: tuple[str, ...] = tuple(KINDS)

# Wall-mounted kinds: (width, height, bottom, inward offset from, to, flush with the wall).
_WALL_KINDS = {
    "door": (0.9, 2.05, 0.0, 0.0, 0.04, True), "window": (1.3, 1.2, 0.9, 0.0, 0.06, True),
    "board": (1.8, 1.1, 0.9, 0.0, 0.03, True), "picture": (0.7, 0.5, 1.4, 0.0, 0.03, True),
    "curtain": (1.2, 2.2, 0.3, 0.05, 0.12, False),
    "shower curtain": (1.4, 1.8, 0.2, 0.35, 0.4, False),
}  # fmt: skip
_ROOM_TYPES = ("office", "conferenceRoom", "lounge", "pantry", "storage", "hallway")
_CELL = 1.8  # floor-grid cell (m); every furniture group is scaled to fit one
_MARGIN = 0.5  # keeps furniture clear of wall objects

Box = tuple[tuple[float, float, float], tuple[float, float, float]]
Group = list[tuple[str, list[Box]]]


def _legs(sx: float, sy: float, h: float, t: float = 0.05) -> list[Box]:
    return [((x, y, 0.0), (x + t, y + t, h)) for x in (0, sx - t) for y in (0, sy - t)]


def _table(sx: float = 1.2, sy: float = 0.75, h: float = 0.75) -> list[Box]:
    return [((0, 0, h - 0.04), (sx, sy, h)), *_legs(sx, sy, h - 0.04)]


def _chair(back_low_y: bool) -> list[Box]:
    back = ((0, 0, 0.47), (0.45, 0.05, 0.9)) if back_low_y else ((0, 0.4, 0.47), (0.45, 0.45, 0.9))
    return [((0, 0, 0.42), (0.45, 0.45, 0.47)), back, *_legs(0.45, 0.45, 0.42, 0.04)]


def _shift(boxes: list[Box], dx: float, dy: float, dz: float = 0.0) -> list[Box]:
    return [((a + dx, b + dy, c + dz), (d + dx, e + dy, f + dz)) for (a, b, c), (d, e, f) in boxes]


def _table_group(rng: np.random.Generator) -> Group:
    things = [
        ("clutter", _shift([((0, 0, 0), tuple(rng.uniform(0.1, 0.3, 3)))], x, 0.7, 0.75))
        for x in (0.15, 0.7)
    ]  # fmt: skip
    return [
        ("table", _shift(_table(1.1, 0.7), 0, 0.5)), ("chair", _shift(_chair(True), 0.3, 0)),
        ("chair", _shift(_chair(False), 0.3, 1.25)), *things,
    ]  # fmt: skip


def _bookcase() -> list[Box]:
    sides = [((0, 0, 0), (0.03, 0.35, 1.9)), ((0.87, 0, 0), (0.9, 0.35, 1.9))]
    shelves = [((0, 0, z), (0.9, 0.35, z + 0.02)) for z in (0.0, 0.45, 0.9, 1.35, 1.88)]
    return [*sides, ((0, 0.33, 0), (0.9, 0.35, 1.9)), *shelves]


def _bathtub() -> list[Box]:
    sides = [((0, 0, 0), (1.6, 0.06, 0.55)), ((0, 0.69, 0), (1.6, 0.75, 0.55))]
    ends = [((0, 0, 0), (0.06, 0.75, 0.55)), ((1.54, 0, 0), (1.6, 0.75, 0.55))]
    return [((0, 0, 0), (1.6, 0.75, 0.05)), *sides, *ends]


def _clutter_pile(rng: np.random.Generator) -> Group:
    corners = np.column_stack([rng.uniform(0, 0.7, (3, 2)), np.zeros(3)])
    sizes = rng.uniform(0.15, 0.5, (3, 3))
    return [("clutter", [(tuple(lo), tuple(lo + sizes[i]))]) for i, lo in enumerate(corners)]


# Furniture groups: name -> builder of (kind, boxes) in local coordinates (footprint at origin).
_GROUPS: dict[str, Callable[[np.random.Generator], Group]] = {
    "table": _table_group, "clutter": _clutter_pile,
    "chair": lambda rng: [("chair", _chair(True))],
    "sofa": lambda rng: [("sofa", [
        ((0, 0, 0), (1.7, 0.85, 0.42)), ((0, 0.65, 0.42), (1.7, 0.85, 0.85)),
        ((0, 0, 0.42), (0.15, 0.65, 0.6)), ((1.55, 0, 0.42), (1.7, 0.65, 0.6))])],
    "bookcase": lambda rng: [("bookcase", _bookcase())],
    "column": lambda rng: [("column", [((0, 0, 0), (0.45, 0.45, 3.4))])],
    "cabinet": lambda rng: [("cabinet", [((0, 0, 0), (0.9, 0.5, 0.9))])],
    "bed": lambda rng: [("bed", [((0, 0, 0), (1.6, 1.0, 0.5)), ((0, 0, 0), (0.06, 1.0, 1.0))])],
    "counter": lambda rng: [("counter", [((0, 0, 0), (1.5, 0.6, 0.9))])],
    "desk": lambda rng: [("desk", [*_table(1.2, 0.6, 0.74), ((0.8, 0, 0.4), (1.2, 0.6, 0.7))])],
    "refrigerator": lambda rng: [("refrigerator", [((0, 0, 0), (0.7, 0.7, 1.8))])],
    "toilet": lambda rng: [("toilet", [
        ((0.05, 0, 0), (0.45, 0.5, 0.42)), ((0, 0.5, 0.2), (0.5, 0.7, 0.8))])],
    "sink": lambda rng: [("sink", [
        ((0, 0, 0.75), (0.6, 0.45, 0.9)), ((0.22, 0.15, 0), (0.38, 0.3, 0.75))])],
    "bathtub": lambda rng: [("bathtub", _bathtub())],
    "otherfurniture": lambda rng: [("otherfurniture", [((0, 0, 0), (0.8, 0.45, 1.1))])],
}  # fmt: skip

S3DIS_KINDS: tuple[str, ...] = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
    "bookcase", "board", "clutter",
)  # fmt: skip
SCANNET_KINDS: tuple[str, ...] = (
    "floor", "wall", "door", "window", "picture", "curtain", "shower curtain", "table", "chair",
    "sofa", "bookcase", "cabinet", "bed", "counter", "desk", "refrigerator", "toilet", "sink",
    "bathtub", "otherfurniture", "clutter",
)  # fmt: skip


@dataclass(frozen=True)
class IndoorRoom:
    """A sampled room: coord (N, 3) float64 metres (corner at the origin, z up, floor at 0),
    color (N, 3) uint8, kind (N,) index into KIND_NAMES, instance (N,) 1-based object id."""

    coord: np.ndarray
    color: np.ndarray
    kind: np.ndarray
    instance: np.ndarray

    def s3dis_label(self) -> np.ndarray:
        """(N,) S3DIS class indices."""
        table = [s3dis_meta.NAME_TO_CLASS[KINDS[k][0]] for k in KIND_NAMES]
        return np.asarray(table, dtype=np.int64)[self.kind]

    def nyu40(self) -> np.ndarray:
        """(N,) NYU40 ids."""
        return np.asarray([KINDS[k][1] for k in KIND_NAMES], dtype=np.int64)[self.kind]


class _Layout:
    """Objects (kind + boxes) of one room and the wall openings that relabel wall points."""

    def __init__(self, rng: np.random.Generator, size: tuple[float, float, float]) -> None:
        self.rng, self.size = rng, size
        self.kinds: list[str] = []
        self.boxes: list[list[Box]] = []
        self.openings: list[tuple[int, int, int, float, float, float, float]] = []

    def add(self, kind: str, boxes: list[Box]) -> int:
        self.kinds.append(kind)
        self.boxes.append(boxes)
        return len(self.kinds) - 1

    def structure(self, kinds: tuple[str, ...]) -> list[int]:
        w, d, h = self.size
        self.add("floor", [((0, 0, 0), (w, d, 0))])
        if "ceiling" in kinds:
            self.add("ceiling", [((0, 0, h), (w, d, h))])
        if "beam" in kinds:
            y = d / 2 + self.rng.uniform(-0.5, 0.5)
            self.add("beam", [((0, y, h - 0.4), (w, y + 0.3, h))])
        walls = [((0, 0, 0), (w, 0, h)), ((0, d, 0), (w, d, h))]
        walls += [((0, 0, 0), (0, d, h)), ((w, 0, 0), (w, d, h))]
        return [self.add("wall", [box]) for box in walls]

    def wall_objects(self, kinds: tuple[str, ...], walls: list[int]) -> None:
        w, d, _ = self.size
        # wall i: (origin, along axis, inward sign, length); walls 0/1 run along x, 2/3 along y
        frames = [((0, 0), 0, 1, w), ((0, d), 0, -1, w), ((0, 0), 1, 1, d), ((w, 0), 1, -1, d)]
        cursor = [0.3] * 4
        order = [k for k in kinds if k in _WALL_KINDS]
        for i, kind in enumerate(order):
            # one object per wall first, then the wall with the most room left
            room_left = [frame[3] - cursor[j] for j, frame in enumerate(frames)]
            wall = i if i < 4 else int(np.argmax(room_left))
            width, height, z0, t0, t1, flush = _WALL_KINDS[kind]
            a0 = cursor[wall] + self.rng.uniform(0.0, 0.4)
            cursor[wall] = a0 + width + 0.2
            origin, axis, sign, _ = frames[wall]
            lo, hi = [0.0, 0.0, z0], [0.0, 0.0, z0 + height]
            lo[axis], hi[axis] = a0, a0 + width
            normal = 1 - axis
            lo[normal], hi[normal] = sorted(
                (origin[normal] + sign * t0, origin[normal] + sign * t1)
            )
            obj = self.add(kind, [(tuple(lo), tuple(hi))])
            if flush:
                self.openings.append((obj, walls[wall], axis, a0, a0 + width, z0, z0 + height))

    def furniture(self, groups: list[str]) -> None:
        w, d, h = self.size
        nx, ny = int((w - 2 * _MARGIN) // _CELL), int((d - 2 * _MARGIN) // _CELL)
        cx, cy = (w - 2 * _MARGIN) / nx, (d - 2 * _MARGIN) / ny
        cells = self.rng.permutation(nx * ny)
        if len(cells) < len(groups):
            raise ValueError(f"room {w:.1f} x {d:.1f} m is too small for {len(groups)} groups")
        for name, cell in zip(groups, cells, strict=False):
            group = _GROUPS[name](self.rng)
            flat = np.asarray([box for _, boxes in group for box in boxes], dtype=np.float64)
            extent = flat[:, 1].max(axis=0)
            scale = min(self.rng.uniform(0.9, 1.1), (min(cx, cy) - 0.1) / extent[:2].max())
            zscale = h / extent[2] if name == "column" else scale
            swap = self.rng.random() < 0.5  # a quarter turn, as furniture is not all aligned
            base = np.array([_MARGIN + (cell % nx) * cx, _MARGIN + (cell // nx) * cy, 0.0])
            foot = extent[[1, 0]] * scale if swap else extent[:2] * scale
            base[:2] += self.rng.uniform(0, 1, 2) * (np.array([cx, cy]) - 0.05 - foot)
            for kind, boxes in group:
                arr = np.asarray(boxes, dtype=np.float64) * [scale, scale, zscale]
                if swap:
                    arr = arr[:, :, [1, 0, 2]]
                arr += base
                self.add(kind, [(tuple(lo), tuple(hi)) for lo, hi in arr])


def _sample_boxes(
    rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Uniform points on the surfaces of boxes lo/hi (B, 3), counts (B,) -> (sum, 3)."""
    ext = hi - lo
    face = np.stack([ext[:, 1] * ext[:, 2], ext[:, 0] * ext[:, 2], ext[:, 0] * ext[:, 1]], 1)
    box = np.repeat(np.arange(len(lo)), counts)
    cum = face[box].cumsum(axis=1)
    axis = (rng.random(len(box))[:, None] * cum[:, -1:] > cum).sum(axis=1).clip(max=2)
    points = lo[box] + rng.random((len(box), 3)) * ext[box]
    side = np.where(rng.random(len(box)) < 0.5, lo[box, axis], hi[box, axis])
    points[np.arange(len(box)), axis] = side
    return points


def _box_areas(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    e = hi - lo
    return 2 * (e[:, 0] * e[:, 1] + e[:, 1] * e[:, 2] + e[:, 0] * e[:, 2])


def _sample(layout: _Layout, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 3) and their object index (N,), at least a few points per object."""
    rng = layout.rng
    lo = [np.asarray([b[0] for b in boxes], np.float64) for boxes in layout.boxes]
    hi = [np.asarray([b[1] for b in boxes], np.float64) for boxes in layout.boxes]
    areas = [_box_areas(a, b) for a, b in zip(lo, hi, strict=True)]
    minimum = max(16, num_points // 500)
    spare = num_points - minimum * len(areas)
    if spare < 0:
        raise ValueError(f"num_points must be >= {minimum * len(areas)} for this room")
    totals = np.asarray([a.sum() for a in areas])
    per_object = minimum + rng.multinomial(spare, totals / totals.sum())
    counts = [rng.multinomial(n, a / a.sum()) for n, a in zip(per_object, areas, strict=True)]
    points = _sample_boxes(rng, np.concatenate(lo), np.concatenate(hi), np.concatenate(counts))
    return points, np.repeat(np.arange(len(areas)), per_object)


def make_room(
    rng: np.random.Generator,
    num_points: int,
    *,
    kinds: tuple[str, ...] = S3DIS_KINDS,
    size: tuple[float, float] = (6.5, 9.0),
) -> IndoorRoom:
    """Sample one room holding every kind in ``kinds`` (floor and walls always; the table group
    brings chairs and clutter); ``size`` bounds its width and depth in metres."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; known: {', '.join(KIND_NAMES)}")
    w, d = rng.uniform(*size, 2)
    layout = _Layout(rng, (float(w), float(d), float(rng.uniform(2.7, 3.2))))
    walls = layout.structure(kinds)
    layout.wall_objects(kinds, walls)
    free = [g for g in _GROUPS if g in kinds and g != "clutter"]
    layout.furniture([*free, "clutter"] if "clutter" in kinds else free)
    coord, obj = _sample(layout, num_points)
    for opening, wall, axis, a0, a1, z0, z1 in layout.openings:
        inside = (obj == wall) & (coord[:, axis] >= a0) & (coord[:, axis] <= a1)
        obj[inside & (coord[:, 2] >= z0) & (coord[:, 2] <= z1)] = opening
    kind = np.asarray([KIND_NAMES.index(k) for k in layout.kinds], np.int64)
    base = np.asarray([KINDS[k][2] for k in layout.kinds], np.float64)
    base += rng.normal(0, 10, base.shape)
    is_clutter = np.asarray([k == "clutter" for k in layout.kinds])
    base[is_clutter] = rng.uniform(40, 220, (int(is_clutter.sum()), 3))
    color = base[obj] + rng.normal(0, 6, (len(obj), 3))
    color = np.clip(np.rint(color), 0, 255).astype(np.uint8)
    return IndoorRoom(coord, color, kind[obj], obj.astype(np.int64) + 1)


def write_indoor_s3dis(
    root: str | Path,
    *,
    num_areas: int = 6,
    rooms_per_area: int = 2,
    points_per_room: int = 50_000,
    seed: int = 0,
) -> list[Path]:
    """Write ``root/Area_N/<room>/`` S3DIS rooms (all 13 classes in each); returns the room
    dirs in :func:`~pcseg.data.formats.s3dis.list_rooms` order."""
    if not 1 <= num_areas <= len(s3dis_meta.AREAS) or rooms_per_area < 1:
        raise ValueError("num_areas must lie in 1..6 and rooms_per_area be >= 1")
    rooms = []
    for area in s3dis_meta.AREAS[:num_areas]:
        for index in range(rooms_per_area):
            rng = np.random.default_rng([seed, area, index])
            room = make_room(rng, points_per_room, kinds=S3DIS_KINDS)
            # Rooms of an area share a building frame in S3DIS, so each sits at its own offset.
            offset = np.array([*rng.uniform(-20, 20, 2), 0.0])
            kind = _ROOM_TYPES[index % len(_ROOM_TYPES)]
            room_dir = Path(root) / f"Area_{area}" / f"{kind}_{index // len(_ROOM_TYPES) + 1}"
            coord = np.round(room.coord + offset, 3)
            s3dis.write_room(room_dir, coord, room.color, room.s3dis_label(), room.instance)
            rooms.append(room_dir)
    return sorted(rooms, key=lambda r: (r.parent.name, s3dis.natural_key(r.name)))  # listing order


def _axis_alignment(rng: np.random.Generator) -> np.ndarray:
    """A random z rotation + translation: aligned = A @ scanner frame, as ScanNet stores it."""
    theta = rng.uniform(0, 2 * np.pi)
    matrix = np.eye(4)
    matrix[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    matrix[:3, 3] = [*rng.uniform(-4, 4, 2), rng.uniform(-0.2, 0.2)]
    return matrix


def write_indoor_scannet(
    root: str | Path, *, num_scenes: int = 4, points_per_scene: int = 50_000, seed: int = 0
) -> list[Path]:
    """Write ``root/scans/sceneXXXX_00/`` ScanNet scenes (all 20 benchmark classes in each).

    Vertices are in a scanner frame; ``<scene>.txt`` holds the axis alignment back to the room
    frame. Also writes segs + aggregation, a label table and ``scannetv2_{train,val}.txt``
    (the last quarter of the scenes, at least one when there are two or more, is val).
    Returns the scene dirs.
    """
    if num_scenes < 1:
        raise ValueError("num_scenes must be >= 1")
    root = Path(root)
    scenes = []
    for index in range(num_scenes):
        rng = np.random.default_rng([seed, 1000 + index])
        room = make_room(rng, points_per_scene, kinds=SCANNET_KINDS, size=(8.5, 10.5))
        align = _axis_alignment(rng)
        raw = (room.coord - align[:3, 3]) @ align[:3, :3]  # inverse of the rigid alignment
        order = rng.permutation(len(raw))  # mesh vertex order carries no object structure
        scene_id = f"scene{index:04d}_00"
        scenes.append(scannet.write_scene(
            root / "scans" / scene_id, scene_id, raw[order], room.color[order],
            room.nyu40()[order], instance=room.instance[order], axis_alignment=align,
        ))  # fmt: skip
    used = sorted({KINDS[k][1] for k in SCANNET_KINDS})
    scannet.write_label_table(
        root / scannet_meta.TABLE_NAME, {scannet_meta.NYU40_NAMES[i]: i for i in used}
    )
    num_val = max(1, num_scenes // 4) if num_scenes > 1 else 0
    names = [scene.name for scene in scenes]
    scannet.write_split(root, "train", names[: num_scenes - num_val])
    scannet.write_split(root, "val", names[num_scenes - num_val :])
    return scenes
