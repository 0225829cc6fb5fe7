"""voxelize / segment_mean: compiled kernels against the PyTorch references, and the invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pcseg.data.formats import semantickitti
from pcseg.ops import segment_mean, segment_mean_reference, voxelize, voxelize_reference
from pcseg.ops._ext import extension_available
from pcseg.ops.voxelize import to_cylindrical

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]


def random_cloud(n: int, batches: int, seed: int, dtype=torch.float32, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    coord = torch.rand(n, 3, generator=gen, dtype=torch.float64) * torch.tensor([20, 20, 3]) - 5
    batch = torch.randint(0, batches, (n,), generator=gen)
    return coord.to(dtype).to(device), batch.to(device)


def kernel(coord, batch, size, origin):
    return torch.ops.pcseg.voxelize(coord, batch, size, origin)


def test_extension_is_built():
    assert extension_available(), "pcseg._C did not import: run `make test` to build it"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voxelize_kernel_matches_reference_on_random_clouds(device, dtype, seed):
    coord, batch = random_cloud(5000, batches=3, seed=seed, dtype=dtype, device=device)
    size = [0.3, 0.25, 0.1]
    for origin in ([], coord.amin(0).double().tolist()):  # anchored at 0, and explicit
        for got, want in zip(
            kernel(coord, batch, size, origin),
            voxelize_reference(coord, batch, size, origin),
            strict=True,
        ):
            assert torch.equal(got, want)


@pytest.mark.parametrize("device", DEVICES)
def test_voxelize_kernel_matches_reference_on_real_scan(shared_data, device):
    points = semantickitti.read_scan(shared_data / "semantickitti/sequences/00/velodyne/000000.bin")
    coord = torch.from_numpy(points[:, :3]).to(device)
    batch = torch.zeros(len(coord), dtype=torch.long, device=device)
    voxels = []
    for space, size in [(coord, [0.05] * 3), (to_cylindrical(coord), [0.1, 0.005, 0.1])]:
        for origin in ([], space.amin(0).double().tolist()):
            got = kernel(space, batch, size, origin)
            want = voxelize_reference(space, batch, size, origin)
            for g, w in zip(got, want, strict=True):
                assert torch.equal(g, w)
        voxels.append(len(got[0]))
    # 124,668 points fall into fewer, but most, distinct 5 cm voxels.
    assert 80_000 < voxels[0] < 124_668


@pytest.mark.parametrize("device", DEVICES)
def test_voxelize_invariants(device):
    coord, batch = random_cloud(3000, batches=2, seed=7, device=device)
    vox = voxelize(coord, 0.5, batch=batch, feat=coord)
    keys = vox.coords.long().cpu().numpy()
    assert len(np.unique(keys, axis=0)) == len(keys)
    assert (np.lexsort(keys.T[::-1]) == np.arange(len(keys))).all(), "voxels not sorted"
    assert vox.counts.sum().item() == len(coord)
    grid = torch.floor(coord.double() / 0.5).long()
    grid -= grid.amin(0)
    expected = torch.cat([batch[:, None], grid], 1).int()
    assert torch.equal(vox.coords[vox.inverse], expected)
    assert torch.equal(vox.inverse[vox.representative], torch.arange(len(keys), device=device))
    means = (
        torch.zeros(len(keys), 3, dtype=torch.float64, device=device).index_add_(
            0, vox.inverse, coord.double()
        )
        / vox.counts[:, None]
    )
    torch.testing.assert_close(vox.feat.double(), means, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_voxels_of_a_sample_do_not_depend_on_its_batch_mates(device):
    alone, _ = random_cloud(2000, batches=1, seed=21, device=device)
    other, _ = random_cloud(2000, batches=1, seed=22, device=device)
    batch = torch.cat([torch.zeros(2000), torch.ones(2000)]).long().to(device)
    solo = voxelize(alone, 0.3)
    mixed = voxelize(torch.cat([alone, other - 3.7]), 0.3, batch=batch)
    first = mixed.inverse[:2000]
    # Same partition of the sample's points, and the same voxel positions in space.
    assert len(first.unique()) == len(solo.counts)
    assert torch.equal(solo.inverse, torch.unique(first, return_inverse=True)[1])
    centre = lambda v, inv: v.origin.to(device) + (v.coords[inv, 1:].double() + 0.5) * 0.3  # noqa: E731
    torch.testing.assert_close(centre(solo, solo.inverse), centre(mixed, first))


def test_voxelize_cylindrical_bins_by_angle():
    coord = torch.tensor([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [10.0, 0.01, 0.0], [5.0, 0.0, 0.0]])
    vox = voxelize(coord, [1.0, 0.1, 1.0], mode="cylindrical")
    # Same radius, angles 0 and 0.001 rad share a voxel; 90 degrees apart or 5 m closer do not.
    assert vox.inverse[0] == vox.inverse[2]
    assert len({vox.inverse[0].item(), vox.inverse[1].item(), vox.inverse[3].item()}) == 3


def test_voxelize_random_representative_is_seeded_and_inside_its_voxel():
    coord, _ = random_cloud(4000, batches=1, seed=3)
    first = voxelize(coord, 1.0, generator=torch.Generator().manual_seed(0)).representative
    again = voxelize(coord, 1.0, generator=torch.Generator().manual_seed(0)).representative
    other = voxelize(coord, 1.0, generator=torch.Generator().manual_seed(1)).representative
    vox = voxelize(coord, 1.0)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(vox.inverse[first], torch.arange(len(vox.counts)))


def test_voxelize_is_deterministic_and_force_reference_agrees(monkeypatch):
    coord, batch = random_cloud(2000, batches=2, seed=11)
    runs = [voxelize(coord, 0.2, batch=batch) for _ in range(3)]
    monkeypatch.setenv("PCSEG_FORCE_REFERENCE", "1")
    runs.append(voxelize(coord, 0.2, batch=batch))
    for run in runs[1:]:
        for field in ("coords", "inverse", "counts", "order", "representative"):
            assert torch.equal(getattr(run, field), getattr(runs[0], field))


@pytest.mark.parametrize("device", DEVICES)
def test_voxelize_edge_cases(device, monkeypatch):
    empty = voxelize(torch.empty(0, 3, device=device), 0.1)
    assert empty.coords.shape == (0, 4) and empty.inverse.numel() == 0
    single = voxelize(torch.ones(1, 3, device=device), 0.1, feat=torch.ones(1, 2, device=device))
    assert single.counts.tolist() == [1] and single.feat.tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError, match="NaN"):
        voxelize(torch.tensor([[0.0, float("nan"), 0.0]], device=device), 0.1)
    with pytest.raises(RuntimeError, match="NaN or inf"):  # also with an explicit origin
        kernel(
            torch.tensor([[0.0, float("inf"), 0.0]], device=device),
            torch.zeros(1, dtype=torch.long, device=device),
            [0.1] * 3,
            [0.0] * 3,
        )
    with pytest.raises(RuntimeError, match="below the grid origin"):
        kernel(
            torch.zeros(2, 3, device=device),
            torch.zeros(2, dtype=torch.long, device=device),
            [0.1] * 3,
            [1.0] * 3,
        )
    far = torch.tensor([[0.0, 0.0, 0.0], [3e9, 0.0, 0.0]], device=device)
    with pytest.raises(RuntimeError, match="exceeds int32"):
        voxelize(far, 1.0)
    with monkeypatch.context() as patch, pytest.raises(RuntimeError, match="exceeds int32"):
        patch.setenv("PCSEG_FORCE_REFERENCE", "1")
        voxelize(far, 1.0)
    with pytest.raises(RuntimeError, match="exceeds int32"):  # no undefined cast to int
        kernel(
            torch.tensor([[1e20, 0.0, 0.0]], device=device),
            torch.zeros(1, dtype=torch.long, device=device),
            [0.1] * 3,
            [],
        )
    with pytest.raises(RuntimeError, match="positive"):
        kernel(
            torch.zeros(2, 3, device=device),
            torch.zeros(2, dtype=torch.long, device=device),
            [0.0] * 3,
            [0.0] * 3,
        )


@pytest.mark.parametrize("device", DEVICES)
def test_segment_mean_kernel_matches_reference_values_and_gradients(device):
    gen = torch.Generator().manual_seed(0)
    counts = torch.tensor([3, 0, 1, 5, 2])  # an empty segment must give 0, not 0/0
    order = torch.randperm(11, generator=gen).to(device)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]).to(device)
    feat = torch.randn(11, 4, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    got = torch.ops.pcseg.segment_mean(feat, order, offsets)
    want = segment_mean_reference(feat, order, offsets)
    torch.testing.assert_close(got, want)
    assert torch.equal(got[1], torch.zeros(4, dtype=torch.float64, device=device))
    torch.autograd.gradcheck(lambda f: segment_mean(f, order, offsets), (feat,))
    upstream = torch.randn(5, 4, generator=gen, dtype=torch.float64).to(device)
    (grad_kernel,) = torch.autograd.grad(segment_mean(feat, order, offsets), feat, upstream)
    (grad_ref,) = torch.autograd.grad(segment_mean_reference(feat, order, offsets), feat, upstream)
    torch.testing.assert_close(grad_kernel, grad_ref)


@pytest.mark.parametrize("device", DEVICES)
def test_segment_mean_rejects_offset_tables_that_would_index_out_of_bounds(device):
    feat, order = torch.rand(4, 2, device=device), torch.arange(4, device=device)
    for offsets, message in [
        ([0, 2, 4_000_000], "end at N"),
        ([1, 4], "start at 0"),
        ([0, 3, 2, 4], "non-decreasing"),
    ]:
        with pytest.raises(RuntimeError, match=message):
            torch.ops.pcseg.segment_mean(feat, order, torch.tensor(offsets, device=device))
    with pytest.raises(RuntimeError, match=r"outside 0\.\.N-1"):
        torch.ops.pcseg.segment_mean(feat, order + 1, torch.tensor([0, 4], device=device))


def test_voxelize_rejects_bad_arguments_for_kernel_and_reference(monkeypatch):
    for forced in ("0", "1"):
        monkeypatch.setenv("PCSEG_FORCE_REFERENCE", forced)
        with pytest.raises(ValueError, match="finite and positive"):
            voxelize(torch.zeros(5, 3), 0.0)
        with pytest.raises(ValueError, match="reduce"):
            voxelize(torch.zeros(5, 3), 0.1, feat=torch.zeros(5, 1), reduce="max")
        with pytest.raises(ValueError, match="batch must be int64"):
            voxelize(torch.zeros(5, 3), 0.1, batch=torch.zeros(4, dtype=torch.long))
        with pytest.raises(RuntimeError, match="exceeds int32"):
            voxelize(torch.tensor([[1e20, 0.0, 0.0]]), 0.1)
    assert len(voxelize(torch.zeros(5, 3), np.float32(0.1)).counts) == 1


def test_voxelize_rejects_bad_shapes_and_modes():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        voxelize(torch.zeros(5, 2), 0.1)
    with pytest.raises(ValueError, match="mode"):
        voxelize(torch.zeros(5, 3), 0.1, mode="spherical")


@pytest.mark.parametrize("device", DEVICES)
def test_ops_pass_torch_library_opcheck(device):
    """Schemas, fake kernels (torch.compile tracing) and autograd registration are consistent."""
    coord, batch = random_cloud(500, batches=2, seed=5, device=device)
    torch.library.opcheck(torch.ops.pcseg.voxelize.default, (coord, batch, [0.5] * 3, []))
    vox = voxelize(coord, 0.5, batch=batch)
    offsets = torch.cat([vox.counts.new_zeros(1), vox.counts.cumsum(0)])
    feat = torch.randn(500, 4, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.pcseg.segment_mean.default, (feat, vox.order, offsets))
