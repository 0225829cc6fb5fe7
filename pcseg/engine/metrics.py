"""Semantic-segmentation metrics from a confusion matrix: IoU, accuracy and a text table.

Scores are plain Python values (floats, ints, None, lists) so they can go straight into JSON
logs. A class with no ground-truth points has no IoU or accuracy (None) and is left out of
the means, rather than counting as 0 or producing NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["confusion_matrix", "format_table", "segmentation_scores"]


def confusion_matrix(
    pred: Tensor, label: Tensor, num_classes: int, *, ignore_index: int = -1
) -> Tensor:
    """Count (ground truth, prediction) pairs.

    Args:
        pred: Predicted class per point, integer tensor of any shape (N,).
        label: Ground-truth class per point, same shape as ``pred``.
        num_classes: Number of classes K.
        ignore_index: Label value of unlabelled points; they are skipped whatever their
            prediction.

    Returns:
        int64 tensor (K, K) on the input device; rows are ground truth, columns prediction.

    Raises:
        ValueError: Shapes differ, K < 1, or a label or a prediction of a labelled point lies
            outside [0, K); the message names the first offending value.
        TypeError: ``pred`` or ``label`` is not an integer tensor.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if pred.shape != label.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != label shape {tuple(label.shape)}")
    for name, tensor in (("pred", pred), ("label", label)):
        if tensor.is_floating_point() or tensor.is_complex():
            raise TypeError(f"{name} must be an integer tensor, got {tensor.dtype}")
    keep = label.reshape(-1) != ignore_index
    gt = label.reshape(-1)[keep].long()
    pr = pred.reshape(-1)[keep].long()
    for name, values in (("label", gt), ("pred", pr)):
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.numel():
            raise ValueError(
                f"{name} value {bad[0].item()} outside [0, {num_classes}) "
                f"(ignore_index is {ignore_index})"
            )
    # One bincount over flat pair indices works on every device and needs no Python loop.
    counts = torch.bincount(gt * num_classes + pr, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def segmentation_scores(confusion: Tensor) -> dict[str, Any]:
    """Per-class and mean scores from a confusion matrix.

    Args:
        confusion: (K, K) counts, rows ground truth, columns prediction (e.g. summed
            :func:`confusion_matrix` outputs over a dataset).

    Returns:
        Dict with ``iou`` and ``acc`` (K-lists of float, None where the class has no
        ground-truth points), ``miou`` and ``macc`` (means over classes with ground truth),
        ``allacc`` (correct / labelled points), ``gt_points`` and ``pred_points`` (K-lists of
        int). The three summary values are None when there are no labelled points.
    """
    if confusion.dim() != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be square (K, K), got {tuple(confusion.shape)}")
    counts = confusion.detach().to("cpu", torch.int64)
    # Python ints keep the division exact up to the final rounding, however large the counts.
    hits: list[int] = counts.diagonal().tolist()
    gt_points: list[int] = counts.sum(dim=1).tolist()
    pred_points: list[int] = counts.sum(dim=0).tolist()
    iou: list[float | None] = []
    acc: list[float | None] = []
    for tp, gt, pr in zip(hits, gt_points, pred_points, strict=True):
        iou.append(tp / (gt + pr - tp) if gt else None)
        acc.append(tp / gt if gt else None)
    total = sum(gt_points)
    return {
        "iou": iou,
        "acc": acc,
        "miou": _mean(iou),
        "macc": _mean(acc),
        "allacc": sum(hits) / total if total else None,
        "gt_points": gt_points,
        "pred_points": pred_points,
    }


def format_table(scores: dict[str, Any], class_names: Sequence[str]) -> str:
    """Fixed-width text table of :func:`segmentation_scores` output.

    Args:
        scores: Output of :func:`segmentation_scores`.
        class_names: One name per class, in class-index order.

    Returns:
        Header, one row per class (IoU %, Acc %, GT points, predicted points; "—" where a
        score is None) and a summary line with mIoU, mAcc and allAcc in %.
    """
    if len(class_names) != len(scores["iou"]):
        raise ValueError(
            f"{len(class_names)} class names for {len(scores['iou'])} classes in scores"
        )
    width = max([5, *(len(name) for name in class_names)])
    header = f"{'class':<{width}}  {'IoU %':>7}  {'Acc %':>7}  {'GT points':>12}  {'predicted':>12}"
    lines = [header, "-" * len(header)]
    for name, iou, acc, gt, pr in zip(
        class_names,
        scores["iou"],
        scores["acc"],
        scores["gt_points"],
        scores["pred_points"],
        strict=True,
    ):
        lines.append(f"{name:<{width}}  {_pct(iou):>7}  {_pct(acc):>7}  {gt:>12d}  {pr:>12d}")
    lines.append("-" * len(header))
    lines.append(
        f"mIoU {_pct(scores['miou'])}  mAcc {_pct(scores['macc'])}  allAcc {_pct(scores['allacc'])}"
    )
    return "\n".join(lines)


def _mean(values: list[float | None]) -> float | None:
    """Mean of the non-None values, None if there are none."""
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def _pct(value: float | None) -> str:
    """Percentage with two decimals, or an em dash for a missing score."""
    return "—" if value is None else f"{100.0 * value:.2f}"
