"""Label-efficiency sweeps: methods x label rates x seeds on one dataset config.

Every run is an ordinary training run in its own folder (``<work>/runs/<method>_<rate>_s<seed>``)
on a budget file made for that rate and seed (``<work>/budgets/``, never inside the data
root). A finished run is read back, an interrupted one resumed, so a sweep can be stopped and
started again at any time. The methods are variants of one config:

* ``full``: supervised training on every label (the reference; one view);
* ``sparse``: the CPCM code path with both consistency weights 0 (cross-entropy on the
  sparse labels of two augmented views);
* ``consistency``: masking off, view-1/view-2 consistency on (``w_c`` 1 at rates >= 0.1 %,
  5 below, CPCM's "consis-based" baseline);
* ``cpcm``: the config's CPCM method; below 0.1 % with CPCM's settings for 0.01 %
  (``grid`` 8, ``w_m`` 10) unless the config says otherwise for that rate.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pcseg.config import Config
from pcseg.data.budgets import make_budget
from pcseg.data.label_budget import budget_paths, read_budget, write_budget
from pcseg.engine import build
from pcseg.engine.trainer import train_once

METHOD_NAMES = ("full", "sparse", "consistency", "cpcm")
LOW_RATE = 0.001  # below this, the official 0.01 % settings apply


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a sweep; ``rate`` is None for the fully labelled reference."""

    method: str
    rate: float | None
    seed: int

    @property
    def name(self) -> str:
        rate = "all" if self.rate is None else f"{self.rate:g}"
        return f"{self.method}_{rate}_s{self.seed}"


def plan_runs(methods: Sequence[str], rates: Sequence[float], seeds: Sequence[int]) -> list[Run]:
    """All runs of a sweep; ``full`` runs once per seed, the others once per rate and seed."""
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; valid: {', '.join(METHOD_NAMES)}")
    bad = [r for r in rates if not 0 < r <= 1]
    if bad:
        raise ValueError(f"label rates must be in (0, 1], got {bad}")
    runs = []
    for method in methods:
        for rate in [None] if method == "full" else rates:
            runs.extend(Run(method, rate, seed) for seed in seeds)
    return runs


def method_spec(config: Config, run: Run) -> dict[str, Any]:
    """The ``method`` section of one run (see the module docstring)."""
    if run.method == "full":
        return {"name": "supervised"}
    if config.method.get("name") != "cpcm":
        raise ValueError(f"the sweep's config must use method cpcm, not {config.method['name']!r}")
    spec = dict(config.method)
    low = run.rate is not None and run.rate < LOW_RATE
    if run.method == "sparse":
        spec.update(mask_weight=0.0, consistency_weight=0.0)
    elif run.method == "consistency":
        spec.update(mask_weight=0.0, consistency_weight=5.0 if low else 1.0)
    elif low:
        spec.update(grid=8, mask_weight=10.0)
    return spec


def run_config(config: Config, run: Run, budget: Path | None) -> Config:
    data = dataclasses.replace(config.data, sparse_labels=None if budget is None else str(budget))
    return dataclasses.replace(config, data=data, method=method_spec(config, run), seed=run.seed)


def ensure_budget(config: Config, rate: float, seed: int, directory: Path, progress: bool) -> Path:
    """The budget file of ``rate`` and ``seed`` for the training split, made once."""
    stem = directory / f"rate{rate:g}_seed{seed}"
    npz, _ = budget_paths(stem)
    if not npz.is_file():
        raw = dataclasses.replace(config, data=dataclasses.replace(config.data, sparse_labels=None))
        dataset = build.build_dataset(raw, "train", augment=False)
        write_budget(stem, make_budget(dataset, rate=rate, seed=seed, progress=progress))
    return npz.resolve()


def sweep(
    config: Config,
    work_dir: str | Path,
    *,
    methods: Sequence[str],
    rates: Sequence[float],
    seeds: Sequence[int],
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run (or resume) every planned run and return one result row per run."""
    if config.data.val is None:
        raise ValueError("the sweep evaluates on data.val; this config defines none")
    work_dir = Path(work_dir)
    rows = []
    for run in plan_runs(methods, rates, seeds):
        budget = None
        if run.rate is not None:
            budget = ensure_budget(config, run.rate, run.seed, work_dir / "budgets", progress)
        print(f"[{len(rows) + 1}] {run.name}", flush=True)
        summary = train_once(
            run_config(config, run, budget), work_dir / "runs" / run.name, progress
        )
        rows.append(_row(run, summary, budget))
    return rows


def _row(run: Run, summary: dict[str, Any], budget: Path | None) -> dict[str, Any]:
    scores = summary["val"] or {}
    manifest = read_budget(budget).manifest if budget is not None else {}
    return {
        "method": run.method,
        "rate": run.rate,
        "seed": run.seed,
        "miou": scores.get("miou"),
        "macc": scores.get("macc"),
        "allacc": scores.get("allacc"),
        "labelled_points": manifest.get("labelled_points"),
        "labelled_fraction": manifest.get("labelled_fraction", 1.0),
        "steps": summary["steps"],
        "seconds": summary.get("seconds"),
    }


def aggregate(
    rows: Sequence[dict[str, Any]],
    *,
    by: Sequence[str] = ("method", "rate"),
    fields: Sequence[str] = ("miou", "macc", "allacc", "labelled_fraction"),
) -> list[dict[str, Any]]:
    """Mean and standard deviation of each of ``fields`` over seeds, per group of ``by``.

    Groups keep the order in which they first appear; missing values (None) are skipped.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in by), []).append(row)
    table = []
    for group, members in groups.items():
        entry: dict[str, Any] = {**dict(zip(by, group, strict=True)), "seeds": len(members)}
        for key in fields:
            values = [m[key] for m in members if m.get(key) is not None]
            entry[key] = statistics.fmean(values) if values else None
            entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        table.append(entry)
    return table


def miou_grid(
    table: Sequence[dict[str, Any]],
    *,
    row_key: str,
    column_key: str,
    columns: Sequence[Any],
    header: Sequence[str],
) -> str:
    """A markdown table of ``mean ± std`` mIoU in percent: one row per distinct ``row_key``
    (in order of appearance), one column per value of ``column_key`` in ``columns``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cells = {(e[row_key], e[column_key]): e for e in table}
    for name in dict.fromkeys(e[row_key] for e in table):
        row = [str(name)]
        for column in columns:
            entry = cells.get((name, column))
            miou = None if entry is None else entry["miou"]
            row.append("" if miou is None else f"{miou * 100:.1f} ± {entry['miou_std'] * 100:.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def markdown_table(table: Sequence[dict[str, Any]]) -> str:
    """Methods as rows, label rates as columns, cells ``mean ± std`` mIoU in percent."""
    rates = sorted({e["rate"] for e in table if e["rate"] is not None}, reverse=True)
    columns = [*rates, None] if any(e["rate"] is None for e in table) else rates
    header = ["method", *("100 %" if r is None else f"{r * 100:g} %" for r in columns)]
    return miou_grid(table, row_key="method", column_key="rate", columns=columns, header=header)
