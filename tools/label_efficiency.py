"""Label efficiency: mIoU of methods x label rates x seeds, as a table and a plot.

    python tools/label_efficiency.py CONFIG --work-dir DIR [--methods full sparse consistency cpcm]
        [--rates 0.001 0.0001] [--seeds 0 1 2] [--set key.path=value ...] [--no-progress]

CONFIG is a CPCM config with a ``data.val`` split. Each run trains in ``DIR/runs/<name>`` on a
budget made for its rate and seed in ``DIR/budgets`` and is evaluated on ``data.val``; the sweep
resumes where it stopped. It writes ``DIR/label_efficiency.{json,md,png}``. For the transductive
setting of weakly supervised papers (train on the sparse labels of a scan, evaluate on all of its
points) point ``data.train`` and ``data.val`` at the same scans.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pcseg.config import load_config
from pcseg.data.formats.files import write_text
from pcseg.data.formats.validation import DataFormatError
from pcseg.engine.label_efficiency import METHOD_NAMES, aggregate, markdown_table, sweep
from pcseg.engine.trainer import TrainingDiverged
from pcseg.registry import ConfigError
from pcseg.vis.plots import plot_label_efficiency


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--methods", nargs="+", default=list(METHOD_NAMES), choices=METHOD_NAMES)
    parser.add_argument("--rates", nargs="+", type=float, default=[0.001, 0.0001])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        rows = sweep(
            config,
            args.work_dir,
            methods=args.methods,
            rates=args.rates,
            seeds=args.seeds,
            progress=not args.no_progress,
        )
    except (ConfigError, DataFormatError, OSError, ValueError, TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = aggregate(rows)
    text = markdown_table(table)
    report = {"config": str(args.config), "runs": rows, "table": table}
    write_text(
        args.work_dir / "label_efficiency.json", json.dumps(report, indent=2), overwrite=True
    )
    write_text(args.work_dir / "label_efficiency.md", text, overwrite=True)
    plot = plot_label_efficiency(
        table, args.work_dir / "label_efficiency.png", title=config.data.name
    )
    print(text)
    print(f"table: {args.work_dir / 'label_efficiency.md'}; plot: {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
