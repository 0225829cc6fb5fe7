"""Choose which frames of SemanticKITTI-format sequences to label: ST-RFD or uniform.

    python tools/select_frames.py DATA_ROOT --sequences 00 01 ... --fraction 0.05 --out FILE
        [--strategy strfd|uniform] [--reference-range 10] [--gap-factor 3]

Writes FILE, one frame path per line relative to DATA_ROOT (``sequences/00/velodyne/000123.bin``),
for ``data.labelled_frames``; an existing FILE is never replaced. ST-RFD (the default) reads each
sequence's ``poses.txt``, ``calib.txt`` and ``times.txt`` and drops spatio-temporally redundant
frames first (the rule: ``pcseg.data.frame_selection``); ``uniform`` keeps evenly spaced frames.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcseg.data.formats.validation import DataFormatError
from pcseg.data.frame_selection import (
    STRATEGIES,
    read_motion,
    select_frames,
    write_frame_list,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="data root holding sequences/")
    parser.add_argument("--sequences", nargs="+", required=True)
    parser.add_argument("--fraction", type=float, required=True, help="e.g. 0.05 for 5 %%")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--strategy", choices=STRATEGIES, default="strfd")
    parser.add_argument("--reference-range", type=float, default=10.0, help="metres (ST-RFD)")
    parser.add_argument("--gap-factor", type=float, default=3.0, help="pause = new segment")
    args = parser.parse_args(argv)
    try:
        motions = [read_motion(args.root / "sequences" / name) for name in args.sequences]
        chosen = select_frames(
            motions,
            args.fraction,
            strategy=args.strategy,
            reference_range=args.reference_range,
            gap_factor=args.gap_factor,
        )
        write_frame_list(args.out, chosen)
    except (DataFormatError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    total = sum(len(m.frames) for m in motions)
    for motion in motions:
        print(f"{motion.name}: {len(chosen[motion.name])} of {len(motion.frames)} frames")
    print(f"{sum(len(v) for v in chosen.values())} of {total} frames -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
