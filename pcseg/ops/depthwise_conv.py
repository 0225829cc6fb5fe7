"""Depthwise sparse convolution: every channel convolved with its own 3-D kernel over a kernel map.

spconv has no grouped convolution (its layers assert ``groups == 1``), and LiM3D's SDSC layers
need one; this is it. Spec (shared by the PyTorch reference and the compiled kernels):

- Inputs: ``features`` (N_in, C) float32 or float64; ``weight`` (K, C) of the same dtype, row
  ``k`` the per-channel weights of kernel offset ``k``; a :class:`~pcseg.ops.kernel_map.KernelMap`
  (``neighbours`` (N_out, K), -1 for an empty site, and its transpose).
- Output (N_out, C): ``out[o, c] = sum_k weight[k, c] * features[neighbours[o, k], c]`` over the
  offsets with a neighbour, added in ascending ``k`` (an output without neighbours is 0).
- Gradients: for the features, the same gather over the transposed map (``grad_out`` through
  ``transposed`` with the same weights); for the weight, ``sum_o grad_out[o, c] *
  features[neighbours[o, k], c]``, added in fixed blocks of 128 outputs, then over the blocks in
  float64. No atomics anywhere, so every result is bitwise reproducible run to run on each device,
  whatever the thread count. Both gradients are themselves depthwise convolutions over the map,
  so second derivatives exist too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pcseg.ops._ext import has_kernel
from pcseg.ops.kernel_map import KernelMap

_DTYPES = (torch.float32, torch.float64)


def _check_args(features: Tensor, weight: Tensor, kernel_map: KernelMap | Tensor) -> KernelMap:
    """Validate arguments once, for kernels and reference alike; returns the kernel map (built
    from a bare neighbour table, which checks it)."""
    if features.ndim != 2 or features.dtype not in _DTYPES:
        raise ValueError(
            f"depthwise_sparse_conv: features must be float32 or float64 (N, C), "
            f"got {features.dtype} {tuple(features.shape)}"
        )
    if not isinstance(kernel_map, KernelMap):
        if not isinstance(kernel_map, Tensor):
            raise ValueError(
                "depthwise_sparse_conv: kernel_map must be a KernelMap or an int64 (N_out, K) "
                f"neighbour table, got {type(kernel_map).__name__}"
            )
        kernel_map = KernelMap(kernel_map, len(features))
    kernel = kernel_map.kernel_volume
    if weight.dtype != features.dtype or weight.shape != (kernel, features.shape[1]):
        raise ValueError(
            f"depthwise_sparse_conv: weight must be (K, C) = ({kernel}, {features.shape[1]}) "
            f"in the features' dtype {features.dtype}, got {weight.dtype} {tuple(weight.shape)}"
        )
    if kernel_map.num_inputs != len(features):
        raise ValueError(
            f"depthwise_sparse_conv: the kernel map has {kernel_map.num_inputs} inputs, "
            f"features {len(features)} rows"
        )
    devices = {features.device, weight.device, kernel_map.neighbours.device}
    if len(devices) > 1:
        raise ValueError(
            f"depthwise_sparse_conv: features on {features.device}, weight on {weight.device}, "
            f"kernel map on {kernel_map.neighbours.device}"
        )
    return kernel_map


def _depthwise_sparse_conv(features: Tensor, weight: Tensor, neighbours: Tensor) -> Tensor:
    """The spec on checked arguments, differentiable by autograd."""
    out = features.new_zeros(len(neighbours), features.shape[1])
    for k in range(neighbours.shape[1]):  # kernel offsets (27 for 3x3x3), never points
        index = neighbours[:, k]
        rows = (index >= 0).nonzero()[:, 0]
        # For one offset every output row appears once, so the additions never collide.
        out = out.index_add(0, rows, features[index[rows]] * weight[k])
    return out


def depthwise_sparse_conv_reference(
    features: Tensor, weight: Tensor, kernel_map: KernelMap | Tensor
) -> Tensor:
    """Pure-PyTorch spec of :func:`depthwise_sparse_conv` (see the module docstring)."""
    kernel_map = _check_args(features, weight, kernel_map)
    return _depthwise_sparse_conv(features, weight, kernel_map.neighbours)


def depthwise_sparse_conv(
    features: Tensor, weight: Tensor, kernel_map: KernelMap | Tensor
) -> Tensor:
    """Per-channel sparse convolution, differentiable in ``features`` and ``weight``.

    Args:
        features: (N_in, C) float32 or float64.
        weight: (K, C), same dtype; row k holds offset k's weight for every channel.
        kernel_map: a :class:`KernelMap` (from :func:`~pcseg.ops.build_kernel_map`, or
            ``KernelMap(neighbours, N_in)``), or a bare (N_out, K) int64 neighbour table, which is
            checked and transposed on every call (build a ``KernelMap`` once to avoid that).

    Returns:
        (N_out, C) features of the outputs, in the kernel map's output order.
    """
    kernel_map = _check_args(features, weight, kernel_map)
    if has_kernel(features.device):
        return torch.ops.pcseg.depthwise_sparse_conv(
            features, weight, kernel_map.neighbours, kernel_map.transposed
        )
    return _depthwise_sparse_conv(features, weight, kernel_map.neighbours)


__all__ = ["depthwise_sparse_conv", "depthwise_sparse_conv_reference"]
