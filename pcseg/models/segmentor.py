"""Backbone + linear head: voxel features in, per-voxel class logits out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from pcseg.models.backbones import BACKBONES
from pcseg.models.sparse import spconv


def sparse_input(voxel_coords: Tensor, voxel_feat: Tensor, batch_size: int, *, levels: int):
    """Wrap batched voxels (``[b, i, j, k]`` int32) as a spconv tensor.

    The spatial shape is rounded up to a multiple of ``2**levels`` so that every stride-2 level
    keeps all voxels inside the grid.
    """
    if len(voxel_coords) == 0:
        raise ValueError("the batch has no voxels (empty scans?)")
    step = 2**levels
    extent = voxel_coords[:, 1:].amax(0).cpu().long() + 1
    shape = ((extent + step - 1) // step * step).tolist()
    return spconv.SparseConvTensor(voxel_feat, voxel_coords.int(), shape, batch_size)


class Segmentor(nn.Module):
    """Per-voxel semantic logits from a registered backbone and a linear classifier.

    Args:
        backbone: the backbone module (``out_channels`` and ``num_stages`` attributes).
        num_classes: number of classes K.
    """

    def __init__(self, backbone: nn.Module, *, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.out_channels, num_classes)

    def features(self, voxel_coords: Tensor, voxel_feat: Tensor, batch_size: int) -> Tensor:
        """(V, F) backbone features of the voxels."""
        x = sparse_input(voxel_coords, voxel_feat, batch_size, levels=self.backbone.num_stages)
        return self.backbone(x)

    def forward(self, voxel_coords: Tensor, voxel_feat: Tensor, batch_size: int) -> Tensor:
        """(V, K) logits for voxels ``voxel_coords`` (V, 4) with features (V, C)."""
        return self.head(self.features(voxel_coords, voxel_feat, batch_size))


def build_segmentor(
    backbone: Mapping[str, Any],
    *,
    in_channels: int,
    num_classes: int,
    where: str = "model.backbone",
) -> Segmentor:
    """Build a :class:`Segmentor` from a backbone spec (``{"name": ..., **kwargs}``)."""
    return Segmentor(
        BACKBONES.build(backbone, where=where, in_channels=in_channels), num_classes=num_classes
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["Segmentor", "build_segmentor", "count_parameters", "sparse_input"]
