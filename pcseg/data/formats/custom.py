"""A user's own clouds: LAS/LAZ, PLY, NPY and NPZ, described by a small YAML file.

The YAML (read with a safe loader; unknown keys are rejected) names the classes and says which
stored field feeds which sample key::

    classes: [ground, tree, building]   # class index = position in this list
    label_map: {2: 0, 5: 1, 6: 2}       # raw id in the file -> class index (-1 = ignore)
    ignore_ids: [0, 1]                  # raw ids mapped to ignore
    fields:                             # LAS dimension, PLY property, NPZ array or NPY column
      coord: [x, y, z]
      label: classification
      feat: [intensity]
      color: [red, green, blue]
      instance: null

Without a YAML, LAS/LAZ files use the ASPRS classes of :mod:`pcseg.data.meta.asprs`. Fields a
spec names must exist (colour is optional), hold one finite value per point, and integer
intensities and colours are scaled to [0, 1] by their storage type (uint8 / 255, uint16 / 65535).
Large
(e.g. UTM) coordinates are re-centred in float64 before the cast to float32; the removed offset
is kept as ``coord_offset`` so exports can restore the original positions.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pcseg.data.formats.files import atomic_output
from pcseg.data.formats.validation import (
    DataFormatError,
    check_coords,
    check_count,
    classes_to_ids,
    map_sparse_ids,
)
from pcseg.data.meta import asprs
from pcseg.data.sample import Sample, make_sample

FieldRef = str | int


@dataclass(frozen=True)
class CloudSpec:
    """What a user's cloud files hold: class names, raw-id map and the field of each sample key."""

    classes: tuple[str, ...]
    label_map: dict[int, int]
    coord: tuple[FieldRef, ...] = ("x", "y", "z")
    label: FieldRef | None = "classification"
    feat: tuple[FieldRef, ...] = ("intensity",)
    color: tuple[FieldRef, ...] | None = ("red", "green", "blue")
    instance: FieldRef | None = None

    @classmethod
    def asprs(cls) -> CloudSpec:
        """The default for LAS/LAZ: ASPRS classification codes."""
        return cls(classes=asprs.CLASS_NAMES, label_map=dict(asprs.LABEL_MAP))

    @classmethod
    def from_yaml(cls, path: str | Path) -> CloudSpec:
        """Load and check a YAML description; unknown keys are an error naming the valid ones."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise DataFormatError(path, f"cannot read YAML: {error}") from error
        return cls.from_dict(data, source=path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | Path = "<spec>") -> CloudSpec:
        allowed = {"classes", "label_map", "ignore_ids", "fields"}
        _reject_unknown(source, data, allowed, "top-level")
        if "classes" not in data:
            raise DataFormatError(source, "missing 'classes' (list of class names)")
        classes = tuple(str(c) for c in data["classes"])
        label_map = {int(k): int(v) for k, v in (data.get("label_map") or {}).items()}
        label_map.update({int(k): -1 for k in data.get("ignore_ids") or []})
        bad = {k: v for k, v in label_map.items() if not -1 <= v < len(classes)}
        if bad:
            raise DataFormatError(source, f"label_map targets outside 0..{len(classes) - 1}: {bad}")
        spec_fields = data.get("fields") or {}
        _reject_unknown(
            source, spec_fields, {"coord", "label", "feat", "color", "instance"}, "'fields'"
        )
        kwargs = {
            key: (tuple(value) if isinstance(value, list) else value)
            for key, value in spec_fields.items()
        }
        return cls(classes=classes, label_map=label_map, **kwargs)


def _reject_unknown(source: str | Path, data: dict, allowed: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise DataFormatError(source, f"{where} entry must be a mapping")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DataFormatError(
            source, f"unknown {where} key(s) {unknown}; valid keys: {sorted(allowed)}"
        )


def _las_columns(path: Path) -> Callable[[FieldRef], np.ndarray | None]:
    import laspy  # optional extra: loaded only when a LAS file is read

    try:
        las = laspy.read(path)
    except Exception as error:  # laspy raises several unrelated types for corrupt files
        raise DataFormatError(path, f"cannot read LAS/LAZ: {error}") from error
    names = set(las.point_format.dimension_names)

    def column(ref: FieldRef) -> np.ndarray | None:
        if ref in ("x", "y", "z"):  # scaled, offset-applied coordinates
            return np.asarray(getattr(las, ref), dtype=np.float64)
        return np.asarray(las[ref]) if ref in names else None

    return column


def _ply_columns(path: Path) -> Callable[[FieldRef], np.ndarray | None]:
    from plyfile import PlyData

    try:
        vertex = PlyData.read(str(path))["vertex"]
    except Exception as error:  # plyfile raises its own parse errors and KeyError/ValueError
        raise DataFormatError(path, f"cannot read PLY vertices: {error}") from error
    names = {prop.name for prop in vertex.properties}
    return lambda ref: np.asarray(vertex[ref]) if ref in names else None


def _npz_columns(path: Path) -> Callable[[FieldRef], np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = dict(archive)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataFormatError(path, f"cannot read NPZ: {error}") from error
    if "coord" in arrays:  # a single (N, 3) coordinate array is the common layout
        coord = arrays.pop("coord")
        if coord.ndim != 2 or coord.shape[1] != 3:
            raise DataFormatError(path, f"'coord' must be (N, 3), got {coord.shape}")
        arrays.update(x=coord[:, 0], y=coord[:, 1], z=coord[:, 2])
    return arrays.get


def _npy_columns(path: Path) -> Callable[[FieldRef], np.ndarray | None]:
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataFormatError(path, f"cannot read NPY: {error}") from error
    if table.ndim != 2:
        raise DataFormatError(path, f"expected a 2-D (N, K) array, got shape {table.shape}")
    names = {"x": 0, "y": 1, "z": 2}

    def column(ref: FieldRef) -> np.ndarray | None:
        index = names.get(ref, ref) if isinstance(ref, str) else ref
        if not isinstance(index, int) or not 0 <= index < table.shape[1]:
            return None
        return table[:, index]

    return column


_LOADERS = {
    ".las": _las_columns,
    ".laz": _las_columns,
    ".ply": _ply_columns,
    ".npz": _npz_columns,
    ".npy": _npy_columns,
}


def _column(path: Path, column, ref: FieldRef, what: str, count: int | None) -> np.ndarray:
    """A field that must exist and (when ``count`` is given) hold one value per point."""
    values = column(ref)
    if values is None:
        raise DataFormatError(path, f"{what} field {ref!r} not in the file")
    values = np.asarray(values)
    if values.ndim != 1:
        raise DataFormatError(path, f"{what} field {ref!r} must be 1-D, got {values.shape}")
    if count is not None:
        check_count(path, f"{what} ({ref!r})", len(values), count)
    return values


def _unit_scale(values: np.ndarray) -> np.ndarray:
    """Integers scaled to [0, 1] by their storage type (uint8 / 255, uint16 / 65535, ...)."""
    if np.issubdtype(values.dtype, np.integer):
        return values / float(np.iinfo(values.dtype).max)
    return values.astype(np.float64)


def _table(path: Path, column, refs, what: str, count: int, *, scale: bool) -> np.ndarray:
    """(N, len(refs)) float64 of finite values, integer fields scaled to [0, 1] when asked."""
    arrays = [_column(path, column, ref, what, count) for ref in refs]
    table = np.stack([_unit_scale(a) if scale else a.astype(np.float64) for a in arrays], axis=1)
    if not np.isfinite(table).all():
        raise DataFormatError(path, f"{what} values contain NaN or inf")
    return table.reshape(count, len(refs))


def _labels(path: Path, raw: np.ndarray, spec: CloudSpec) -> np.ndarray:
    """Raw class ids -> class indices; non-integral or unmapped ids are errors."""
    if not np.issubdtype(raw.dtype, np.integer):
        if not (np.isfinite(raw).all() and np.array_equal(raw, np.round(raw))):
            raise DataFormatError(path, f"class field {spec.label!r} holds non-integer values")
        raw = raw.astype(np.int64)
    return map_sparse_ids(path, raw, spec.label_map, what=f"class ({spec.label!r})")


def read_cloud(path: str | Path, spec: CloudSpec | None = None) -> Sample:
    """Read a LAS/LAZ/PLY/NPY/NPZ cloud into a sample dict (ASPRS classes for LAS by default)."""
    path = Path(path)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise DataFormatError(path, f"unsupported suffix; expected one of {sorted(_LOADERS)}")
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    if spec is None:
        if path.suffix.lower() not in (".las", ".laz"):
            raise DataFormatError(path, "PLY/NPY/NPZ clouds need a CloudSpec (YAML) for classes")
        spec = CloudSpec.asprs()
    column = loader(path)
    n = len(_column(path, column, spec.coord[0], "coordinate", None))
    xyz = np.stack([_column(path, column, r, "coordinate", n) for r in spec.coord], axis=1)
    check_coords(path, xyz.astype(np.float64))
    xyz = xyz.astype(np.float64)
    offset = np.floor(xyz.min(axis=0))
    label = None
    if spec.label is not None:
        label = _labels(path, _column(path, column, spec.label, "class", n), spec)
    feat = _table(path, column, spec.feat, "feature", n, scale=True)
    has_color = spec.color and all(column(ref) is not None for ref in spec.color)
    color = _table(path, column, spec.color, "colour", n, scale=True) if has_color else None
    instance = None
    if spec.instance is not None:
        instance = _column(path, column, spec.instance, "instance", n).astype(np.int64)
    return make_sample(
        coord=xyz - offset,
        feat=feat,
        label=label,
        scene_id=path.stem,
        coord_offset=offset,
        color=None if color is None else color.astype(np.float32),
        remission=feat[:, 0].astype(np.float32) if feat.shape[1] else None,
        instance=instance,
    )


def write_ply(
    path: str | Path, coord: np.ndarray, *, overwrite: bool = False, **fields_: np.ndarray
) -> None:
    """Write a binary little-endian PLY with vertex x, y, z and one property per extra field."""
    from plyfile import PlyData, PlyElement

    coord = np.asarray(coord)
    dtype = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    dtype += [(name, np.asarray(values).dtype.str) for name, values in fields_.items()]
    vertex = np.empty(len(coord), dtype=dtype)
    vertex["x"], vertex["y"], vertex["z"] = coord[:, 0], coord[:, 1], coord[:, 2]
    for name, values in fields_.items():
        check_count(path, name, len(values), len(coord))
        vertex[name] = values
    with atomic_output(path, overwrite=overwrite) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp))


def classes_to_raw(classes: np.ndarray, spec: CloudSpec, *, ignore_raw: int = 0) -> np.ndarray:
    """Map class indices back to raw ids: each class to the smallest raw id mapped to it."""
    table = np.full(len(spec.classes), -1, dtype=np.int64)
    for raw, index in sorted(spec.label_map.items(), reverse=True):
        if index >= 0:
            table[index] = raw
    raw_ids = classes_to_ids(classes, table, ignore_id=ignore_raw)
    unmapped = np.unique(np.asarray(classes)[raw_ids < 0])
    if unmapped.size:
        names = [spec.classes[i] for i in unmapped.tolist()]
        raise ValueError(f"classes {names} have no raw id in the spec's label_map")
    return raw_ids


def write_las_classification(
    source: str | Path,
    destination: str | Path,
    classes: np.ndarray,
    spec: CloudSpec | None = None,
    *,
    overwrite: bool = False,
) -> None:
    """Copy a LAS/LAZ file with its classification replaced by predicted classes.

    The source is never modified: writing onto it is refused even with ``overwrite``.
    """
    import laspy

    source, destination = Path(source), Path(destination)
    if destination.resolve() == source.resolve():
        raise ValueError(f"{destination}: refusing to overwrite the source file")
    las = laspy.read(source)
    check_count(destination, "prediction", len(classes), len(las.points))
    las.classification = classes_to_raw(classes, spec or CloudSpec.asprs(), ignore_raw=1)
    with atomic_output(destination, overwrite=overwrite) as tmp:
        las.write(tmp)
