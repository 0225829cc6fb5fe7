"""Sparse-label budgets: which points of each scene a method may see the labels of.

A budget (:class:`pcseg.data.label_budget.LabelBudget`; its files are described there) holds the
labelled point indices of every scene and a manifest. Budgets are drawn by a seeded sampler
(:func:`make_budget`) -- per class and per scene as CPCM (``max(int(n_c * rate), 1)`` points of
every class ``c`` present), or a fixed count per scene as the ScanNet limited-annotation
benchmark -- or read from that benchmark's ``points20/50/100/200`` files
(:func:`budget_from_limited_annotation`). Each scene draws from its own generator seeded by
(seed, scene id) only, so a scene gets the same points whatever the order or subset of the
dataset. Datasets know nothing about budgets: ``SparseLabels`` is the one transform that applies
one, and it may run anywhere in a transform chain because ``point_index`` survives crops.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pcseg.data.datasets import DATASETS, SceneDataset
from pcseg.data.formats.limited_annotation import read_limited_annotation
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.label_budget import FORMAT, VERSION, LabelBudget


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
