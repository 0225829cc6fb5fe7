"""SemanticKITTI: raw label ids, the single-scan learning map (moving classes folded) and colours.

Values follow the official ``semantic-kitti.yaml`` of semantic-kitti-api. Raw id 0 ("unlabeled")
and the ids the benchmark folds into it map to ``IGNORE_INDEX``; the 19 evaluated classes are
0..18 in the order below (the official learning ids 1..19 minus one).
"""

from __future__ import annotations

RAW_NAMES: dict[int, str] = {
    0: "unlabeled",
    1: "outlier",
    10: "car",
    11: "bicycle",
    13: "bus",
    15: "motorcycle",
    16: "on-rails",
    18: "truck",
    20: "other-vehicle",
    30: "person",
    31: "bicyclist",
    32: "motorcyclist",
    40: "road",
    44: "parking",
    48: "sidewalk",
    49: "other-ground",
    50: "building",
    51: "fence",
    52: "other-structure",
    60: "lane-marking",
    70: "vegetation",
    71: "trunk",
    72: "terrain",
    80: "pole",
    81: "traffic-sign",
    99: "other-object",
    252: "moving-car",
    253: "moving-bicyclist",
    254: "moving-person",
    255: "moving-motorcyclist",
    256: "moving-on-rails",
    257: "moving-bus",
    258: "moving-truck",
    259: "moving-other-vehicle",
}

# Official learning_map (raw id -> learning id, 0 = ignored), moving classes folded into static.
LEARNING_MAP: dict[int, int] = {
    0: 0,
    1: 0,
    10: 1,
    11: 2,
    13: 5,
    15: 3,
    16: 5,
    18: 4,
    20: 5,
    30: 6,
    31: 7,
    32: 8,
    40: 9,
    44: 10,
    48: 11,
    49: 12,
    50: 13,
    51: 14,
    52: 0,
    60: 9,
    70: 15,
    71: 16,
    72: 17,
    80: 18,
    81: 19,
    99: 0,
    252: 1,
    253: 7,
    254: 6,
    255: 8,
    256: 5,
    257: 5,
    258: 4,
    259: 5,
}

# Official learning_map_inv (learning id -> raw id), used to write predictions back.
LEARNING_MAP_INV: dict[int, int] = {
    0: 0,
    1: 10,
    2: 11,
    3: 15,
    4: 18,
    5: 20,
    6: 30,
    7: 31,
    8: 32,
    9: 40,
    10: 44,
    11: 48,
    12: 49,
    13: 50,
    14: 51,
    15: 70,
    16: 71,
    17: 72,
    18: 80,
    19: 81,
}

CLASS_NAMES: tuple[str, ...] = tuple(RAW_NAMES[LEARNING_MAP_INV[i]] for i in range(1, 20))

# RGB (the official colour_map is BGR), indexed by class 0..18.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (100, 150, 245),
    (100, 230, 245),
    (30, 60, 150),
    (80, 30, 180),
    (0, 0, 255),
    (255, 30, 30),
    (255, 40, 200),
    (150, 30, 90),
    (255, 0, 255),
    (255, 150, 255),
    (75, 0, 75),
    (175, 0, 75),
    (255, 200, 0),
    (255, 120, 50),
    (0, 175, 0),
    (135, 60, 0),
    (150, 240, 80),
    (255, 240, 150),
    (255, 0, 0),
)

NUM_CLASSES = len(CLASS_NAMES)

# name -> raw id, for code that writes raw labels (synthetic scenes).
RAW_IDS: dict[str, int] = {name: raw for raw, name in RAW_NAMES.items()}

# The benchmark's sequence splits (semantic-kitti.yaml "split"); labels exist for 00-10 only.
SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10"),
    "val": ("08",),
    "test": tuple(f"{s:02d}" for s in range(11, 22)),
}
