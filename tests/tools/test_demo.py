"""The offline demo: writes data, trains, evaluates, exports, and reuses what it made."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "tools" / "demo.py"
QUICK = [
    "--set",
    "train.max_steps=3",
    "--set",
    "schedule.warmup_steps=0",
    "--set",
    "model.backbone.planes=[4,8,8,4]",
]
QUICK += ["--set", "model.backbone.layers=[1,1,1,1]", "--set", "model.backbone.stem_channels=4"]


def run_demo(out: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, str(DEMO), "--out", str(out), *args, *QUICK]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=check)


def test_outdoor_demo_trains_evaluates_exports_and_reuses(tmp_path):
    first = run_demo(tmp_path, "--frames", "1").stdout
    assert "up to date" not in first
    run = tmp_path / "run_outdoor"
    metrics = json.loads((run / "eval_val" / "metrics.json").read_text())
    assert metrics["scans"] == 1 and metrics["points"] > 50_000
    assert "mIoU" in first and "car" in first
    assert (run / "predictions" / "sequences" / "04" / "predictions" / "000000.label").is_file()
    assert "TensorBoard logs: tensorboard --logdir" in first.splitlines()[-1]
    again = run_demo(tmp_path, "--frames", "1").stdout
    assert "up to date" in again and "training finished earlier" in again
    # The demo never replaces a folder it did not write.
    (tmp_path / "data" / "semantickitti" / ".pcseg-demo.json").unlink()
    failed = run_demo(tmp_path, "--frames", "2", check=False)
    assert failed.returncode != 0 and "not written by the demo" in failed.stderr


def test_indoor_demo_runs_on_s3dis_format(tmp_path):
    output = run_demo(tmp_path, "--dataset", "s3dis").stdout
    metrics = json.loads((tmp_path / "run_s3dis" / "eval_val" / "metrics.json").read_text())
    assert metrics["scans"] == 2 and "chair" in output
    assert (tmp_path / "run_s3dis" / "predictions" / "Area_5").is_dir()
