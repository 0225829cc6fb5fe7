"""Offline demo: write synthetic datasets in their real formats, read them back, summarise them.

    python tools/demo.py --out work_dirs/demo [--frames 8] [--seed 0]

Datasets are regenerated only when missing or written with other settings; the demo only ever
writes inside ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pcseg.data.formats import s3dis, scannet, semantickitti
from pcseg.data.meta import s3dis as s3dis_meta
from pcseg.data.meta import scannet as scannet_meta
from pcseg.data.meta import semantickitti as kitti_meta
from pcseg.data.sample import Sample
from pcseg.data.synthetic import write_indoor_s3dis, write_indoor_scannet, write_outdoor_sequences
from pcseg.ops import voxelize

STAMP = ".pcseg-demo.json"


def ensure_dataset(root: Path, settings: dict, write: Callable[[Path], object]) -> None:
    """(Re)write a synthetic dataset unless ``root`` already holds one made with ``settings``.

    The dataset is written to ``<root>.partial`` and renamed when complete, so an interrupted
    run leaves nothing half-written under ``root``; only folders the demo made are replaced.
    """
    stamp = root / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == settings:
        print(f"{root}: up to date")
        return
    if root.exists() and not stamp.is_file():
        raise SystemExit(f"{root} exists but was not written by the demo; refusing to replace it")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write(partial)
    (partial / STAMP).write_text(json.dumps(settings))
    if root.exists():
        shutil.rmtree(root)
    partial.rename(root)


def kitti_samples(root: Path) -> Iterator[Sample]:
    for seq_dir in sorted((root / "sequences").iterdir()):
        poses = semantickitti.read_sequence_poses(seq_dir)
        for frame in semantickitti.frame_ids(seq_dir):
            yield semantickitti.read_frame(seq_dir, frame, poses=poses)


def s3dis_samples(root: Path) -> Iterator[Sample]:
    for room in s3dis.list_rooms(root):
        yield s3dis.read_room(room)


def scannet_samples(root: Path) -> Iterator[Sample]:
    for split in ("train", "val"):
        for scene in scannet.read_split(root, split):
            yield scannet.read_scene(scene, align=True)


def summarise(
    name: str, samples: Iterator[Sample], class_names: tuple[str, ...], voxel_size: float
) -> dict:
    """Read every sample, voxelise it and count points per class."""
    per_class = np.zeros(len(class_names), dtype=np.int64)
    scans = points = voxels = ignored = 0
    for sample in tqdm(samples, desc=f"reading {name}", unit="scan"):
        label = sample["label"]
        per_class += np.bincount(label[label >= 0], minlength=len(class_names))
        ignored += int((label < 0).sum())
        voxels += len(voxelize(torch.from_numpy(sample["coord"]), voxel_size).counts)
        scans += 1
        points += len(label)
    return {
        "dataset": name,
        "scans": scans,
        "points": points,
        "voxels": voxels,
        "voxel_size": voxel_size,
        "ignored": ignored,
        "classes": dict(zip(class_names, per_class.tolist(), strict=True)),
    }


def print_summary(summary: dict) -> None:
    present = sum(count > 0 for count in summary["classes"].values())
    print(
        f"\n{summary['dataset']}: {summary['scans']} scans, {summary['points']:,} points, "
        f"{summary['voxels']:,} voxels at {summary['voxel_size']} m, "
        f"{present}/{len(summary['classes'])} classes present"
    )
    total = max(summary["points"], 1)
    for name, count in summary["classes"].items():
        print(f"  {name:<18} {count:>10,}  {100 * count / total:6.2f} %")


def write_datasets(data: Path, frames: int, seed: int) -> None:
    """Write (or reuse) the three synthetic datasets; each one's settings are its stamp."""
    kitti = {"sequences": ["00", "01"], "frames": frames, "azimuth_steps": 1024, "seed": seed}
    ensure_dataset(
        data / "semantickitti",
        kitti,
        lambda root: write_outdoor_sequences(root, progress=True, **kitti),
    )
    rooms = {"num_areas": 6, "rooms_per_area": 2, "points_per_room": 40_000, "seed": seed}
    ensure_dataset(data / "s3dis", rooms, lambda root: write_indoor_s3dis(root, **rooms))
    scenes = {"num_scenes": 8, "points_per_scene": 40_000, "seed": seed}
    ensure_dataset(data / "scannet", scenes, lambda root: write_indoor_scannet(root, **scenes))


def read_datasets(data: Path) -> list[dict]:
    """Read every scan of the three datasets back through the readers and summarise them."""
    return [
        summarise(
            "SemanticKITTI (synthetic)",
            kitti_samples(data / "semantickitti"),
            kitti_meta.CLASS_NAMES,
            0.05,
        ),
        summarise("S3DIS (synthetic)", s3dis_samples(data / "s3dis"), s3dis_meta.CLASS_NAMES, 0.05),
        summarise(
            "ScanNet v2 (synthetic)",
            scannet_samples(data / "scannet"),
            scannet_meta.CLASS_NAMES,
            0.02,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("work_dirs/demo"))
    parser.add_argument("--frames", type=int, default=8, help="scans per outdoor sequence")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = args.out / "data"
    write_datasets(data, args.frames, args.seed)
    summaries = read_datasets(data)
    for summary in summaries:
        print_summary(summary)
    summary_path = args.out / "summary.json"
    summary_path.write_text(json.dumps(summaries, indent=2))
    print(f"\nSynthetic datasets in {data.resolve()}; summary in {summary_path.resolve()}")


if __name__ == "__main__":
    main()
