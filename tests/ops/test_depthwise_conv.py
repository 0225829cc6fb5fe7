"""depthwise_sparse_conv: kernels against the PyTorch reference and a dense grouped ``conv3d``,
gradients (gradcheck, second order), determinism, kernel maps against spconv, edge cases and
argument checks."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from pcseg.data.formats import semantickitti
from pcseg.models.sparse import spconv
from pcseg.ops import (
    KernelMap,
    build_kernel_map,
    depthwise_sparse_conv,
    depthwise_sparse_conv_reference,
    voxelize,
)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]
GRID = [9, 8, 10]
# (kernel_size, options): submanifold ones (incl. Cylinder3D's asymmetric kernels) and strided.
GEOMETRIES = {
    "subm3": (3, {"subm": True}),
    "subm133": ((1, 3, 3), {"subm": True}),
    "subm3_dilated": (3, {"subm": True, "dilation": 2}),
    "k2s2": (2, {"stride": 2}),
    "k3s2p1": (3, {"stride": 2, "padding": 1}),
    "k313s212": ((3, 1, 3), {"stride": (2, 1, 2), "padding": (1, 0, 1)}),
    "k3s1p0": (3, {"stride": 1}),
}


def random_cloud(seed: int, n: int = 300, channels: int = 4, batches: int = 2, **kw):
    """Distinct random sites of ``batches`` samples in GRID (shuffled) and random features."""
    gen = torch.Generator().manual_seed(seed)
    sites = torch.cat(
        [
            torch.randint(0, batches, (n, 1), generator=gen),
            *(torch.randint(0, s, (n, 1), generator=gen) for s in GRID),
        ],
        dim=1,
    )
    sites = torch.unique(sites, dim=0)
    indices = sites[torch.randperm(len(sites), generator=gen)].int()
    features = torch.randn(len(indices), channels, generator=gen, **kw)
    return indices, features


def conv_map(indices, geometry: str, shape=GRID):
    kernel_size, options = GEOMETRIES[geometry]
    return build_kernel_map(indices, shape, kernel_size, **options)


def random_weight(kernel_map: KernelMap, channels: int, seed: int, **kw) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(kernel_map.kernel_volume, channels, generator=gen, **kw)


def forward_backward(run, features, weight, kernel_map, probe):
    features = features.detach().requires_grad_()
    weight = weight.detach().requires_grad_()
    out = run(features, weight, kernel_map)
    grads = torch.autograd.grad((out * probe).sum(), (features, weight))
    return out.detach(), *grads


def assert_matches_reference(features, weight, kernel_map, seed=0, **tolerance):
    gen = torch.Generator().manual_seed(seed)
    probe = torch.randn(kernel_map.num_outputs, features.shape[1], generator=gen)
    probe = probe.to(features)
    got = forward_backward(depthwise_sparse_conv, features, weight, kernel_map, probe)
    want = forward_backward(depthwise_sparse_conv_reference, features, weight, kernel_map, probe)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        torch.testing.assert_close(g, w, **tolerance)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_matches_reference_on_random_clouds(device, geometry, dtype):
    indices, features = random_cloud(0, channels=5, dtype=dtype)
    kernel_map = conv_map(indices, geometry).kernel_map
    weight = random_weight(kernel_map, 5, 1, dtype=dtype)
    kernel_map = kernel_map.to(device)
    assert_matches_reference(features.to(device), weight.to(device), kernel_map)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("geometry", ["subm3", "k3s2p1", "k2s2"])
def test_gradcheck_first_and_second_order(device, geometry):
    indices, features = random_cloud(2, n=60, channels=3, dtype=torch.float64)
    kernel_map = conv_map(indices, geometry).kernel_map.to(device)
    weight = random_weight(kernel_map, 3, 3, dtype=torch.float64).to(device)
    inputs = (features.to(device).requires_grad_(), weight.requires_grad_())

    def run(x, w):
        return depthwise_sparse_conv(x, w, kernel_map)

    assert torch.autograd.gradcheck(run, inputs)
    assert torch.autograd.gradgradcheck(run, inputs)


def densify(indices, features, shape, batches):
    c = indices.long()
    grid = features.new_zeros(batches, *shape, features.shape[1])
    return grid.index_put((c[:, 0], c[:, 1], c[:, 2], c[:, 3]), features).permute(0, 4, 1, 2, 3)


def at_sites(dense, indices):
    c = indices.long()
    return dense.permute(0, 2, 3, 4, 1)[c[:, 0], c[:, 1], c[:, 2], c[:, 3]]


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_matches_dense_grouped_conv3d(geometry):
    """conv3d(groups=C) on the densified grid (empty sites zero), read at the output sites;
    a strided map's outputs are exactly the sites whose window holds an input."""
    kernel_size, options = GEOMETRIES[geometry]
    indices, features = random_cloud(4, channels=3, dtype=torch.float64)
    result = conv_map(indices, geometry)
    weight = random_weight(result.kernel_map, 3, 5, dtype=torch.float64)
    ks = [kernel_size] * 3 if isinstance(kernel_size, int) else list(kernel_size)
    dilation = options.get("dilation", 1)
    if options.get("subm"):
        padding = [dilation * (k // 2) for k in ks]
        stride = 1
    else:
        padding, stride = options.get("padding", 0), options["stride"]
    conv = {"stride": stride, "padding": padding, "dilation": dilation}
    features.requires_grad_()
    weight.requires_grad_()
    out = depthwise_sparse_conv(features, weight, result.kernel_map)
    dense_weight = weight.T.reshape(3, 1, *ks)
    dense = F.conv3d(densify(indices, features, GRID, 2), dense_weight, groups=3, **conv)
    assert list(dense.shape[2:]) == result.out_spatial_shape
    want = at_sites(dense, result.out_indices)
    torch.testing.assert_close(out, want)
    probe = torch.randn_like(out)
    got_grads = torch.autograd.grad((out * probe).sum(), (features, weight))
    want_grads = torch.autograd.grad((want * probe).sum(), (features, weight))
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w)
    if not options.get("subm"):
        occupancy = densify(indices, torch.ones(len(indices), 1, dtype=torch.float64), GRID, 2)
        reached = F.conv3d(occupancy, torch.ones(1, 1, *ks, dtype=torch.float64), **conv)
        sites = (reached[:, 0] > 0).nonzero().int()  # sorted by (b, x, y, z), as the outputs
        assert torch.equal(result.out_indices, sites)


def spconv_layer(geometry: str, channels: int, weight: torch.Tensor):
    """The spconv convolution of ``geometry`` from C to C channels whose weight is diagonal in
    the channels: a depthwise convolution computed by spconv."""
    kernel_size, options = GEOMETRIES[geometry]
    options = dict(options)
    subm = options.pop("subm", False)
    layer_type = spconv.SubMConv3d if subm else spconv.SparseConv3d
    layer = layer_type(channels, channels, kernel_size, bias=False, **options).double()
    with torch.no_grad():
        full = layer.weight.view(channels, -1, channels)  # (O, K, I)
        full.zero_()
        for c in range(channels):
            full[c, :, c] = weight[:, c]
    return layer


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_sites_and_values_match_spconv(geometry):
    """Same output sites and grid as spconv's layer of this geometry, and the same values as
    spconv computing a depthwise convolution with a channel-diagonal weight."""
    indices, features = random_cloud(6, channels=3, dtype=torch.float64)
    result = conv_map(indices, geometry)
    weight = random_weight(result.kernel_map, 3, 7, dtype=torch.float64)
    layer = spconv_layer(geometry, 3, weight)
    theirs = layer(spconv.SparseConvTensor(features, indices, GRID, 2))
    assert theirs.spatial_shape == result.out_spatial_shape
    ours = depthwise_sparse_conv(features, weight, result.kernel_map)

    def by_site(sites, values):
        key = ((sites[:, 0].long() * 64 + sites[:, 1]) * 64 + sites[:, 2]) * 64 + sites[:, 3]
        order = key.argsort()
        return sites[order], values[order]

    their_sites, their_values = by_site(theirs.indices, theirs.features)
    our_sites, our_values = by_site(result.out_indices, ours)
    assert torch.equal(our_sites, their_sites)
    torch.testing.assert_close(our_values, their_values)


def real_scan_sites(shared_data, voxel_size: float = 0.1):
    points = semantickitti.read_scan(shared_data / "semantickitti/sequences/00/velodyne/000000.bin")
    coords = voxelize(torch.from_numpy(points[:, :3]), voxel_size).coords
    return coords, (coords[:, 1:].amax(0) + 1).tolist()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("geometry", ["subm3", "k3s2p1", "k2s2"])
def test_kernel_matches_reference_on_the_real_scan(shared_data, device, geometry):
    indices, shape = real_scan_sites(shared_data)
    assert len(indices) > 30_000
    result = conv_map(indices.to(device), geometry, shape)
    kernel_map = result.kernel_map
    found = (kernel_map.neighbours >= 0).sum(1).float()
    assert found.min() >= 1 and found.mean() > 1.5  # a real scan has neighbours
    gen = torch.Generator().manual_seed(8)
    features = torch.randn(len(indices), 16, generator=gen).to(device)
    weight = random_weight(kernel_map, 16, 9).to(device)
    assert_matches_reference(features, weight, kernel_map, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_results_are_bitwise_reproducible_for_any_thread_count(device):
    indices, features = random_cloud(10, n=3000, channels=24)
    indices[:, 0] = 0
    indices = torch.unique(indices, dim=0)
    features = features[: len(indices)].to(device)
    kernel_map = conv_map(indices, "subm3").kernel_map.to(device)
    weight = random_weight(kernel_map, 24, 11).to(device)
    probe = torch.randn(kernel_map.num_outputs, 24, generator=torch.Generator().manual_seed(1))
    probe = probe.to(device)
    threads = torch.get_num_threads()
    runs = []
    try:
        for count in (1, 2, 2, 1):
            torch.set_num_threads(count)
            runs.append(
                forward_backward(depthwise_sparse_conv, features, weight, kernel_map, probe)
            )
    finally:
        torch.set_num_threads(threads)
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(run, runs[0], strict=True))


@pytest.mark.parametrize("device", DEVICES)
def test_empty_inputs_and_outputs(device):
    features = torch.randn(0, 4, device=device, requires_grad=True)
    weight = torch.randn(27, 4, device=device, requires_grad=True)
    empty = torch.empty(0, 4, dtype=torch.int32, device=device)
    for geometry in ("subm3", "k3s2p1"):
        result = conv_map(empty, geometry)
        assert result.out_indices.shape == (0, 4)
        for run in (depthwise_sparse_conv, depthwise_sparse_conv_reference):
            out = run(features, weight, result.kernel_map)
            assert out.shape == (0, 4)
            grads = torch.autograd.grad(out.sum(), (features, weight))
            assert grads[0].shape == (0, 4) and torch.equal(grads[1], torch.zeros_like(weight))
    # Outputs without any input (every neighbour missing) are zero, with zero weight gradient.
    lonely = KernelMap(torch.full((5, 27), -1, device=device), 0)
    for run in (depthwise_sparse_conv, depthwise_sparse_conv_reference):
        out = run(features, weight, lonely)
        assert torch.equal(out, torch.zeros(5, 4, device=device))
        (grad_weight,) = torch.autograd.grad(out.sum(), weight)
        assert torch.equal(grad_weight, torch.zeros_like(weight))


@pytest.mark.parametrize("device", DEVICES)
def test_a_non_finite_feature_stays_where_it_is_read(device):
    features = torch.tensor([[float("nan")], [1.0], [2.0]], device=device)
    weight = torch.tensor([[10.0], [1.0]], device=device)
    neighbours = torch.tensor([[1, 2], [-1, 1], [0, -1]], device=device)
    for run in (depthwise_sparse_conv, depthwise_sparse_conv_reference):
        out = run(features, weight, neighbours)
        assert out[:2, 0].tolist() == [12.0, 1.0] and out[2, 0].isnan()


def test_a_hand_computed_example():
    # Two channels, two offsets; output 1 reads only input 0 through offset 1.
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    weight = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    neighbours = torch.tensor([[2, 1], [-1, 0]])
    expected = [[5 + 1.5, -6 + 8.0], [0.5, 4.0]]
    for run in (depthwise_sparse_conv, depthwise_sparse_conv_reference):
        assert run(features, weight, neighbours).tolist() == expected
    kernel_map = KernelMap(neighbours, 3)
    assert kernel_map.transposed.tolist() == [[-1, 1], [-1, 0], [0, -1]]


def test_kernel_map_tables_are_each_others_transposes():
    indices, _ = random_cloud(12)
    for geometry in GEOMETRIES:
        kernel_map = conv_map(indices, geometry).kernel_map
        rebuilt = KernelMap(kernel_map.neighbours, kernel_map.num_inputs)
        assert torch.equal(rebuilt.transposed, kernel_map.transposed), geometry


@pytest.mark.parametrize("forced", ["0", "1"])
def test_rejects_bad_arguments(monkeypatch, forced):
    monkeypatch.setenv("PCSEG_FORCE_REFERENCE", forced)
    indices, features = random_cloud(13, n=50, channels=3)
    kernel_map = conv_map(indices, "subm3").kernel_map
    weight = random_weight(kernel_map, 3, 0)
    n = len(features)
    bad = [
        ((features.half(), weight, kernel_map), "features must be float32 or float64"),
        ((features[:, 0], weight, kernel_map), r"features must be float32 or float64 \(N, C\)"),
        ((features, weight.double(), kernel_map), r"in the features' dtype torch\.float32"),
        ((features, weight[:, :2], kernel_map), r"\(K, C\) = \(27, 3\)"),
        ((features, weight[:26], kernel_map), r"\(K, C\) = \(27, 3\)"),
        ((features[:-1], weight, kernel_map), f"the kernel map has {n} inputs"),
        ((features.to("meta"), weight, kernel_map), "features on meta"),
        ((features, weight, kernel_map.neighbours.int()), "neighbours must be int64"),
        ((features, weight, kernel_map.neighbours + n), rf"must lie in \[-1, {n}\)"),
        ((features, weight, kernel_map.neighbours - 1), r"got \[-2, "),
        ((features, weight, torch.zeros(2, 27, dtype=torch.long)), "read by two outputs"),
        ((features, weight, "map"), "kernel_map must be a KernelMap"),
    ]
    for run in (depthwise_sparse_conv, depthwise_sparse_conv_reference):
        for args, message in bad:
            with pytest.raises(ValueError, match=message):
                run(*args)


@pytest.mark.parametrize("device", DEVICES)
def test_kernels_check_what_they_index_with(device):
    indices, features = random_cloud(14, n=50, channels=3)
    kernel_map = conv_map(indices, "subm3").kernel_map.to(device)
    nb, tr = kernel_map.neighbours, kernel_map.transposed
    features = features.to(device)
    weight = random_weight(kernel_map, 3, 0).to(device)
    n = len(features)
    conv = torch.ops.pcseg.depthwise_sparse_conv
    grad = torch.ops.pcseg.depthwise_sparse_conv_weight_grad
    probe = torch.ones(len(nb), 3, device=device)
    cases = [
        (conv, (features, weight, nb + n, tr), rf"neighbours must lie in \[-1, {n}\)"),
        (conv, (features, weight, nb - 1, tr), r"got \[-2,"),
        (conv, (features, weight, tr, nb[:-1]), r"transposed must be int64 \(N_in, K\)"),
        (conv, (features, weight.double(), nb, tr), "weight and features must have one dtype"),
        (conv, (features.half(), weight, nb, tr), "features must be float32 or float64"),
        (conv, (features, weight[:, :2], nb, tr), "weight must have shape"),
        (conv, (features, weight, nb.int(), tr), "neighbours must be int64"),
        (conv, (features, weight, nb[:, :0], tr[:, :0]), "K >= 1"),
        (grad, (probe, features, nb + n, tr), rf"neighbours must lie in \[-1, {n}\)"),
        (grad, (probe[:-1], features, nb, tr), "grad_out must have shape"),
        (grad, (probe.double(), features, nb, tr), "grad_out and features must have one dtype"),
    ]
    for op, args, message in cases:
        with pytest.raises(RuntimeError, match=message):
            op(*args)


def test_kernel_map_builder_rejects_bad_geometry():
    indices, _ = random_cloud(15, n=40)
    cases = [
        ((torch.cat([indices, indices[:1]]), GRID, 3), {"subm": True}, "same site twice"),
        ((torch.cat([indices, indices[:1]]), GRID, 2), {"stride": 2}, "same site twice"),
        ((indices, [4, 4, 4], 3), {"subm": True}, "inside the grid"),
        ((indices - 1, GRID, 3), {"subm": True}, "batch >= 0"),
        ((indices.float(), GRID, 3), {"subm": True}, "int32 or int64"),
        ((indices, GRID, 2), {"subm": True}, "odd kernel sizes and stride 1"),
        ((indices, GRID, 3), {"subm": True, "stride": 2}, "odd kernel sizes and stride 1"),
        ((indices, GRID, 0), {}, "kernel_size must be an integer >= 1"),
        ((indices, GRID, (3, 3)), {}, "kernel_size must be"),
        ((indices, GRID, 3), {"padding": -1}, "padding must be an integer >= 0"),
        ((indices[:1] * 0, [2, 2, 2], 5), {}, "is empty"),
        ((indices, GRID, 3), {"stride": True}, "stride must be"),
    ]
    for args, options, message in cases:
        with pytest.raises(ValueError, match=message):
            build_kernel_map(*args, **options)
    with pytest.raises(ValueError, match="num_inputs must be >= 0"):
        KernelMap(torch.zeros(1, 1, dtype=torch.long), -1)


@pytest.mark.parametrize("device", DEVICES)
def test_ops_pass_opcheck(device):
    indices, features = random_cloud(16, n=80, channels=3, dtype=torch.float64)
    kernel_map = conv_map(indices, "k3s2p1").kernel_map.to(device)
    nb, tr = kernel_map.neighbours, kernel_map.transposed
    features = features.to(device).requires_grad_()
    weight = random_weight(kernel_map, 3, 1, dtype=torch.float64).to(device).requires_grad_()
    grad_out = torch.randn(len(nb), 3, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.pcseg.depthwise_sparse_conv.default, (features, weight, nb, tr))
    torch.library.opcheck(
        torch.ops.pcseg.depthwise_sparse_conv_weight_grad.default, (grad_out, features, nb, tr)
    )
    empty = (features[:0], weight, nb[:0], tr[:0])
    torch.library.opcheck(torch.ops.pcseg.depthwise_sparse_conv.default, empty)
