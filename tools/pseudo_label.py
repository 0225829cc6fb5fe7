"""Class-range-balanced pseudo-labels (LiM3D's second stage) for a training split.

    python tools/pseudo_label.py CONFIG --checkpoint CKPT --out DIR [--weights teacher|model]
        [--keep 0.5] [--band-width 5] [--max-range 50] [--set key.path=value ...]

A trained model (by default a mean-teacher checkpoint's teacher) predicts every training frame;
per (range band, predicted class) the most confident ``--keep`` share of the hidden points keeps
its class. DIR receives a SemanticKITTI label tree, ``DIR/sequences/XX/labels/NNNNNN.label``
(visible labels kept, pseudo-labels elsewhere), and ``DIR/crb.json`` (settings, counts and the
pseudo-labels' accuracy where hidden labels exist). Train on them with
``--set data.train.label_root=DIR --set data.labelled_frames=null``. The data root is only read;
DIR must be new (or an interrupted run of this tool, which is redone).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pcseg.config import load_config
from pcseg.data.formats.validation import DataFormatError
from pcseg.engine.checkpoint import CheckpointError
from pcseg.engine.inference import WEIGHTS
from pcseg.engine.pseudo_label import write_crb_labels
from pcseg.methods.pseudo_labels import CRBSettings
from pcseg.registry import ConfigError


def add_crb_options(parser: argparse.ArgumentParser) -> None:
    """The CRB settings as options (also used by ``tools/lim3d.py``)."""
    group = parser.add_argument_group("class-range-balanced pseudo-labels")
    group.add_argument("--keep", type=float, default=0.5, help="share kept per band and class")
    group.add_argument("--band-width", type=float, default=5.0, help="metres")
    group.add_argument("--max-range", type=float, default=50.0, help="metres")


def crb_settings(args: argparse.Namespace) -> CRBSettings:
    return CRBSettings(args.keep, args.band_width, args.max_range)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", choices=WEIGHTS, default="teacher")
    add_crb_options(parser)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        settings = crb_settings(args)
        manifest = write_crb_labels(
            config,
            args.checkpoint,
            args.out,
            settings=settings,
            weights=args.weights,
            progress=not args.no_progress,
        )
    except (
        ConfigError, CheckpointError, DataFormatError, FileExistsError, KeyError, ValueError,
    ) as error:  # fmt: skip
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = {k: manifest[k] for k in ("frames", "pseudo_labelled", "accuracy")}
    print(json.dumps(summary), f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
