"""suppressed_selection: compiled kernels against the PyTorch reference, the result against the
written spec, hand-made cases with known answers, argument checks and the op registration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pcseg.data.formats import semantickitti
from pcseg.ops import suppressed_selection, suppressed_selection_reference, voxelize

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]
BELOW_HALF = float(np.nextafter(np.float32(0.5), np.float32(0.0)))  # the float32 below 0.5


def kernel(coord, feat, score, scene, labelled, budget, radius=0.2, cos_threshold=0.8):
    return torch.ops.pcseg.suppressed_selection(
        coord, feat, score, scene, labelled, budget, radius, cos_threshold
    )


def random_points(
    seed: int, n: int, *, scenes: int = 3, extent: float = 4.0, channels: int = 4, device="cpu"
) -> tuple[torch.Tensor, ...]:
    """coord, feat, score, scene, labelled of ``scenes`` overlapping random scenes.

    Features are a random vector per 1 m cell plus noise, so nearby points tend to be similar
    and suppression is frequent; scores are rounded to 0.01 (many ties, -0.0 among them).
    """
    gen = torch.Generator().manual_seed(seed)
    coord = torch.rand(n, 3, generator=gen) * extent
    cell = voxelize(coord, 1.0).inverse
    base = torch.randn(int(cell.max()) + 1, channels, generator=gen)
    feat = base[cell] + 0.5 * torch.randn(n, channels, generator=gen)
    score = (torch.rand(n, generator=gen) * 100).round() / 100
    score[score == 0] = -0.0
    scene = torch.randint(0, scenes, (n,), generator=gen)
    labelled = torch.rand(n, generator=gen) < 0.2
    return tuple(t.to(device) for t in (coord, feat, score, scene, labelled))


def walk_order(score: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(score.cpu(), stable=True)
    return order[~labelled.cpu()[order]]


def suppression_matrix(coord, feat, scene, rows, cols, radius, cos_threshold) -> torch.Tensor:
    """[a, b]: point cols[b] would suppress point rows[a] (dense float64, off the boundary)."""
    xyz, f = coord.cpu().double(), feat.cpu().double()
    dist = torch.cdist(xyz[rows], xyz[cols], compute_mode="donot_use_mm_for_euclid_dist")
    norm = f.norm(dim=1)
    denom = norm[rows, None] * norm[None, cols]
    cosine = torch.where(denom > 0, (f[rows] @ f[cols].T) / denom, 0.0)
    same = scene.cpu()[rows, None] == scene.cpu()[None, cols]
    return same & (dist < radius) & (cosine > cos_threshold)


def assert_follows_the_spec(points, chosen, budget, radius, cos_threshold) -> None:
    """Greedy, in walk order: every chosen point survives the points chosen before it, and every
    skipped unlabelled point before the end of the walk is suppressed by an earlier choice."""
    coord, feat, score, scene, labelled = points
    order = walk_order(score, labelled)
    chosen = chosen.cpu()
    assert len(chosen) == len(set(chosen.tolist())) and not labelled.cpu()[chosen].any()
    rank = torch.full((len(coord),), -1)
    rank[order] = torch.arange(len(order))
    assert (rank[chosen] >= 0).all() and (rank[chosen].diff() > 0).all()
    walked = order[: rank[chosen[-1]] + 1] if len(chosen) == budget else order
    hits = suppression_matrix(coord, feat, scene, walked, chosen, radius, cos_threshold)
    earlier = rank[chosen][None, :] < rank[walked][:, None]
    is_chosen = torch.isin(walked, chosen)
    assert not (hits & earlier)[is_chosen].any(), "a chosen point lies in a suppressed spot"
    assert (hits & earlier)[~is_chosen].any(1).all(), "a skipped point was not suppressed"


CASES = [(0.5, 0.8, 40), (1.0, 0.0, 300), (0.3, -0.5, 10_000), (2.0, 0.95, 1)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("radius", "cos_threshold", "budget"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_matches_reference_on_random_points(device, radius, cos_threshold, budget, seed):
    points = random_points(seed, 1500, device=device)
    got = kernel(*points, budget, radius, cos_threshold)
    want = suppressed_selection_reference(
        *points, budget=budget, radius=radius, cos_threshold=cos_threshold
    )
    assert got.dtype == torch.long and got.device == points[0].device
    assert torch.equal(got, want)
    assert torch.equal(
        suppressed_selection(*points, budget=budget, radius=radius, cos_threshold=cos_threshold),
        got,
    )
    assert_follows_the_spec(points, got, budget, radius, cos_threshold)


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_matches_reference_on_the_real_scan(shared_data, device):
    points = semantickitti.read_scan(shared_data / "semantickitti/sequences/00/velodyne/000000.bin")
    coord = torch.from_numpy(points[:, :3])
    gen = torch.Generator().manual_seed(0)
    cell = voxelize(coord, 2.0).inverse
    feat = torch.randn(int(cell.max()) + 1, 8, generator=gen)[cell]
    feat += 0.3 * torch.randn(len(coord), 8, generator=gen)
    score = torch.rand(len(coord), generator=gen)
    scene = torch.arange(len(coord)) % 2  # two interleaved scenes that never suppress each other
    labelled = torch.rand(len(coord), generator=gen) < 0.05
    args = tuple(t.to(device) for t in (coord, feat, score, scene, labelled))
    order = walk_order(score, labelled)
    for budget, radius in [(25, 0.2), (600, 1.0)]:
        got = kernel(*args, budget, radius, 0.8)
        assert len(got) == budget
        assert torch.equal(got, suppressed_selection_reference(*args, budget=budget, radius=radius))
    walked = int((order == got[-1].cpu()).nonzero()[0, 0]) + 1
    assert walked > budget + 200, "the last case should skip many suppressed points"


@pytest.mark.parametrize("device", DEVICES)
def test_many_points_small_budget_spans_chunks_and_ties(device):
    """More points than one thread's share, ties everywhere: the partial selection must keep the
    exact (score, index) order across chunks."""
    n = 200_000
    gen = torch.Generator().manual_seed(7)
    coord = torch.rand(n, 3, generator=gen) * 30
    feat = torch.randn(n, 3, generator=gen)
    score = torch.randint(0, 20, (n,), generator=gen).float()
    scene = torch.zeros(n, dtype=torch.long)
    labelled = torch.rand(n, generator=gen) < 0.5
    args = tuple(t.to(device) for t in (coord, feat, score, scene, labelled))
    for budget in (1, 60):
        got = kernel(*args, budget, 3.0, 0.0)
        assert torch.equal(
            got, suppressed_selection_reference(*args, budget=budget, radius=3.0, cos_threshold=0.0)
        )
        assert (score[got.cpu()] == 0).all()
    assert kernel(*args, 1, 3.0, 0.0).tolist() == [int(walk_order(score, labelled)[0])]


def hand_made(coord, feat, score, device="cpu", labelled=None, scene=None):
    """The five tensor arguments from lists; one scene and nothing labelled by default."""
    n = len(coord)
    return (
        torch.tensor(coord, dtype=torch.float32, device=device).reshape(n, 3),
        torch.tensor(feat, dtype=torch.float32, device=device),
        torch.tensor(score, dtype=torch.float32, device=device),
        torch.tensor(scene or [0] * n, dtype=torch.long, device=device),
        torch.tensor(labelled or [False] * n, dtype=torch.bool, device=device),
    )


def select_all_ways(points, budget, radius, cos_threshold) -> list[int]:
    """The kernel's, the wrapper's and the reference's answer, which must be one answer."""
    answers = [
        run(*points, budget=budget, radius=radius, cos_threshold=cos_threshold).tolist()
        for run in (suppressed_selection, suppressed_selection_reference)
    ]
    answers.append(kernel(*points, budget, radius, cos_threshold).tolist())
    assert answers[0] == answers[1] == answers[2]
    return answers[0]


@pytest.mark.parametrize("device", DEVICES)
def test_distance_boundary(device):
    same_feat = [[1.0, 0.0], [1.0, 0.0]]
    at_radius = hand_made([[0, 0, 0], [0.5, 0, 0]], same_feat, [0.1, 0.2], device)
    assert select_all_ways(at_radius, 2, 0.5, 0.8) == [0, 1]  # distance == radius: kept
    below = hand_made([[0, 0, 0], [BELOW_HALF, 0, 0]], same_feat, [0.1, 0.2], device)
    assert below[0][1, 0].item() == BELOW_HALF
    assert select_all_ways(below, 2, 0.5, 0.8) == [0]  # a float below the radius: suppressed
    # Offsets in two axes: dx = 3, dy = 4 is a distance of exactly 5.
    diagonal = hand_made([[1, 1, 1], [4, 5, 1]], same_feat, [0.1, 0.2], device)
    assert select_all_ways(diagonal, 2, 5.0, 0.8) == [0, 1]
    assert select_all_ways(diagonal, 2, math.nextafter(5.0, 6.0), 0.8) == [0]


@pytest.mark.parametrize("device", DEVICES)
def test_cosine_boundary_and_zero_norms(device):
    coord = [[0, 0, 0], [0.1, 0, 0]]
    # cos((3, 4), (4, 3)) = 24 / 25, which rounds to the same double as the literal 0.96.
    rotated = hand_made(coord, [[3.0, 4.0], [4.0, 3.0]], [0.1, 0.2], device)
    assert select_all_ways(rotated, 2, 0.5, 0.96) == [0, 1]  # cosine == threshold: kept
    assert select_all_ways(rotated, 2, 0.5, math.nextafter(0.96, 0.0)) == [0]
    parallel = hand_made(coord, [[2.0, 0.0], [5.0, 0.0]], [0.1, 0.2], device)
    assert select_all_ways(parallel, 2, 0.5, 1.0) == [0, 1]  # cosine 1 never exceeds 1
    assert select_all_ways(parallel, 2, 0.5, 0.999) == [0]
    opposite = hand_made(coord, [[1.0, 0.0], [-1.0, 0.0]], [0.1, 0.2], device)
    assert select_all_ways(opposite, 2, 0.5, -1.0) == [0, 1]  # -1 > -1 fails too
    for feat in ([[0.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]):
        zero = hand_made(coord, feat, [0.1, 0.2], device)
        assert select_all_ways(zero, 2, 0.5, 0.8) == [0, 1]  # similarity 0, not above 0.8
        assert select_all_ways(zero, 2, 0.5, -0.5) == [0]  # 0 > -0.5: suppressed
        assert select_all_ways(zero, 2, 0.5, 0.0) == [0, 1]  # 0 > 0 fails
    no_channels = hand_made(coord, [[], []], [0.1, 0.2], device)
    assert select_all_ways(no_channels, 2, 0.5, -0.1) == [0]


@pytest.mark.parametrize("device", DEVICES)
def test_scenes_labels_and_chains(device):
    twins = [[1, 2, 3]] * 3
    feat = [[1.0, 1.0]] * 3
    scenes = hand_made(twins, feat, [0.3, 0.2, 0.1], device, scene=[7, -2, 7])
    assert select_all_ways(scenes, 3, 1.0, 0.5) == [2, 1]  # 0 shares scene 7 with 2
    # Point 0 (lowest score) is labelled: never chosen, and it suppresses nothing either.
    labelled = hand_made(twins, feat, [0.1, 0.2, 0.3], device, labelled=[True, False, False])
    assert select_all_ways(labelled, 3, 1.0, 0.5) == [1]
    # Only chosen points suppress: 1 is suppressed by 0, and 2, near 1 but not near 0, stays.
    chain = hand_made([[0, 0, 0], [0.4, 0, 0], [0.8, 0, 0]], feat, [0.1, 0.2, 0.3], device)
    assert select_all_ways(chain, 3, 0.5, 0.5) == [0, 2]


@pytest.mark.parametrize("device", DEVICES)
def test_budget_and_ties(device):
    far = [[10.0 * i, 0, 0] for i in range(6)]
    feat = [[1.0]] * 6
    last_labelled = [False] * 5 + [True]
    points = hand_made(far, feat, [0.5, 0.1, 0.4, 0.2, 0.3, 0.0], device, last_labelled)
    assert select_all_ways(points, 3, 1.0, 0.5) == [1, 3, 4]  # exactly the budget
    assert select_all_ways(points, 10, 1.0, 0.5) == [1, 3, 4, 2, 0]  # all that is possible
    assert select_all_ways(points, 0, 1.0, 0.5) == []
    # Equal scores go by index, and -0.0 equals +0.0.
    tied = hand_made(far, feat, [0.2, 0.0, 0.2, -0.0, 0.0, 0.2], device)
    assert select_all_ways(tied, 6, 1.0, 0.5) == [1, 3, 4, 0, 2, 5]
    nothing = [torch.empty(0, 3), torch.empty(0, 2), torch.empty(0), torch.empty(0).long()]
    nothing = [t.to(device) for t in (*nothing, torch.empty(0, dtype=torch.bool))]
    assert select_all_ways(nothing, 5, 1.0, 0.5) == []


@pytest.mark.parametrize("device", DEVICES)
def test_walk_beyond_the_first_candidates(device):
    """A tight cluster of identical features suppresses all but its first point, so the kernel
    has to widen its sorted window many times to reach the far points behind it."""
    gen = torch.Generator().manual_seed(3)
    n = 3000
    coord = torch.rand(n, 3, generator=gen) * 0.1
    coord[-4:] = torch.tensor([[50.0, 0, 0], [0, 50, 0], [0, 0, 50], [-50, 0, 0]])
    feat = torch.ones(n, 4)
    score = torch.rand(n, generator=gen)
    score[-4:] = torch.tensor([1.5, 1.2, 1.3, 1.1])
    labelled = torch.zeros(n, dtype=torch.bool)
    points = tuple(t.to(device) for t in (coord, feat, score, torch.zeros(n).long(), labelled))
    first = int(score[:-4].argmin())
    expected = [first, n - 1, n - 3, n - 2, n - 4]
    assert select_all_ways(points, 5, 0.5, 0.5) == expected
    assert kernel(*points, 100, 0.5, 0.5).tolist() == expected


@pytest.mark.parametrize("forced", ["0", "1"])
def test_rejects_bad_arguments(monkeypatch, forced):
    monkeypatch.setenv("PCSEG_FORCE_REFERENCE", forced)
    coord, feat, score, scene, labelled = random_points(4, 50)
    good = {"coord": coord, "feat": feat, "score": score, "scene": scene, "labelled": labelled}
    nan = coord.clone()
    nan[3, 1] = math.nan
    bad_tensors = [
        ({"coord": coord.double()}, r"coord must be float32 \(N, 3\)"),
        ({"coord": coord[:, :2]}, r"coord must be float32 \(N, 3\)"),
        ({"feat": feat.double()}, r"feat must be float32 \(50, F\)"),
        ({"feat": feat[1:]}, r"feat must be float32 \(50, F\)"),
        ({"score": score[:, None]}, r"score must be float32 \(50,\)"),
        ({"score": score.double()}, r"score must be float32 \(50,\)"),
        ({"scene": scene.int()}, r"scene must be int64 \(50,\)"),
        ({"labelled": labelled.byte()}, r"labelled must be bool \(50,\)"),
        ({"coord": nan}, "coord contains NaN or inf"),
        ({"coord": coord.index_fill(0, torch.tensor([7]), math.inf)}, "coord contains NaN or inf"),
        ({"coord": coord * 1e9}, r"max \|coord\| / radius must be < 2\^30"),
        ({"score": score.index_fill(0, torch.tensor([2]), math.nan)}, "score contains NaN"),
        ({"score": score.index_fill(0, torch.tensor([2]), -math.inf)}, "score contains NaN"),
    ]
    bad_scalars = [
        ({"budget": -1}, "budget must be an integer >= 0"),
        ({"budget": 2.0}, "budget must be an integer >= 0"),
        ({"budget": True}, "budget must be an integer >= 0"),
        ({"radius": 0.0}, "radius must be finite and > 0"),
        ({"radius": -1.0}, "radius must be finite and > 0"),
        ({"radius": math.nan}, "radius must be finite and > 0"),
        ({"radius": math.inf}, "radius must be finite and > 0"),
        ({"cos_threshold": 1.5}, r"cos_threshold must lie in \[-1, 1\]"),
        ({"cos_threshold": math.nan}, r"cos_threshold must lie in \[-1, 1\]"),
    ]
    for run in (suppressed_selection, suppressed_selection_reference):
        for change, message in bad_tensors:
            with pytest.raises(ValueError, match=f"suppressed_selection: {message}"):
                run(**{**good, **change}, budget=5)
        for change, message in bad_scalars:
            with pytest.raises(ValueError, match=f"suppressed_selection: {message}"):
                run(**good, **{"budget": 5, **change})


def test_kernel_checks_what_it_depends_on():
    points = random_points(5, 50)
    coord, feat, score, scene, labelled = points
    nan_score = score.index_fill(0, torch.tensor([4]), math.nan)
    for args, message in [
        ((*points, -1, 0.2, 0.8), "budget must be >= 0"),
        ((*points, 5, 0.0, 0.8), "radius must be finite and > 0"),
        ((*points, 5, math.nan, 0.8), "radius must be finite and > 0"),
        ((*points, 5, 0.2, -1.5), r"cos_threshold must lie in \[-1, 1\]"),
        ((coord, feat, nan_score, scene, labelled, 5, 0.2, 0.8), "score contains NaN"),
        ((coord * 1e9, feat, score, scene, labelled, 50, 0.2, 0.8), "too large for radius"),
        ((coord, feat, score, scene.int(), labelled, 5, 0.2, 0.8), "scene must be int64"),
    ]:
        with pytest.raises(RuntimeError, match=message):
            torch.ops.pcseg.suppressed_selection(*args)


@pytest.mark.parametrize("device", DEVICES)
def test_selection_is_deterministic_and_passes_opcheck(device, monkeypatch):
    points = random_points(6, 300, device=device)
    first = suppressed_selection(*points, budget=40, radius=0.5, cos_threshold=0.5)
    for _ in range(2):
        assert torch.equal(
            suppressed_selection(*points, budget=40, radius=0.5, cos_threshold=0.5), first
        )
    monkeypatch.setenv("PCSEG_FORCE_REFERENCE", "1")
    assert torch.equal(
        suppressed_selection(*points, budget=40, radius=0.5, cos_threshold=0.5), first
    )
    torch.library.opcheck(torch.ops.pcseg.suppressed_selection.default, (*points, 40, 0.5, 0.5))
    torch.library.opcheck(torch.ops.pcseg.suppressed_selection.default, (*points, 0, 0.5, 0.5))
