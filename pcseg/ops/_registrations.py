"""Fake (shape-only) kernels and autograd formulas for the ops of ``pcseg._C``.

They let ``torch.compile`` trace the ops and make ``segment_mean``, ``region_mask``,
``depthwise_sparse_conv`` and ``superpixel_pool`` differentiable through the dispatcher itself
(``region_margin`` and ``suppressed_selection`` feed selection scores and indices, and have no
gradient). Imported once,
right after ``pcseg._C`` loads.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.library.register_fake("pcseg::voxelize")
def _voxelize_fake(
    coord: Tensor, batch: Tensor, voxel_size: list[float], origin: list[float]
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    voxels = torch.library.get_ctx().new_dynamic_size()
    n = coord.shape[0]
    return (
        coord.new_empty(voxels, 4, dtype=torch.int32),
        coord.new_empty(n, dtype=torch.long),
        coord.new_empty(voxels, dtype=torch.long),
        coord.new_empty(n, dtype=torch.long),
        torch.empty(3, dtype=torch.float64),
    )


@torch.library.register_fake("pcseg::segment_mean")
def _segment_mean_fake(feat: Tensor, order: Tensor, offsets: Tensor) -> Tensor:
    return feat.new_empty(offsets.shape[0] - 1, feat.shape[1])


def _segment_mean_setup(ctx, inputs, output) -> None:
    feat, order, offsets = inputs
    ctx.save_for_backward(order, offsets)
    ctx.num_points = feat.shape[0]


def _segment_mean_backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
    order, offsets = ctx.saved_tensors
    counts = offsets.diff()
    per_point = grad / counts.clamp_min(1)[:, None].to(grad.dtype)
    out = grad.new_zeros(ctx.num_points, grad.shape[1])
    out[order] = per_point.repeat_interleave(counts, dim=0)
    return out, None, None


torch.library.register_autograd(
    "pcseg::segment_mean", _segment_mean_backward, setup_context=_segment_mean_setup
)


@torch.library.register_fake("pcseg::region_mask")
def _region_mask_fake(
    coords: Tensor, feat: Tensor, grid: int, chosen: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    v = coords.shape[0]
    return (
        torch.empty_like(feat, memory_format=torch.contiguous_format),
        coords.new_empty(v, dtype=torch.long),
        coords.new_empty(v, dtype=torch.bool),
    )


def _region_mask_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(output[2])


def _region_mask_backward(
    ctx, grad: Tensor, _grad_region: Tensor | None, _grad_masked: Tensor | None
) -> tuple[None, Tensor, None, None]:
    # A masked row is a constant 0, an unmasked one a copy: the gradient is grad, masked.
    (masked,) = ctx.saved_tensors
    return None, grad.masked_fill(masked[:, None], 0), None, None


torch.library.register_autograd(
    "pcseg::region_mask", _region_mask_backward, setup_context=_region_mask_setup
)


@torch.library.register_fake("pcseg::region_margin")
def _region_margin_fake(probs: Tensor, parent: Tensor, num_regions: int) -> tuple[Tensor, Tensor]:
    return probs.new_empty(num_regions, probs.shape[1]), probs.new_empty(num_regions)


@torch.library.register_fake("pcseg::suppressed_selection")
def _suppressed_selection_fake(
    coord: Tensor,
    feat: Tensor,
    score: Tensor,
    scene: Tensor,
    labelled: Tensor,
    budget: int,
    radius: float,
    cos_threshold: float,
) -> Tensor:
    # How many points survive the suppression depends on the data.
    chosen = torch.library.get_ctx().new_dynamic_size()
    return coord.new_empty(chosen, dtype=torch.long)


@torch.library.register_fake("pcseg::depthwise_sparse_conv")
def _depthwise_sparse_conv_fake(
    features: Tensor, weight: Tensor, neighbours: Tensor, transposed: Tensor
) -> Tensor:
    return features.new_empty(neighbours.shape[0], features.shape[1])


@torch.library.register_fake("pcseg::depthwise_sparse_conv_weight_grad")
def _depthwise_sparse_conv_weight_grad_fake(
    grad_out: Tensor, features: Tensor, neighbours: Tensor, transposed: Tensor
) -> Tensor:
    return features.new_empty(neighbours.shape[1], features.shape[1])


# Both gradients of the depthwise convolution are depthwise convolutions over the same map (the
# feature gradient gathers through the transposed table), so these formulas are differentiable
# again: second derivatives come for free.
def _depthwise_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _depthwise_backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
    features, weight, neighbours, transposed = ctx.saved_tensors
    grad_features = grad_weight = None
    if ctx.needs_input_grad[0]:
        grad_features = torch.ops.pcseg.depthwise_sparse_conv(grad, weight, transposed, neighbours)
    if ctx.needs_input_grad[1]:
        grad_weight = torch.ops.pcseg.depthwise_sparse_conv_weight_grad(
            grad, features, neighbours, transposed
        )
    return grad_features, grad_weight, None, None


torch.library.register_autograd(
    "pcseg::depthwise_sparse_conv", _depthwise_backward, setup_context=_depthwise_setup
)


def _weight_grad_backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
    # d/d grad_out of sum_o grad_out[o] * features[nb[o, k]] is a convolution of the features
    # with the incoming (K, C) gradient as weight; d/d features the same over the transpose.
    grad_out, features, neighbours, transposed = ctx.saved_tensors
    grad_grad_out = grad_features = None
    if ctx.needs_input_grad[0]:
        grad_grad_out = torch.ops.pcseg.depthwise_sparse_conv(
            features, grad, neighbours, transposed
        )
    if ctx.needs_input_grad[1]:
        grad_features = torch.ops.pcseg.depthwise_sparse_conv(
            grad_out, grad, transposed, neighbours
        )
    return grad_grad_out, grad_features, None, None


torch.library.register_autograd(
    "pcseg::depthwise_sparse_conv_weight_grad",
    _weight_grad_backward,
    setup_context=_depthwise_setup,
)


@torch.library.register_fake("pcseg::superpixel_pool")
def _superpixel_pool_fake(
    feat: Tensor, index: Tensor, segment: Tensor, num_segments: int
) -> tuple[Tensor, Tensor]:
    return feat.new_empty(num_segments, feat.shape[1]), feat.new_empty(
        num_segments, dtype=torch.long
    )


@torch.library.register_fake("pcseg::superpixel_pool_backward")
def _superpixel_pool_backward_fake(
    grad: Tensor, count: Tensor, index: Tensor, segment: Tensor, num_rows: int
) -> Tensor:
    return grad.new_empty(num_rows, grad.shape[1])


def _superpixel_pool_setup(ctx, inputs, output) -> None:
    feat, index, segment, _ = inputs
    ctx.save_for_backward(output[1], index, segment)
    ctx.num_rows = feat.shape[0]


def _superpixel_pool_backward(
    ctx, grad: Tensor, _grad_count: Tensor | None
) -> tuple[Tensor, None, None, None]:
    count, index, segment = ctx.saved_tensors
    grad_feat = torch.ops.pcseg.superpixel_pool_backward(
        grad.contiguous(), count, index, segment, ctx.num_rows
    )
    return grad_feat, None, None, None


torch.library.register_autograd(
    "pcseg::superpixel_pool", _superpixel_pool_backward, setup_context=_superpixel_pool_setup
)
