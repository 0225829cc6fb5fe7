"""LiM3D on SemanticKITTI-format sequences: frame selection, mean teacher, CRB pseudo-labels,
retraining; per seed, resumable.

    python tools/lim3d.py CONFIG --work-dir DIR [--seeds 0 1 2]
        [--fraction 0.05 [--selection strfd|uniform] | --labelled-frames FILE]
        [--no-retrain] [--keep 0.5] [--band-width 5] [--max-range 50] [--set key.path=value ...]

``--fraction`` chooses the labelled frames of the training sequences (``tools/select_frames.py``'s
rules) into ``DIR/labelled_frames.txt``, once (a later run with other choices is refused);
``--labelled-frames`` takes a list made before (LiM3D's released lists work too). Each seed runs
the three stages of ``pcseg.engine.lim3d`` in ``DIR/s<seed>``: a stopped run continues where it
stopped and never redoes a finished stage. ``DIR/lim3d.{json,md}`` hold mIoU after stage 1
and after retraining, and the pseudo-labels' accuracy, per seed and as mean ± std.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from pseudo_label import add_crb_options, crb_settings

from pcseg.config import Config, load_config
from pcseg.data.formats.files import write_text
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.frame_selection import (
    STRATEGIES,
    frame_list_text,
    read_motion,
    select_frames,
)
from pcseg.engine.build import build_dataset
from pcseg.engine.checkpoint import CheckpointError
from pcseg.engine.lim3d import run_pipeline
from pcseg.engine.trainer import TrainingDiverged
from pcseg.registry import ConfigError

FRAME_LIST = "labelled_frames.txt"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    frames = parser.add_mutually_exclusive_group()
    frames.add_argument("--fraction", type=float, help="share of training frames labelled")
    frames.add_argument("--labelled-frames", type=Path, help="a frame list made before")
    parser.add_argument("--selection", choices=STRATEGIES, default="strfd")
    parser.add_argument("--no-retrain", action="store_true", help="stop after stage 1")
    add_crb_options(parser)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def choose_frames(config: Config, fraction: float, selection: str, out: Path) -> Path:
    """Write (or check) the labelled-frame list of the training sequences."""
    dataset = build_dataset(config, "train", augment=False)
    sequence_dirs = dict.fromkeys(seq_dir for seq_dir, _ in dataset.items)
    motions = [read_motion(seq_dir) for seq_dir in sequence_dirs]
    text = frame_list_text(select_frames(motions, fraction, strategy=selection))
    if out.is_file():
        if out.read_text() != text:
            raise FileExistsError(
                f"{out} lists other frames than --fraction {fraction} --selection {selection} "
                "chooses; use a new work dir"
            )
        return out
    write_text(out, text, overwrite=False)
    return out


def _table(rows: list[dict]) -> str:
    lines = [
        "| seed | stage 1 mIoU | pseudo-label accuracy | retrained mIoU |",
        "|---|---|---|---|",
    ]
    columns = {"stage1": [], "accuracy": [], "stage3": []}
    for row in rows:
        values = {
            "stage1": (row.get("stage1") or {}).get("miou"),
            "accuracy": (row.get("pseudo_labels") or {}).get("accuracy"),
            "stage3": (row.get("stage3") or {}).get("miou"),
        }
        for key, value in values.items():
            if value is not None:
                columns[key].append(100 * value)
        cells = [f"{100 * v:.1f}" if v is not None else "" for v in values.values()]
        lines.append(f"| {row['seed']} | " + " | ".join(cells) + " |")
    summary = [
        f"{np.mean(v):.1f} ± {np.std(v):.1f}" if v else "" for v in columns.values()
    ]  # fmt: skip
    lines.append("| mean ± std | " + " | ".join(summary) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    rows = []
    try:
        config = load_config(args.config, args.overrides)
        overrides = list(args.overrides)
        frames = args.labelled_frames
        if args.fraction is not None:
            frames = choose_frames(
                config, args.fraction, args.selection, args.work_dir / FRAME_LIST
            )
        if frames is not None:
            overrides.append(f"data.labelled_frames={Path(frames).resolve()}")
        for seed in args.seeds:
            print(f"== seed {seed}", flush=True)
            seeded = load_config(args.config, [*overrides, f"seed={seed}"])
            summary = run_pipeline(
                seeded,
                args.work_dir / f"s{seed}",
                crb=crb_settings(args),
                retrain=not args.no_retrain,
                progress=not args.no_progress,
            )
            rows.append({"seed": seed, **summary})
    except (
        CheckpointError, ConfigError, DataFormatError, OSError, ValueError, TrainingDiverged
    ) as error:  # fmt: skip
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = _table(rows)
    report = {"config": str(args.config), "overrides": args.overrides, "runs": rows}
    write_text(args.work_dir / "lim3d.json", json.dumps(report, indent=2), overwrite=True)
    write_text(args.work_dir / "lim3d.md", text, overwrite=True)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
