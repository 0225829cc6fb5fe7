"""Uncertainty scores of points for active learning; lower always means "ask about this first".

* ``margin``: p_top1 - p_top2 of the point (small margin = the top two classes are close);
* ``entropy``: minus the entropy of the point's class distribution;
* ``lc`` (least confidence): p_top1;
* ``random``: a seeded uniform draw (the baseline);
* ``hmmu`` (HPAL's hierarchical minimum margin): points are level 0; level l + 1 is a grid
  subsampling (0.1 m, 0.5 m, 1.0 m) of level l's coordinates, every level-l element belongs to
  its nearest level-(l + 1) centre, and a region's probability is the mean of its children's.
  With m_l the margins at level l, propagated from coarse to fine,
  ``s_l = m_l + 0.1 * s_{l+1}[parent]``, so a point scores m0 + 0.1 m1 + 0.01 m2 + 0.001 m3.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from pcseg.ops import region_margin, voxelize

STRATEGY_SCORES = ("margin", "entropy", "lc", "random", "hmmu")
HPAL_GRID_SIZES = (0.1, 0.5, 1.0)
HPAL_LEVEL_WEIGHT = 0.1


def point_margin(probs: Tensor) -> Tensor:
    """(N,) top-1 minus top-2 probability of each row of (N, K) ``probs``."""
    top = torch.topk(probs, 2, dim=1).values
    return top[:, 0] - top[:, 1]


def negative_entropy(probs: Tensor) -> Tensor:
    """(N,) sum_k p log p (0 log 0 = 0): lowest for the flattest distributions."""
    return torch.special.xlogy(probs, probs).sum(dim=1)


def level_parents(coord: np.ndarray, grid_sizes: Sequence[float]) -> list[np.ndarray]:
    """For each level, the index of every element's parent at the next coarser level.

    Level 0 is ``coord`` (N, 3). Level l + 1 holds the centres (mean coordinates) of the
    occupied cells of a ``grid_sizes[l]`` grid over level l; each level-l element's parent is
    its nearest centre (which need not be the centre of its own cell). Centres nearest to no
    element are dropped, so every region has children and ids are ``0 .. M-1``.
    """
    parents = []
    level = np.asarray(coord, dtype=np.float64)
    for size in grid_sizes:
        if size <= 0:
            raise ValueError(f"grid sizes must be > 0, got {size}")
        points = torch.from_numpy(level)
        centres = voxelize(points, size, feat=points).feat.numpy()
        nearest = cKDTree(centres).query(level, k=1)[1]
        # A centre that is nobody's nearest has no children: it is not a region.
        used, parent = np.unique(nearest, return_inverse=True)
        parents.append(parent.astype(np.int64))
        level = centres[used]
    return parents


def hierarchical_margin(
    probs: Tensor,
    parents: Sequence[np.ndarray],
    *,
    level_weight: float = HPAL_LEVEL_WEIGHT,
) -> Tensor:
    """HMMU score of every point (see the module docstring) from (N, K) ``probs``."""
    margins = [point_margin(probs)]
    level_probs = probs
    for parent in parents:
        parent = torch.from_numpy(parent).to(probs.device)
        num_regions = int(parent.max()) + 1 if len(parent) else 0
        level_probs, margin = region_margin(level_probs, parent, num_regions)
        margins.append(margin)
    score = margins[-1]
    for level in range(len(parents) - 1, -1, -1):
        parent = torch.from_numpy(parents[level]).to(probs.device)
        score = margins[level] + level_weight * score[parent]
    return score


def uncertainty_scores(
    strategy: str,
    probs: Tensor,
    coord: np.ndarray,
    *,
    rng: np.random.Generator,
    grid_sizes: Sequence[float] = HPAL_GRID_SIZES,
) -> Tensor:
    """(N,) float32 scores of one scan's points under ``strategy``; lower = more uncertain.

    Args:
        strategy: one of :data:`STRATEGY_SCORES`.
        probs: float (N, K) class probabilities of the scan's points.
        coord: (N, 3) their coordinates in metres (used by ``hmmu``).
        rng: the generator of ``random``.
        grid_sizes: ``hmmu``'s grid per level.
    """
    if strategy not in STRATEGY_SCORES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGY_SCORES)}")
    probs = probs.float()
    if strategy == "margin":
        score = point_margin(probs)
    elif strategy == "entropy":
        score = negative_entropy(probs)
    elif strategy == "lc":
        score = probs.max(dim=1).values
    elif strategy == "random":
        score = torch.from_numpy(rng.random(len(probs), dtype=np.float32))
    else:
        score = hierarchical_margin(probs, level_parents(coord, grid_sizes))
    return score.float().cpu()
