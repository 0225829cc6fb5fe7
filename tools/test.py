"""Evaluate a checkpoint: per-class table, metrics.json, optional TTA and native-format export.

    python tools/test.py CONFIG --checkpoint CKPT [--split val] [--tta] [--export DIR]
                         [--out DIR] [--set key.path=value ...]

Predictions cover every original point (each point takes its voxel's class). ``--export`` writes
them as the dataset's own files: SemanticKITTI ``sequences/XX/predictions/NNNNNN.label`` (raw
ids through ``learning_map_inv``), ScanNet ``<scene>.txt`` of NYU40 ids, S3DIS
``Area_N/<room>.npy`` and ``.txt``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcseg.config import load_config
from pcseg.data.formats.validation import DataFormatError
from pcseg.engine.checkpoint import CheckpointError
from pcseg.engine.inference import test_checkpoint
from pcseg.registry import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--split", help="train, val or test (default: eval.split)")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation (eval.tta)")
    parser.add_argument("--export", type=Path, help="write predictions here, native format")
    parser.add_argument("--out", type=Path, help="where metrics.json goes")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier metrics.json")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        split = args.split or config.eval.split
        out = (
            args.out or args.checkpoint.parent.parent / f"eval_{split}{'_tta' if args.tta else ''}"
        )
        scores = test_checkpoint(
            config,
            args.checkpoint,
            out_dir=out,
            split=split,
            tta=args.tta,
            export_dir=args.export,
            overwrite=args.overwrite,
        )
    except (ConfigError, CheckpointError, DataFormatError, OSError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(scores["table"])
    print(f"metrics: {out / 'metrics.json'}")
    if args.export:
        print(f"predictions: {args.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
