"""Class-range-balanced pseudo-labels: bands, per-cell thresholds and the kept share."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.methods.pseudo_labels import ConfidenceHistogram, CRBSettings, assign, range_band


def test_bands_are_horizontal_range_in_5m_steps_capped_at_the_last() -> None:
    coord = np.array([[3, 4, 100], [0, 9.99, 0], [10, 0, 0], [49.9, 0, 0], [300, 0, 0]])
    np.testing.assert_array_equal(range_band(coord, CRBSettings()), [1, 1, 2, 9, 9])


def test_top_half_kept_per_range_and_class_over_all_frames() -> None:
    settings = CRBSettings()
    histogram = ConfidenceHistogram(settings, num_classes=3)
    near = np.tile([[2.0, 0, 0]], (4, 1))  # band 0
    far = np.tile([[30.0, 0, 0]], (4, 1))  # band 6
    frames = [
        # class 0 near: 0.9, 0.8 | 0.7, 0.6 over two frames; class 1 far: low confidences.
        (near, np.array([0, 0, 1, 1]), np.array([0.9, 0.6, 0.31, 0.33])),
        (near, np.array([0, 0, 2, 2]), np.array([0.8, 0.7, 0.99, 0.98])),
        (far, np.array([1, 1, 1, 1]), np.array([0.4, 0.35, 0.3, 0.45])),
    ]
    for coord, predicted, confidence in frames:
        histogram.add(coord, predicted, confidence)
    thresholds = histogram.thresholds()
    labels = [assign(c, p, f, histogram, thresholds) for c, p, f in frames]
    # Near class 0: 0.9 and 0.8 kept (top 2 of 4), 0.7 and 0.6 not, wherever they were.
    np.testing.assert_array_equal(labels[0], [0, -1, -1, 1])
    np.testing.assert_array_equal(labels[1], [0, -1, 2, -1])
    # Far class 1 is its own cell: its best half is kept although far below the near one's.
    np.testing.assert_array_equal(labels[2], [1, -1, -1, 1])


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
def test_kept_share_is_exact_for_distinct_confidences(keep: float) -> None:
    rng = np.random.default_rng(0)
    coord = rng.uniform(-60, 60, (20_000, 3))
    predicted = rng.integers(0, 4, len(coord))
    confidence = rng.uniform(0.25, 1.0, len(coord))
    histogram = ConfidenceHistogram(CRBSettings(keep=keep), num_classes=4)
    histogram.add(coord, predicted, confidence)
    labels = assign(coord, predicted, confidence, histogram, histogram.thresholds())
    cells = histogram.cells(coord, predicted)
    for cell in np.unique(cells):
        inside = cells == cell
        kept = (labels[inside] >= 0).sum()
        # ceil(keep * n), plus at most the few points sharing the threshold's 1e-4 bin.
        assert np.ceil(keep * inside.sum()) <= kept <= np.ceil(keep * inside.sum()) + 3
        kept_points = inside & (labels >= 0)
        np.testing.assert_array_equal(labels[kept_points], predicted[kept_points])
        threshold = confidence[inside][labels[inside] >= 0].min()
        assert (confidence[inside][labels[inside] < 0] < threshold).all()


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="keep"):
        CRBSettings(keep=0)
    with pytest.raises(ValueError, match="band_width"):
        CRBSettings(band_width=10, max_range=5)
