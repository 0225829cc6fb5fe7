"""Depthwise sparse convolution layers on spconv tensors (the depthwise half of LiM3D's SDSC).

:class:`DepthwiseSparseConv3d` takes the place of an spconv ``SparseConv3d`` / ``SubMConv3d``
whose input and output widths are equal, but convolves every channel with its own kernel. Its
weight is a real ``nn.Parameter`` (optimised, saved in ``state_dict``; LiM3D's official code
re-drew it with ``torch.randn`` in every forward). Output sites and grids follow spconv
(:mod:`pcseg.ops.kernel_map`); a strided layer's outputs come sorted by (b, x, y, z).

The kernel map is built from the input's indices; with an ``indice_key`` it is cached in the
tensor's ``indice_dict`` (under ``"pcseg.depthwise:" + key``, so spconv's own entries of the same
key are untouched) and reused by later layers with the same key and geometry, as spconv does.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from pcseg.models.sparse import spconv
from pcseg.ops import SparseConvMap, build_kernel_map, depthwise_sparse_conv

SparseTensor = spconv.SparseConvTensor
CACHE_PREFIX = "pcseg.depthwise:"


class _Cached(NamedTuple):
    """An ``indice_dict`` entry: the map and what it was built for."""

    conv_map: SparseConvMap
    geometry: tuple
    spatial_shape: list[int]
    in_indices: torch.Tensor


def _triple(value: int | Sequence[int]) -> tuple[int, int, int]:
    values = (value,) * 3 if isinstance(value, numbers.Integral) else tuple(value)
    if len(values) != 3 or not all(isinstance(v, numbers.Integral) for v in values):
        raise ValueError(f"DepthwiseSparseConv3d: expected an int or 3 ints, got {value!r}")
    return tuple(int(v) for v in values)  # type: ignore[return-value]


class DepthwiseSparseConv3d(spconv.SparseModule):
    """Per-channel 3-D sparse convolution, submanifold or strided.

    Args:
        channels: C, the width of input and output.
        kernel_size, stride, padding, dilation: an int or 3 ints each, as for spconv.
        subm: submanifold (outputs = inputs; odd kernel; stride 1; padding ignored, as in
            spconv's ``SubMConv3d``) or strided (spconv's ``SparseConv3d``).
        bias: add a learnable per-channel bias.
        indice_key: cache the kernel map under this key for later layers on the same sites.

    Weight: (K, C), K = kx * ky * kz, offset ``k = (a * ky + b) * kz + c``; initialised like
    ``nn.Conv3d(C, C, k, groups=C)`` (uniform in +-1/sqrt(K)).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int | Sequence[int] = 3,
        *,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        subm: bool = False,
        bias: bool = False,
        indice_key: str | None = None,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"DepthwiseSparseConv3d: channels must be >= 1, got {channels}")
        self.channels = channels
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)
        self.padding = _triple(padding)
        self.dilation = _triple(dilation)
        self.subm = subm
        self.indice_key = indice_key
        if subm and (any(k % 2 == 0 for k in self.kernel_size) or self.stride != (1, 1, 1)):
            raise ValueError(
                "DepthwiseSparseConv3d: a submanifold layer needs odd kernel sizes and stride 1"
            )
        volume = math.prod(self.kernel_size)
        self.weight = nn.Parameter(torch.empty(volume, channels))
        self.bias = nn.Parameter(torch.empty(channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[0])  # fan-in of one channel's kernel
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def geometry(self) -> tuple:
        return (self.kernel_size, self.stride, self.padding, self.dilation, self.subm)

    def extra_repr(self) -> str:
        text = f"{self.channels}, kernel_size={self.kernel_size}"
        if not self.subm:
            text += f", stride={self.stride}, padding={self.padding}"
        if self.dilation != (1, 1, 1):
            text += f", dilation={self.dilation}"
        text += f", subm={self.subm}, bias={self.bias is not None}"
        return text + (f", indice_key={self.indice_key!r}" if self.indice_key else "")

    def conv_map(self, input: SparseTensor) -> SparseConvMap:
        """This layer's kernel map on ``input``: cached under its ``indice_key``, or built."""
        key = None if self.indice_key is None else CACHE_PREFIX + self.indice_key
        cached = input.indice_dict.get(key) if key is not None else None
        if cached is not None:
            if (
                cached.geometry != self.geometry
                or cached.spatial_shape != list(input.spatial_shape)
                or not (
                    cached.in_indices is input.indices
                    or torch.equal(cached.in_indices, input.indices)
                )
            ):
                raise ValueError(
                    f"DepthwiseSparseConv3d: indice_key {self.indice_key!r} holds a kernel map "
                    f"of another geometry or other sites ({cached.geometry}, grid "
                    f"{cached.spatial_shape}, {len(cached.in_indices)} inputs); this layer: "
                    f"{self.geometry}, grid {input.spatial_shape}, {len(input.indices)} inputs"
                )
            return cached.conv_map
        return build_kernel_map(
            input.indices,
            input.spatial_shape,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            subm=self.subm,
        )

    def forward(self, input: SparseTensor) -> SparseTensor:
        if input.features.ndim != 2 or input.features.shape[1] != self.channels:
            raise ValueError(
                f"DepthwiseSparseConv3d: expected ({len(input.indices)}, {self.channels}) "
                f"features, got {tuple(input.features.shape)}"
            )
        conv_map = self.conv_map(input)
        features = depthwise_sparse_conv(input.features, self.weight, conv_map.kernel_map)
        if self.bias is not None:
            features = features + self.bias
        out = input.replace_feature(features)
        out.indices, out.spatial_shape = conv_map.out_indices, list(conv_map.out_spatial_shape)
        # A new dict, as spconv's layers make: the input tensor's own dict is left as it was.
        out.indice_dict = dict(input.indice_dict)
        if self.indice_key is not None:
            key = CACHE_PREFIX + self.indice_key
            out.indice_dict[key] = _Cached(
                conv_map, self.geometry, list(input.spatial_shape), input.indices
            )
        return out


class DepthwiseSubMConv3d(DepthwiseSparseConv3d):
    """:class:`DepthwiseSparseConv3d` with ``subm=True``: the depthwise ``SubMConv3d``."""

    def __init__(
        self,
        channels: int,
        kernel_size: int | Sequence[int] = 3,
        *,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        bias: bool = False,
        indice_key: str | None = None,
    ) -> None:
        super().__init__(
            channels,
            kernel_size,
            padding=padding,
            dilation=dilation,
            subm=True,
            bias=bias,
            indice_key=indice_key,
        )


__all__ = ["DepthwiseSparseConv3d", "DepthwiseSubMConv3d"]
