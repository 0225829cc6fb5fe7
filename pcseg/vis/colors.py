"""Per-point colours for the renderer: classes through a dataset's palette, errors, segments.

Every function returns uint8 (N, 3) RGB. Class ids are checked here, once, so a prediction or
label file with an id outside the dataset's classes is an error that names its source rather
than an ``IndexError`` deep in a renderer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pcseg.data.formats.validation import DataFormatError
from pcseg.data.meta import asprs, s3dis, scannet, semantickitti

Color = tuple[int, int, int]
Palette = Sequence[Color]

BACKGROUND: Color = (255, 255, 255)
UNLABELLED: Color = (210, 210, 210)  # ignore (-1): present but without a class
CORRECT: Color = (150, 150, 150)  # error view: grey, so that only mistakes carry colour
WRONG: Color = (255, 0, 0)
SEGMENTLESS: Color = (200, 200, 200)  # segment id -1: a point no segment holds
# Old labels of an active-learning view: cyan, far from the query magenta and from any class
# colour darkened by DIM_FACTOR.
LABELLED: Color = (0, 230, 255)
DIM_FACTOR = 0.4  # context points keep 40 % of their colour, so highlights dominate


@dataclass(frozen=True)
class LegendEntry:
    """One swatch of a legend: what a colour means."""

    name: str
    color: Color


def check_classes(ids: np.ndarray, num_classes: int, *, source: str) -> np.ndarray:
    """``ids`` as int64 (N,), checked to lie in -1..K-1 (-1 = unlabelled).

    Raises:
        DataFormatError: an id outside that range; the message names ``source`` and the ids.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise DataFormatError(source, f"class ids must be a 1-D integer array, got {ids.dtype}")
    ids = ids.astype(np.int64)
    bad = (ids < -1) | (ids >= num_classes)
    if bad.any():
        unknown = ", ".join(map(str, sorted(set(ids[bad].tolist()))[:10]))
        raise DataFormatError(
            source,
            f"unknown class id(s) {unknown} ({int(bad.sum())} points); "
            f"valid: -1..{num_classes - 1}",
        )
    return ids


def class_colors(ids: np.ndarray, palette: Palette, *, source: str = "classes") -> np.ndarray:
    """Colour each point by its class; unlabelled points (-1) are :data:`UNLABELLED`."""
    ids = check_classes(ids, len(palette), source=source)
    table = np.array([*palette, UNLABELLED], dtype=np.uint8)  # index -1 is the last row
    return table[ids]


def error_colors(label: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """:data:`WRONG` where a labelled point's prediction differs, :data:`CORRECT` where it
    agrees, :data:`UNLABELLED` where the point has no label (nothing to be wrong about)."""
    if label.shape != pred.shape:
        raise ValueError(f"labels {label.shape} and predictions {pred.shape} differ in shape")
    colors = np.empty((len(label), 3), dtype=np.uint8)
    colors[:] = CORRECT
    colors[label < 0] = UNLABELLED
    colors[(label >= 0) & (label != pred)] = WRONG
    return colors


def dim(colors: np.ndarray, factor: float = DIM_FACTOR) -> np.ndarray:
    """Colours moved towards black, as context under highlighted points."""
    return (colors.astype(np.float32) * factor).round().astype(np.uint8)


def segment_colors(ids: np.ndarray, *, source: str = "segments") -> np.ndarray:
    """A stable colour per integer segment id; id -1 (no segment) is :data:`SEGMENTLESS`.

    The hue depends on the id alone, so a segment has the same colour in every view, and
    consecutive ids (usually neighbouring segments) get clearly different hues.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise DataFormatError(source, f"segment ids must be a 1-D integer array, got {ids.dtype}")
    if (ids < -1).any():
        raise DataFormatError(source, f"segment ids must be >= -1, found {int(ids.min())}")
    unique, inverse = np.unique(ids, return_inverse=True)
    hue = (unique * 0.618033988749895) % 1.0  # golden-ratio steps: neighbours far apart
    table = _hsv_to_rgb(hue, saturation=0.75, value=0.95)
    table[unique < 0] = SEGMENTLESS
    return table[inverse.reshape(-1)]


def _hsv_to_rgb(hue: np.ndarray, *, saturation: float, value: float) -> np.ndarray:
    """uint8 RGB of hues in [0, 1) at one saturation and value (the closed-form HSV map)."""
    k = (np.array([5.0, 3.0, 1.0]) + hue[:, None] * 6) % 6
    rgb = value * (1 - saturation * np.clip(np.minimum(k, 4 - k), 0, 1))
    return (rgb * 255).round().astype(np.uint8)


def class_legend(
    arrays: Sequence[np.ndarray], names: Sequence[str], palette: Palette
) -> list[LegendEntry]:
    """One entry per class present in any of ``arrays`` (class order), then "unlabelled" if
    some point has none: a legend of 19 classes for a scan showing 6 would mostly mislead."""
    present = np.unique(np.concatenate([np.asarray(a, dtype=np.int64) for a in arrays]))
    entries = [LegendEntry(names[c], tuple(palette[c])) for c in present if c >= 0]
    if (present < 0).any():
        entries.append(LegendEntry("unlabelled", UNLABELLED))
    return entries


ERROR_LEGEND = (
    LegendEntry("correct", CORRECT),
    LegendEntry("wrong", WRONG),
    LegendEntry("unlabelled", UNLABELLED),
)


def palette_for(class_names: Sequence[str]) -> Palette | None:
    """The palette of the dataset whose classes are ``class_names`` (as ``metrics.json``
    lists them), or None for classes no dataset meta module defines."""
    for meta in (semantickitti, s3dis, scannet, asprs):
        if tuple(meta.CLASS_NAMES) == tuple(class_names):
            return meta.PALETTE
    return None
