"""superpixel_pool: compiled kernels against the PyTorch reference (values and gradients), a
hand-computed example, empty superpixels, points shared by several cameras, argument checks."""

from __future__ import annotations

import pytest
import torch

from pcseg.ops import superpixel_pool, superpixel_pool_reference

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]


def random_pairings(seed: int, n: int, pairs: int, segments: int, channels: int, device="cpu"):
    """Features and pairings in random order; a point may be paired several times and segments
    past the drawn ids stay empty."""
    gen = torch.Generator().manual_seed(seed)
    feat = torch.randn(n, channels, generator=gen, dtype=torch.float64)
    index = torch.randint(0, n, (pairs,), generator=gen)
    segment = torch.randint(0, max(segments // 2, 1), (pairs,), generator=gen)
    return feat.to(device), index.to(device), segment.to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n", "pairs", "segments"), [(4000, 6000, 900), (50, 3, 7), (10, 0, 4)])
def test_kernel_matches_reference_in_values_and_gradients(device, dtype, n, pairs, segments):
    feat, index, segment = random_pairings(0, n, pairs, segments, 24, device)
    feat = feat.to(dtype).requires_grad_()
    got_mean, got_count = torch.ops.pcseg.superpixel_pool(feat, index, segment, segments)
    want_mean, want_count = superpixel_pool_reference(feat, index, segment, segments)
    assert torch.equal(got_count, want_count) and got_mean.dtype == dtype
    torch.testing.assert_close(got_mean, want_mean)
    weight = torch.randn_like(want_mean)
    (got_grad,) = torch.autograd.grad((got_mean * weight).sum(), feat)
    (want_grad,) = torch.autograd.grad((want_mean * weight).sum(), feat)
    torch.testing.assert_close(got_grad, want_grad)
    # The public function dispatches to the kernel and gives the same numbers bit for bit.
    mean, count = superpixel_pool(feat, index, segment, segments)
    assert torch.equal(mean, got_mean) and torch.equal(count, got_count)


def test_gradcheck_of_the_kernel():
    feat, index, segment = random_pairings(1, 30, 80, 12, 5)
    feat.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda f: torch.ops.pcseg.superpixel_pool(f, index, segment, 12)[0], (feat,)
    )


@pytest.mark.parametrize("device", DEVICES)
def test_hand_computed_means_with_an_empty_superpixel_and_a_shared_point(device):
    # Point 1 is seen by two cameras (superpixels 0 and 2); superpixel 1 has no point.
    feat = torch.tensor([[1.0, 10.0], [3.0, 30.0], [8.0, 80.0]], device=device, requires_grad=True)
    index = torch.tensor([0, 1, 1, 2], device=device)
    segment = torch.tensor([0, 0, 2, 2], device=device)
    mean, count = superpixel_pool(feat, index, segment, 3)
    want = torch.tensor([[2.0, 20.0], [0.0, 0.0], [5.5, 55.0]], device=device)
    assert torch.equal(mean, want)
    assert count.tolist() == [2, 0, 2]
    mean.sum().backward()
    # Row 1 contributes half of superpixel 0 and half of superpixel 2.
    assert feat.grad.tolist() == [[0.5, 0.5], [1.0, 1.0], [0.5, 0.5]]


def test_deterministic_across_runs_and_threads():
    feat, index, segment = random_pairings(2, 20000, 60000, 3000, 64)
    feat = feat.float().requires_grad_()
    runs = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        mean, _ = superpixel_pool(feat, index, segment, 3000)
        (grad,) = torch.autograd.grad(mean.square().sum(), feat)
        runs.append((mean, grad))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize(
    ("index", "segment", "segments", "message"),
    [
        ([0, 5], [0, 1], 2, "index values must lie in"),
        ([0, 1], [0, 2], 2, "segment values must lie in"),
        ([0, -1], [0, 1], 2, "index values must lie in"),
        ([0, 1], [0], 2, "segment must be int64"),
    ],
)
def test_bad_arguments_are_named(index, segment, segments, message):
    feat = torch.zeros(3, 2)
    for fn in (superpixel_pool, superpixel_pool_reference):
        with pytest.raises(ValueError, match=message):
            fn(feat, torch.tensor(index), torch.tensor(segment), segments)
    if len(index) == len(segment):
        with pytest.raises(RuntimeError, match=message):
            torch.ops.pcseg.superpixel_pool(
                feat, torch.tensor(index), torch.tensor(segment), segments
            )
