"""Plots of one run and of sweeps, read from the files the tools write.

- ``metrics.jsonl`` (the trainer's log, :mod:`pcseg.engine.runlog`): training curves.
- ``metrics.json`` (``tools/test.py``): per-class IoU bars and the row-normalised confusion
  matrix (its ``confusion`` entry: rows ground truth, columns prediction).
- ``label_efficiency.json`` / ``active_learning.json`` (their tools): the sweep curves, drawn
  from the ``table`` they hold.

:func:`plot_results` picks the plots from the file name, so one command turns a run's folder
into pictures.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pcseg.engine.runlog import read_metrics
from pcseg.vis.colors import Palette, palette_for
from pcseg.vis.plots import plot_active_learning, plot_label_efficiency, pyplot, save_figure

# Logged values that are counts, rates or speeds, not loss terms.
_NOT_LOSSES = ("step", "time", "lr", "points_per_s")
_COUNT_SUFFIXES = ("_points", "_checked", "_correct")
_VAL_KEYS = ("miou", "macc", "allacc")


def _is_loss_term(key: str, value: Any) -> bool:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return numeric and key not in _NOT_LOSSES and not key.endswith(_COUNT_SUFFIXES)


def plot_training_curves(
    records: Sequence[dict[str, Any]], path: str | Path, *, title: str = "", overwrite: bool = False
) -> Path:
    """Loss and its terms, validation mIoU/mAcc/allAcc and the learning rate against step.

    ``records`` are ``metrics.jsonl`` lines (``step``, ``split``, values); every numeric
    training value but counts, ``lr`` and ``points_per_s`` counts as a loss term.
    """
    train = [r for r in records if r.get("split") == "train"]
    val = [r for r in records if r.get("split") == "val"]
    if not train and not val:
        raise ValueError("no training or validation records to plot")
    plt = pyplot()
    figure, (losses, scores, rates) = plt.subplots(1, 3, figsize=(13, 3.8))
    terms = dict.fromkeys(k for r in train for k, v in r.items() if _is_loss_term(k, v))
    for key in terms:
        steps = [r["step"] for r in train if key in r]
        width = 2.0 if key == "loss" else 1.0
        losses.plot(steps, [r[key] for r in train if key in r], label=key, linewidth=width)
    for key, name in zip(_VAL_KEYS, ("mIoU", "mAcc", "allAcc"), strict=True):
        points = [(r["step"], r[key]) for r in val if r.get(key) is not None]
        if points:
            steps, values = zip(*points, strict=True)
            scores.plot(steps, [v * 100 for v in values], marker="o", label=name)
    rates.plot([r["step"] for r in train], [r.get("lr") for r in train], color="black")
    for axes, label in ((losses, "training loss"), (scores, "validation (%)"), (rates, "lr")):
        axes.set_xlabel("step")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
        if axes.lines and axes is not rates:
            axes.legend(fontsize=8)
    if not val:
        scores.text(0.5, 0.5, "no validation records", ha="center", transform=scores.transAxes)
    if title:
        figure.suptitle(title)
    return save_figure(figure, path, overwrite=overwrite)


def plot_class_iou(
    scores: dict[str, Any],
    class_names: Sequence[str],
    path: str | Path,
    *,
    palette: Palette | None = None,
    title: str = "",
    overwrite: bool = False,
) -> Path:
    """One bar per class (IoU %), in the dataset's colours when given; classes without
    ground truth get no bar and an "n/a" mark instead of a misleading 0."""
    iou = scores["iou"]
    if len(iou) != len(class_names):
        raise ValueError(f"{len(iou)} IoU values for {len(class_names)} class names")
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(max(6.0, 0.45 * len(iou) + 1.5), 4.2))
    x = np.arange(len(iou))
    heights = [0.0 if v is None else v * 100 for v in iou]
    bar_colors = [np.array(c) / 255 for c in palette] if palette else "tab:blue"
    axes.bar(x, heights, color=bar_colors, edgecolor="black", linewidth=0.5)
    for i, value in enumerate(iou):
        text = "n/a" if value is None else f"{value * 100:.0f}"
        axes.text(i, heights[i] + 1, text, ha="center", va="bottom", fontsize=7)
    axes.set_xticks(x, class_names, rotation=60, ha="right", fontsize=8)
    axes.set_ylim(0, 105)
    axes.set_ylabel("IoU (%)")
    miou = scores.get("miou")
    heading = f"mIoU {miou * 100:.1f} %" if miou is not None else "no labelled points"
    axes.set_title(f"{title}: {heading}" if title else heading)
    axes.grid(True, axis="y", alpha=0.3)
    return save_figure(figure, path, overwrite=overwrite)


def plot_confusion(
    confusion: Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    overwrite: bool = False,
) -> Path:
    """The confusion matrix with each ground-truth row divided by its total (row i, column j:
    the share of class i's points predicted as j); rows without ground truth stay blank."""
    counts = np.asarray(confusion, dtype=np.float64)
    if counts.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion {counts.shape} does not fit {len(class_names)} classes")
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)
    plt = pyplot()
    size = max(5.0, 0.38 * len(class_names) + 2.5)
    figure, axes = plt.subplots(figsize=(size + 1.2, size))
    image = axes.imshow(np.ma.masked_invalid(shares), cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=60, ha="right", fontsize=7)
    axes.set_yticks(ticks, class_names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("ground truth")
    for (i, j), share in np.ndenumerate(shares):
        if share >= 0.01:
            colour = "white" if share > 0.6 else "black"
            axes.text(
                j, i, f"{share * 100:.0f}", ha="center", va="center", fontsize=6, color=colour
            )
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the row")
    axes.set_title(title or "confusion (rows normalised)")
    return save_figure(figure, path, overwrite=overwrite)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable JSON: {error}") from None


def plot_results(path: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Every plot the results file ``path`` supports, written to ``out_dir`` as
    ``<folder>_<plot>.png`` (``<folder>`` is the file's parent folder's name).

    Raises:
        ValueError: an unknown or malformed file, naming it.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    prefix = Path(out_dir) / f"{path.resolve().parent.name}_"
    folder = path.resolve().parent
    kwargs = {"title": f"{folder.parent.name}/{folder.name}", "overwrite": overwrite}
    if path.name == "metrics.jsonl":
        return [plot_training_curves(read_metrics(path), f"{prefix}training.png", **kwargs)]
    data = _read_json(path)
    if "runs" in data or "rounds" in data:  # a sweep: label efficiency or active learning
        if not isinstance(data.get("table"), list):
            raise ValueError(f"{path}: a sweep report without its 'table' of results")
        if "runs" in data:
            return [plot_label_efficiency(data["table"], f"{prefix}label_efficiency.png", **kwargs)]
        return [plot_active_learning(data["table"], f"{prefix}active_learning.png", **kwargs)]
    if "confusion" not in data or "class_names" not in data:
        raise ValueError(
            f"{path}: not a results file this tool knows (metrics.jsonl, metrics.json with "
            "'confusion' and 'class_names', label_efficiency.json, active_learning.json)"
        )
    names = data["class_names"]
    return [
        plot_class_iou(data, names, f"{prefix}class_iou.png", palette=palette_for(names), **kwargs),
        plot_confusion(data["confusion"], names, f"{prefix}confusion.png", **kwargs),
    ]
