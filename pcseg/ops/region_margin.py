"""Region margins for active learning: each region's mean class probabilities and the gap between
its two most likely classes (a small margin marks an uncertain region, worth labelling).

Spec (shared by the PyTorch reference and the compiled kernels):

- Inputs: ``probs`` float32 (N, K), K >= 2, class probabilities of N elements (points or
  voxels); ``parent`` int64 (N,), the region of each element, in [0, M); ``num_regions`` M >= 0.
- ``region_probs`` float32 (M, K): row r is the mean of the ``probs`` rows whose parent is r,
  summed and divided in float64 and rounded once to float32. A region without children gets a
  zero row. (The kernels add in ascending element order; float64 keeps any other order within
  about one float32 rounding of that.)
- ``margin`` float32 (M,): top-1 minus top-2 of each ``region_probs`` row, subtracted in
  float32. A repeated maximum counts twice, so two equal maxima give 0; an empty region gives 0.

Not differentiable: the margins rank regions for labelling and are never a training signal, so
both paths detach ``probs`` and the compiled op registers no autograd formula. Probabilities are
expected to be finite and are not checked (the check would read as much as the op does).
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from pcseg.ops._ext import has_kernel


def _check_args(probs: Tensor, parent: Tensor, num_regions: int) -> int:
    """Validate :func:`region_margin` arguments once, for kernels and reference alike; returns M."""
    if probs.ndim != 2 or probs.dtype != torch.float32 or probs.shape[1] < 2:
        raise ValueError(
            f"region_margin: probs must be float32 (N, K) with K >= 2, "
            f"got {probs.dtype} {tuple(probs.shape)}"
        )
    if parent.dtype != torch.long or parent.shape != (len(probs),):
        raise ValueError(
            f"region_margin: parent must be int64 ({len(probs)},) like probs, "
            f"got {parent.dtype} {tuple(parent.shape)}"
        )
    if parent.device != probs.device:
        raise ValueError(f"region_margin: probs on {probs.device}, parent on {parent.device}")
    if (
        isinstance(num_regions, bool)
        or not isinstance(num_regions, numbers.Integral)
        or num_regions < 0
    ):
        raise ValueError(f"region_margin: num_regions must be an integer >= 0, got {num_regions!r}")
    num_regions = int(num_regions)
    if len(parent):
        low, high = (v.item() for v in torch.aminmax(parent))
        if low < 0 or high >= num_regions:
            raise ValueError(
                f"region_margin: parent values must lie in [0, {num_regions}), got [{low}, {high}]"
            )
    return num_regions


def _region_margin(probs: Tensor, parent: Tensor, num_regions: int) -> tuple[Tensor, Tensor]:
    """The spec on checked arguments."""
    sums = torch.zeros(num_regions, probs.shape[1], dtype=torch.float64, device=probs.device)
    sums.index_add_(0, parent, probs.detach().double())
    counts = torch.bincount(parent, minlength=num_regions).clamp_min_(1)
    region_probs = (sums / counts[:, None].double()).float()
    top = region_probs.topk(2, dim=1).values
    return region_probs, top[:, 0] - top[:, 1]


def region_margin_reference(
    probs: Tensor, parent: Tensor, num_regions: int
) -> tuple[Tensor, Tensor]:
    """Pure-PyTorch spec of ``region_margin`` (see the module docstring).

    Returns:
        region_probs float32 (M, K), margin float32 (M,).
    """
    num_regions = _check_args(probs, parent, num_regions)
    return _region_margin(probs, parent, num_regions)


def region_margin(probs: Tensor, parent: Tensor, num_regions: int) -> tuple[Tensor, Tensor]:
    """Mean class probabilities of every region and their top-1 minus top-2 margin.

    Args:
        probs: float32 (N, K), K >= 2, class probabilities of the elements.
        parent: int64 (N,) region of each element, in [0, M).
        num_regions: M, the number of regions (regions without elements get zeros).

    Returns:
        region_probs float32 (M, K) and margin float32 (M,); neither carries a gradient.
    """
    num_regions = _check_args(probs, parent, num_regions)
    if has_kernel(probs.device):
        return torch.ops.pcseg.region_margin(probs.detach(), parent, num_regions)
    return _region_margin(probs, parent, num_regions)
