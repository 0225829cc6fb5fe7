"""region_mask: compiled kernels against the PyTorch reference, the reference against the written
spec, a hand-derived example, the box draw, and the gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pcseg.data.formats import semantickitti
from pcseg.ops import draw_masked_regions, region_mask, region_mask_reference, voxelize

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]
GRIDS = (1, 2, 4, 8)


def random_batch(
    seed: int,
    batch_size: int,
    n: int = 3000,
    channels: int = 4,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Voxels of ``batch_size`` random clouds of different extents, rows shuffled across samples."""
    gen = torch.Generator().manual_seed(seed)
    batch = torch.randint(0, batch_size, (n,), generator=gen)
    batch[:batch_size] = torch.arange(batch_size)  # every sample has voxels
    extent = torch.tensor([20.0, 12.0, 3.0], dtype=torch.float64)
    coord = torch.rand(n, 3, generator=gen, dtype=torch.float64) * extent * (1 + batch[:, None])
    vox = voxelize(coord, 0.25, batch=batch)
    coords = vox.coords[torch.randperm(len(vox.coords), generator=gen)]
    feat = torch.randn(len(coords), channels, generator=gen, dtype=dtype)
    return coords.to(device), feat.to(device)


def kernel(coords, feat, grid, chosen):
    return torch.ops.pcseg.region_mask(coords, feat, grid, chosen)


def bits(t: torch.Tensor) -> torch.Tensor:
    """Floats as their bit patterns, so NaN and -0.0 compare exactly."""
    if not t.is_floating_point():
        return t
    return t.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def assert_same(got, want) -> None:
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and torch.equal(bits(g), bits(w))


def spec_region_mask(coords, feat, grid, chosen):
    """The module docstring's rules, literally: one sample and one axis at a time, in NumPy."""
    c = coords.cpu().numpy().astype(np.int64)
    region = np.zeros(len(c), dtype=np.int64)
    for b in np.unique(c[:, 0]):
        rows = c[:, 0] == b
        ids = np.zeros(rows.sum(), dtype=np.int64)
        for axis in (1, 2, 3):
            u = np.unique(c[rows, axis])
            n, stride = len(u), max(len(u) // grid, 1)
            pivots = np.array([u[min(k * stride, n - 1)] for k in range(1, grid)], dtype=np.int64)
            ids = ids * grid + (pivots[None, :] < c[rows, axis][:, None]).sum(1)
        region[rows] = ids
    masked = chosen.cpu().numpy()[c[:, 0], region]
    out = feat.detach().cpu().numpy().copy()
    out[masked] = 0
    return torch.from_numpy(out), torch.from_numpy(region), torch.from_numpy(masked)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_matches_reference_on_random_batches(device, batch_size, seed):
    dtype = (torch.float32, torch.float64)[seed % 2]
    coords, feat = random_batch(seed, batch_size, dtype=dtype, device=device)
    gen = torch.Generator().manual_seed(seed)
    for grid in GRIDS:
        chosen = draw_masked_regions(batch_size, grid, 0.5, gen).to(device)
        got = kernel(coords, feat, grid, chosen)
        assert_same(got, region_mask_reference(coords, feat, grid, chosen))
        assert_same(region_mask(coords, feat, grid, chosen), got)
        assert got[1].min() >= 0 and got[1].max() < grid**3


@pytest.mark.parametrize("seed", [3, 4])
def test_reference_follows_the_written_spec(seed):
    coords, feat = random_batch(seed, 3, n=1500)
    gen = torch.Generator().manual_seed(seed)
    for grid in (*GRIDS, 40):  # 40: more boxes per axis than unique values on some axes
        chosen = draw_masked_regions(3, grid, 0.3, gen)
        assert_same(
            region_mask_reference(coords, feat, grid, chosen),
            spec_region_mask(coords, feat, grid, chosen),
        )


@pytest.mark.parametrize("device", DEVICES)
def test_region_ids_of_a_hand_computed_example(device):
    # g = 2, one inner pivot per axis: p_1 = u[min(max(n // 2, 1), n - 1)].
    # Sample 0: x u = [0, 1, 2, 5] -> p_1 = u[2] = 2; y u = [3, 4, 9] -> p_1 = u[1] = 4;
    #           z u = [7] -> p_1 = u[0] = 7 (every voxel in bin 0).
    # Sample 1 (rows first): x u = [-3, 10, 11] -> p_1 = 10; y u = [0] -> 0; z u = [0, 5, 6] -> 5.
    # A bin is the number of pivots strictly below the coordinate; region = (bx * 2 + by) * 2 + bz.
    coords = torch.tensor(
        [
            [1, 10, 0, 0],  # bins (0, 0, 0) -> 0
            [1, 11, 0, 5],  # (1, 0, 0) -> 4
            [1, -3, 0, 6],  # (0, 0, 1) -> 1
            [0, 0, 3, 7],  # (0, 0, 0) -> 0
            [0, 1, 9, 7],  # (0, 1, 0) -> 2
            [0, 2, 4, 7],  # (0, 0, 0) -> 0
            [0, 5, 3, 7],  # (1, 0, 0) -> 4
            [0, 5, 9, 7],  # (1, 1, 0) -> 6
        ],
        dtype=torch.int32,
        device=device,
    )
    feat = torch.arange(16.0, device=device).view(8, 2) + 1
    chosen = torch.zeros(2, 8, dtype=torch.bool, device=device)
    chosen[0, [2, 4]] = True
    chosen[1, 1] = True
    expected_region = [0, 4, 1, 0, 2, 0, 4, 6]
    expected_masked = [False, False, True, False, True, False, True, False]
    for run in (region_mask, region_mask_reference):
        out, region, masked = run(coords, feat, 2, chosen)
        assert region.tolist() == expected_region
        assert masked.tolist() == expected_masked
        assert torch.equal(out[masked], torch.zeros(3, 2, device=device))
        assert torch.equal(out[~masked], feat[~masked])
    # g = 4 on sample 0's x (n = 4, stride 1): pivots u[1], u[2], u[3] = 1, 2, 5, so x = 0, 1 fall
    # in bin 0, x = 2 in bin 1, x = 5 in bin 2 and bin 3 stays empty. y (n = 3 < g): pivots
    # u[1], u[2], u[2] = 4, 9, 9 -> y = 3, 4 in bin 0, y = 9 in bin 1.
    chosen = torch.zeros(2, 64, dtype=torch.bool, device=device)
    _, region, _ = region_mask(coords[3:], feat[3:], 4, chosen[:1])
    bins = [(r // 16, r // 4 % 4, r % 4) for r in region.tolist()]
    assert bins == [(0, 0, 0), (0, 1, 0), (1, 0, 0), (2, 0, 0), (2, 1, 0)]


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_matches_reference_on_the_real_scan(shared_data, device):
    points = semantickitti.read_scan(shared_data / "semantickitti/sequences/00/velodyne/000000.bin")
    cloud = torch.from_numpy(points).to(device)
    vox = voxelize(cloud[:, :3], 0.05, feat=cloud)
    gen = torch.Generator().manual_seed(0)
    for grid in (4, 8):
        chosen = draw_masked_regions(1, grid, 0.75, gen).to(device)
        got = kernel(vox.coords, vox.feat, grid, chosen)
        assert_same(got, region_mask_reference(vox.coords, vox.feat, grid, chosen))
    # 48 of 64 rank-quantile boxes: boxes differ a lot in occupancy (a LiDAR scan is dense near
    # the sensor), so one draw masks 35-98 % of the voxels; averaged over draws, about 75 %.
    draws = [draw_masked_regions(1, 4, 0.75, gen).to(device) for _ in range(10)]
    fractions = [region_mask(vox.coords, vox.feat, 4, c)[2].float().mean().item() for c in draws]
    assert 0.4 < sum(fractions) / len(fractions) < 0.95
    # Two samples in one batch: the scan and a shifted half of it, rows shuffled together.
    half = vox.coords[: len(vox.coords) // 2].clone()
    half[:, 0] = 1
    half[:, 1:] += 1000
    perm = torch.randperm(len(vox.coords) + len(half), generator=gen).to(device)
    coords = torch.cat([vox.coords, half])[perm]
    feat = torch.cat([vox.feat, vox.feat[: len(half)]])[perm]
    chosen = draw_masked_regions(2, 4, 0.75, gen).to(device)
    assert_same(kernel(coords, feat, 4, chosen), region_mask_reference(coords, feat, 4, chosen))


@pytest.mark.parametrize("device", DEVICES)
def test_edge_cases_match_the_reference(device):
    gen = torch.Generator().manual_seed(5)
    coords, feat = random_batch(6, 2, n=800, device=device)
    plane = coords.clone()
    plane[:, 3] = 17  # one axis constant: every voxel in its first bin along z
    gap = coords.clone()
    gap[:, 0] *= 2  # batch indices {0, 2}: sample 1 has no voxels
    cases = [
        (coords[:1], feat[:1], 1),  # one voxel
        (plane, feat, 2),
        (gap, feat, 3),
        (coords[:30], feat[:30], 8),  # 8 boxes per axis, fewer unique values than that
        (coords[:0], feat[:0], 4),  # no voxels
        (coords, feat[:, :0], 4),  # no channels
    ]
    for grid in GRIDS:
        cases.append((coords[:5], feat[:5], grid))
    for grid in (3, 5, 33):  # pivot counts that are not powers of two for the binary search
        cases.append((coords, feat, grid))
    for c, f, grid in cases:
        batch_size = int(c[:, 0].max()) + 1 if len(c) else 2
        chosen = draw_masked_regions(batch_size, grid, 0.5, gen).to(device)
        got = kernel(c, f, grid, chosen)
        assert_same(got, region_mask_reference(c, f, grid, chosen))
        assert got[0].shape == f.shape
    _, region, _ = kernel(plane, feat, 2, torch.zeros(2, 8, dtype=torch.bool, device=device))
    assert (region % 2 == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_coordinates_untouched_and_unmasked_rows_bit_identical(device):
    coords, feat = random_batch(7, 2, device=device)
    feat[::7, 1] = float("nan")  # copied as bits, never multiplied
    feat[::5, 2] = -0.0
    before = coords.clone()
    chosen = draw_masked_regions(2, 4, 0.5, torch.Generator().manual_seed(0)).to(device)
    for run in (region_mask, region_mask_reference):
        out, _, masked = run(coords, feat, 4, chosen)
        assert torch.equal(coords, before)
        assert out.data_ptr() != feat.data_ptr()
        keep = ~masked
        assert torch.equal(bits(out[keep]), bits(feat[keep]))
        assert torch.equal(bits(out[masked]), torch.zeros_like(feat[masked]).int())
        assert 0 < masked.sum() < len(masked)
    strided = feat.t().contiguous().t()  # same values, column-major
    assert_same(region_mask(coords, strided, 4, chosen), region_mask(coords, feat, 4, chosen))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_features(dtype):
    coords, feat = random_batch(8, 2, n=500)
    chosen = draw_masked_regions(2, 2, 0.5, torch.Generator().manual_seed(1))
    assert_same(
        kernel(coords, feat.to(dtype), 2, chosen),
        region_mask_reference(coords, feat.to(dtype), 2, chosen),
    )


def test_draw_chooses_exactly_the_ratio_of_boxes_per_sample():
    for grid, ratio in [(1, 1.0), (2, 0.5), (4, 0.75), (8, 0.75), (3, 0.1), (4, 0.0)]:
        chosen = draw_masked_regions(5, grid, ratio, torch.Generator().manual_seed(0))
        assert chosen.shape == (5, grid**3) and chosen.dtype == torch.bool
        assert chosen.sum(1).tolist() == [int(grid**3 * ratio)] * 5
    draw = lambda seed: draw_masked_regions(3, 4, 0.75, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))
    rows = draw(2)
    assert not torch.equal(rows[0], rows[1]), "samples share one draw"
    assert draw_masked_regions(0, 4, 0.5, torch.Generator()).shape == (0, 64)
    torch.manual_seed(4)  # without a generator: torch's default one
    first = draw_masked_regions(2, np.int64(4), np.float32(0.75))
    torch.manual_seed(4)
    assert torch.equal(draw_masked_regions(2, 4, 0.75), first)
    assert first.sum(1).tolist() == [48, 48]


def test_draw_rejects_bad_arguments():
    gen = torch.Generator()
    for ratio in (-0.1, 1.5, float("nan"), "half"):
        with pytest.raises(ValueError, match="ratio must lie in"):
            draw_masked_regions(2, 4, ratio, gen)
    for grid in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="grid must be an integer"):
            draw_masked_regions(2, grid, 0.5, gen)
    with pytest.raises(ValueError, match="batch_size"):
        draw_masked_regions(-1, 4, 0.5, gen)


@pytest.mark.parametrize("forced", ["0", "1"])
def test_region_mask_rejects_bad_arguments(monkeypatch, forced):
    monkeypatch.setenv("PCSEG_FORCE_REFERENCE", forced)
    coords, feat = random_batch(9, 2, n=200)
    chosen = torch.zeros(2, 8, dtype=torch.bool)
    bad = [
        ((coords[:, :3], feat, 2, chosen), r"coords must be int32 \(V, 4\)"),
        ((coords.long(), feat, 2, chosen), r"coords must be int32 \(V, 4\)"),
        ((coords, feat[1:], 2, chosen), r"feat must be float"),
        ((coords, feat.int(), 2, chosen), r"feat must be float"),
        ((coords, feat, 0, chosen), "grid must be an integer >= 1"),
        ((coords, feat, 2.0, chosen), "grid must be an integer >= 1"),
        ((coords, feat, 2, chosen[:1]), r"chosen must be bool \(B, g\^3\) = \(2, 8\)"),
        ((coords, feat, 2, chosen[:, :4]), r"chosen must be bool \(B, g\^3\) = \(2, 8\)"),
        ((coords, feat, 2, chosen.int()), r"chosen must be bool"),
    ]
    negative = coords.clone()
    negative[0, 0] = -1
    bad.append(((negative, feat, 2, chosen), "negative batch index"))
    for run in (region_mask, region_mask_reference):
        for args, message in bad:
            with pytest.raises(ValueError, match=message):
                run(*args)


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_checks_what_it_indexes_with(device):
    coords, feat = random_batch(10, 2, n=200, device=device)
    chosen = torch.zeros(2, 8, dtype=torch.bool, device=device)
    negative = coords.clone()
    negative[3, 0] = -1
    for args, message in [
        ((negative, feat, 2, chosen), "negative batch index"),
        ((coords, feat, 2, chosen[:1]), "max batch index"),
        ((coords, feat, 2, torch.zeros(3, 8, dtype=torch.bool, device=device)), "max batch"),
        ((coords, feat, 2, chosen[:, :7]), r"g\^3 = 8"),
        ((coords, feat, 0, chosen), "grid must be in"),
        ((coords.long(), feat, 2, chosen), "int32"),
    ]:
        with pytest.raises(RuntimeError, match=message):
            kernel(*args)


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_passes_unmasked_rows_and_stops_at_masked_ones(device):
    coords, feat = random_batch(11, 2, n=60, channels=3, dtype=torch.float64, device=device)
    feat.requires_grad_()
    chosen = draw_masked_regions(2, 2, 0.5, torch.Generator().manual_seed(2)).to(device)
    for run in (region_mask, region_mask_reference):
        torch.autograd.gradcheck(lambda f, run=run: run(coords, f, 2, chosen)[0], (feat,))
    upstream = torch.randn_like(feat)
    out, _, masked = region_mask(coords, feat, 2, chosen)
    (grad,) = torch.autograd.grad(out, feat, upstream)
    (grad_ref,) = torch.autograd.grad(
        region_mask_reference(coords, feat, 2, chosen)[0], feat, upstream
    )
    assert torch.equal(grad, grad_ref)
    assert torch.equal(grad[masked], torch.zeros_like(grad[masked]))
    assert torch.equal(grad[~masked], upstream[~masked])
    assert 0 < masked.sum() < len(masked)


@pytest.mark.parametrize("device", DEVICES)
def test_region_mask_is_deterministic_and_passes_opcheck(device, monkeypatch):
    coords, feat = random_batch(12, 3, n=1000, device=device)
    chosen = draw_masked_regions(3, 4, 0.75, torch.Generator().manual_seed(3)).to(device)
    first = region_mask(coords, feat, 4, chosen)
    for _ in range(2):
        assert_same(region_mask(coords, feat, 4, chosen), first)
    monkeypatch.setenv("PCSEG_FORCE_REFERENCE", "1")
    assert_same(region_mask(coords, feat, 4, chosen), first)
    feat = feat.double().requires_grad_()
    torch.library.opcheck(torch.ops.pcseg.region_mask.default, (coords, feat, 4, chosen))
