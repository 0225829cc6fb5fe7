"""Time pcseg's ops against their PyTorch references and what a user would otherwise use.

Every ratio is measured side by side in one run on one machine; times are medians over repeats.
The op timings live in ``bench_ops.py`` beside this script. The inference part times one real
scan end to end (voxelisation, network, devoxelisation) for each backbone size, with random
weights: throughput does not depend on training.

    python tools/benchmark.py [--json FILE] [--repeats 20] [--data ../shared/data]
                              [--only {ops,inference}] [--inference-repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_ops import (
    bench_depthwise_conv,
    bench_region_margin,
    bench_region_mask,
    bench_segment_mean,
    bench_superpixel_pool,
    bench_suppressed_selection,
    bench_voxelize,
)

from pcseg.config import load_raw
from pcseg.data.collate import collate
from pcseg.data.formats import semantickitti
from pcseg.data.sample import Sample, make_sample
from pcseg.data.transforms import FEATURE_CHANNELS
from pcseg.models.complexity import count_multiply_adds
from pcseg.models.segmentor import build_segmentor, count_parameters
from pcseg.ops._ext import extension_available

REAL_SCAN = Path("semantickitti/sequences/00/velodyne/000000.bin")
REAL_SCAN_NAME = "semantickitti_00_000000"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Backbone sizes of the inference part: each is defined once, by its config file.
BACKBONE_CONFIGS = {
    "small": CONFIGS / "_base_" / "spunet_small.yaml",
    "34c": CONFIGS / "_base_" / "spunet34c.yaml",
}
INFERENCE_FEATURES = ("coord", "remission")
INFERENCE_CLASSES = 19  # SemanticKITTI
STAGES = ("voxelisation", "network", "devoxelisation")
DEPTHWISE_CHANNELS = (32, 64, 128)
BLOCK_CONVS = ("standard", "sdsc")  # SpUNet's dense blocks and LiM3D's SDSC variant


def backbone_spec(size: str) -> dict:
    """The backbone spec (``{"name": ..., **kwargs}``) of a size of :data:`BACKBONE_CONFIGS`."""
    return load_raw(BACKBONE_CONFIGS[size])["model"]["backbone"]


def scan_sample(points: np.ndarray, scene_id: str = "scan") -> Sample:
    """A sample of a (N, 4) x, y, z, remission scan, as the dataset hands it to the evaluator."""
    remission = np.ascontiguousarray(points[:, 3], dtype=np.float32)
    sample = make_sample(
        coord=points[:, :3],
        feat=remission[:, None],
        label=None,
        scene_id=scene_id,
        remission=remission,
    )
    sample["point_index"] = np.arange(len(points), dtype=np.int64)
    sample["index"] = 0
    return sample


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> str | None:
    """Return freed heap to the OS, then reset the kernel's peak RSS (VmHWM) to the current RSS.

    Returns None on success, else why the peak cannot be measured.
    """
    # Without glibc's malloc_trim, memory the allocator kept from earlier runs is not counted.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as stream:
            stream.write("5")
        _status_kib("VmHWM")
    except OSError as error:
        return f"peak RSS not measured: cannot reset it through /proc/self/clear_refs ({error})"
    return None


def _peak_memory_method(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated increase (device memory only)"
    return "peak RSS (VmHWM) increase of the process"


def _peak_memory(run: Callable[[], object], device: torch.device) -> tuple[float | None, str]:
    """Peak memory increase (MiB) during one call of ``run``, or None and why not."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20, ""
    failure = _reset_peak_rss()
    if failure is not None:
        return None, failure
    base = _status_kib("VmHWM")
    run()
    return (_status_kib("VmHWM") - base) / 1024, ""


@torch.no_grad()
def bench_inference(
    name: str,
    sample: Sample,
    backbone_spec: dict,
    *,
    voxel_size: float,
    repeats: int,
    device: torch.device | str,
    warmup: int = 1,
    features: tuple[str, ...] = INFERENCE_FEATURES,
    num_classes: int = INFERENCE_CLASSES,
    seed: int = 0,
) -> dict:
    """End-to-end inference of one sample with a randomly initialised (seeded) segmentor.

    Stages, timed separately in every repeat: voxelisation (``collate``: feature assembly and
    voxelisation), network (the model in eval mode) and devoxelisation (softmax, gather to every
    point through ``inverse``, argmax). On CUDA the batch's copy to the device is part of
    voxelisation and the predictions' copy back part of devoxelisation. Times are medians over
    ``repeats`` after ``warmup`` runs; ``total`` is the median of the per-repeat totals and the
    shares are of the summed stage medians. Peak memory is measured on one more run.
    """
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_segmentor(
            backbone_spec,
            in_channels=sum(FEATURE_CHANNELS[key] for key in features),
            num_classes=num_classes,
        )
    model = model.to(device).eval()
    points = len(sample["coord"])

    def run() -> tuple[list[float], int]:
        times = [time.perf_counter()]
        batch = collate([sample], voxel_size=voxel_size, features=list(features))
        if device.type != "cpu":
            batch = batch.to(device)
        _sync(device)
        times.append(time.perf_counter())
        logits = model(batch.voxel_coords, batch.voxel_feat, 1)
        _sync(device)
        times.append(time.perf_counter())
        pred = torch.softmax(logits.float(), dim=1)[batch.inverse].argmax(1).cpu()
        _sync(device)
        times.append(time.perf_counter())
        if len(pred) != points:
            raise RuntimeError(f"{name}: {len(pred)} predictions for {points} points")
        return [(end - start) * 1e3 for start, end in itertools.pairwise(times)], len(
            batch.voxel_coords
        )

    for _ in range(warmup):
        run()
    per_repeat = [run() for _ in range(repeats)]
    batch = collate([sample], voxel_size=voxel_size, features=list(features)).to(device)
    multiply_adds = count_multiply_adds(
        model, lambda: model(batch.voxel_coords, batch.voxel_feat, 1)
    )
    voxels = per_repeat[0][1]
    medians = {
        stage: statistics.median(times[i] for times, _ in per_repeat)
        for i, stage in enumerate(STAGES)
    }
    total = statistics.median(sum(times) for times, _ in per_repeat)
    summed = sum(medians.values())
    peak_mib, why_not = _peak_memory(run, device)
    result = {
        "case": name,
        "backbone": dict(backbone_spec),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "points": points,
        "voxels": voxels,
        "voxel_size": voxel_size,
        "features": list(features),
        "num_classes": num_classes,
        "parameters": count_parameters(model),
        "multiply_adds": multiply_adds,
        "repeats": repeats,
        "warmup": warmup,
        "median_ms": {**medians, "total": total},
        "share_percent": {stage: 100 * ms / summed for stage, ms in medians.items()},
        "points_per_s": points / (total / 1e3),
        "peak_memory_mib": peak_mib,
        "peak_memory": _peak_memory_method(device),
    }
    if peak_mib is None:
        result["notes"] = why_not
    return result


def inference_cases(data_root: Path, repeats: int, device: torch.device) -> list[dict]:
    """Every backbone size, with dense and with SDSC blocks, on the real scan (nothing when the
    scan is absent)."""
    scan = data_root / REAL_SCAN
    if not scan.is_file():
        return []
    sample = scan_sample(semantickitti.read_scan(scan), REAL_SCAN_NAME)
    return [
        bench_inference(
            f"inference/{REAL_SCAN_NAME}/spunet_{size}{'' if conv == 'standard' else '_' + conv}",
            sample,
            {**backbone_spec(size), "block_conv": conv},
            voxel_size=0.05,
            repeats=repeats,
            device=device,
        )
        for size in BACKBONE_CONFIGS
        for conv in BLOCK_CONVS
    ]


def format_inference(results: list[dict]) -> str:
    """A readable table of :func:`bench_inference` results."""
    head = results[0]
    lines = [
        f"inference on {head['device']} ({head['torch_threads']} torch threads), "
        f"{head['points']:,} points, {head['voxel_size'] * 100:g} cm voxels, "
        f"features {'+'.join(head['features'])}; median ms (share) over {head['repeats']} "
        f"repeats after {head['warmup']} warm-up",
        f"{'backbone':<18}{'params':>12}{'GMACs':>8}{'voxels':>9}"
        + "".join(f"{stage:>19}" for stage in STAGES)
        + f"{'total':>11}{'points/s':>11}{'peak MiB':>10}",
    ]
    for result in results:
        ms, share = result["median_ms"], result["share_percent"]
        peak = result["peak_memory_mib"]
        lines.append(
            f"{result['case'].rsplit('/', 1)[-1]:<18}{result['parameters']:>12,}"
            f"{result['multiply_adds']['total'] / 1e9:>8.1f}{result['voxels']:>9,}"
            + "".join(f"{ms[s]:>11.1f} ({share[s]:4.1f}%)" for s in STAGES)
            + f"{ms['total']:>11.1f}{result['points_per_s']:>11,.0f}"
            + (f"{peak:>10.1f}" if peak is not None else f"{'n/a':>10}")
        )
    lines.append(f"peak memory: {head['peak_memory']}")
    lines.extend(f"note: {r['notes']}" for r in results if "notes" in r)
    return "\n".join(lines)


def cases(data_root: Path, repeats: int) -> list[dict]:
    """The op timings (:mod:`bench_ops`) on the real scan, when present (the depthwise
    convolution, slowest, with a quarter of the repeats), the ~1M-point map, and the selection
    from 10M random points."""
    results = []
    scan = data_root / REAL_SCAN
    if scan.is_file():
        coord = semantickitti.read_scan(scan)[:, :3]
        results.append(bench_voxelize(f"voxelize/{REAL_SCAN_NAME}", coord, 0.05, repeats))
        results.append(bench_segment_mean(f"segment_mean/{REAL_SCAN_NAME}_x64", coord, 64, repeats))
        results.append(bench_region_mask(f"region_mask/{REAL_SCAN_NAME}_g4", coord, repeats))
        results.append(bench_region_margin(f"region_margin/{REAL_SCAN_NAME}_x19", coord, repeats))
        results.append(
            bench_superpixel_pool(f"superpixel_pool/{REAL_SCAN_NAME}_x64", coord, 64, repeats)
        )
        for channels in DEPTHWISE_CHANNELS:
            results.append(
                bench_depthwise_conv(
                    f"depthwise_conv/{REAL_SCAN_NAME}_x{channels}",
                    coord,
                    channels,
                    max(3, repeats // 4),
                )
            )
    world, map_repeats = synthetic_map(), max(3, repeats // 4)
    results.append(bench_voxelize("voxelize/synthetic_map_1M", world, 0.05, map_repeats))
    results.append(bench_region_mask("region_mask/synthetic_map_1M_g4", world, map_repeats))
    results.append(bench_suppressed_selection("suppressed_selection/random_10M", map_repeats))
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
    parser.add_argument("--repeats", type=int, default=20, help="repeats of the op timings")
    parser.add_argument(
        "--inference-repeats", type=int, default=3, help="repeats of the inference timings"
    )
    parser.add_argument("--only", choices=("ops", "inference"), help="run only this part")
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[1] / "../shared/data")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "extension": extension_available(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        },
    }
    if args.only != "inference":
        report["results"] = cases(args.data, args.repeats)
        for result in report["results"]:
            timings = ", ".join(f"{k} {v:.2f} ms" for k, v in result["median_ms"].items())
            print(f"{result['case']} ({result['points']:,} points): {timings}")
    if args.only != "ops":
        report["inference"] = inference_cases(args.data, args.inference_repeats, device)
        if report["inference"]:
            print(format_inference(report["inference"]))
        else:
            print(f"inference skipped: no scan at {args.data / REAL_SCAN}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
