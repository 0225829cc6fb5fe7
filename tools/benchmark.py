"""Time pcseg's ops against their PyTorch references and what a user would otherwise use.

Every ratio is measured side by side in one run on one machine; times are medians over repeats.

    python tools/benchmark.py [--json FILE] [--repeats 20] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pcseg.data.formats import semantickitti
from pcseg.ops import segment_mean_reference, voxelize, voxelize_reference
from pcseg.ops._ext import extension_available

REAL_SCAN = Path("semantickitti/sequences/00/velodyne/000000.bin")


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


def _with_ratios(result: dict) -> dict:
    times = result["median_ms"]
    if "kernel" in times:
        result["speedup_kernel_vs"] = {
            other: times[other] / times["kernel"] for other in times if other != "kernel"
        }
    return result


def cases(data_root: Path, repeats: int) -> list[dict]:
    results = []
    scan = data_root / REAL_SCAN
    if scan.is_file():
        coord = semantickitti.read_scan(scan)[:, :3]
        results.append(bench_voxelize("voxelize/semantickitti_00_000000", coord, 0.05, repeats))
        results.append(
            bench_segment_mean("segment_mean/semantickitti_00_000000_x64", coord, 64, repeats)
        )
    results.append(
        bench_voxelize("voxelize/synthetic_map_1M", synthetic_map(), 0.05, max(3, repeats // 4))
    )
    return results


def synthetic_map(frames: int = 8) -> np.ndarray:
    """A ~1M-point map: ``frames`` synthetic 64-beam scans aligned into world coordinates."""
    from pcseg.data.synthetic import write_outdoor_sequences

    with tempfile.TemporaryDirectory() as tmp:
        (seq,) = write_outdoor_sequences(tmp, frames=frames, image_size=None, seed=0)
        poses = semantickitti.read_sequence_poses(seq)
        clouds = []
        for frame in semantickitti.frame_ids(seq):
            xyz = semantickitti.read_scan(seq / "velodyne" / f"{frame:06d}.bin")[:, :3]
            clouds.append(xyz @ poses[frame][:3, :3].T + poses[frame][:3, 3])
    return np.concatenate(clouds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[1] / "../shared/data")
    args = parser.parse_args()
    report = {
        "machine": {
            "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "extension": extension_available(),
        },
        "results": cases(args.data, args.repeats),
    }
    for result in report["results"]:
        timings = ", ".join(f"{k} {v:.2f} ms" for k, v in result["median_ms"].items())
        print(f"{result['case']} ({result['points']:,} points): {timings}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
