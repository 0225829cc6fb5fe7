"""Compute the SLIC superpixels of every camera image a config's split reads, in parallel.

    python tools/superpixels.py CONFIG [--split train] [--workers 2] [--set key=value ...]

Maps go to the dataset's superpixel cache (``superpixels.cache_dir``, default
``<data root>/superpixels/slic_n<segments>_c<compactness>_s<sigma>/``); images already done are
skipped, so an interrupted run picks up where it stopped. Training computes missing maps on
first use too, one image at a time; this does them all up front.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcseg.config import load_config
from pcseg.data.formats.validation import DataFormatError
from pcseg.engine import build
from pcseg.registry import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--split", default="train", choices=build.SPLITS)
    parser.add_argument("--workers", type=int, default=2, help="processes (one image each)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        dataset = build.build_dataset(config, args.split, augment=False)
        if getattr(dataset, "superpixels", None) is None:
            raise ConfigError(f"data.{args.split}: reads no cameras (set its cameras option)")
        images = dataset.camera_images()
        new = dataset.superpixels.compute_all(
            images, workers=args.workers, progress=not args.no_progress
        )
    except (ConfigError, DataFormatError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{new} of {len(images)} images computed -> {dataset.superpixels.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
