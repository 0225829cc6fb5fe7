"""Load-time checks shared by every reader: each failure names the file and the problem."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np


class DataFormatError(ValueError):
    """A data file is malformed; the message starts with the offending path."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def read_records(path: str | Path, dtype: np.dtype | str, width: int) -> np.ndarray:
    """Read a flat binary file of ``width``-wide records, refusing truncated files."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    record = np.dtype(dtype).itemsize * width
    size = path.stat().st_size
    if size % record:
        raise DataFormatError(
            path,
            f"truncated or corrupt: {size} bytes is not a multiple of the {record}-byte record "
            f"({width} x {np.dtype(dtype).name})",
        )
    return np.fromfile(path, dtype=dtype).reshape(-1, width)


def read_json(path: str | Path) -> Any:
    """Parse a JSON file, naming it when it is missing or not valid JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataFormatError(path, f"not valid JSON: {error}") from error


def check_coords(path: str | Path, coord: np.ndarray) -> None:
    """Reject empty scans and non-finite coordinates."""
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise DataFormatError(path, f"coordinates must be (N, 3), got {coord.shape}")
    if len(coord) == 0:
        raise DataFormatError(path, "empty scan: no points")
    finite = np.isfinite(coord).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataFormatError(
            path, f"{len(bad)} points have NaN/inf coordinates (first at index {bad[0]})"
        )


def check_count(path: str | Path, what: str, count: int, expected: int) -> None:
    """Reject a per-point file whose length differs from the point count."""
    if count != expected:
        raise DataFormatError(path, f"{what} count {count} != point count {expected}")


def map_ids(path: str | Path, raw: np.ndarray, lut: np.ndarray, *, what: str) -> np.ndarray:
    """Map raw ids through a lookup table (entries < -1 mark unknown ids) with a clear error."""
    raw = np.asarray(raw, dtype=np.int64)
    bad = (raw < 0) | (raw >= len(lut))
    bad[~bad] = lut[raw[~bad]] < -1
    if bad.any():
        unknown = sorted(set(raw[bad].tolist()))
        shown = ", ".join(map(str, unknown[:10]))
        raise DataFormatError(path, f"unknown {what} id(s): {shown} ({int(bad.sum())} points)")
    return lut[raw]


def map_sparse_ids(
    path: str | Path, raw: np.ndarray, mapping: dict[int, int], *, what: str
) -> np.ndarray:
    """Map raw ids through a dict, for id spaces too wide for a dense lookup table."""
    unique, inverse = np.unique(np.asarray(raw, dtype=np.int64), return_inverse=True)
    targets = np.array([mapping.get(u, -2) for u in unique.tolist()], dtype=np.int64)
    if (targets < -1).any():
        unknown = unique[targets < -1]
        shown = ", ".join(map(str, unknown[:10].tolist()))
        count = int(np.isin(raw, unknown).sum())
        raise DataFormatError(path, f"unknown {what} id(s): {shown} ({count} points)")
    return targets[inverse.ravel()]


def build_lut(mapping: dict[int, int], size: int | None = None) -> np.ndarray:
    """Dense int64 lookup table from a sparse id map; absent ids hold -2 (unknown)."""
    size = size if size is not None else max(mapping) + 1
    lut = np.full(size, -2, dtype=np.int64)
    for key, value in mapping.items():
        lut[key] = value
    return lut


# "+" occurs in nuScenes file names (a timezone offset).
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.+/-]+$")


def resolve_inside(root: str | Path, relative: str) -> Path:
    """Resolve a path read from a split or manifest file, refusing anything outside ``root``."""
    root = Path(root).resolve()
    if not _SAFE_NAME.match(relative) or relative.startswith("/") or ".." in relative.split("/"):
        raise DataFormatError(
            root,
            f"refusing path {relative!r}: it must be relative, inside "
            "the data root, and use only [A-Za-z0-9_.+/-]",
        )
    resolved = (root / relative).resolve()
    if not resolved.is_relative_to(root):
        raise DataFormatError(root, f"refusing path {relative!r}: it resolves outside the root")
    return resolved


def read_path_list(
    list_file: str | Path, root: str | Path, *, what: str, files: bool = False
) -> list[Path]:
    """Directories (or, with ``files``, files) named one per line in a split/manifest file, each
    resolved inside ``root``."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise DataFormatError(list_file, "split file not found")
    entries = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        try:
            entry = resolve_inside(root, name)
        except DataFormatError as error:
            raise DataFormatError(list_file, f"line {number}: {error.problem}") from error
        if not (entry.is_file() if files else entry.is_dir()):
            raise DataFormatError(list_file, f"line {number}: {what} {name!r} not found in {root}")
        entries.append(entry)
    return entries


def classes_to_ids(classes: np.ndarray, class_ids: np.ndarray, *, ignore_id: int) -> np.ndarray:
    """Map class indices 0..K-1 to a dataset's raw ids (``class_ids[k]``); -1 -> ``ignore_id``."""
    classes = np.asarray(classes, dtype=np.int64)
    if classes.size and (classes.min() < -1 or classes.max() >= len(class_ids)):
        raise ValueError(f"class indices must lie in -1..{len(class_ids) - 1}")
    return np.where(classes < 0, ignore_id, np.asarray(class_ids)[classes.clip(0)])
