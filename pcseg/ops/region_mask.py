"""Contextual region masking (CPCM): zero the features of voxels in randomly chosen boxes.

Each sample of a batch is cut into ``g x g x g`` boxes by rank quantiles of its own voxel
coordinates, so every box holds a similar share of the sample's occupied rows, columns and
layers however the scan is spread in space, and a chosen subset of boxes is masked.

Spec (shared by the PyTorch reference and the compiled kernels):

- Inputs: ``coords`` int32 (V, 4) sparse voxel coordinates ``(batch, x, y, z)`` as produced by
  :func:`pcseg.data.collate.collate` (samples may come in any order); ``feat`` float (V, C);
  ``grid`` g >= 1; ``chosen`` bool (B, g^3), the masked boxes of each sample, where
  B = max batch index + 1 (any B when V = 0).
- Per sample b and axis a: u = the sorted unique values of that axis among the sample's voxels,
  n = len(u), stride s = max(n // g, 1), inner pivots p_k = u[min(k * s, n - 1)] for
  k = 1 .. g - 1. A voxel's bin along the axis is the number of inner pivots strictly less than
  its coordinate: the bins are (p_k, p_{k+1}], and the first bin also holds everything <= p_1.
  When g > n some bins stay empty.
- region = (bin_x * g + bin_y) * g + bin_z in [0, g^3); masked = chosen[b, region].
- Output: ``(masked_feat, region int64 (V,), masked bool (V,))``; ``masked_feat`` is a new
  tensor equal to ``feat`` with every channel of the masked voxels set to 0 (unmasked rows are
  bit-identical copies). Coordinates are not touched.

``masked_feat`` is differentiable with respect to ``feat``: the gradient passes unchanged
through unmasked rows and is 0 on masked ones (registered for the compiled op, and
``masked_fill``'s own gradient for the reference).
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from pcseg.ops._ext import has_kernel

_LOW_32_BITS = 0xFFFFFFFF


def _check_grid(op: str, grid: int) -> int:
    """g as a Python int; NumPy integers are accepted, bools and floats are not."""
    if isinstance(grid, bool) or not isinstance(grid, numbers.Integral) or grid < 1:
        raise ValueError(f"{op}: grid must be an integer >= 1, got {grid!r}")
    return int(grid)


def _check_args(coords: Tensor, feat: Tensor, grid: int, chosen: Tensor) -> int:
    """Validate :func:`region_mask` arguments once, for kernels and reference alike; returns g."""
    if coords.ndim != 2 or coords.shape[1] != 4 or coords.dtype != torch.int32:
        raise ValueError(
            f"region_mask: coords must be int32 (V, 4), got {coords.dtype} {tuple(coords.shape)}"
        )
    if feat.ndim != 2 or len(feat) != len(coords) or not feat.is_floating_point():
        raise ValueError(
            f"region_mask: feat must be float ({len(coords)}, C) like coords, "
            f"got {feat.dtype} {tuple(feat.shape)}"
        )
    if feat.device != coords.device:
        raise ValueError(f"region_mask: feat on {feat.device}, coords on {coords.device}")
    grid = _check_grid("region_mask", grid)
    boxes = grid**3
    if len(coords) == 0:
        batch_size = len(chosen) if chosen.ndim == 2 else 0
    else:
        low, high = torch.aminmax(coords[:, 0])
        if low.item() < 0:
            raise ValueError(f"region_mask: coords has a negative batch index ({low.item()})")
        batch_size = high.item() + 1
    if chosen.dtype != torch.bool or tuple(chosen.shape) != (batch_size, boxes):
        raise ValueError(
            f"region_mask: chosen must be bool (B, g^3) = ({batch_size}, {boxes}) "
            f"(B = max batch index + 1), got {chosen.dtype} {tuple(chosen.shape)}"
        )
    return grid


def _axis_pivots(batch: Tensor, values: Tensor, grid: int, batch_size: int) -> Tensor:
    """(B, g - 1) inner pivots of one axis for every sample (rows of absent samples unused).

    One sorted unique over keys ``batch << 32 | (value - min)`` gives every sample's sorted
    unique values, one sample after the other.
    """
    low = values.min()
    unique = torch.unique((batch << 32) | (values - low), sorted=True)
    counts = torch.bincount(unique >> 32, minlength=batch_size)
    starts = counts.cumsum(0) - counts
    stride = (counts // grid).clamp_min(1)
    k = torch.arange(1, grid, device=values.device)
    rank = torch.minimum(k[None, :] * stride[:, None], (counts - 1).clamp_min(0)[:, None])
    index = (starts[:, None] + rank).clamp_max(len(unique) - 1)
    return (unique[index] & _LOW_32_BITS) + low


def _region_mask(coords: Tensor, feat: Tensor, grid: int, chosen: Tensor) -> tuple[Tensor, ...]:
    """The spec on checked arguments (``chosen`` on the device of ``coords``)."""
    batch = coords[:, 0].long()
    region = torch.zeros(len(coords), dtype=torch.long, device=coords.device)
    for axis in (1, 2, 3):
        values = coords[:, axis].long()
        if len(values):
            pivots = _axis_pivots(batch, values, grid, len(chosen))
            region = region * grid + (pivots[batch] < values[:, None]).sum(1)
    masked = chosen[batch, region]
    return feat.masked_fill(masked[:, None], 0), region, masked


def region_mask_reference(
    coords: Tensor, feat: Tensor, grid: int, chosen: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Pure-PyTorch spec of ``region_mask`` (see the module docstring).

    Returns:
        masked_feat (V, C), region int64 (V,), masked bool (V,).
    """
    grid = _check_args(coords, feat, grid, chosen)
    return _region_mask(coords, feat, grid, chosen.to(coords.device))


def region_mask(
    coords: Tensor, feat: Tensor, grid: int, chosen: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Zero the features of the voxels that fall in each sample's chosen boxes.

    Args:
        coords: int32 (V, 4) ``(batch, x, y, z)`` voxel coordinates.
        feat: float (V, C) voxel features.
        grid: g, boxes per axis (g^3 per sample).
        chosen: bool (B, g^3) masked boxes of each sample, e.g. from
            :func:`draw_masked_regions`; moved to the device of ``coords`` if needed.

    Returns:
        masked_feat (V, C), differentiable w.r.t. ``feat``; region int64 (V,) box of each
        voxel; masked bool (V,).
    """
    grid = _check_args(coords, feat, grid, chosen)
    chosen = chosen.to(coords.device)
    if has_kernel(coords.device):
        return torch.ops.pcseg.region_mask(coords, feat, grid, chosen)
    return _region_mask(coords, feat, grid, chosen)


def draw_masked_regions(
    batch_size: int, grid: int, ratio: float, generator: torch.Generator | None = None
) -> Tensor:
    """Choose exactly ``int(g^3 * ratio)`` boxes per sample, uniformly without replacement.

    Args:
        batch_size: B, samples in the batch.
        grid: g, boxes per axis.
        ratio: share of the g^3 boxes to mask, in [0, 1].
        generator: source of the draw (one ``randperm`` per sample, in sample order); torch's
            default CPU generator when omitted.

    Returns:
        bool (B, g^3) on the generator's device (the CPU without one).
    """
    grid = _check_grid("draw_masked_regions", grid)
    if not (isinstance(ratio, numbers.Real) and 0 <= ratio <= 1):  # False for NaN too
        raise ValueError(f"draw_masked_regions: ratio must lie in [0, 1], got {ratio!r}")
    if not isinstance(batch_size, numbers.Integral) or batch_size < 0:
        raise ValueError(f"draw_masked_regions: batch_size must be >= 0, got {batch_size}")
    boxes = grid**3
    count = int(boxes * ratio)
    device = generator.device if generator is not None else torch.device("cpu")
    chosen = torch.zeros(batch_size, boxes, dtype=torch.bool, device=device)
    for row in chosen:
        row[torch.randperm(boxes, generator=generator, device=device)[:count]] = True
    return chosen
