"""Sparse-label budget files, and the one transform that applies a budget to samples.

A budget is two files side by side, plus a third when it carries its own labels:

* ``<name>.npz``: per scene id, the sorted, unique int64 indices of its labelled points, indices
  into the points as the dataset's reader returns them (the samples' ``point_index``);
* ``<name>.json``: a manifest of how it was made (mode, rate or count, seed, source file), for
  which dataset and split, and what it holds (per-class and per-scene counts);
* ``<name>.labels.npz``: only for budgets whose labels do not come from the dataset's own label
  files (answers of a human annotator): per scene, the class of each indexed point, aligned
  with the indices. The manifest then says ``"labels": "given"``.

Budgets are drawn by :mod:`pcseg.data.budgets` or grown round by round by active learning.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.data.formats.files import atomic_output, write_text
from pcseg.data.formats.limited_annotation import check_indices
from pcseg.data.formats.validation import DataFormatError, read_json
from pcseg.data.sample import Sample

FORMAT = "pcseg.sparse_labels"
VERSION = 1
MODES = ("rate", "count", "limited_annotation", "active")


@dataclasses.dataclass
class LabelBudget:
    """Labelled point indices per scene, with the manifest describing them.

    Attributes:
        indices: scene id -> sorted unique int64 (M,) indices (validated and sorted on creation).
        manifest: what :func:`write_budget` stores as JSON (see :func:`make_budget`).
        path: the ``.npz`` the budget was read from, if any (named in error messages).
        labels: scene id -> int64 (M,) class of each indexed point, when the labels are given
            with the budget rather than read from the dataset (None otherwise).
    """

    indices: dict[str, np.ndarray]
    manifest: dict[str, Any]
    path: Path | None = None
    labels: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        given = None if self.labels is None else {str(k): v for k, v in self.labels.items()}
        indices, labels = {}, {}
        for scene, values in self.indices.items():
            scene, values = str(scene), np.asarray(values)
            indices[scene] = check_indices(values, what=f"scene {scene!r}")
            if given is not None:
                mine = np.asarray(given.get(scene, ()), dtype=np.int64)
                if mine.shape != values.shape:
                    raise ValueError(f"scene {scene!r}: one given label per index is needed")
                labels[scene] = mine[np.argsort(values, kind="stable")]  # follow the sort
        self.indices = indices
        self.labels = labels if given is not None else None

    @property
    def num_labelled(self) -> int:
        return sum(len(values) for values in self.indices.values())

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        mode = self.manifest.get("mode")
        return f"LabelBudget({len(self.indices)} scenes, {self.num_labelled} points, {mode}{where})"


def budget_paths(path: str | Path) -> tuple[Path, Path]:
    """``(<stem>.npz, <stem>.json)`` for a stem or either file (stems may contain dots)."""
    path = Path(path)
    for suffix in (".npz", ".json"):
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            path = path.with_name(path.name[: -len(suffix)])
    return path.with_name(path.name + ".npz"), path.with_name(path.name + ".json")


def labels_path(path: str | Path) -> Path:
    """``<stem>.labels.npz``, the given labels of a budget (see the module docstring)."""
    npz_path, _ = budget_paths(path)
    return npz_path.with_name(npz_path.name[: -len(".npz")] + ".labels.npz")


def _check_manifest(manifest: Any, indices: dict[str, np.ndarray]) -> None:
    """ValueError unless the manifest is ours and agrees with the indices scene by scene."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"not a sparse-label manifest (no 'format': {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise ValueError(f"manifest version {manifest.get('version')!r}; this reads {VERSION}")
    if manifest.get("mode") not in MODES:
        raise ValueError(f"mode {manifest.get('mode')!r}; valid: {', '.join(MODES)}")
    scenes = manifest.get("scenes")
    if not isinstance(scenes, dict) or not all(
        isinstance(s, dict)
        and isinstance(s.get("points"), int)
        and isinstance(s.get("labelled"), int)
        for s in scenes.values()
    ):
        raise ValueError("'scenes' must map scene ids to {'points': int, 'labelled': int}")
    for names, where in ((set(scenes) - set(indices), "npz"), (set(indices) - set(scenes), "json")):
        if names:
            shown = ", ".join(sorted(names)[:5])
            raise ValueError(f"{len(names)} scene(s) missing from the {where} file: {shown}")
    for scene, values in indices.items():
        info = scenes[scene]
        if info["labelled"] != len(values):
            raise ValueError(
                f"scene {scene!r}: {len(values)} indices, manifest says {info['labelled']}"
            )
        if len(values) and values[-1] >= info["points"]:
            raise ValueError(f"scene {scene!r}: index {values[-1]} >= its {info['points']} points")
    totals = {"num_scenes": len(indices), "labelled_points": sum(map(len, indices.values()))}
    for key, value in totals.items():
        if manifest.get(key) != value:
            raise ValueError(f"{key} is {manifest.get(key)!r} but the indices give {value}")


def write_scene_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` of one array per scene id, atomically and never over an existing file.

    ``np.savez``'s layout, written member by member so that any scene id is a key as it is.
    """
    with atomic_output(path, overwrite=False) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for scene, values in arrays.items():
                with archive.open(f"{scene}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, values, allow_pickle=False)
        if set(read_scene_arrays(tmp, dtype=None)) != set(arrays):
            raise ValueError(f"{path}: scene ids did not survive the round trip")


def read_scene_arrays(path: Path, dtype: type | None = np.int64) -> dict[str, np.ndarray]:
    """Scene id -> array of an ``.npz`` written by :func:`write_scene_arrays`, all ``dtype``
    (any dtype when None)."""
    try:
        with open(path, "rb") as handle:  # np.load leaks its own handle on a damaged zip
            archive = np.load(handle, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DataFormatError(path, "not an .npz archive")
            with archive:
                arrays = {key: archive[key] for key in archive.files}
    except DataFormatError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataFormatError(path, f"unreadable .npz: {error}") from None
    for key, array in arrays.items():
        if dtype is not None and array.dtype != dtype:
            raise DataFormatError(
                path, f"scene {key!r}: must be {np.dtype(dtype)}, got {array.dtype}"
            )
    return arrays


def write_budget(path_stem: str | Path, budget: LabelBudget) -> tuple[Path, Path]:
    """Write ``<stem>.npz`` and ``<stem>.json`` atomically; never replace an existing file.

    The ``.npz`` is the layout ``np.savez`` writes (one ``<scene id>.npy`` member per scene, so
    ``np.load`` reads it), written member by member so that any scene id -- ``00/000000``, or
    ``file``, which would clash with ``np.savez``'s own arguments -- is a key as it is. A budget
    with given labels also writes ``<stem>.labels.npz``.

    Raises:
        FileExistsError: either file exists (naming it).
        ValueError: the manifest does not describe the indices.
    """
    npz_path, json_path = budget_paths(path_stem)
    given = budget.labels is not None
    paths = (npz_path, json_path, labels_path(npz_path)) if given else (npz_path, json_path)
    for path in paths:
        if path.exists():
            raise FileExistsError(f"{path}: already exists; refusing to overwrite it")
    bad = [scene for scene in budget.indices if not scene or "\0" in scene or "\\" in scene]
    if bad:
        raise ValueError(f"scene ids must be non-empty, without NUL or backslash: {bad[0]!r}")
    _check_manifest(budget.manifest, budget.indices)
    if given != (budget.manifest.get("labels") == "given"):
        raise ValueError("the manifest's 'labels' must be 'given' exactly when labels are given")
    if given:  # written first: a budget without its labels file must never look complete
        write_scene_arrays(labels_path(npz_path), budget.labels)
    write_scene_arrays(npz_path, budget.indices)
    text = json.dumps(budget.manifest, indent=1, allow_nan=False) + "\n"
    write_text(json_path, text, overwrite=False)
    return npz_path, json_path


def read_budget(path: str | Path) -> LabelBudget:
    """Read a budget from its ``.npz``, its ``.json`` or their common stem, checking both.

    Raises:
        DataFormatError: a file is missing, unreadable or malformed, an index array is not
            int64, unique and non-negative, or manifest and indices disagree (scene set,
            per-scene counts, index ranges); the message names the file.
    """
    npz_path, json_path = budget_paths(path)
    for file in (npz_path, json_path):
        if not file.is_file():
            raise DataFormatError(file, "sparse-label file not found (a budget is .npz + .json)")
    manifest = read_json(json_path)
    arrays = read_scene_arrays(npz_path)
    labels = None
    if isinstance(manifest, dict) and manifest.get("labels") == "given":
        labels = read_scene_arrays(labels_path(npz_path))
    try:
        budget = LabelBudget(arrays, manifest, path=npz_path, labels=labels)
    except ValueError as error:
        raise DataFormatError(npz_path, str(error)) from None
    try:
        _check_manifest(manifest, budget.indices)
    except ValueError as error:
        raise DataFormatError(json_path, f"{error} (checked against {npz_path.name})") from None
    return budget


class SparseLabels:
    """Hide every label outside a budget: ``label_mask &= isin(point_index, budget[scene])``.

    A budget with given labels also replaces the sample's labels: the given class on its
    points, ignore (-1) everywhere else.

    Matches by ``point_index`` (the point's index in its file, kept through crops), so it gives
    the same mask wherever it runs in a transform chain. Samples come from
    ``SceneDataset.__getitem__``, which sets ``point_index`` and ``points_read``.

    Raises (on call):
        ValueError: the scene is not in the budget, or the budget does not fit the scan (an
            index beyond ``points_read``, or a different point count than it was made for).
    """

    def __init__(self, budget: LabelBudget) -> None:
        self.budget = budget
        scenes = budget.manifest.get("scenes")
        self._points = {s: v.get("points") for s, v in (scenes or {}).items()}

    def _where(self) -> str:
        return str(self.budget.path) if self.budget.path else "(in memory)"

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        scene = str(sample["scene_id"])
        if scene not in self.budget.indices:
            raise ValueError(f"scene {scene!r} is not in the sparse-label budget {self._where()}")
        for key in ("point_index", "points_read"):
            if key not in sample:
                raise ValueError(f"sparse labels need sample[{key!r}] (set by SceneDataset)")
        chosen, read = self.budget.indices[scene], int(sample["points_read"])  # type: ignore[arg-type]
        expected = self._points.get(scene, read)
        if expected != read:
            raise ValueError(
                f"sparse-label budget {self._where()} was made for {expected} points of scene "
                f"{scene!r}, but its scan has {read}: the budget belongs to other data"
            )
        if len(chosen) and chosen[-1] >= read:
            raise ValueError(
                f"sparse-label budget {self._where()}: scene {scene!r} has index {chosen[-1]}, "
                f"beyond the {read} points of its scan"
            )
        point_index = np.asarray(sample["point_index"])
        position = np.searchsorted(chosen, point_index)
        hit = position < len(chosen)
        hit[hit] = chosen[position[hit]] == point_index[hit]
        out = {**sample, "label_mask": np.asarray(sample["label_mask"], dtype=bool) & hit}
        if self.budget.labels is not None:
            label = np.full(len(point_index), -1, dtype=np.int64)
            label[hit] = self.budget.labels[scene][position[hit]]
            out["label"] = label
        return out

    def __repr__(self) -> str:
        return f"SparseLabels({self.budget!r})"
