"""A loop's labelled sets: the random start, and each round's set grown by the answers."""

from __future__ import annotations

from typing import Any

import numpy as np

from pcseg.data.budgets import scene_rng
from pcseg.data.label_budget import FORMAT, VERSION, LabelBudget


def initial_selection(sizes: dict[str, int], *, count_of: Any, seed: int) -> dict[str, np.ndarray]:
    """Round 0: ``count_of(points)`` random points of every scan (at least one), drawn from
    the scan's own generator (:func:`pcseg.data.budgets.scene_rng`)."""
    chosen = {}
    for scene, size in sizes.items():
        count = min(max(int(count_of(size)), 1), size)
        chosen[scene] = np.sort(scene_rng(seed, scene).choice(size, count, replace=False))
    return chosen


def labelled_budget(
    indices: dict[str, np.ndarray],
    labels: dict[str, np.ndarray] | None,
    sizes: dict[str, int],
    extra: dict[str, Any],
) -> LabelBudget:
    """A round's labelled set as a budget (``labels`` given by a person, or None)."""
    total, labelled = sum(sizes.values()), int(sum(map(len, indices.values())))
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "mode": "active",
        "labels": "dataset" if labels is None else "given",
        **extra,
        "num_scenes": len(indices),
        "total_points": total,
        "labelled_points": labelled,
        "labelled_fraction": labelled / total if total else 0.0,
        "scenes": {s: {"points": sizes[s], "labelled": len(v)} for s, v in indices.items()},
    }
    return LabelBudget(indices, manifest, labels=labels)


def merge_labels(
    previous: LabelBudget | None,
    answers: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    given: bool,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """Union of the previous round's labelled points and the answers (scene -> (indices,
    classes)); the classes are kept only when ``given`` (a person's answers). A point that is
    already labelled keeps its label."""
    empty = np.empty(0, np.int64)
    scenes = sorted(set(answers) | set(previous.indices if previous else ()))
    indices: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] | None = {} if given else None
    for scene in scenes:
        old = previous.indices.get(scene, empty) if previous else empty
        new, classes = answers.get(scene, (empty, empty))
        fresh = ~np.isin(new, old)
        merged = np.concatenate([old, new[fresh]])
        order = np.argsort(merged, kind="stable")
        indices[scene] = merged[order]
        if labels is not None:
            known = previous.labels.get(scene, empty) if previous and previous.labels else empty
            labels[scene] = np.concatenate([known, classes[fresh]])[order]
    return indices, labels
