"""Data-parallel training with torchrun on two CPU processes (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from pcseg.data.formats import semantickitti
from pcseg.engine.runlog import read_metrics

TRAIN = Path(__file__).resolve().parents[2] / "tools" / "train.py"


def _labelled_points(sequence_dir: Path) -> int:
    total = 0
    for frame in semantickitti.frame_ids(sequence_dir):
        total += int((semantickitti.read_frame(sequence_dir, frame)["label"] >= 0).sum())
    return total


def test_two_process_gloo_run_keeps_replicas_identical(small_sequences, tmp_path, make_config):
    raw = make_config(
        small_sequences,
        data={"val": {"sequences": ["01"]}},
        train={"max_steps": 6, "log_every": 2, "checkpoint_every": 3},
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    work = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(TRAIN), str(path), "--work-dir", str(work), "--no-progress",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((work / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    checksums = summary["parameter_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    records = read_metrics(work / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4, 6]
    (val,) = [r for r in records if r["split"] == "val"]
    # Each rank scores one of the two validation scans; the all-reduced confusion covers both.
    assert summary["val"]["points"] == _labelled_points(small_sequences / "sequences" / "01")
    assert val["miou"] == summary["val"]["miou"]
    assert np.isfinite(val["miou"])
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == [
        "step_00000003.pth",
        "step_00000006.pth",
    ]
