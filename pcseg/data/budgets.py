"""Sparse-label budgets: which points of each scene a method may see the labels of.

A budget is two files side by side:

* ``<name>.npz``: per scene id, the sorted, unique int64 indices of its labelled points, indices
  into the points as the dataset's reader returns them (the samples' ``point_index``);
* ``<name>.json``: a manifest of how it was made (mode, rate or count, seed, source file), for
  which dataset and split, and what it holds (per-class and per-scene counts).

Budgets are drawn by a seeded sampler (:func:`make_budget`) -- per class and per scene as CPCM
(``max(int(n_c * rate), 1)`` points of every class ``c`` present), or a fixed count per scene as
the ScanNet limited-annotation benchmark -- or read from that benchmark's ``points20/50/100/200``
files (:func:`budget_from_limited_annotation`). Each scene draws from its own generator seeded by
(seed, scene id) only, so a scene gets the same points whatever the order or subset of the
dataset. Datasets know nothing about budgets: :class:`SparseLabels` is the one transform that
applies one, and it may run anywhere in a transform chain because ``point_index`` survives crops.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pcseg.data.datasets import DATASETS, SceneDataset
from pcseg.data.formats.files import atomic_output, write_text
from pcseg.data.formats.limited_annotation import check_indices, read_limited_annotation
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.sample import Sample

FORMAT = "pcseg.sparse_labels"
VERSION = 1
MODES = ("rate", "count", "limited_annotation")


def scene_rng(seed: int, scene_id: str) -> np.random.Generator:
    """The generator a scene's points are drawn from: a function of (seed, scene id) only."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), zlib.crc32(scene_id.encode())])


def _labels(label: np.ndarray) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 1 or label.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D integer array, got {label.dtype} {label.shape}")
    return label.astype(np.int64, copy=False)


def sample_per_class(label: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """CPCM's rule: ``max(int(n_c * rate), 1)`` distinct random points of each class present.

    Args:
        label: int (N,) classes; negative values (ignore = -1) are never chosen.
        rate: fraction in (0, 1].
        rng: the scene's generator (:func:`scene_rng`).

    Returns:
        Sorted int64 indices into ``label``.
    """
    label = _labels(label)
    if not 0.0 < float(rate) <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate!r}")
    known = np.flatnonzero(label >= 0)
    order = known[np.argsort(label[known], kind="stable")]
    _, starts, counts = np.unique(label[order], return_index=True, return_counts=True)
    picks = [
        rng.choice(order[start : start + n], max(int(n * float(rate)), 1), replace=False)
        for start, n in zip(starts.tolist(), counts.tolist(), strict=True)
    ]
    return np.sort(np.concatenate([np.empty(0, np.int64), *picks])).astype(np.int64)


def sample_fixed_count(label: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct random points among the labelled (non-negative) ones; all if fewer."""
    label = _labels(label)
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    known = np.flatnonzero(label >= 0)
    if len(known) <= count:
        return known.astype(np.int64)
    return np.sort(rng.choice(known, int(count), replace=False)).astype(np.int64)


@dataclasses.dataclass
class LabelBudget:
    """Labelled point indices per scene, with the manifest describing them.

    Attributes:
        indices: scene id -> sorted unique int64 (M,) indices (validated and sorted on creation).
        manifest: what :func:`write_budget` stores as JSON (see :func:`make_budget`).
        path: the ``.npz`` the budget was read from, if any (named in error messages).
    """

    indices: dict[str, np.ndarray]
    manifest: dict[str, Any]
    path: Path | None = None

    def __post_init__(self) -> None:
        self.indices = {
            str(scene): check_indices(values, what=f"scene {scene!r}")
            for scene, values in self.indices.items()
        }

    @property
    def num_labelled(self) -> int:
        return sum(len(values) for values in self.indices.values())

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        mode = self.manifest.get("mode")
        return f"LabelBudget({len(self.indices)} scenes, {self.num_labelled} points, {mode}{where})"


def _dataset_name(dataset: SceneDataset) -> str:
    names = [name for name in DATASETS.names() if DATASETS.get(name) is type(dataset)]
    return names[0] if names else type(dataset).__name__


def _tally(
    dataset: SceneDataset,
    choose: Callable[[str, np.ndarray], np.ndarray],
    *,
    progress: bool,
    **fields: Any,
) -> LabelBudget:
    """Read every scene's raw labels, choose its points and count what the manifest reports."""
    k = dataset.num_classes
    indices: dict[str, np.ndarray] = {}
    scenes: dict[str, dict[str, int]] = {}
    class_points, class_labelled = np.zeros(k, np.int64), np.zeros(k, np.int64)
    ignored = 0
    for i in tqdm(range(len(dataset)), desc="sparse labels", unit="scene", disable=not progress):
        scene = dataset.scene_id(i)
        if scene in indices:
            raise ValueError(f"scene id {scene!r} occurs twice in the dataset")
        label = _labels(dataset.read(i)["label"])
        if len(label) and label.max() >= k:
            raise ValueError(f"scene {scene!r}: label {label.max()} is not one of {k} classes")
        chosen = choose(scene, label)
        picked = label[chosen]
        class_points += np.bincount(label[label >= 0], minlength=k)
        class_labelled += np.bincount(picked[picked >= 0], minlength=k)
        ignored += int((picked < 0).sum())
        indices[scene] = chosen
        scenes[scene] = {"points": len(label), "labelled": len(chosen)}
    total, labelled = sum(s["points"] for s in scenes.values()), sum(map(len, indices.values()))
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        **{"mode": None, "rate": None, "count": None, "seed": None, "source": None, **fields},
        "dataset": _dataset_name(dataset),
        "num_scenes": len(scenes),
        "total_points": total,
        "labelled_points": labelled,
        "labelled_fraction": labelled / total if total else 0.0,
        "labelled_ignore_points": ignored,
        "classes": [
            {"id": c, "name": name, "points": int(class_points[c]), "labelled": int(n)}
            for c, (name, n) in enumerate(zip(dataset.class_names, class_labelled, strict=True))
        ],
        "scenes": scenes,
    }
    return LabelBudget(indices, manifest)


def make_budget(
    dataset: SceneDataset,
    *,
    rate: float | None = None,
    count: int | None = None,
    seed: int,
    split: str | None = None,
    progress: bool = True,
) -> LabelBudget:
    """Draw a budget over every scene of ``dataset`` from its raw labels (``dataset.read``).

    Args:
        dataset: the scenes; no transform is applied.
        rate: per-class fraction (:func:`sample_per_class`); exactly one of rate and count.
        count: points per scene (:func:`sample_fixed_count`).
        seed: with each scene id, seeds that scene's draw (:func:`scene_rng`).
        split: recorded in the manifest.
        progress: show a progress bar over the scenes.

    Returns:
        The budget. Its manifest holds ``format``, ``version``, ``mode`` ("rate" | "count" |
        "limited_annotation"), ``rate``, ``count``, ``seed``, ``source`` (null here), ``split``,
        ``dataset``, ``num_scenes``, ``total_points``, ``labelled_points``,
        ``labelled_fraction``, ``labelled_ignore_points``, ``classes`` (id, name, points and
        labelled points per class) and ``scenes`` (points and labelled points per scene).
    """
    if (rate is None) == (count is None):
        raise ValueError("give exactly one of rate and count")
    if rate is not None:
        draw: Callable[..., np.ndarray] = functools.partial(sample_per_class, rate=rate)
    else:
        draw = functools.partial(sample_fixed_count, count=count)
    draw(np.empty(0, np.int64), rng=scene_rng(seed, ""))  # checks seed, rate, count up front
    mode = {"mode": "rate", "rate": float(rate)} if rate is not None else {"mode": "count"}
    return _tally(
        dataset,
        lambda scene, label: draw(label, rng=scene_rng(seed, scene)),
        progress=progress,
        **mode,
        count=None if count is None else int(count),
        seed=int(seed),
        split=split,
    )


def budget_paths(path: str | Path) -> tuple[Path, Path]:
    """``(<stem>.npz, <stem>.json)`` for a stem or either file (stems may contain dots)."""
    path = Path(path)
    for suffix in (".npz", ".json"):
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            path = path.with_name(path.name[: -len(suffix)])
    return path.with_name(path.name + ".npz"), path.with_name(path.name + ".json")


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


def _read_npz(path: Path) -> dict[str, np.ndarray]:
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
        if array.dtype != np.int64:
            raise DataFormatError(path, f"scene {key!r}: indices must be int64, got {array.dtype}")
    return arrays


def write_budget(path_stem: str | Path, budget: LabelBudget) -> tuple[Path, Path]:
    """Write ``<stem>.npz`` and ``<stem>.json`` atomically; never replace an existing file.

    The ``.npz`` is the layout ``np.savez`` writes (one ``<scene id>.npy`` member per scene, so
    ``np.load`` reads it), written member by member so that any scene id -- ``00/000000``, or
    ``file``, which would clash with ``np.savez``'s own arguments -- is a key as it is.

    Raises:
        FileExistsError: either file exists (naming it).
        ValueError: the manifest does not describe the indices.
    """
    npz_path, json_path = budget_paths(path_stem)
    for path in (npz_path, json_path):
        if path.exists():
            raise FileExistsError(f"{path}: already exists; refusing to overwrite it")
    bad = [scene for scene in budget.indices if not scene or "\0" in scene or "\\" in scene]
    if bad:
        raise ValueError(f"scene ids must be non-empty, without NUL or backslash: {bad[0]!r}")
    _check_manifest(budget.manifest, budget.indices)
    with atomic_output(npz_path, overwrite=False) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for scene, values in budget.indices.items():
                with archive.open(f"{scene}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, values, allow_pickle=False)
        if set(_read_npz(tmp)) != set(budget.indices):
            raise ValueError(f"{npz_path}: scene ids did not survive the round trip")
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
    try:
        manifest = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataFormatError(json_path, f"not valid JSON: {error}") from None
    arrays = _read_npz(npz_path)
    try:
        budget = LabelBudget(arrays, manifest, path=npz_path)
    except ValueError as error:
        raise DataFormatError(npz_path, str(error)) from None
    try:
        _check_manifest(manifest, budget.indices)
    except ValueError as error:
        raise DataFormatError(json_path, f"{error} (checked against {npz_path.name})") from None
    return budget


def budget_from_limited_annotation(
    dataset: SceneDataset, la_path: str | Path, *, split: str | None = None, progress: bool = True
) -> LabelBudget:
    """A budget holding a limited-annotation file's indices for each scene of ``dataset``.

    Scenes of the file that the dataset lacks are left out; a dataset scene the file lacks, or
    an index beyond a scene's point count, is a :class:`DataFormatError` naming the file.
    """
    la_path = Path(la_path)
    table = read_limited_annotation(la_path)
    scenes = [dataset.scene_id(i) for i in range(len(dataset))]
    missing = [scene for scene in scenes if scene not in table]
    if missing:
        raise DataFormatError(
            la_path,
            f"no indices for {len(missing)} of the dataset's {len(scenes)} scenes "
            f"(first: {', '.join(missing[:5])})",
        )

    def choose(scene: str, label: np.ndarray) -> np.ndarray:
        chosen = table[scene]
        if len(chosen) and chosen[-1] >= len(label):
            raise DataFormatError(
                la_path, f"scene {scene!r}: index {chosen[-1]} >= its {len(label)} points"
            )
        return chosen

    counts = {len(table[scene]) for scene in scenes}
    return _tally(
        dataset,
        choose,
        progress=progress,
        mode="limited_annotation",
        count=counts.pop() if len(counts) == 1 else None,
        source=str(la_path),
        source_sha256=hashlib.sha256(la_path.read_bytes()).hexdigest(),
        source_scenes=len(table),
        split=split,
    )


class SparseLabels:
    """Hide every label outside a budget: ``label_mask &= isin(point_index, budget[scene])``.

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
        return {**sample, "label_mask": np.asarray(sample["label_mask"], dtype=bool) & hit}

    def __repr__(self) -> str:
        return f"SparseLabels({self.budget!r})"
