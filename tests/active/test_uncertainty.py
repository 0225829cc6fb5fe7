"""Uncertainty scores on hand-made probabilities with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pcseg.active.uncertainty import (
    hierarchical_margin,
    level_parents,
    point_margin,
    uncertainty_scores,
)

PROBS = torch.tensor([[0.6, 0.4], [0.8, 0.2], [0.1, 0.9]])
# Points 0 and 1 share a 0.1 m cell (region A), point 2 has its own (B); A and B share a
# 0.5 m cell (C), which is alone in its 1 m cell (E).
COORD = np.array([[0.0, 0.0, 0.0], [0.02, 0.0, 0.0], [0.3, 0.0, 0.0]])


def test_point_scores_by_hand():
    assert point_margin(PROBS).tolist() == pytest.approx([0.2, 0.6, 0.8])
    rng = np.random.default_rng(0)
    entropy = uncertainty_scores("entropy", PROBS, COORD, rng=rng)
    expected = [
        0.6 * math.log(0.6) + 0.4 * math.log(0.4),
        0.8 * math.log(0.8) + 0.2 * math.log(0.2),
    ]
    assert entropy[:2].tolist() == pytest.approx(expected, rel=1e-6)
    assert uncertainty_scores("lc", PROBS, COORD, rng=rng).tolist() == pytest.approx(
        [0.6, 0.8, 0.9]
    )
    one_hot = torch.tensor([[1.0, 0.0]])
    assert uncertainty_scores("entropy", one_hot, COORD[:1], rng=rng).item() == 0.0
    first = uncertainty_scores("random", PROBS, COORD, rng=np.random.default_rng(5))
    again = uncertainty_scores("random", PROBS, COORD, rng=np.random.default_rng(5))
    assert torch.equal(first, again) and first.dtype == torch.float32
    with pytest.raises(ValueError, match="unknown strategy"):
        uncertainty_scores("bald", PROBS, COORD, rng=rng)


def test_levels_assign_each_element_to_its_nearest_coarser_centre():
    parents = level_parents(COORD, (0.1, 0.5, 1.0))
    assert parents[0].tolist() == [0, 0, 1]  # A = {0, 1}, B = {2}
    assert parents[1].tolist() == [0, 0]  # C = {A, B}
    assert parents[2].tolist() == [0]  # E = {C}
    # A point nearer to the next cell's centre than to its own cell's joins the next one.
    line = np.array([[0.0, 0, 0], [0.001, 0, 0], [0.099, 0, 0], [0.1, 0, 0], [0.11, 0, 0]])
    assert level_parents(line, (0.1,))[0].tolist() == [0, 0, 1, 1, 1]


def test_hierarchical_margin_by_hand():
    # Region probabilities are means of the children's: A = (0.7, 0.3), B = (0.1, 0.9),
    # C = mean(A, B) = (0.4, 0.6) -- not the mean of the three points, (0.5, 0.5) -- E = C.
    # Margins: points 0.2, 0.6, 0.8; A 0.4, B 0.8; C 0.2; E 0.2. Coarse to fine:
    # s_E = 0.2, s_C = 0.2 + 0.02, s_A = 0.4 + 0.022, s_B = 0.8 + 0.022,
    # points 0.2 + 0.0422, 0.6 + 0.0422, 0.8 + 0.0822.
    score = uncertainty_scores("hmmu", PROBS, COORD, rng=np.random.default_rng(0))
    assert score.tolist() == pytest.approx([0.2422, 0.6422, 0.8822], abs=1e-6)
    parents = level_parents(COORD, (0.1, 0.5, 1.0))
    flat = hierarchical_margin(PROBS, parents, level_weight=0.0)
    assert flat.tolist() == pytest.approx(point_margin(PROBS).tolist())


def test_centres_without_children_are_not_regions():
    # Two 0.1 m cells, each point nearer to the other cell's centre than to its own cell's
    # except one: one centre gets no children and must not become a region.
    coord = np.array(
        [[0.101, 0.001, 0.001], [0.101, 0.099, 0.099], [0.099, 0.001, 0.001], [0.099, 0.101, 0.101]]
    )
    parents = level_parents(coord, (0.1, 0.5))
    assert sorted(set(parents[0].tolist())) == list(range(int(parents[0].max()) + 1))
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    score = hierarchical_margin(probs, parents)
    assert torch.isfinite(score).all() and len(score) == 4
