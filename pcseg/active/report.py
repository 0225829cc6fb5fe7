"""Active-learning results: mIoU per round per strategy over seeds, as a table and a plot."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from pcseg.engine.label_efficiency import aggregate, miou_grid


def aggregate_rounds(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (strategy, round), by strategy then round.

    ``rows`` hold ``strategy``, ``seed``, ``round``, ``miou``, ``labelled_fraction`` and
    ``labelled_points``.
    """
    table = aggregate(
        rows,
        by=("strategy", "round"),
        fields=("miou", "labelled_fraction", "labelled_points"),
    )
    order = {name: i for i, name in enumerate(dict.fromkeys(r["strategy"] for r in rows))}
    return sorted(table, key=lambda e: (order[e["strategy"]], e["round"]))


def markdown_rounds(table: Sequence[dict[str, Any]]) -> str:
    """Strategies as rows, rounds as columns (with the mean labelled share and points), cells
    mIoU % mean ± std."""
    rounds = sorted({e["round"] for e in table})
    header = ["strategy"]
    for index in rounds:
        entries = [e for e in table if e["round"] == index]
        share = statistics.fmean(e["labelled_fraction"] for e in entries)
        points = statistics.fmean(e["labelled_points"] for e in entries)
        header.append(f"round {index} ({share * 100:.3g} %, {points:,.0f} points)")
    return miou_grid(table, row_key="strategy", column_key="round", columns=rounds, header=header)
