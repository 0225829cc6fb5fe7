"""Active labelling: rounds of train -> score -> select -> label, per strategy and seed.

    python tools/active_learning.py CONFIG --work-dir DIR [--rounds 5]
        [--strategy hmmu_fds [margin random ...]] [--seeds 0 [1 2]]
        [--budget 0.02 | --points-per-scene K] [--initial-fraction 1.0]
        [--oracle ground_truth | human] [--no-wait] [--set key.path=value ...] [--no-progress]

Each (strategy, seed) loop lives in ``DIR/<strategy>_s<seed>/round_XX`` (see
``pcseg.active.loop``) and resumes where it stopped. ``--budget`` is the share of all training
points (in %) labelled per round, chosen over all scans (HPAL: 0.02); ``--points-per-scene``
asks for K points in every scan instead. Round 0 labels ``--initial-fraction`` of one round's
budget at random. With ``--oracle human`` every round writes its queries (a PLY per scan and a
CSV) and waits for ``answers.csv`` beside them; ``--no-wait`` stops there instead (exit code 3),
and running the same command again continues. At the end ``DIR/active_learning.{json,md,png}``
hold mIoU per round per strategy (mean ± std over seeds) and the labelled share per round.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pcseg.active.answers import AwaitingAnswers
from pcseg.active.loop import ORACLES, LoopSettings, run_loop
from pcseg.active.oracle import AnswerError
from pcseg.active.report import aggregate_rounds, markdown_rounds
from pcseg.active.selection import STRATEGIES
from pcseg.config import load_config
from pcseg.data.formats.files import write_text
from pcseg.data.formats.validation import DataFormatError
from pcseg.engine.trainer import TrainingDiverged
from pcseg.registry import ConfigError
from pcseg.vis.plots import plot_active_learning

AWAITING_EXIT_CODE = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--strategy", "--strategies", dest="strategies", nargs="+", default=["hmmu_fds"],
        choices=STRATEGIES,
    )  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=float, help="%% of all training points per round")
    budget.add_argument("--points-per-scene", type=int, help="points per scan per round")
    parser.add_argument("--initial-fraction", type=float, default=1.0)
    parser.add_argument("--oracle", choices=ORACLES, default="ground_truth")
    parser.add_argument("--no-wait", action="store_true", help="stop when answers are missing")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _budget(args: argparse.Namespace) -> float:
    return 0.02 if args.budget is None else args.budget  # HPAL's 0.02 % per round


def _run_all(args: argparse.Namespace) -> list[dict]:
    config = load_config(args.config, args.overrides)
    rows = []
    for seed in args.seeds:  # every strategy once per seed: a cut-short run stays comparable
        for strategy in args.strategies:
            settings = LoopSettings(
                strategy=strategy,
                rounds=args.rounds,
                budget_percent=None if args.points_per_scene else _budget(args),
                points_per_scene=args.points_per_scene,
                initial_fraction=args.initial_fraction,
                oracle=args.oracle,
                seed=seed,
            )
            print(f"== {strategy}, seed {seed}", flush=True)
            results = run_loop(
                config,
                args.work_dir / f"{strategy}_s{seed}",
                settings,
                wait=not args.no_wait,
                progress=not args.no_progress,
            )
            rows += [{"strategy": strategy, "seed": seed, **r} for r in results]
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        rows = _run_all(args)
    except AwaitingAnswers as waiting:
        print(str(waiting), file=sys.stderr)
        return AWAITING_EXIT_CODE
    except (
        AnswerError, ConfigError, DataFormatError, OSError, ValueError, TrainingDiverged
    ) as error:  # fmt: skip
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = aggregate_rounds(rows)
    text = markdown_rounds(table)
    report = {"config": str(args.config), "rounds": rows, "table": table}
    out = args.work_dir
    write_text(out / "active_learning.json", json.dumps(report, indent=2), overwrite=True)
    write_text(out / "active_learning.md", text, overwrite=True)
    plot = plot_active_learning(table, out / "active_learning.png", title=str(args.config.stem))
    print(text)
    print(f"table: {out / 'active_learning.md'}; plot: {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
