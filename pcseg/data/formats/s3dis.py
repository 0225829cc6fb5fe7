"""S3DIS Aligned v1.2 on disk: ``Area_N/<room>/Annotations/<class>_<k>.txt`` plus ``<room>.txt``.

Every text line is ``x y z r g b`` (metres, colour 0-255). Each annotation file is one object:
its name gives the class (``stairs`` folds into ``clutter``) and its position in the room's
naturally sorted file list gives the 1-based instance id. The reader takes only the annotation
files; the whole-room file holds the same points and is written for tools that expect it.

The released data has a few corrupt lines (Area_5/hallway_6 holds a stray ``\\x10`` byte inside a
number). Clean files are parsed in one vectorised call; a file that fails falls back to a
per-line parse that strips bytes which cannot belong to a number when the rest then reads as six
numbers, and drops lines that cannot be repaired. Every repair is logged and returned in a
:class:`LineRepairs` report: nothing is silently changed and nothing crashes.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcseg.data.formats.files import write_bytes, write_text
from pcseg.data.formats.validation import DataFormatError, check_coords, read_path_list
from pcseg.data.meta import s3dis as meta
from pcseg.data.sample import Sample, make_sample

logger = logging.getLogger(__name__)

_COLUMNS = 6
# Only control and non-ASCII bytes are stripped: they cannot be part of a number, while stripping
# printable characters (a comma, say) could turn a malformed line into different numbers.
_STRAY_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]")
_ANNOTATION_NAME = re.compile(r"^(?P<name>[A-Za-z]+)_(?P<index>\d+)$")
_MAX_LISTED_LINES = 20


@dataclass(frozen=True)
class LineRepairs:
    """What the parser changed in one file: repaired and dropped lines (1-based line numbers)."""

    path: Path
    repaired: int = 0
    dropped: int = 0
    repaired_lines: tuple[int, ...] = ()
    dropped_lines: tuple[int, ...] = ()

    @property
    def clean(self) -> bool:
        return self.repaired == 0 and self.dropped == 0


def natural_key(name: str) -> tuple:
    """Sort key that orders ``office_2`` before ``office_10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _parse_row(line: bytes) -> list[float] | None:
    try:
        values = [float(token) for token in line.split()]
    except ValueError:
        return None
    return values if len(values) == _COLUMNS else None


def _parse_lines(path: Path, data: bytes) -> tuple[np.ndarray, LineRepairs]:
    """The slow path, only for files the vectorised parse rejected."""
    rows: list[list[float]] = []
    repaired: list[int] = []
    dropped: list[int] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        row = _parse_row(line)
        if row is None:
            row = _parse_row(_STRAY_BYTES.sub(b"", line))
            (dropped if row is None else repaired).append(number)
        if row is not None:
            rows.append(row)
    report = LineRepairs(
        path, len(repaired), len(dropped),
        tuple(repaired[:_MAX_LISTED_LINES]), tuple(dropped[:_MAX_LISTED_LINES]),
    )  # fmt: skip
    logger.warning(
        "%s: repaired %d line(s) %s, dropped %d line(s) %s", path, report.repaired,
        list(report.repaired_lines), report.dropped, list(report.dropped_lines),
    )  # fmt: skip
    return np.asarray(rows, dtype=np.float64).reshape(-1, _COLUMNS), report


def read_points(path: str | Path) -> tuple[np.ndarray, LineRepairs]:
    """Read an ``x y z r g b`` text file as float64 (N, 6), repairing corrupt lines.

    Raises DataFormatError for a missing or empty file, non-finite coordinates and colours
    outside 0..255.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    data = path.read_bytes()
    if not data.strip():
        raise DataFormatError(path, "empty file: no points")
    try:
        # latin-1 decodes every byte, so a stray byte surfaces as a ValueError, not a decode error
        values = np.loadtxt(io.BytesIO(data), dtype=np.float64, ndmin=2, encoding="latin-1")
        if values.shape[1] != _COLUMNS:
            raise ValueError(f"{values.shape[1]} columns")
        report = LineRepairs(path)
    except ValueError:
        values, report = _parse_lines(path, data)
    if len(values) == 0:
        raise DataFormatError(path, f"no readable points ({report.dropped} lines dropped)")
    check_coords(path, values[:, :3])
    rgb = values[:, 3:]
    if not (np.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 255):
        raise DataFormatError(path, "colour values must lie in 0..255")
    return values, report


def annotation_class(path: str | Path) -> int:
    """Class index from an annotation file name ``<class>_<k>.txt``."""
    path = Path(path)
    match = _ANNOTATION_NAME.match(path.stem)
    name = match["name"] if match else path.stem
    if name not in meta.NAME_TO_CLASS:
        known = ", ".join(meta.NAME_TO_CLASS)
        raise DataFormatError(path, f"unknown class name {name!r} (known: {known})")
    return meta.NAME_TO_CLASS[name]


def annotation_files(room_dir: str | Path) -> list[Path]:
    """The room's annotation files in natural order (the order that defines instance ids)."""
    annotations = Path(room_dir) / "Annotations"
    if not annotations.is_dir():
        raise DataFormatError(annotations, "no Annotations directory")
    files = [p for p in annotations.glob("*.txt") if not p.name.startswith(".") and p.is_file()]
    if not files:
        raise DataFormatError(annotations, "empty room: no annotation files")
    return sorted(files, key=lambda p: natural_key(p.name))


def read_room_with_report(room_dir: str | Path) -> tuple[Sample, list[LineRepairs]]:
    """Read one room as a sample dict, with the repair report of every file that needed one.

    Sample keys: coord (N, 3), feat = color (N, 3) in [0, 1], color, label (N,) 0..12,
    instance (N,) 1-based per annotation file, scene_id "Area_N/<room>".
    """
    room_dir = Path(room_dir)
    parts, labels, instances, reports = [], [], [], []
    for instance, path in enumerate(annotation_files(room_dir), start=1):
        label = annotation_class(path)
        values, report = read_points(path)
        parts.append(values)
        labels.append(np.full(len(values), label, dtype=np.int64))
        instances.append(np.full(len(values), instance, dtype=np.int64))
        if not report.clean:
            reports.append(report)
    values = np.concatenate(parts)
    color = (values[:, 3:] / 255.0).astype(np.float32)
    sample = make_sample(
        coord=values[:, :3], feat=color, label=np.concatenate(labels),
        scene_id=f"{room_dir.parent.name}/{room_dir.name}",
        color=color, instance=np.concatenate(instances),
    )  # fmt: skip
    return sample, reports


def read_room(room_dir: str | Path) -> Sample:
    """Read one room as a sample dict (see :func:`read_room_with_report`)."""
    return read_room_with_report(room_dir)[0]


def split_areas(split: str, *, test_area: int = meta.DEFAULT_TEST_AREA) -> tuple[int, ...]:
    """Areas of a split: "train" = all but ``test_area``; "val"/"test" = ``test_area``.

    ``test_area=5`` is the common Area-5 split; ``test_area=k`` for k in 1..6 is fold k of the
    6-fold cross validation.
    """
    if test_area not in meta.AREAS:
        raise ValueError(f"test_area must be one of {meta.AREAS}, got {test_area}")
    if split == "train":
        return tuple(a for a in meta.AREAS if a != test_area)
    if split in ("val", "test"):
        return (test_area,)
    raise ValueError(f"unknown split {split!r}; expected 'train', 'val' or 'test'")


def cross_validation_folds() -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The 6 folds as (train areas, held-out areas); fold k (1-based) holds out Area_k."""
    return [(split_areas("train", test_area=k), (k,)) for k in meta.AREAS]


def list_rooms(root: str | Path, areas: tuple[int, ...] = meta.AREAS) -> list[Path]:
    """Room directories of the given areas, area by area, rooms in natural order."""
    rooms: list[Path] = []
    for area in areas:
        area_dir = Path(root) / f"Area_{area}"
        if not area_dir.is_dir():
            raise DataFormatError(area_dir, "area directory not found")
        found = [d for d in area_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
        rooms.extend(sorted(found, key=lambda d: natural_key(d.name)))
    return rooms


def split_rooms(
    root: str | Path, split: str, *, test_area: int = meta.DEFAULT_TEST_AREA
) -> list[Path]:
    """Room directories of a split (see :func:`split_areas`)."""
    return list_rooms(root, split_areas(split, test_area=test_area))


def read_split_file(root: str | Path, split_file: str | Path) -> list[Path]:
    """Rooms listed one per line as ``Area_N/<room>``, each resolved inside ``root``."""
    return read_path_list(split_file, root, what="room")


def _format_rows(coord: np.ndarray, rgb: np.ndarray, decimals: int) -> str:
    # One %-format over the whole block is ~2x faster than np.savetxt's per-row loop.
    fmt = f"%.{decimals}f %.{decimals}f %.{decimals}f %d %d %d\n"
    rows = np.column_stack([coord.astype(np.float64), rgb.astype(np.float64)])
    return (fmt * len(rows)) % tuple(rows.ravel().tolist())


def _check_room_arrays(
    coord: np.ndarray, color: np.ndarray, label: np.ndarray, instance: np.ndarray
) -> None:
    n = len(coord)
    if coord.shape != (n, 3) or color.shape != (n, 3) or label.shape != (n,):
        raise ValueError("coord and color must be (N, 3), label and instance (N,)")
    if instance.shape != (n,) or n == 0:
        raise ValueError("instance must be (N,) and the room must have points")
    if not np.issubdtype(color.dtype, np.integer) or color.min() < 0 or color.max() > 255:
        raise TypeError("color must be integers 0..255, as the files store it")
    if label.min() < 0 or label.max() >= meta.NUM_CLASSES or instance.min() < 0:
        raise ValueError(f"labels must lie in 0..{meta.NUM_CLASSES - 1}, instances be >= 0")


def write_room(
    room_dir: str | Path,
    coord: np.ndarray,
    color: np.ndarray,
    label: np.ndarray,
    instance: np.ndarray,
    *,
    decimals: int = 3,
    overwrite: bool = False,
) -> Path:
    """Write a room as S3DIS does: one ``Annotations/<class>_<k>.txt`` per (label, instance)
    pair and the whole-room ``<room>.txt``.

    Args:
        room_dir: ``.../Area_N/<room>``. A room that already has annotation files is refused
            unless ``overwrite``, which removes them first (they would merge into the room).
        coord: (N, 3) metres, written with ``decimals`` digits (the release uses 3).
        color: (N, 3) integers 0..255.
        label: (N,) class indices 0..12.
        instance: (N,) ids; ``k`` counts each class's objects in instance order.
    """
    coord, color = np.asarray(coord), np.asarray(color)
    label, instance = np.asarray(label, np.int64), np.asarray(instance, np.int64)
    _check_room_arrays(coord, color, label, instance)
    room_dir = Path(room_dir)
    annotations = room_dir / "Annotations"
    existing = sorted(annotations.glob("*.txt"))
    if existing and not overwrite:
        raise FileExistsError(f"{annotations}: holds annotation files; refusing to overwrite")
    for stale in existing:
        stale.unlink()
    key = label * (int(instance.max()) + 1) + instance
    order = np.argsort(key, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(key[order])) + 1)
    counts = dict.fromkeys(meta.CLASS_NAMES, 0)
    blocks = []
    for members in groups:
        name = meta.CLASS_NAMES[label[members[0]]]
        counts[name] += 1
        block = _format_rows(coord[members], color[members], decimals)
        write_text(annotations / f"{name}_{counts[name]}.txt", block, overwrite=False)
        blocks.append(block)
    write_text(room_dir / f"{room_dir.name}.txt", "".join(blocks), overwrite=overwrite)
    return room_dir


def write_predictions(
    path_stem: str | Path, classes: np.ndarray, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write one room's per-point class predictions (0..12) as ``<stem>.npy`` and ``<stem>.txt``.

    The ``.npy`` holds int64 class indices in the point order of the room's annotation files
    (the order :func:`read_room` returns); the ``.txt`` holds the same, one class per line.
    """
    classes = np.asarray(classes)
    if classes.ndim != 1 or not np.issubdtype(classes.dtype, np.integer):
        raise TypeError("classes must be a 1-D integer array")
    if len(classes) and (classes.min() < 0 or classes.max() >= meta.NUM_CLASSES):
        raise ValueError(f"class indices must be in 0..{meta.NUM_CLASSES - 1}")
    stem = Path(path_stem)
    npy, txt = stem.with_name(stem.name + ".npy"), stem.with_name(stem.name + ".txt")
    buffer = io.BytesIO()
    np.save(buffer, classes.astype(np.int64))
    write_bytes(npy, buffer.getvalue(), overwrite=overwrite)
    write_text(txt, "".join(f"{c}\n" for c in classes.tolist()), overwrite=overwrite)
    return npy, txt
