"""ASPRS LAS classification codes (LAS 1.4, table 17) and the default training classes.

Codes 0/1 (never classified / unclassified), 7 and 18 (noise), 8 (model key-point, LAS <= 1.3)
and 12 (overlap, LAS <= 1.3) carry no semantic class and map to ``IGNORE_INDEX``. Codes 19-63
are reserved and 64-255 user-defined: a dataset YAML must map them explicitly.
"""

from __future__ import annotations

CODE_NAMES: dict[int, str] = {
    0: "never-classified",
    1: "unclassified",
    2: "ground",
    3: "low-vegetation",
    4: "medium-vegetation",
    5: "high-vegetation",
    6: "building",
    7: "low-noise",
    8: "model-key-point",
    9: "water",
    10: "rail",
    11: "road-surface",
    12: "overlap",
    13: "wire-guard",
    14: "wire-conductor",
    15: "transmission-tower",
    16: "wire-connector",
    17: "bridge-deck",
    18: "high-noise",
}

IGNORED_CODES: frozenset[int] = frozenset({0, 1, 7, 8, 12, 18})

CLASS_CODES: tuple[int, ...] = tuple(c for c in CODE_NAMES if c not in IGNORED_CODES)
CLASS_NAMES: tuple[str, ...] = tuple(CODE_NAMES[c] for c in CLASS_CODES)

# ASPRS code -> class index (ignored codes -> -1).
LABEL_MAP: dict[int, int] = {
    **{code: -1 for code in IGNORED_CODES},
    **{code: index for index, code in enumerate(CLASS_CODES)},
}

PALETTE: tuple[tuple[int, int, int], ...] = (
    (160, 120, 80),
    (170, 230, 120),
    (80, 200, 60),
    (20, 120, 20),
    (230, 70, 60),
    (60, 120, 230),
    (120, 120, 120),
    (90, 90, 90),
    (250, 220, 40),
    (250, 160, 40),
    (200, 60, 200),
    (140, 40, 140),
    (240, 240, 240),
)

NUM_CLASSES = len(CLASS_NAMES)
