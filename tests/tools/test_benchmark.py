"""The benchmark tool measures every method on the same cloud and writes comparable results."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

TOOL = Path(__file__).resolve().parents[2] / "tools" / "benchmark.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("pcseg_benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_voxelize_benchmark_reports_all_methods_and_ratios():
    tool = load_tool()
    cloud = np.random.default_rng(0).uniform(0, 10, (5000, 3))
    result = tool.bench_voxelize("small", cloud, 0.5, repeats=2)
    assert set(result["median_ms"]) == {
        "reference",
        "kernel",
        "voxelize_mean",
        "open3d_voxel_down_sample",
    }
    assert all(t > 0 for t in result["median_ms"].values())
    ratios = result["speedup_kernel_vs"]
    assert ratios["reference"] == result["median_ms"]["reference"] / result["median_ms"]["kernel"]
    grid = np.floor(cloud.astype(np.float32).astype(np.float64) / 0.5)
    assert result["voxels"] == len(np.unique(grid, axis=0))


def test_segment_mean_benchmark_compares_with_torch_scatter():
    tool = load_tool()
    cloud = np.random.default_rng(1).uniform(0, 2, (4000, 3))
    result = tool.bench_segment_mean("small", cloud, 8, repeats=2)
    assert set(result["median_ms"]) == {"reference", "kernel", "torch_scatter_mean"}
    assert result["bytes_moved_mb"] == (4000 + result["voxels"]) * 8 * 4 / 1e6
