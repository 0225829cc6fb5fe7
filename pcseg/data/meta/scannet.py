"""ScanNet v2: NYU40 ids, the 20-class benchmark subset and the official colours.

Vertex labels in ``*_vh_clean_2.labels.ply`` and ``nyu40id`` in
``scannetv2-labels.combined.tsv`` are NYU40 ids 0..40 (0 = unannotated). The semantic benchmark
evaluates the 20 ids of ``Tasks/Benchmark/classes_SemVoxLabel-nyu40id.txt``; every other NYU40
id maps to ``IGNORE_INDEX``. Predictions are submitted as NYU40 ids, one per vertex.
"""

from __future__ import annotations

NYU40_NAMES: tuple[str, ...] = (
    "unannotated", "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
    "pillow", "mirror", "floor mat", "clothes", "ceiling", "books", "refrigerator", "television",
    "paper", "towel", "shower curtain", "box", "whiteboard", "person", "night stand", "toilet",
    "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip
NUM_NYU40 = len(NYU40_NAMES)  # ids 0..40

# The 20 benchmark classes, as NYU40 ids, in class-index order.
CLASS_NYU40_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39,
)  # fmt: skip
CLASS_NAMES: tuple[str, ...] = tuple(NYU40_NAMES[i] for i in CLASS_NYU40_IDS)

# NYU40 id -> class index 0..19; the other NYU40 ids -> -1 (ignore).
LABEL_MAP: dict[int, int] = {
    **{nyu: -1 for nyu in range(NUM_NYU40)},
    **{nyu: index for index, nyu in enumerate(CLASS_NYU40_IDS)},
}

# RGB per NYU40 id (ScanNet's ``util.create_color_palette``); labels.ply vertices use these.
NYU40_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120),
    (188, 189, 34), (140, 86, 75), (255, 152, 150), (214, 39, 40), (197, 176, 213),
    (148, 103, 189), (196, 156, 148), (23, 190, 207), (178, 76, 76), (247, 182, 210),
    (66, 188, 102), (219, 219, 141), (140, 57, 197), (202, 185, 52), (51, 176, 203),
    (200, 54, 131), (92, 193, 61), (78, 71, 183), (172, 114, 82), (255, 127, 14),
    (91, 163, 138), (153, 98, 156), (140, 153, 101), (158, 218, 229), (100, 125, 154),
    (178, 127, 135), (120, 185, 128), (146, 111, 194), (44, 160, 44), (112, 128, 144),
    (96, 207, 209), (227, 119, 194), (213, 92, 176), (94, 106, 211), (82, 84, 163),
    (100, 85, 144),
)  # fmt: skip
PALETTE: tuple[tuple[int, int, int], ...] = tuple(NYU40_PALETTE[i] for i in CLASS_NYU40_IDS)

SPLITS: tuple[str, ...] = ("train", "val", "test")
TABLE_NAME = "scannetv2-labels.combined.tsv"

NUM_CLASSES = len(CLASS_NAMES)
