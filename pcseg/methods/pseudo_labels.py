"""Class-range-balanced (CRB) pseudo-labels, LiM3D's second stage.

A trained teacher predicts every unlabelled training frame. Points are split by horizontal range
``sqrt(x² + y²)`` into bands of ``band_width`` metres up to ``max_range`` (points beyond fall in
the last band); for every (band, predicted class) the confidence threshold is the one that keeps
the ``keep`` most confident share of that cell's points, over all frames together. A point
keeps its predicted class when its confidence reaches the threshold of its cell, and is ignored
otherwise. Balancing per range and class keeps far, sparse points and rare classes from being
drowned by the confident near-range road.

Thresholds come from per-cell histograms of confidence (:data:`HISTOGRAM_BINS` bins over
[0, 1], so the kept share is exact up to the points inside one bin of width 1e-4), which lets
a pass over any number of frames run in constant memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HISTOGRAM_BINS = 10_000


@dataclass(frozen=True)
class CRBSettings:
    """LiM3D's defaults: 10 bands of 5 m up to 50 m, the top 50 % kept per (band, class)."""

    keep: float = 0.5
    band_width: float = 5.0
    max_range: float = 50.0

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {self.keep}")
        if self.band_width <= 0 or self.max_range < self.band_width:
            raise ValueError("band_width must be > 0 and max_range >= band_width")

    @property
    def bands(self) -> int:
        return int(np.ceil(self.max_range / self.band_width))


def range_band(coord: np.ndarray, settings: CRBSettings) -> np.ndarray:
    """Band index (N,) of each point by its horizontal range; beyond ``max_range``: the last."""
    distance = np.hypot(coord[:, 0], coord[:, 1])
    return np.minimum((distance // settings.band_width).astype(np.int64), settings.bands - 1)


def _bins(confidence: np.ndarray) -> np.ndarray:
    return np.minimum((confidence * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)


class ConfidenceHistogram:
    """Confidence counts per (band, class, bin), accumulated frame by frame."""

    def __init__(self, settings: CRBSettings, num_classes: int) -> None:
        self.settings = settings
        self.num_classes = num_classes
        self.counts = np.zeros((settings.bands * num_classes, HISTOGRAM_BINS), dtype=np.int64)

    def cells(self, coord: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        return range_band(coord, self.settings) * self.num_classes + predicted

    def add(self, coord: np.ndarray, predicted: np.ndarray, confidence: np.ndarray) -> None:
        flat = self.cells(coord, predicted) * HISTOGRAM_BINS + _bins(confidence)
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)

    def thresholds(self) -> np.ndarray:
        """Lowest kept confidence bin per (band * K + class): the bin at which the count from
        the top first reaches ``keep`` of the cell's points (cells without points: never)."""
        from_top = np.cumsum(self.counts[:, ::-1], axis=1)[:, ::-1]  # points in bin b or above
        needed = np.ceil(self.settings.keep * self.counts.sum(1, keepdims=True))
        reached = from_top >= needed
        # The highest bin whose from-top count still reaches the quota.
        last = HISTOGRAM_BINS - 1 - np.argmax(reached[:, ::-1], axis=1)
        return np.where(self.counts.sum(1) > 0, last, HISTOGRAM_BINS)


def assign(
    coord: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    histogram: ConfidenceHistogram,
    thresholds: np.ndarray,
) -> np.ndarray:
    """Pseudo-labels (N,) int64: the predicted class where the confidence's bin reaches its
    cell's threshold, -1 (ignore) elsewhere."""
    kept = _bins(confidence) >= thresholds[histogram.cells(coord, predicted)]
    return np.where(kept, predicted, -1).astype(np.int64)
