"""Make a sparse-label budget: which points of each training scene keep their labels.

    python tools/make_sparse_labels.py CONFIG (--rate R | --count K | --limited-annotation FILE)
                                       [--split train] [--seed 0] [--name NAME]
                                       [--set key.path=value ...] [--no-progress]

``--rate R`` keeps ``max(int(n_c * R), 1)`` random points of every class c present in each scene
(CPCM's 0.1 % / 0.01 % budgets: ``--rate 0.001``); ``--count K`` keeps K random labelled points
per scene; ``--limited-annotation FILE`` takes the indices of a ScanNet ``points20/50/100/200``
file. Draws depend only on the seed and the scene id. The budget is written to
``<data.root>/sparse_labels/<NAME>.npz`` and ``.json``; a run uses it with
``data.sparse_labels: sparse_labels/<NAME>.npz``. Existing files are never replaced.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from pcseg.config import Config, load_config
from pcseg.data.budgets import budget_from_limited_annotation, make_budget
from pcseg.data.datasets import DATASETS, SceneDataset
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.label_budget import LabelBudget, budget_paths, write_budget
from pcseg.registry import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def default_name(args: argparse.Namespace) -> str:
    """``train_rate0.001_seed0``, ``train_count20_seed0`` or ``train_la_points20``."""
    if args.limited_annotation is not None:
        return f"{args.split}_la_{Path(args.limited_annotation).stem}"
    if args.rate is not None:
        return f"{args.split}_rate{args.rate:g}_seed{args.seed}"
    return f"{args.split}_count{args.count}_seed{args.seed}"


def summary(budget: LabelBudget, npz: Path, json_path: Path) -> str:
    """One paragraph: scenes, labelled points and fraction, the sparsest class, the files."""
    m = budget.manifest
    present = [c for c in m["classes"] if c["points"] > 0]
    absent = [c["name"] for c in m["classes"] if c["points"] == 0]
    text = (
        f"{m['dataset']} {m['split']} split, {m['mode'].replace('_', ' ')} budget: "
        f"{m['num_scenes']} scenes, {m['labelled_points']:,} of {m['total_points']:,} points "
        f"labelled ({100 * m['labelled_fraction']:.4g} %)."
    )
    if present:
        low = min(present, key=lambda c: c["labelled"])
        text += f" Fewest labelled points in a class: {low['labelled']:,} ({low['name']})."
    if absent:
        text += f" Classes absent from the split: {', '.join(absent)}."
    if m["labelled_ignore_points"]:
        text += f" {m['labelled_ignore_points']:,} chosen points carry the ignore label."
    return (
        f"{text}\nwrote {npz}\n  and {json_path}\nuse: data.sparse_labels: sparse_labels/{npz.name}"
    )


def scenes_of(config: Config, split: str) -> SceneDataset:
    """The split's scenes with no transforms: budgets are drawn from the raw labels."""
    options = getattr(config.data, split, None) if split in ("train", "val", "test") else None
    if options is None:
        raise ConfigError(f"--split {split}: the config defines no such split (data.{split})")
    spec = {"name": config.data.name, "root": config.data.root, **options}
    return DATASETS.build(spec, where=f"data.{split}")


def bad_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the numbers and the name, if anything."""
    if args.rate is not None and not 0 < args.rate <= 1:
        return f"--rate must be in (0, 1], got {args.rate}"
    if args.count is not None and args.count < 1:
        return f"--count must be >= 1, got {args.count}"
    if args.seed < 0:
        return f"--seed must be >= 0, got {args.seed}"
    if args.name is not None and (not _NAME.match(args.name) or set(args.name) == {"."}):
        return f"--name must be a plain file name of [A-Za-z0-9_.-], got {args.name!r}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--split", default="train", help="train, val or test (default: train)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="per-class fraction of each scene's points")
    mode.add_argument("--count", type=int, help="labelled points per scene")
    mode.add_argument("--limited-annotation", type=Path, metavar="FILE", help="points20 ... file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", help="file name without suffix (default: from the options)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    problem = bad_arguments(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config, args.overrides)
        stem = Path(config.data.root) / "sparse_labels" / (args.name or default_name(args))
        for path in budget_paths(stem):
            if path.exists():
                raise FileExistsError(f"{path}: already exists; refusing to overwrite it")
        dataset = scenes_of(config, args.split)
        progress = not args.no_progress
        if args.limited_annotation is not None:
            budget = budget_from_limited_annotation(
                dataset, args.limited_annotation, split=args.split, progress=progress
            )
        else:
            budget = make_budget(
                dataset,
                rate=args.rate,
                count=args.count,
                seed=args.seed,
                split=args.split,
                progress=progress,
            )
        npz, json_path = write_budget(stem, budget)
    except (ConfigError, DataFormatError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary(budget, npz, json_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
