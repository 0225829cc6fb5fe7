"""Confusion matrix and scores against a hand-computed example."""

from __future__ import annotations

import json

import pytest
import torch

from pcseg.engine.metrics import confusion_matrix, format_table, segmentation_scores

# Ground truth / prediction pairs of 9 labelled points and 2 ignored ones (-1):
#   class 0: 3 points, predicted 0, 0, 1
#   class 1: 4 points, predicted 1, 1, 1, 2
#   class 2: 2 points, predicted 2, 0
LABEL = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, -1, -1])
PRED = torch.tensor([0, 0, 1, 1, 1, 1, 2, 2, 0, 2, 7])


def test_confusion_matrix_counts_rows_gt_cols_pred() -> None:
    conf = confusion_matrix(PRED, LABEL, 3)
    assert conf.dtype == torch.int64
    assert conf.tolist() == [[2, 1, 0], [0, 3, 1], [1, 0, 1]]


def test_scores_match_hand_computation() -> None:
    scores = segmentation_scores(confusion_matrix(PRED, LABEL, 3))
    # IoU = tp / (gt + pred - tp): class 0: 2/(3+3-2), class 1: 3/(4+4-3), class 2: 1/(2+2-1)
    assert scores["iou"] == [2 / 4, 3 / 5, 1 / 3]
    assert scores["acc"] == [2 / 3, 3 / 4, 1 / 2]
    assert scores["miou"] == pytest.approx((1 / 2 + 3 / 5 + 1 / 3) / 3, abs=1e-15)
    assert scores["macc"] == pytest.approx((2 / 3 + 3 / 4 + 1 / 2) / 3, abs=1e-15)
    assert scores["allacc"] == 6 / 9
    assert scores["gt_points"] == [3, 4, 2]
    assert scores["pred_points"] == [3, 4, 2]
    json.dumps(scores)


def test_ignored_points_are_skipped_whatever_their_prediction() -> None:
    label = torch.tensor([5, 1, 5, 0])
    pred = torch.tensor([99, 1, -3, 1])
    conf = confusion_matrix(pred, label, 2, ignore_index=5)
    assert conf.tolist() == [[0, 1], [0, 1]]


def test_class_absent_from_gt_is_none_and_left_out_of_means() -> None:
    label = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 2, 1, 1])  # class 2 is predicted once but never in the GT
    scores = segmentation_scores(confusion_matrix(pred, label, 3))
    assert scores["iou"] == [1 / 2, 1.0, None]
    assert scores["acc"] == [1 / 2, 1.0, None]
    assert scores["miou"] == 0.75
    assert scores["macc"] == 0.75
    assert scores["allacc"] == 0.75
    assert scores["pred_points"] == [1, 2, 1]


def test_no_labelled_points_gives_none_not_nan() -> None:
    label = torch.full((4,), -1)
    scores = segmentation_scores(confusion_matrix(torch.zeros(4, dtype=torch.long), label, 3))
    assert scores["iou"] == [None, None, None]
    assert scores["miou"] is None and scores["macc"] is None and scores["allacc"] is None
    json.dumps(scores)
    assert "mIoU —" in format_table(scores, ["a", "b", "c"])


@pytest.mark.parametrize(
    ("pred", "label", "bad"),
    [([0, 1], [0, 3], "label value 3"), ([0, -2], [0, 1], "pred value -2")],
)
def test_out_of_range_values_raise(pred: list[int], label: list[int], bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        confusion_matrix(torch.tensor(pred), torch.tensor(label), 3)


def test_float_input_and_shape_mismatch_raise() -> None:
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix(torch.zeros(3), torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long), 2)


def test_format_table_lists_classes_and_summary() -> None:
    scores = segmentation_scores(confusion_matrix(PRED, LABEL, 3))
    table = format_table(scores, ["floor", "wall", "chair"])
    lines = table.splitlines()
    assert len({len(line) for line in lines[:-1]}) == 1  # fixed width up to the summary
    assert any(line.startswith("floor") and "50.00" in line for line in lines)
    assert any(line.startswith("chair") and "33.33" in line for line in lines)
    assert lines[-1] == "mIoU 47.78  mAcc 63.89  allAcc 66.67"
    with pytest.raises(ValueError, match="class names"):
        format_table(scores, ["floor", "wall"])
