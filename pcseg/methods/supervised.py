"""Supervised training: cross-entropy on the labelled points, at full point resolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pcseg.data.collate import PointBatch
from pcseg.data.sample import IGNORE_INDEX
from pcseg.methods import METHODS


def point_logits(model: nn.Module, batch: PointBatch) -> Tensor:
    """(N, K) logits of every point: its voxel's logits."""
    return model(batch.voxel_coords, batch.voxel_feat, batch.batch_size)[batch.inverse]


def visible_labels(batch: PointBatch) -> Tensor:
    """(N,) labels a method may train on: ignore wherever ``label_mask`` hides the label."""
    return torch.where(batch.label_mask, batch.label, torch.full_like(batch.label, IGNORE_INDEX))


def labelled_cross_entropy(
    logits: Tensor,
    batch: PointBatch,
    *,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of per-point ``logits`` over the visible labels, and their count.

    Without any visible label the loss is a zero that still touches every parameter, so
    data-parallel ranks all reduce the same gradient buckets.
    """
    target = visible_labels(batch)
    labelled = target != IGNORE_INDEX
    if not bool(labelled.any()):
        return logits.sum() * 0.0, labelled.sum()
    loss = nn.functional.cross_entropy(
        logits[labelled],
        target[labelled],
        weight=None if weight is None else weight.to(logits),
        label_smoothing=label_smoothing,
    )
    return loss, labelled.sum()


@METHODS.register("supervised")
class Supervised:
    """Cross-entropy over the points whose label is visible (``label_mask``) and not ignored.

    Args:
        label_smoothing: cross-entropy label smoothing.
        class_weights: optional weight per class.
    """

    views = 1

    def __init__(
        self, *, label_smoothing: float = 0.0, class_weights: Sequence[float] | None = None
    ) -> None:
        self.label_smoothing = label_smoothing
        self.class_weights = None if class_weights is None else torch.tensor(class_weights)

    def training_step(
        self, model: nn.Module, batch: PointBatch, *, epoch: float = 0.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss and logs of one batch; ``epoch`` (progress in epochs) is unused here."""
        loss, labelled = labelled_cross_entropy(
            point_logits(model, batch),
            batch,
            weight=self.class_weights,
            label_smoothing=self.label_smoothing,
        )
        return loss, {"loss": loss.detach(), "labelled_points": labelled}
