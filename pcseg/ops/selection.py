"""Feature-distance suppression for active learning (HPAL): choose the most uncertain points
greedily, skipping any point that is close both in space and in feature space to one already
chosen, so a labelling budget is not spent on near-duplicates.

Spec (shared by the PyTorch reference and the compiled kernels):

- Inputs: ``coord`` float32 (N, 3) metres; ``feat`` float32 (N, F); ``score`` float32 (N,),
  lower = more uncertain = considered first; ``scene`` int64 (N,) scene id of each point;
  ``labelled`` bool (N,); ``budget`` >= 0; ``radius`` > 0; ``cos_threshold`` in [-1, 1].
  Coordinates and scores must be finite, and max |coord| / radius < 2^30 (the kernels hash
  points by cells of about the radius; their indices must stay exact).
- Walk the points in ascending score, ties broken by lower index (the order of a stable
  ascending argsort, in which -0.0 equals +0.0). Skip a labelled point. Skip a point p if some
  point q already chosen in this call, in the same scene, has distance(p, q) < radius and
  cosine(p, q) > cos_threshold (both strict). Otherwise choose p. Stop once ``budget`` points
  are chosen or the points run out.
- distance = sqrt(dx^2 + dy^2 + dz^2) and cosine = dot(a, b) / (|a| |b|), or 0 when either norm
  is 0, evaluated in float64 from the float32 inputs with each sum added left to right (x, y, z;
  feature 0 .. F - 1) and every operation rounded on its own: kernels and reference then decide
  a pair on the boundary (distance exactly the radius, cosine exactly the threshold) alike.
- Output: int64 (min(budget, possible),) indices of the chosen points, in the order chosen.

The result is a set of indices: nothing here is differentiable.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator

import torch
from torch import Tensor

from pcseg.ops._ext import has_kernel

_MAX_CELL_INDEX = 2**30  # max |coord| / radius; csrc/selection.h, kMaxCellIndex
_WALK_BLOCK = 1024  # candidates moved to Python at a time by the reference
_DTYPE_NAMES = {torch.float32: "float32", torch.int64: "int64", torch.bool: "bool"}


def _check_tensors(
    coord: Tensor, feat: Tensor, score: Tensor, scene: Tensor, labelled: Tensor
) -> None:
    n = len(coord)
    if coord.ndim != 2 or coord.shape[1] != 3 or coord.dtype != torch.float32:
        raise ValueError(
            f"suppressed_selection: coord must be float32 (N, 3), "
            f"got {coord.dtype} {tuple(coord.shape)}"
        )
    if feat.ndim != 2 or len(feat) != n or feat.dtype != torch.float32:
        raise ValueError(
            f"suppressed_selection: feat must be float32 ({n}, F) like coord, "
            f"got {feat.dtype} {tuple(feat.shape)}"
        )
    vectors = {"score": torch.float32, "scene": torch.int64, "labelled": torch.bool}
    for (name, dtype), tensor in zip(vectors.items(), (score, scene, labelled), strict=True):
        if tensor.dtype != dtype or tensor.shape != (n,):
            raise ValueError(
                f"suppressed_selection: {name} must be {_DTYPE_NAMES[dtype]} ({n},), "
                f"got {tensor.dtype} {tuple(tensor.shape)}"
            )
    for name, tensor in zip(("feat", *vectors), (feat, score, scene, labelled), strict=True):
        if tensor.device != coord.device:
            raise ValueError(
                f"suppressed_selection: {name} on {tensor.device}, coord on {coord.device}"
            )
    if n >= 2**32:
        raise ValueError(f"suppressed_selection: at most 2^32 - 1 points, got {n}")


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_scalars(budget: int, radius: float, cos_threshold: float) -> tuple[int, float, float]:
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget < 0:
        raise ValueError(f"suppressed_selection: budget must be an integer >= 0, got {budget!r}")
    if not _is_real(radius) or not 0 < radius < math.inf:  # False for NaN too
        raise ValueError(f"suppressed_selection: radius must be finite and > 0, got {radius!r}")
    if not _is_real(cos_threshold) or not -1 <= cos_threshold <= 1:
        raise ValueError(
            f"suppressed_selection: cos_threshold must lie in [-1, 1], got {cos_threshold!r}"
        )
    return int(budget), float(radius), float(cos_threshold)


def _check_values(coord: Tensor, score: Tensor, radius: float) -> None:
    """Finite coordinates within the hash range and finite scores (one reduction each)."""
    if len(coord) == 0:
        return
    low, high = (v.item() for v in torch.aminmax(coord))  # NaN anywhere gives NaN
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("suppressed_selection: coord contains NaN or inf")
    if max(-low, high) / radius >= _MAX_CELL_INDEX:
        raise ValueError(
            f"suppressed_selection: max |coord| / radius must be < 2^30, got "
            f"{max(-low, high)} / {radius}; use coordinates in metres or a larger radius"
        )
    low, high = (v.item() for v in torch.aminmax(score))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("suppressed_selection: score contains NaN or inf")


def _check_args(
    coord: Tensor,
    feat: Tensor,
    score: Tensor,
    scene: Tensor,
    labelled: Tensor,
    budget: int,
    radius: float,
    cos_threshold: float,
) -> tuple[int, float, float]:
    """Validate :func:`suppressed_selection` arguments once, for kernels and reference alike.

    Returns budget (capped at N, which changes nothing and keeps it within int64), radius and
    cos_threshold as Python numbers.
    """
    _check_tensors(coord, feat, score, scene, labelled)
    budget, radius, cos_threshold = _check_scalars(budget, radius, cos_threshold)
    _check_values(coord, score, radius)
    return min(budget, len(coord)), radius, cos_threshold


def _sum_in_order(products: Tensor) -> Tensor:
    """Row sums of float64 (m, C), added one column at a time from the left, as the kernels add."""
    total = products.new_zeros(len(products))
    for column in products.unbind(1):
        total = total + column
    return total


def _suppressed(
    point: tuple[Tensor, Tensor, Tensor, Tensor],
    chosen: tuple[Tensor, Tensor, Tensor, Tensor],
    radius: float,
    cos_threshold: float,
) -> bool:
    """Whether a chosen point suppresses ``point``; both are (xyz, feat, norm) float64 and scene."""
    xyz, feat, norm, scene = point
    chosen_xyz, chosen_feat, chosen_norm, chosen_scene = chosen
    offset = chosen_xyz - xyz
    near = (chosen_scene == scene) & (_sum_in_order(offset * offset).sqrt() < radius)
    if not near.any():
        return False
    denom = chosen_norm[near] * norm
    cosine = torch.where(denom > 0, _sum_in_order(chosen_feat[near] * feat) / denom, 0.0)
    return bool((cosine > cos_threshold).any())


def _walk_order(score: Tensor, labelled: Tensor) -> Tensor:
    """Unlabelled point indices by ascending score, ties by index."""
    # -0.0 and +0.0 are equal to a comparison sort; a radix sort of the bits (CUDA) may split them.
    key = torch.where(score == 0, 0.0, score)
    order = torch.argsort(key, stable=True)
    return order[~labelled[order]]


def _candidates(
    order: Tensor, coord: Tensor, feat: Tensor, scene: Tensor
) -> Iterator[tuple[int, tuple[Tensor, ...]]]:
    """(index, (xyz, feat, norm, scene)) of each candidate in walk order, float64, prepared a
    block at a time so the walk only pays for the candidates it reaches."""
    for block in order.split(_WALK_BLOCK):
        block_feat = feat[block].double()
        norm = _sum_in_order(block_feat * block_feat).sqrt()
        rows = (coord[block].double(), block_feat, norm, scene[block])
        for row, index in enumerate(block.tolist()):
            yield index, tuple(values[row] for values in rows)


def _suppressed_selection(
    coord: Tensor,
    feat: Tensor,
    score: Tensor,
    scene: Tensor,
    labelled: Tensor,
    budget: int,
    radius: float,
    cos_threshold: float,
) -> Tensor:
    """The spec on checked arguments: the walk, one candidate at a time."""
    order = _walk_order(score, labelled)
    most = min(budget, len(order))
    device = coord.device
    kept = (
        torch.empty(most, 3, dtype=torch.float64, device=device),
        torch.empty(most, feat.shape[1], dtype=torch.float64, device=device),
        torch.empty(most, dtype=torch.float64, device=device),
        torch.empty(most, dtype=torch.long, device=device),
    )
    chosen: list[int] = []
    for index, point in _candidates(order, coord, feat, scene):
        if len(chosen) == most:
            break
        count = len(chosen)
        if _suppressed(point, tuple(k[:count] for k in kept), radius, cos_threshold):
            continue
        for store, value in zip(kept, point, strict=True):
            store[count] = value
        chosen.append(index)
    return torch.tensor(chosen, dtype=torch.long, device=device)


def suppressed_selection_reference(
    coord: Tensor,
    feat: Tensor,
    score: Tensor,
    scene: Tensor,
    labelled: Tensor,
    *,
    budget: int,
    radius: float = 0.2,
    cos_threshold: float = 0.8,
) -> Tensor:
    """Pure-PyTorch spec of ``suppressed_selection`` (see the module docstring): a full stable
    argsort, then a Python loop over the candidates, each tested against all chosen points."""
    budget, radius, cos_threshold = _check_args(
        coord, feat, score, scene, labelled, budget, radius, cos_threshold
    )
    return _suppressed_selection(coord, feat, score, scene, labelled, budget, radius, cos_threshold)


def suppressed_selection(
    coord: Tensor,
    feat: Tensor,
    score: Tensor,
    scene: Tensor,
    labelled: Tensor,
    *,
    budget: int,
    radius: float = 0.2,
    cos_threshold: float = 0.8,
) -> Tensor:
    """Choose up to ``budget`` unlabelled points, most uncertain first, with HPAL's suppression.

    Args:
        coord: float32 (N, 3) point coordinates in metres.
        feat: float32 (N, F) point features (e.g. the network's last-layer embeddings).
        score: float32 (N,) selection score; lower = more uncertain = considered first.
        scene: int64 (N,) scene id; points of different scenes never suppress each other.
        labelled: bool (N,) points already labelled, never chosen.
        budget: number of points to choose.
        radius: a chosen point suppresses candidates closer than this (metres) ...
        cos_threshold: ... whose feature cosine similarity with it exceeds this.

    Returns:
        int64 (min(budget, possible),) indices of the chosen points, in the order chosen.
    """
    budget, radius, cos_threshold = _check_args(
        coord, feat, score, scene, labelled, budget, radius, cos_threshold
    )
    if has_kernel(coord.device):
        return torch.ops.pcseg.suppressed_selection(
            coord, feat, score, scene, labelled, budget, radius, cos_threshold
        )
    return _suppressed_selection(coord, feat, score, scene, labelled, budget, radius, cos_threshold)
