"""Point colours: classes through a palette, errors, segments, legends."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.data.formats.validation import DataFormatError
from pcseg.data.meta import s3dis, semantickitti
from pcseg.vis import colors

PALETTE = ((10, 20, 30), (40, 50, 60))


def test_class_colours_follow_the_palette_and_mark_unlabelled() -> None:
    rgb = colors.class_colors(np.array([1, 0, -1]), PALETTE)
    assert rgb.dtype == np.uint8
    assert rgb.tolist() == [[40, 50, 60], [10, 20, 30], list(colors.UNLABELLED)]


def test_unknown_class_ids_name_their_source() -> None:
    with pytest.raises(DataFormatError, match=r"preds\.label: unknown class id\(s\) 2, 7"):
        colors.class_colors(np.array([0, 2, 7, 2]), PALETTE, source="preds.label")
    with pytest.raises(DataFormatError, match="integer"):
        colors.class_colors(np.array([0.5]), PALETTE)


def test_error_colours_only_mark_labelled_mistakes() -> None:
    label = np.array([0, 1, -1, 1])
    pred = np.array([0, 0, 1, 1])
    expected = [colors.CORRECT, colors.WRONG, colors.UNLABELLED, colors.CORRECT]
    assert colors.error_colors(label, pred).tolist() == [list(c) for c in expected]


def test_segment_colours_are_stable_and_distinct() -> None:
    ids = np.array([5, 6, 5, -1, 7])
    rgb = colors.segment_colors(ids)
    assert (rgb[0] == rgb[2]).all() and (rgb[3] == colors.SEGMENTLESS).all()
    assert len({tuple(c) for c in rgb[[0, 1, 4]]}) == 3
    # The colour of a segment does not depend on which other segments are present.
    assert (colors.segment_colors(np.array([7]))[0] == rgb[4]).all()
    with pytest.raises(DataFormatError, match=">= -1"):
        colors.segment_colors(np.array([-2, 0]))


def test_legend_lists_only_present_classes() -> None:
    legend = colors.class_legend([np.array([1, 1]), np.array([-1, 1])], ("a", "b"), PALETTE)
    assert [(e.name, e.color) for e in legend] == [
        ("b", PALETTE[1]),
        ("unlabelled", colors.UNLABELLED),
    ]


def test_palette_is_found_from_class_names() -> None:
    assert colors.palette_for(semantickitti.CLASS_NAMES) == semantickitti.PALETTE
    assert colors.palette_for(s3dis.CLASS_NAMES) == s3dis.PALETTE
    assert colors.palette_for(("sky", "sea")) is None
