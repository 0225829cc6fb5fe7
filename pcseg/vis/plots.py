"""PNG plots of results, drawn with matplotlib's non-interactive Agg backend.

This module holds the shared helpers and the sweep plots (label efficiency, active learning);
:mod:`pcseg.vis.result_plots` draws one run's training curves, class IoU and confusion matrix.
matplotlib is imported when a plot is drawn, never at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pcseg.data.formats.files import atomic_output


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: plots render without a display."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str | Path, *, overwrite: bool = True) -> Path:
    """Write ``figure`` as a PNG atomically and close it."""
    path = Path(path)
    try:
        with atomic_output(path, overwrite=overwrite) as tmp:
            figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    finally:
        pyplot().close(figure)
    return path


def plot_label_efficiency(
    table: Sequence[dict[str, Any]], path: str | Path, *, title: str = "", overwrite: bool = True
) -> Path:
    """mIoU (mean ± std over seeds) against label rate, one line per method.

    ``table`` rows hold ``method``, ``rate`` (None for the fully labelled reference, drawn as a
    horizontal band), ``miou`` and ``miou_std`` as fractions.
    """
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for method in dict.fromkeys(row["method"] for row in table):
        rows = sorted(
            (r for r in table if r["method"] == method and r["miou"] is not None),
            key=lambda r: (r["rate"] is None, r["rate"] or 0.0),
        )
        points = [r for r in rows if r["rate"] is not None]
        if points:
            axes.errorbar(
                [r["rate"] * 100 for r in points],
                [r["miou"] * 100 for r in points],
                yerr=[r["miou_std"] * 100 for r in points],
                marker="o",
                capsize=3,
                label=method,
            )
        for r in rows:
            if r["rate"] is None:
                mean, std = r["miou"] * 100, r["miou_std"] * 100
                line = axes.axhline(mean, linestyle="--", color="black", label=f"{method} (100 %)")
                axes.axhspan(mean - std, mean + std, color=line.get_color(), alpha=0.1)
    axes.set_xscale("log")
    axes.set_xlabel("labelled points (%)")
    axes.set_ylabel("mIoU (%)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    if title:
        axes.set_title(title)
    return save_figure(figure, path, overwrite=overwrite)


def plot_active_learning(
    table: Sequence[dict[str, Any]], path: str | Path, *, title: str = "", overwrite: bool = True
) -> Path:
    """mIoU (mean ± std over seeds) against the labelled share after each round, per strategy.

    ``table`` rows hold ``strategy``, ``round``, ``labelled_fraction``, ``miou`` and
    ``miou_std`` (fractions), as :func:`pcseg.active.report.aggregate_rounds` writes them.
    """
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for strategy in dict.fromkeys(row["strategy"] for row in table):
        rows = [r for r in table if r["strategy"] == strategy and r["miou"] is not None]
        rows.sort(key=lambda r: r["round"])
        axes.errorbar(
            [r["labelled_fraction"] * 100 for r in rows],
            [r["miou"] * 100 for r in rows],
            yerr=[r["miou_std"] * 100 for r in rows],
            marker="o",
            capsize=3,
            label=strategy,
        )
    axes.set_xlabel("labelled points (%)")
    axes.set_ylabel("mIoU (%)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    if title:
        axes.set_title(title)
    return save_figure(figure, path, overwrite=overwrite)
