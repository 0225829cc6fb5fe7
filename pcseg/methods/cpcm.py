"""CPCM: contextual point cloud modelling for training from sparse labels (ICCV 2023).

Each step sees two independently augmented views of the same scans. Both go through the
model and are trained with cross-entropy on their visible (sparse) labels. A third pass sees
view 2 with the input features of a random subset of rank-quantile regions zeroed
(:func:`pcseg.ops.region_mask`; the geometry stays), and is pulled towards the unmasked
predictions by Jensen-Shannon terms::

    L = CE(view 1) + CE(view 2)
        + w_c(t) * JS(view 1, view 2)                          on corresponding voxels
        + w_m(t) * (JS(sg(view 2), masked view 2)              on every voxel of view 2
                    + JS(sg(view 1), masked view 2))           on corresponding voxels

``sg`` stops the gradient, and ``w(t) = w * exp(-5 (1 - min(t, T) / T)^2)`` ramps the weights
up over ``T = rampup_epochs``. With ``mask_weight = 0`` this is the consistency baseline, and with
both weights 0 the plain sparse-label baseline, all on the same code path.

Corresponding voxels are the voxel pairs that hold the same original point in both views; each
pair counts once, however many points it shares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pcseg.data.collate import PointBatch, matching_points
from pcseg.data.transforms import FEATURE_CHANNELS
from pcseg.methods import METHODS
from pcseg.methods.supervised import labelled_cross_entropy
from pcseg.ops import draw_masked_regions, region_mask

JS_EPS = 1e-4


def js_divergence(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """Jensen-Shannon divergence between the softmax of two (M, K) logits, mean over rows.

    As in CPCM, ``sum_c p log(p / (m + eps) + eps)`` for both sides with ``m`` their mean and
    ``eps = 1e-4``, without the usual factor 1/2; zero rows give zero.
    """
    if len(logits_a) == 0:
        return (logits_a.sum() + logits_b.sum()) * 0.0
    p = torch.softmax(logits_a.float(), dim=1)
    q = torch.softmax(logits_b.float(), dim=1)
    mean = (p + q) / 2
    divergence = p * torch.log(p / (mean + JS_EPS) + JS_EPS) + q * torch.log(
        q / (mean + JS_EPS) + JS_EPS
    )
    return divergence.sum(dim=1).mean()


def rampup(weight: float, epoch: float, epochs: float) -> float:
    """``weight * exp(-5 (1 - min(epoch, epochs) / epochs)^2)``; the full weight if epochs is 0."""
    if epochs <= 0:
        return weight
    progress = min(max(epoch, 0.0), epochs) / epochs
    return weight * math.exp(-5.0 * (1.0 - progress) ** 2)


def corresponding_voxels(first: PointBatch, second: PointBatch) -> tuple[Tensor, Tensor]:
    """Voxel pairs ``(i, j)`` of two views whose voxels hold the same original point.

    Both views must hold the same scans in the same order. Each distinct pair appears once.
    """
    rows_first, rows_second = matching_points(first, second)
    voxels_first = first.inverse[rows_first]
    voxels_second = second.inverse[rows_second]
    num_second = len(second.voxel_coords)
    pairs = torch.unique(voxels_first * num_second + voxels_second)
    return pairs // num_second, pairs % num_second


@METHODS.register("cpcm")
class CPCM:
    """Two-view training with region-masked consistency (see the module docstring).

    Args:
        grid: regions per axis (``grid**3`` boxes per scan); 4 at 0.1 %, 8 at 0.01 % labels.
        mask_ratio: fraction of the boxes whose input features are zeroed.
        mask_weight: ``w_m``, weight of the two masked-consistency terms; 0 turns masking off.
        consistency_weight: ``w_c``, weight of the view-1/view-2 consistency term.
        rampup_epochs: epochs over which both weights ramp up.
        label_smoothing: cross-entropy label smoothing.
        masked_features: input features (names from ``data.features``) that masking zeroes;
            by default every one except ``coord``: coordinates are geometry, which CPCM leaves
            visible (the official runs mask colour, their only input).
        input_features: ``data.features``, supplied by the trainer; without it every channel
            is masked.
    """

    views = 2

    def __init__(
        self,
        *,
        grid: int = 4,
        mask_ratio: float = 0.75,
        mask_weight: float = 5.0,
        consistency_weight: float = 0.0,
        rampup_epochs: float = 5.0,
        label_smoothing: float = 0.0,
        masked_features: Sequence[str] | None = None,
        input_features: Sequence[str] | None = None,
    ) -> None:
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        if not 0.0 <= mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
        if mask_weight < 0 or consistency_weight < 0 or rampup_epochs < 0:
            raise ValueError("mask_weight, consistency_weight and rampup_epochs must be >= 0")
        self.grid, self.mask_ratio = grid, mask_ratio
        self.mask_weight, self.consistency_weight = mask_weight, consistency_weight
        self.rampup_epochs, self.label_smoothing = rampup_epochs, label_smoothing
        self.masked_channels = _masked_channels(masked_features, input_features)

    def training_step(
        self, model: nn.Module, batch: tuple[PointBatch, PointBatch], *, epoch: float = 0.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        first, second = batch
        logits_first = _voxel_logits(model, first, first.voxel_feat)
        logits_second = _voxel_logits(model, second, second.voxel_feat)
        ce_first, labelled = labelled_cross_entropy(
            logits_first[first.inverse], first, label_smoothing=self.label_smoothing
        )
        ce_second, _ = labelled_cross_entropy(
            logits_second[second.inverse], second, label_smoothing=self.label_smoothing
        )
        loss = ce_first + ce_second
        logs = {"ce": (ce_first + ce_second).detach(), "labelled_points": labelled}
        w_c = rampup(self.consistency_weight, epoch, self.rampup_epochs)
        w_m = rampup(self.mask_weight, epoch, self.rampup_epochs)
        if self.consistency_weight > 0 or self.mask_weight > 0:
            pair_first, pair_second = corresponding_voxels(first, second)
        if self.consistency_weight > 0:
            consistency = js_divergence(logits_first[pair_first], logits_second[pair_second])
            loss = loss + w_c * consistency
            logs["consistency"] = consistency.detach()
        if self.mask_weight > 0:
            masked = self.masked_logits(model, second)
            mask_self = js_divergence(logits_second.detach(), masked)
            mask_corr = js_divergence(logits_first.detach()[pair_first], masked[pair_second])
            loss = loss + w_m * (mask_self + mask_corr)
            logs["mask_self"], logs["mask_corr"] = mask_self.detach(), mask_corr.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    def masked_logits(self, model: nn.Module, batch: PointBatch) -> Tensor:
        """Voxel logits of ``batch`` with the features of randomly chosen regions zeroed."""
        chosen = draw_masked_regions(batch.batch_size, self.grid, self.mask_ratio).to(
            batch.voxel_feat.device
        )
        feat, _, masked = region_mask(batch.voxel_coords, batch.voxel_feat, self.grid, chosen)
        if self.masked_channels is not None:
            channels = self.masked_channels.to(feat.device)
            feat = batch.voxel_feat.masked_fill(masked[:, None] & channels[None], 0.0)
        return _voxel_logits(model, batch, feat)


def _masked_channels(
    masked_features: Sequence[str] | None, input_features: Sequence[str] | None
) -> Tensor | None:
    """bool (C,): which input channels masking zeroes; None for all of them."""
    if input_features is None:
        if masked_features is not None:
            raise ValueError("masked_features needs input_features (the data.features list)")
        return None
    if masked_features is None:
        masked_features = [name for name in input_features if name != "coord"]
        if not masked_features:
            raise ValueError(
                "nothing to mask: the only input feature is coord; add a feature such as "
                "color or remission to data.features, or set method.masked_features"
            )
    unknown = [name for name in masked_features if name not in input_features]
    if unknown:
        raise ValueError(
            f"masked_features {unknown} are not inputs; data.features is {list(input_features)}"
        )
    flags = [
        name in masked_features for name in input_features for _ in range(FEATURE_CHANNELS[name])
    ]
    return torch.tensor(flags, dtype=torch.bool)


def _voxel_logits(model: nn.Module, batch: PointBatch, feat: Tensor) -> Tensor:
    return model(batch.voxel_coords, feat, batch.batch_size)
