"""Op timings for ``tools/benchmark.py``: each op's kernel against its PyTorch reference and
against what a user would otherwise use, measured side by side in one process.

Every function returns a JSON-ready dict with ``median_ms`` per method and, when the kernel
was timed, ``speedup_kernel_vs`` (the other method's median over the kernel's).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from pcseg.ops import (
    build_kernel_map,
    depthwise_sparse_conv_reference,
    draw_masked_regions,
    region_margin_reference,
    region_mask_reference,
    segment_mean_reference,
    superpixel_pool_reference,
    suppressed_selection,
    suppressed_selection_reference,
    voxelize,
    voxelize_reference,
)
from pcseg.ops._ext import extension_available


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _open3d_downsample(coord: np.ndarray, voxel_size: float) -> Callable[[], object] | None:
    try:
        import open3d
    except ImportError:
        return None
    cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(coord.astype(np.float64)))
    return lambda: cloud.voxel_down_sample(voxel_size)


def bench_voxelize(name: str, coord: np.ndarray, voxel_size: float, repeats: int) -> dict:
    """Voxelisation: the kernel, the PyTorch reference, and, both also averaging the points of
    each voxel, the full ``voxelize`` call and Open3D's ``voxel_down_sample``."""
    points = torch.from_numpy(np.ascontiguousarray(coord, dtype=np.float32))
    batch = torch.zeros(len(points), dtype=torch.long)
    sizes = [voxel_size] * 3
    methods: dict[str, Callable[[], object]] = {
        "reference": lambda: voxelize_reference(points, batch, sizes, []),
    }
    if extension_available():
        methods["kernel"] = lambda: torch.ops.pcseg.voxelize(points, batch, sizes, [])
        methods["voxelize_mean"] = lambda: voxelize(points, voxel_size, feat=points)
    open3d_fn = _open3d_downsample(coord, voxel_size)
    if open3d_fn is not None:
        methods["open3d_voxel_down_sample"] = open3d_fn
    times = {method: median_ms(fn, repeats) for method, fn in methods.items()}
    return _with_ratios(
        {
            "case": name,
            "points": len(points),
            "voxel_size": voxel_size,
            "voxels": len(voxelize(points, voxel_size).counts),
            "median_ms": times,
        }
    )


def _scatter_mean() -> Callable | None:
    try:
        from torch_scatter import scatter_mean
    except (ImportError, OSError):
        return None
    return scatter_mean


def bench_segment_mean(name: str, coord: np.ndarray, channels: int, repeats: int) -> dict:
    """Per-voxel feature means: the kernel, the PyTorch reference and torch_scatter."""
    points = torch.from_numpy(np.ascontiguousarray(coord, dtype=np.float32))
    vox = voxelize(points, 0.05)
    offsets = torch.cat([vox.counts.new_zeros(1), vox.counts.cumsum(0)])
    feat = torch.randn(len(points), channels, generator=torch.Generator().manual_seed(0))
    methods: dict[str, Callable[[], object]] = {
        "reference": lambda: segment_mean_reference(feat, vox.order, offsets),
    }
    if extension_available():
        methods["kernel"] = lambda: torch.ops.pcseg.segment_mean(feat, vox.order, offsets)
    scatter_mean = _scatter_mean()
    if scatter_mean is not None:
        methods["torch_scatter_mean"] = lambda: scatter_mean(feat, vox.inverse, dim=0)
    times = {method: median_ms(fn, repeats) for method, fn in methods.items()}
    # Reading N x C features once and writing V x C means, in float32: the bandwidth floor.
    megabytes = (len(points) + len(vox.counts)) * channels * 4 / 1e6
    return _with_ratios(
        {
            "case": name,
            "points": len(points),
            "channels": channels,
            "voxels": len(vox.counts),
            "bytes_moved_mb": megabytes,
            "median_ms": times,
        }
    )


def bench_superpixel_pool(name: str, coord: np.ndarray, channels: int, repeats: int) -> dict:
    """Superpixel-style pooling of point features (every point paired once, segments = 1.5 m
    grid cells, about 5k on a KITTI scan), forward and forward + backward: the kernel, the
    reference and torch_scatter's scatter_mean."""
    points = torch.from_numpy(np.ascontiguousarray(coord, dtype=np.float32))
    segment = voxelize(points, 1.5).inverse
    count = int(segment.max()) + 1
    index = torch.randperm(len(points), generator=torch.Generator().manual_seed(0))
    segment = segment[index]
    feat = torch.randn(len(points), channels, generator=torch.Generator().manual_seed(0))
    grad_feat = feat.clone().requires_grad_()

    def backward(pool: Callable) -> Callable[[], None]:
        def run() -> None:
            pool(grad_feat).sum().backward()
            grad_feat.grad = None

        return run

    pools: dict[str, Callable] = {
        "reference": lambda f: superpixel_pool_reference(f, index, segment, count)[0],
    }
    if extension_available():
        pools["kernel"] = lambda f: torch.ops.pcseg.superpixel_pool(f, index, segment, count)[0]
    scatter_mean = _scatter_mean()
    if scatter_mean is not None:
        pools["torch_scatter_mean"] = lambda f: scatter_mean(f[index], segment, dim=0)
    times = {method: median_ms(lambda p=pool: p(feat), repeats) for method, pool in pools.items()}
    backward_times = {method: median_ms(backward(pool), repeats) for method, pool in pools.items()}
    # Read N x C features and 2 x 8 B of indices per pairing, write S x C means (float32).
    megabytes = (len(points) * (channels * 4 + 16) + count * channels * 4) / 1e6
    result = {"case": name, "points": len(points), "channels": channels, "superpixels": count,
              "bytes_moved_mb": megabytes, "median_ms": times,
              "forward_backward_median_ms": backward_times}  # fmt: skip
    return _with_ratios(result)


def _with_ratios(result: dict) -> dict:
    times = result["median_ms"]
    if "kernel" in times:
        result["speedup_kernel_vs"] = {
            other: times[other] / times["kernel"] for other in times if other != "kernel"
        }
    return result


def bench_region_mask(
    name: str,
    coord: np.ndarray,
    repeats: int,
    *,
    voxel_size: float = 0.05,
    channels: int = 4,
    grid: int = 4,
    ratio: float = 0.75,
) -> dict:
    """CPCM region masking of one voxelised cloud: the kernel and the PyTorch reference.

    The defaults are CPCM's 4 x 4 x 4 boxes with 75 % masked, on input-sized features (coordinates
    and remission for SemanticKITTI).
    """
    points = torch.from_numpy(np.ascontiguousarray(coord, dtype=np.float32))
    vox = voxelize(points, voxel_size)
    feat = torch.randn(len(vox.coords), channels, generator=torch.Generator().manual_seed(0))
    chosen = draw_masked_regions(1, grid, ratio, torch.Generator().manual_seed(0))
    methods: dict[str, Callable[[], object]] = {
        "reference": lambda: region_mask_reference(vox.coords, feat, grid, chosen),
    }
    if extension_available():
        methods["kernel"] = lambda: torch.ops.pcseg.region_mask(vox.coords, feat, grid, chosen)
    times = {method: median_ms(fn, repeats) for method, fn in methods.items()}
    masked = region_mask_reference(vox.coords, feat, grid, chosen)[2]
    return _with_ratios(
        {
            "case": name,
            "points": len(points),
            "voxel_size": voxel_size,
            "voxels": len(vox.coords),
            "channels": channels,
            "grid": grid,
            "ratio": ratio,
            "masked_fraction": masked.float().mean().item(),
            "median_ms": times,
        }
    )


def _scatter_margin(
    scatter_mean: Callable, probs: torch.Tensor, parent: torch.Tensor, regions: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """What region_margin replaces: torch_scatter's float32 mean, then topk."""
    mean = scatter_mean(probs, parent, dim=0, dim_size=regions)
    top = mean.topk(2, dim=1).values
    return mean, top[:, 0] - top[:, 1]


def bench_region_margin(
    name: str, coord: np.ndarray, repeats: int, *, classes: int = 19, voxel_size: float = 0.1
) -> dict:
    """Region margins of per-point class probabilities (softmax of seeded logits), the regions
    being the cloud's ``voxel_size`` voxels: the kernel, the PyTorch reference and torch_scatter's
    ``scatter_mean`` followed by ``topk``."""
    points = torch.from_numpy(np.ascontiguousarray(coord, dtype=np.float32))
    parent = voxelize(points, voxel_size).inverse
    regions = int(parent.max()) + 1 if len(parent) else 0
    gen = torch.Generator().manual_seed(0)
    probs = torch.randn(len(points), classes, generator=gen).mul_(2).softmax(1)
    methods: dict[str, Callable[[], object]] = {
        "reference": lambda: region_margin_reference(probs, parent, regions),
    }
    if extension_available():
        methods["kernel"] = lambda: torch.ops.pcseg.region_margin(probs, parent, regions)
    scatter_mean = _scatter_mean()
    if scatter_mean is not None:
        methods["torch_scatter_mean_topk"] = lambda: _scatter_margin(
            scatter_mean, probs, parent, regions
        )
    times = {method: median_ms(fn, repeats) for method, fn in methods.items()}
    return _with_ratios(
        {
            "case": name,
            "points": len(points),
            "classes": classes,
            "voxel_size": voxel_size,
            "regions": regions,
            "median_ms": times,
        }
    )


def random_selection_inputs(
    points: int, scenes: int, extent: float, channels: int, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """coord, feat, score, scene, labelled of ``points`` uniform random points spread over
    ``scenes`` scenes of ``extent`` metres a side; nothing labelled yet."""
    gen = torch.Generator().manual_seed(seed)
    scene = torch.randint(0, scenes, (points,), generator=gen)
    coord = torch.rand(points, 3, generator=gen).mul_(extent)
    feat = torch.randn(points, channels, generator=gen)
    score = torch.rand(points, generator=gen)
    return coord, feat, score, scene, torch.zeros(points, dtype=torch.bool)


def bench_suppressed_selection(
    name: str,
    repeats: int,
    *,
    points: int = 10_000_000,
    scenes: int = 100,
    extent: float = 50.0,
    channels: int = 32,
    fraction: float = 2e-4,
    reference_repeats: int = 1,
) -> dict:
    """HPAL's suppressed selection of ``fraction`` of ``points`` random points: the kernel and
    the wrapper (which adds the argument checks) over ``repeats``, and the PyTorch reference
    (a full argsort and a Python loop) over ``reference_repeats`` without warm-up."""
    inputs = random_selection_inputs(points, scenes, extent, channels)
    budget, radius, threshold = max(1, round(points * fraction)), 0.2, 0.8
    options = {"budget": budget, "radius": radius, "cos_threshold": threshold}
    outputs: dict[str, torch.Tensor] = {}

    def reference() -> None:
        outputs["reference"] = suppressed_selection_reference(*inputs, **options)

    times = {"reference": median_ms(reference, reference_repeats, warmup=0)}
    if extension_available():
        times["kernel"] = median_ms(
            lambda: torch.ops.pcseg.suppressed_selection(*inputs, budget, radius, threshold),
            repeats,
        )
        times["wrapper"] = median_ms(lambda: suppressed_selection(*inputs, **options), repeats)
    chosen = suppressed_selection(*inputs, **options)
    return _with_ratios(
        {
            "case": name,
            "points": points,
            "scenes": scenes,
            "channels": channels,
            "budget": budget,
            "radius": radius,
            "cos_threshold": threshold,
            "chosen": len(chosen),
            "same_as_reference": bool(torch.equal(chosen, outputs["reference"])),
            "median_ms": times,
        }
    )


def _spconv_subm_fwd_bwd(coords: torch.Tensor, shape: list[int], features, probe) -> Callable:
    """spconv's full C -> C SubMConv3d (3x3x3), its rulebook built once and reused, as the
    dense-channel layer a depthwise one replaces; on CPU it runs pcseg's torch computation over
    spconv's rulebook (:mod:`pcseg.models.sparse`)."""
    from pcseg.models.sparse import spconv

    channels = features.shape[1]
    layer = spconv.SubMConv3d(channels, channels, 3, bias=False, indice_key="bench")
    rulebook = layer(spconv.SparseConvTensor(features, coords, shape, 1)).indice_dict

    def run() -> None:
        x = features.detach().requires_grad_()
        tensor = spconv.SparseConvTensor(x, coords, shape, 1, indice_dict=rulebook)
        layer(tensor).features.backward(probe)

    return run


def bench_depthwise_conv(
    name: str, coord: np.ndarray, channels: int, repeats: int, *, voxel_size: float = 0.05
) -> dict:
    """Forward + backward of a 3x3x3 submanifold depthwise convolution over the cloud's voxels:
    the kernel, the PyTorch reference and, for context, spconv's full ``SubMConv3d`` (C -> C, 27x
    the multiply-adds). The kernel map is built once outside the timings (as a network reuses it
    through its ``indice_key``); its build time is reported on its own."""
    points = torch.from_numpy(np.ascontiguousarray(coord, dtype=np.float32))
    coords = voxelize(points, voxel_size).coords
    shape = (coords[:, 1:].amax(0) + 1).tolist()
    kernel_map = build_kernel_map(coords, shape, 3, subm=True).kernel_map
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(len(coords), channels, generator=gen)
    weight = torch.randn(kernel_map.kernel_volume, channels, generator=gen)
    probe = torch.randn(len(coords), channels, generator=gen)

    def fwd_bwd(conv: Callable) -> Callable[[], None]:
        def run() -> None:
            x, w = features.detach().requires_grad_(), weight.detach().requires_grad_()
            conv(x, w).backward(probe)

        return run

    methods: dict[str, Callable[[], object]] = {
        "reference": fwd_bwd(lambda x, w: depthwise_sparse_conv_reference(x, w, kernel_map)),
    }
    if extension_available():
        methods["kernel"] = fwd_bwd(
            lambda x, w: torch.ops.pcseg.depthwise_sparse_conv(
                x, w, kernel_map.neighbours, kernel_map.transposed
            )
        )
    methods["spconv_subm_conv_full"] = _spconv_subm_fwd_bwd(coords, shape, features, probe)
    times = {method: median_ms(fn, repeats, warmup=1) for method, fn in methods.items()}
    build = median_ms(lambda: build_kernel_map(coords, shape, 3, subm=True), repeats, warmup=1)
    pairs = int((kernel_map.neighbours >= 0).sum())
    return _with_ratios(
        {
            "case": name,
            "points": len(points),
            "voxel_size": voxel_size,
            "voxels": len(coords),
            "channels": channels,
            "neighbour_pairs": pairs,
            "kernel_map_ms": build,
            "median_ms": times,
        }
    )
