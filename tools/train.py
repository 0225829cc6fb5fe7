"""Train a segmentation model from a YAML config.

    python tools/train.py CONFIG [--set key.path=value ...] [--work-dir DIR] [--resume]
    torchrun --nproc_per_node 2 tools/train.py CONFIG ...      (data-parallel)

The resolved config, checkpoints (``checkpoints/step_*.pth``), ``metrics.jsonl`` and TensorBoard
logs (``tensorboard/``) go to the work dir (default ``work_dirs/<config folder>/<config name>``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcseg.config import load_config
from pcseg.data.formats.validation import DataFormatError
from pcseg.engine import distributed
from pcseg.engine.trainer import TrainingDiverged, fit
from pcseg.registry import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue the run in --work-dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    work_dir = args.work_dir or Path("work_dirs") / args.config.parent.name / args.config.stem
    try:
        config = load_config(args.config, args.overrides)
        summary = fit(config, work_dir, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, DataFormatError, OSError, ValueError, TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    distributed.teardown()
    if summary["val"] is not None and summary["checkpoint"]:
        val = summary["val"]
        print(f"val mIoU {100 * (val['miou'] or 0):.2f}  allAcc {100 * (val['allacc'] or 0):.2f}")
    if summary["checkpoint"]:
        print(f"checkpoint: {summary['checkpoint']}")
        print(
            f"logs: {work_dir / 'metrics.jsonl'}; tensorboard --logdir {work_dir / 'tensorboard'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
