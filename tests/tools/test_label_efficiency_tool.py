"""tools/label_efficiency.py end to end: runs, resumes without retraining, table and plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

TINY = {"name": "spunet", "stem_channels": 4, "planes": [4, 8, 8, 4], "layers": [1, 1, 1, 1]}


def _config(tmp_path: Path, root: Path) -> Path:
    path = tmp_path / "sweep.yaml"
    raw = {
        "data": {
            "name": "semantickitti",
            "root": str(root),
            "train": {"sequences": ["00"]},
            "val": {"sequences": ["01"]},
            "voxel_size": 0.2,
            "features": ["coord", "remission"],
            "num_workers": 0,
        },
        "model": {"backbone": TINY},
        "method": {"name": "cpcm", "grid": 2, "mask_weight": 1.0},
        "optim": {"name": "adamw", "lr": 0.01},
        "train": {"max_steps": 2, "log_every": 1},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def test_sweep_writes_table_and_plot_and_resumes_without_retraining(
    small_sequences, tmp_path, capsys, load_tool
):
    tool = load_tool("label_efficiency")
    work = tmp_path / "sweep"
    args = [str(_config(tmp_path, small_sequences)), "--work-dir", str(work), "--no-progress"]
    args += ["--methods", "full", "sparse", "cpcm", "--rates", "0.01", "--seeds", "0", "1"]
    assert tool.main(args) == 0
    report = json.loads((work / "label_efficiency.json").read_text())
    assert len(report["runs"]) == 6
    assert {(r["method"], r["rate"]) for r in report["table"]} == {
        ("full", None), ("sparse", 0.01), ("cpcm", 0.01)
    }  # fmt: skip
    sparse_runs = [r for r in report["runs"] if r["rate"] is not None]
    assert all(0 < r["labelled_fraction"] < 0.05 for r in sparse_runs)
    assert all(0.0 <= r["miou"] <= 1.0 for r in report["runs"])
    # Budgets live in the sweep's folder; the data folder is untouched.
    assert sorted(p.name for p in (work / "budgets").glob("*.npz")) == [
        "rate0.01_seed0.npz", "rate0.01_seed1.npz"
    ]  # fmt: skip
    assert not (small_sequences / "sparse_labels").exists()
    text = (work / "label_efficiency.md").read_text()
    assert "| method | 1 % | 100 % |" in text and "| cpcm |" in text
    image = np.asarray(Image.open(work / "label_efficiency.png").convert("RGB"))
    assert image.shape[0] > 200 and len(np.unique(image.reshape(-1, 3), axis=0)) > 10
    checkpoints = {p: p.stat().st_mtime_ns for p in work.glob("runs/*/checkpoints/*.pth")}
    capsys.readouterr()
    assert tool.main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in work.glob("runs/*/checkpoints/*.pth")} == checkpoints
    assert json.loads((work / "label_efficiency.json").read_text())["runs"] == report["runs"]
    assert "[1] full_all_s0" in capsys.readouterr().out


def test_sweep_refuses_a_config_without_cpcm(small_sequences, tmp_path, capsys, load_tool):
    config = _config(tmp_path, small_sequences)
    raw = yaml.safe_load(config.read_text())
    raw["method"] = {"name": "supervised"}
    config.write_text(yaml.safe_dump(raw))
    args = [str(config), "--work-dir", str(tmp_path / "w"), "--methods", "cpcm", "--seeds", "0"]
    assert load_tool("label_efficiency").main([*args, "--no-progress"]) == 2
    assert "cpcm" in capsys.readouterr().err
