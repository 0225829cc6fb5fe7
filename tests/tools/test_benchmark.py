"""The benchmark tool measures every method on the same cloud and writes comparable results."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TOOL = Path(__file__).resolve().parents[2] / "tools" / "benchmark.py"


def load_tool():
    """tools/benchmark.py as a module, with tools/ importable as when it runs as a script."""
    if str(TOOL.parent) not in sys.path:
        sys.path.insert(0, str(TOOL.parent))
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


def test_region_mask_benchmark_times_kernel_and_reference():
    tool = load_tool()
    cloud = np.random.default_rng(3).uniform(0, [20, 20, 2], (6000, 3))
    result = tool.bench_region_mask("small", cloud, repeats=2, voxel_size=0.2)
    assert set(result["median_ms"]) == {"reference", "kernel"}
    assert all(t > 0 for t in result["median_ms"].values())
    ratios = result["speedup_kernel_vs"]
    assert ratios["reference"] == result["median_ms"]["reference"] / result["median_ms"]["kernel"]
    assert (result["grid"], result["ratio"], result["channels"]) == (4, 0.75, 4)
    grid = np.floor(cloud.astype(np.float32).astype(np.float64) / 0.2)
    assert result["voxels"] == len(np.unique(grid, axis=0))
    assert 0.4 < result["masked_fraction"] < 0.95


def test_region_margin_benchmark_compares_with_torch_scatter():
    tool = load_tool()
    cloud = np.random.default_rng(4).uniform(0, [8, 8, 1], (5000, 3))
    result = tool.bench_region_margin("small", cloud, repeats=2, classes=5, voxel_size=0.5)
    assert set(result["median_ms"]) == {"reference", "kernel", "torch_scatter_mean_topk"}
    assert all(t > 0 for t in result["median_ms"].values())
    grid = np.floor(cloud.astype(np.float32).astype(np.float64) / 0.5)
    assert result["regions"] == len(np.unique(grid, axis=0))
    assert (result["points"], result["classes"]) == (5000, 5)


def test_superpixel_pool_benchmark_times_both_directions():
    tool = load_tool()
    cloud = np.random.default_rng(6).uniform(0, [30, 30, 2], (6000, 3))
    result = tool.bench_superpixel_pool("small", cloud, 8, repeats=2)
    methods = {"reference", "kernel", "torch_scatter_mean"}
    assert set(result["median_ms"]) == set(result["forward_backward_median_ms"]) == methods
    grid = np.floor(cloud.astype(np.float32).astype(np.float64) / 1.5)
    assert result["superpixels"] == len(np.unique(grid, axis=0))
    assert result["bytes_moved_mb"] == (6000 * (8 * 4 + 16) + result["superpixels"] * 32) / 1e6


def test_suppressed_selection_benchmark_checks_kernel_against_reference():
    tool = load_tool()
    result = tool.bench_suppressed_selection(
        "small", repeats=2, points=20_000, scenes=4, extent=5.0, channels=3, fraction=0.01
    )
    assert set(result["median_ms"]) == {"reference", "kernel", "wrapper"}
    assert all(t > 0 for t in result["median_ms"].values())
    ratios = result["speedup_kernel_vs"]
    assert ratios["reference"] == result["median_ms"]["reference"] / result["median_ms"]["kernel"]
    assert result["budget"] == result["chosen"] == 200
    assert result["same_as_reference"] is True


def test_depthwise_conv_benchmark_times_kernel_reference_and_spconv():
    tool = load_tool()
    cloud = np.random.default_rng(5).uniform(0, [4, 4, 1], (4000, 3))
    result = tool.bench_depthwise_conv("small", cloud, 8, repeats=2, voxel_size=0.1)
    assert set(result["median_ms"]) == {"reference", "kernel", "spconv_subm_conv_full"}
    assert all(t > 0 for t in result["median_ms"].values()) and result["kernel_map_ms"] > 0
    ratios = result["speedup_kernel_vs"]
    assert ratios["reference"] == result["median_ms"]["reference"] / result["median_ms"]["kernel"]
    grid = np.floor(cloud.astype(np.float32).astype(np.float64) / 0.1)
    assert result["voxels"] == len(np.unique(grid, axis=0))
    assert result["voxels"] <= result["neighbour_pairs"] <= 27 * result["voxels"]
    assert (result["points"], result["channels"]) == (4000, 8)


def test_op_cases_cover_every_op_on_both_clouds(tmp_path, monkeypatch):
    tool = load_tool()
    calls = []
    names = (
        "bench_voxelize",
        "bench_segment_mean",
        "bench_region_mask",
        "bench_region_margin",
        "bench_superpixel_pool",
        "bench_depthwise_conv",
    )
    for name in (*names, "bench_suppressed_selection"):
        monkeypatch.setattr(tool, name, lambda case, *a, **k: calls.append(case) or {})
    monkeypatch.setattr(tool, "synthetic_map", lambda: np.zeros((10, 3)))
    scan = tmp_path / tool.REAL_SCAN
    scan.parent.mkdir(parents=True)
    np.zeros((10, 4), dtype=np.float32).tofile(scan)
    tool.cases(tmp_path, repeats=4)
    assert calls == [
        "voxelize/semantickitti_00_000000",
        "segment_mean/semantickitti_00_000000_x64",
        "region_mask/semantickitti_00_000000_g4",
        "region_margin/semantickitti_00_000000_x19",
        "superpixel_pool/semantickitti_00_000000_x64",
        "depthwise_conv/semantickitti_00_000000_x32",
        "depthwise_conv/semantickitti_00_000000_x64",
        "depthwise_conv/semantickitti_00_000000_x128",
        "voxelize/synthetic_map_1M",
        "region_mask/synthetic_map_1M_g4",
        "suppressed_selection/random_10M",
    ]


def test_inference_benchmark_times_every_stage_consistently():
    from pcseg.models.segmentor import build_segmentor

    tool = load_tool()
    rng = np.random.default_rng(2)
    coord = rng.uniform(0, [2.0, 2.0, 0.3], (3000, 3))
    points = np.concatenate([coord, rng.uniform(0, 1, (3000, 1))], axis=1).astype(np.float32)
    spec = {"name": "spunet", "stem_channels": 4, "planes": [4, 4, 4, 4], "layers": [1, 1, 1, 1]}
    result = tool.bench_inference(
        "tiny", tool.scan_sample(points), spec, voxel_size=0.05, repeats=2, device="cpu"
    )

    stages = {"voxelisation", "network", "devoxelisation"}
    assert set(result["median_ms"]) == stages | {"total"}
    assert set(result["share_percent"]) == stages
    assert all(t > 0 for t in result["median_ms"].values())
    assert sum(result["share_percent"].values()) == pytest.approx(100)
    assert result["points"] == 3000
    assert result["points_per_s"] == pytest.approx(3000 / (result["median_ms"]["total"] / 1e3))
    grid = np.floor(points[:, :3].astype(np.float64) / 0.05)
    assert result["voxels"] == len(np.unique(grid, axis=0)) < 3000
    model = build_segmentor(spec, in_channels=4, num_classes=19)
    assert result["parameters"] == sum(p.numel() for p in model.parameters())
    assert result["device"] == "cpu" and result["torch_threads"] == torch.get_num_threads()
    assert result["peak_memory_mib"] is None or result["peak_memory_mib"] >= 0
    assert (result["peak_memory_mib"] is None) == ("notes" in result)
    macs = result["multiply_adds"]
    assert macs["depthwise"] == 0 and macs["total"] == macs["conv"] + macs["linear"] > 0
    sdsc = tool.bench_inference(
        "tiny_sdsc", tool.scan_sample(points), {**spec, "block_conv": "sdsc"},
        voxel_size=0.05, repeats=1, device="cpu",
    )  # fmt: skip
    assert sdsc["multiply_adds"]["depthwise"] > 0
    assert sdsc["multiply_adds"]["conv"] < macs["conv"]
    assert sdsc["parameters"] < result["parameters"] and sdsc["voxels"] == result["voxels"]


def test_backbone_sizes_come_from_their_config_files():
    tool = load_tool()
    small, large = tool.backbone_spec("small"), tool.backbone_spec("34c")
    assert small["name"] == large["name"] == "spunet"
    assert small["stem_channels"] == 16 and large["stem_channels"] == 32
