"""Superpixel pooling for image-to-LiDAR distillation: the mean feature of each superpixel, over
the points that project into it or over its pixels.

Spec (shared by the PyTorch reference and the compiled kernels):

- Inputs: ``feat`` floating (N, C), the rows to pool (point features, or pixel features laid out
  one row per pixel); ``index`` int64 (P,), the row of each pairing, in [0, N) (a row may appear
  in several pairings, e.g. a point seen by two cameras); ``segment`` int64 (P,), the superpixel
  of each pairing, in [0, S) (ids made unique across samples and cameras by the caller);
  ``num_segments`` S >= 0.
- ``mean`` (S, C), dtype of ``feat``: row s is the sum of ``feat[index[p]]`` over the pairings p
  with ``segment[p] == s``, added in ascending p, divided once by their number; a segment without
  pairings gets a zero row (callers drop those segments with ``count``).
- ``count`` int64 (S,): pairings per segment.
- Gradient: d mean[s] / d feat[i] = (number of pairings of s on row i) / count[s]; the kernels
  add each row's share in ascending p, with no atomics, so both directions are deterministic.

Means are of the given rows, not re-normalised: SLidR averages L2-normalised features and uses
the averages as they are.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from pcseg.ops._ext import has_kernel


def _check_range(name: str, values: Tensor, size: int) -> None:
    if len(values):
        low, high = (v.item() for v in torch.aminmax(values))
        if low < 0 or high >= size:
            raise ValueError(
                f"superpixel_pool: {name} values must lie in [0, {size}), got [{low}, {high}]"
            )


def _check_args(feat: Tensor, index: Tensor, segment: Tensor, num_segments: int) -> int:
    """Validate :func:`superpixel_pool` arguments once, for kernels and reference alike."""
    if feat.ndim != 2 or not feat.is_floating_point():
        raise ValueError(
            f"superpixel_pool: feat must be a floating (N, C) tensor, got "
            f"{feat.dtype} {tuple(feat.shape)}"
        )
    if index.dtype != torch.long or index.ndim != 1:
        raise ValueError(
            f"superpixel_pool: index must be int64 (P,), got {index.dtype} {tuple(index.shape)}"
        )
    if segment.dtype != torch.long or segment.shape != index.shape:
        raise ValueError(
            f"superpixel_pool: segment must be int64 {tuple(index.shape)} like index, got "
            f"{segment.dtype} {tuple(segment.shape)}"
        )
    if index.device != feat.device or segment.device != feat.device:
        raise ValueError("superpixel_pool: feat, index and segment must share a device")
    if (
        isinstance(num_segments, bool)
        or not isinstance(num_segments, numbers.Integral)
        or num_segments < 0
    ):
        raise ValueError(
            f"superpixel_pool: num_segments must be an integer >= 0, got {num_segments!r}"
        )
    _check_range("index", index, len(feat))
    _check_range("segment", segment, int(num_segments))
    return int(num_segments)


def superpixel_pool_reference(
    feat: Tensor, index: Tensor, segment: Tensor, num_segments: int
) -> tuple[Tensor, Tensor]:
    """Pure-PyTorch spec of ``superpixel_pool`` (see the module docstring); differentiable."""
    num_segments = _check_args(feat, index, segment, num_segments)
    count = torch.bincount(segment, minlength=num_segments)
    sums = feat.new_zeros(num_segments, feat.shape[1]).index_add(0, segment, feat[index])
    return sums / count.clamp_min(1)[:, None].to(feat.dtype), count


def superpixel_pool(
    feat: Tensor, index: Tensor, segment: Tensor, num_segments: int
) -> tuple[Tensor, Tensor]:
    """Mean of ``feat[index]`` per segment, and the number of pairings of each segment.

    Args:
        feat: floating (N, C) rows to pool.
        index: int64 (P,) row of each pairing, in [0, N).
        segment: int64 (P,) superpixel of each pairing, in [0, S).
        num_segments: S.

    Returns:
        mean (S, C) (zero rows for segments without pairings; differentiable in ``feat``) and
        count int64 (S,).
    """
    num_segments = _check_args(feat, index, segment, num_segments)
    if has_kernel(feat.device):
        return torch.ops.pcseg.superpixel_pool(feat, index, segment, num_segments)
    return superpixel_pool_reference(feat, index, segment, num_segments)
