"""Parameters and multiply-adds of a sparse network on a real input.

A sparse convolution costs ``pairs * C_in * C_out`` multiply-adds, where ``pairs`` counts the
(output, offset) entries of its kernel map that hold an input; a depthwise one ``pairs * C``; a
linear (pointwise) layer ``rows * in * out``. The counts are taken by running the model once with
forward hooks and rebuilding each convolution's kernel map (:func:`pcseg.ops.build_kernel_map`)
from the sites it saw; a transposed (inverse) convolution reuses the pairs of the strided
convolution that shares its ``indice_key``. Normalisation, activations and additions are left
out, as is usual for these counts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pcseg.models.depthwise import DepthwiseSparseConv3d
from pcseg.models.sparse import spconv
from pcseg.ops import build_kernel_map

_SPARSE_CONVS = (spconv.SubMConv3d, spconv.SparseConv3d, spconv.SparseInverseConv3d)


def _pairs(module: nn.Module, tensor: spconv.SparseConvTensor) -> int:
    subm = bool(module.subm)
    conv_map = build_kernel_map(
        tensor.indices,
        tensor.spatial_shape,
        module.kernel_size,
        stride=1 if subm else module.stride,
        padding=0 if subm else module.padding,
        dilation=module.dilation,
        subm=subm,
    )
    return int((conv_map.kernel_map.neighbours >= 0).sum())


def count_multiply_adds(model: nn.Module, run: Callable[[], object]) -> dict[str, int]:
    """Multiply-adds of ``model`` while ``run()`` makes one forward pass, by layer kind:
    ``conv`` (dense-channel sparse convolutions), ``depthwise``, ``linear`` and ``total``."""
    counts = {"conv": 0, "depthwise": 0, "linear": 0}
    strided_pairs: dict[str, int] = {}

    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        if isinstance(module, DepthwiseSparseConv3d):
            counts["depthwise"] += _pairs(module, inputs[0]) * module.channels
        elif isinstance(module, _SPARSE_CONVS):
            if module.inverse:
                pairs = strided_pairs[module.indice_key]
            else:
                pairs = _pairs(module, inputs[0])
                if not module.subm and module.indice_key:
                    strided_pairs[module.indice_key] = pairs
            counts["conv"] += pairs * module.in_channels * module.out_channels
        elif isinstance(module, nn.Linear):
            rows = inputs[0].reshape(-1, module.in_features).shape[0]
            counts["linear"] += rows * module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return {**counts, "total": sum(counts.values())}
