"""S3DIS (Stanford Large-Scale 3D Indoor Spaces, Aligned v1.2): classes, aliases, areas, colours.

Class indices follow the order used by the dataset's own tools and every published benchmark.
The annotation file name ``<class>_<k>.txt`` carries the class; ``stairs`` occurs in a few rooms
and is folded into ``clutter``, as the official 13-class evaluation does.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door",
    "table", "chair", "sofa", "bookcase", "board", "clutter",
)  # fmt: skip

# Annotation names that are not classes of their own.
ALIASES: dict[str, str] = {"stairs": "clutter"}

# Annotation file class name -> class index.
NAME_TO_CLASS: dict[str, int] = {
    **{name: index for index, name in enumerate(CLASS_NAMES)},
    **{alias: CLASS_NAMES.index(target) for alias, target in ALIASES.items()},
}

AREAS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
# The common single split holds out Area 5 (it shares no building with the training areas).
DEFAULT_TEST_AREA = 5

# RGB per class, the colours of the S3DIS/PointNet visualisation code.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 255), (100, 100, 255),
    (200, 200, 100), (170, 120, 200), (255, 0, 0), (200, 100, 100), (10, 200, 100),
    (200, 200, 200), (50, 50, 50),
)  # fmt: skip

NUM_CLASSES = len(CLASS_NAMES)
