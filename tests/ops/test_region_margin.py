"""region_margin: compiled kernels against the PyTorch reference, a hand-computed example, edge
cases, argument checks and the op registration."""

from __future__ import annotations

import pytest
import torch

from pcseg.data.formats import semantickitti
from pcseg.ops import region_margin, region_margin_reference, voxelize

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]


def kernel(probs, parent, num_regions):
    return torch.ops.pcseg.region_margin(probs, parent, num_regions)


def random_probs(
    seed: int, n: int, classes: int, regions: int, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities and parents in random order; regions past ``n`` stay empty."""
    gen = torch.Generator().manual_seed(seed)
    probs = torch.randn(n, classes, generator=gen).mul_(3).softmax(1)
    parent = torch.randint(0, regions, (n,), generator=gen)
    return probs.to(device), parent.to(device)


def assert_matches(got, want) -> None:
    """Kernel and reference agree to float32 rounding (both sum in float64, maybe in other
    orders)."""
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype == torch.float32 and g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("n", "classes", "regions"), [(5000, 19, 700), (300, 2, 1000), (1, 5, 1)])
@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_matches_reference_on_random_inputs(device, n, classes, regions, seed):
    probs, parent = random_probs(seed, n, classes, regions, device)
    got = kernel(probs, parent, regions)
    assert_matches(got, region_margin_reference(probs, parent, regions))
    for g, w in zip(region_margin(probs, parent, regions), got, strict=True):
        assert torch.equal(g, w)
    region_probs, margin = got
    counts = torch.bincount(parent, minlength=regions)
    assert torch.equal(region_probs[counts == 0], torch.zeros_like(region_probs[counts == 0]))
    torch.testing.assert_close(region_probs[counts > 0].sum(1), torch.ones_like(margin[counts > 0]))
    assert (margin >= 0).all() and (margin <= 1).all()


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_matches_reference_on_the_real_scan(shared_data, device):
    points = semantickitti.read_scan(shared_data / "semantickitti/sequences/00/velodyne/000000.bin")
    coord = torch.from_numpy(points[:, :3]).to(device)
    vox = voxelize(coord, 0.1)
    gen = torch.Generator().manual_seed(0)
    probs = torch.randn(len(coord), 19, generator=gen).mul_(2).softmax(1).to(device)
    regions = len(vox.counts)
    got = kernel(probs, vox.inverse, regions)
    assert_matches(got, region_margin_reference(probs, vox.inverse, regions))
    # A region of one point is that point; its margin is the point's own top-2 gap.
    single = (vox.counts == 1).nonzero()[:, 0]
    assert len(single) > 1000
    first_point = vox.order[vox.counts.cumsum(0) - vox.counts]
    top = probs[first_point[single]].topk(2, dim=1).values
    assert torch.equal(got[0][single], probs[first_point[single]])
    assert torch.equal(got[1][single], top[:, 0] - top[:, 1])


@pytest.mark.parametrize("device", DEVICES)
def test_a_hand_computed_example(device):
    # Binary fractions, so every mean and margin is exact in float32.
    probs = torch.tensor(
        [
            [0.5, 0.25, 0.25],  # region 0
            [0.125, 0.125, 0.75],  # region 2
            [0.25, 0.75, 0.0],  # region 0
            [0.5, 0.5, 0.0],  # region 3
            [0.25, 0.25, 0.5],  # region 3
        ],
        device=device,
    )
    parent = torch.tensor([0, 2, 0, 3, 3], device=device)
    expected_probs = [
        [0.375, 0.5, 0.125],  # margin 0.5 - 0.375
        [0.0, 0.0, 0.0],  # region 1 has no children: zero row, margin 0
        [0.125, 0.125, 0.75],  # margin 0.75 - 0.125
        [0.375, 0.375, 0.25],  # two equal maxima: margin 0
    ]
    for run in (kernel, region_margin, region_margin_reference):
        region_probs, margin = run(probs, parent, 4)
        assert region_probs.tolist() == expected_probs
        assert margin.tolist() == [0.125, 0.0, 0.625, 0.0]


@pytest.mark.parametrize("device", DEVICES)
def test_edge_cases_match_the_reference(device):
    probs, parent = random_probs(2, 400, 6, 50, device)
    tied = torch.cat([probs, probs.amax(1, keepdim=True)], 1)  # every row's maximum twice
    cases = [
        (probs[:0], parent[:0], 0),  # nothing at all
        (probs[:0], parent[:0], 5),  # regions without children
        (probs, torch.zeros_like(parent), 1),  # one region holds everything
        (probs, parent, 50),
        (probs, parent * 3, 150),  # two of every three regions empty
        (tied, parent, 50),
        (probs.t().contiguous().t(), parent, 50),  # column-major probabilities
    ]
    for p, q, m in cases:
        got = kernel(p, q, m)
        assert got[0].shape == (m, p.shape[1]) and got[1].shape == (m,)
        assert_matches(got, region_margin_reference(p, q, m))
    _, margin = kernel(tied, torch.arange(len(tied), device=device), len(tied))
    assert (margin == 0).all()  # one child per region: each row's doubled maximum


def test_outputs_carry_no_gradient():
    probs, parent = random_probs(3, 100, 4, 10)
    probs.requires_grad_()
    for run in (region_margin, region_margin_reference):
        region_probs, margin = run(probs, parent, 10)
        assert not region_probs.requires_grad and not margin.requires_grad


@pytest.mark.parametrize("forced", ["0", "1"])
def test_rejects_bad_arguments(monkeypatch, forced):
    monkeypatch.setenv("PCSEG_FORCE_REFERENCE", forced)
    probs, parent = random_probs(4, 60, 3, 8)
    bad = [
        ((probs.double(), parent, 8), r"probs must be float32 \(N, K\) with K >= 2"),
        ((probs[:, 0], parent, 8), r"probs must be float32 \(N, K\)"),
        ((probs[:, :1], parent, 8), "K >= 2"),
        ((probs, parent.int(), 8), r"parent must be int64 \(60,\)"),
        ((probs, parent[1:], 8), r"parent must be int64 \(60,\)"),
        ((probs, parent[:, None], 8), r"parent must be int64 \(60,\)"),
        ((probs, parent, -1), "num_regions must be an integer >= 0"),
        ((probs, parent, 8.0), "num_regions must be an integer >= 0"),
        ((probs, parent, True), "num_regions must be an integer >= 0"),
        ((probs, parent, 7), r"parent values must lie in \[0, 7\), got \[0, 7\]"),
        ((probs, parent - 1, 8), r"parent values must lie in \[0, 8\), got \[-1, 6\]"),
        ((probs, parent, 0), r"must lie in \[0, 0\)"),
    ]
    for run in (region_margin, region_margin_reference):
        for args, message in bad:
            with pytest.raises(ValueError, match=message):
                run(*args)


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_checks_what_it_indexes_with(device):
    probs, parent = random_probs(5, 60, 3, 8, device)
    for args, message in [
        ((probs, parent, 7), r"must lie in \[0, 7\)"),
        ((probs, parent - 1, 8), r"must lie in \[0, 8\)"),
        ((probs, parent, 0), r"must lie in \[0, 0\)"),
        ((probs, parent, -2), "num_regions must be >= 0"),
        ((probs.double(), parent, 8), "float32"),
        ((probs, parent[:-1], 8), r"int64 \(N,\)"),
    ]:
        with pytest.raises(RuntimeError, match=message):
            kernel(*args)


@pytest.mark.parametrize("device", DEVICES)
def test_region_margin_is_deterministic_and_passes_opcheck(device, monkeypatch):
    probs, parent = random_probs(6, 2000, 19, 300, device)
    first = region_margin(probs, parent, 300)
    for _ in range(2):
        for got, want in zip(region_margin(probs, parent, 300), first, strict=True):
            assert torch.equal(got, want)
    monkeypatch.setenv("PCSEG_FORCE_REFERENCE", "1")
    assert_matches(region_margin(probs, parent, 300), first)
    torch.library.opcheck(torch.ops.pcseg.region_margin.default, (probs, parent, 300))
    torch.library.opcheck(torch.ops.pcseg.region_margin.default, (probs[:0], parent[:0], 4))
