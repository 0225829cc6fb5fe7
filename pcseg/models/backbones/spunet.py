"""Residual sparse UNet (the MinkUNet / SpUNet family) on spconv.

The encoder halves the resolution ``len(layers) // 2`` times with stride-2 convolutions, each
followed by residual blocks; the decoder undoes each step with the transposed convolution of the
same rulebook (``SparseInverseConv3d`` with the matching ``indice_key``), concatenates the
encoder features of that resolution and applies residual blocks again. The defaults are the
34C setting (planes 32, 64, 128, 256 | 256, 128, 96, 96; blocks 2, 3, 4, 6 | 2, 2, 2, 2).

``block_conv="sdsc"`` is LiM3D's sparse depthwise separable variant: every 3x3x3 convolution
of the residual blocks becomes a depthwise 3x3x3 convolution (one kernel per channel,
:class:`pcseg.models.depthwise.DepthwiseSubMConv3d`) followed by a pointwise (1x1x1) one, which
cuts its weights and multiply-adds by about 27 * C_out / (27 + C_out). The stem and the
resampling convolutions stay dense, as in LiM3D, where SDSC replaces the blocks' convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pcseg.models.backbones import BACKBONES
from pcseg.models.depthwise import DepthwiseSubMConv3d
from pcseg.models.sparse import spconv

SparseTensor = spconv.SparseConvTensor
BLOCK_CONVS = ("standard", "sdsc")


def _norm_relu(tensor: SparseTensor, norm: nn.Module) -> SparseTensor:
    return tensor.replace_feature(nn.functional.relu(norm(tensor.features)))


class SeparableSubMConv3d(spconv.SparseModule):
    """Depthwise 3x3x3 submanifold convolution, then a pointwise (1x1x1) one: SDSC."""

    def __init__(self, in_channels: int, out_channels: int, *, indice_key: str) -> None:
        super().__init__()
        self.depthwise = DepthwiseSubMConv3d(in_channels, 3, indice_key=indice_key)
        self.pointwise = nn.Linear(in_channels, out_channels, bias=False)

    def forward(self, x: SparseTensor) -> SparseTensor:
        x = self.depthwise(x)
        return x.replace_feature(self.pointwise(x.features))


def block_conv3(
    in_channels: int, out_channels: int, *, kind: str, indice_key: str
) -> spconv.SparseModule:
    """The 3x3x3 submanifold convolution of a residual block: ``standard`` or ``sdsc``."""
    if kind == "sdsc":
        return SeparableSubMConv3d(in_channels, out_channels, indice_key=indice_key)
    if kind == "standard":
        return spconv.SubMConv3d(
            in_channels, out_channels, 3, padding=1, bias=False, indice_key=indice_key
        )
    raise ValueError(f"unknown block_conv {kind!r}; valid: {', '.join(BLOCK_CONVS)}")


class ResidualBlock(spconv.SparseModule):
    """Two submanifold 3x3x3 convolutions with batch norm and a (projected) identity path."""

    def __init__(
        self, in_channels: int, out_channels: int, *, indice_key: str, conv: str = "standard"
    ) -> None:
        super().__init__()
        self.conv1 = block_conv3(in_channels, out_channels, kind=conv, indice_key=indice_key)
        self.norm1 = nn.BatchNorm1d(out_channels)
        self.conv2 = block_conv3(out_channels, out_channels, kind=conv, indice_key=indice_key)
        self.norm2 = nn.BatchNorm1d(out_channels)
        self.projection: nn.Module | None = None
        if in_channels != out_channels:
            self.projection = nn.Sequential(
                nn.Linear(in_channels, out_channels, bias=False), nn.BatchNorm1d(out_channels)
            )

    def forward(self, x: SparseTensor) -> SparseTensor:
        identity = x.features if self.projection is None else self.projection(x.features)
        out = _norm_relu(self.conv1(x), self.norm1)
        out = self.conv2(out)
        return out.replace_feature(nn.functional.relu(self.norm2(out.features) + identity))


class _Stage(spconv.SparseModule):
    """A resampling convolution (down or up) with norm + ReLU, then residual blocks."""

    def __init__(self, resample: spconv.SparseModule, channels: int, blocks: nn.ModuleList):
        super().__init__()
        self.resample = resample
        self.norm = nn.BatchNorm1d(channels)
        self.blocks = blocks

    def resampled(self, x: SparseTensor) -> SparseTensor:
        return _norm_relu(self.resample(x), self.norm)

    def refine(self, x: SparseTensor) -> SparseTensor:
        for block in self.blocks:
            x = block(x)
        return x


def _blocks(in_channels: int, out_channels: int, count: int, key: str, conv: str) -> nn.ModuleList:
    channels = [in_channels] + [out_channels] * count
    return nn.ModuleList(
        ResidualBlock(channels[i], out_channels, indice_key=key, conv=conv) for i in range(count)
    )


@BACKBONES.register("spunet")
class SpUNet(nn.Module):
    """Residual sparse UNet.

    Args:
        in_channels: input feature width C.
        stem_channels: width of the full-resolution stem (5x5x5 submanifold convolution).
        planes: output widths of the encoder stages, then of the decoder stages (2*S values).
        layers: residual blocks per stage, same layout as ``planes``.
        block_conv: ``standard`` (dense 3x3x3) or ``sdsc`` (depthwise + pointwise) convolutions
            in the residual blocks.

    Input: a ``SparseConvTensor`` with (V, C) features. Output: (V, planes[-1]) features on the
    input voxels, in the input order.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        stem_channels: int = 32,
        planes: Sequence[int] = (32, 64, 128, 256, 256, 128, 96, 96),
        layers: Sequence[int] = (2, 3, 4, 6, 2, 2, 2, 2),
        block_conv: str = "standard",
    ) -> None:
        super().__init__()
        if block_conv not in BLOCK_CONVS:
            raise ValueError(
                f"SpUNet: unknown block_conv {block_conv!r}; valid: {', '.join(BLOCK_CONVS)}"
            )
        if len(planes) != len(layers) or len(planes) % 2 or not planes:
            raise ValueError(
                f"SpUNet: planes and layers need the same even length, got {planes}, {layers}"
            )
        self.num_stages = len(planes) // 2
        if min(planes) < 1 or stem_channels < 1 or in_channels < 1 or min(layers) < 0:
            raise ValueError("SpUNet: channel widths must be positive and block counts >= 0")
        if min(layers[self.num_stages :]) < 1:
            raise ValueError(
                "SpUNet: every decoder stage needs at least one block (it merges the skip)"
            )
        self.out_channels = planes[-1]
        self.stem = spconv.SparseSequential(
            spconv.SubMConv3d(
                in_channels, stem_channels, 5, padding=2, bias=False, indice_key="stem"
            ),
            nn.BatchNorm1d(stem_channels),
            nn.ReLU(),
        )
        skips = [stem_channels, *planes[: self.num_stages]]
        self.encoder = nn.ModuleList()
        for s in range(self.num_stages):
            down = spconv.SparseConv3d(
                skips[s], planes[s], 2, stride=2, bias=False, indice_key=f"down{s + 1}"
            )
            self.encoder.append(
                _Stage(
                    down,
                    planes[s],
                    _blocks(planes[s], planes[s], layers[s], f"subm{s + 1}", block_conv),
                )
            )
        self.decoder = nn.ModuleList()
        channels = planes[self.num_stages - 1]
        for d in range(self.num_stages):
            level = self.num_stages - 1 - d  # the resolution this stage returns to
            width = planes[self.num_stages + d]
            up = spconv.SparseInverseConv3d(
                channels, width, 2, bias=False, indice_key=f"down{level + 1}"
            )
            key = f"subm{level}"
            blocks = _blocks(
                width + skips[level], width, layers[self.num_stages + d], key, block_conv
            )
            self.decoder.append(_Stage(up, width, blocks))
            channels = width

    def forward(self, x: SparseTensor) -> Tensor:
        x = self.stem(x)
        skips = [x]
        for stage in self.encoder:
            x = stage.refine(stage.resampled(x))
            skips.append(x)
        skips.pop()
        for stage in self.decoder:
            x = stage.resampled(x)
            skip = skips.pop()
            x = x.replace_feature(torch.cat([x.features, skip.features], dim=1))
            x = stage.refine(x)
        return x.features
