"""The offline demo writes all three synthetic datasets, reads them back, and skips on re-run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "tools" / "demo.py"


def run_demo(out: Path, frames: int = 1) -> str:
    result = subprocess.run(
        [sys.executable, str(DEMO), "--out", str(out), "--frames", str(frames)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return result.stdout


def test_demo_writes_reads_back_and_reuses_datasets(tmp_path):
    first = run_demo(tmp_path)
    summaries = {s["dataset"]: s for s in json.loads((tmp_path / "summary.json").read_text())}
    kitti = summaries["SemanticKITTI (synthetic)"]
    assert kitti["scans"] == 2 and kitti["points"] > 80_000
    assert sum(v > 0 for v in kitti["classes"].values()) == 16
    assert summaries["S3DIS (synthetic)"]["scans"] == 12
    assert all(v > 0 for v in summaries["S3DIS (synthetic)"]["classes"].values())
    assert all(v > 0 for v in summaries["ScanNet v2 (synthetic)"]["classes"].values())
    for summary in summaries.values():
        assert 0 < summary["voxels"] <= summary["points"]
    assert (tmp_path / "data/semantickitti/sequences/01/velodyne/000000.bin").is_file()
    assert "up to date" not in first
    assert run_demo(tmp_path).count("up to date") == 3
    # Other settings rewrite the dataset from scratch: no frames of the earlier run remain.
    assert run_demo(tmp_path, frames=2).count("up to date") == 2
    summaries = {s["dataset"]: s for s in json.loads((tmp_path / "summary.json").read_text())}
    assert summaries["SemanticKITTI (synthetic)"]["scans"] == 4
    (tmp_path / "data" / "scannet" / ".pcseg-demo.json").unlink()
    failed = subprocess.run(
        [sys.executable, str(DEMO), "--out", str(tmp_path), "--frames", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode != 0 and "not written by the demo" in failed.stderr
