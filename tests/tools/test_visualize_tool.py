"""tools/visualize.py as a user runs it: renders from exports, checkpoints, rounds and segment
files, plots from results files, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pcseg.config import load_config
from pcseg.data.datasets import SemanticKITTIDataset
from pcseg.data.label_budget import write_scene_arrays
from pcseg.engine import build
from pcseg.engine.checkpoint import save_checkpoint

TINY = {"name": "spunet", "stem_channels": 4, "planes": [4, 8, 8, 4], "layers": [1, 1, 1, 1]}
SOFTWARE = ["--backend", "software", "--size", "600x300"]


@pytest.fixture
def config(one_scene, tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    raw = {
        "data": {
            "name": "semantickitti",
            "root": str(one_scene),
            "train": {"sequences": ["00"]},
            "val": {"sequences": ["00"]},
            "voxel_size": 0.2,
            "features": ["coord", "remission"],
            "num_workers": 0,
        },
        "model": {"backbone": TINY},
        "optim": {"name": "adamw", "lr": 0.01},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def tool(load_tool):
    return load_tool("visualize")


def _export(one_scene: Path, tmp_path: Path, shift: int = 0) -> tuple[Path, np.ndarray]:
    """Predictions as tools/test.py --export writes them: the labels, wrong on ``shift`` points."""
    dataset = SemanticKITTIDataset(one_scene, sequences=["00"])
    label = dataset.read(0)["label"]
    classes = np.where(label >= 0, label, 0)
    classes[:shift] = (classes[:shift] + 1) % 19
    dataset.export(0, classes, tmp_path / "export")
    return tmp_path / "export", classes


def test_scan_with_exported_predictions(tool, config, one_scene, tmp_path, capsys) -> None:
    export, _ = _export(one_scene, tmp_path, shift=2000)
    out = tmp_path / "scan.png"
    args = ["scan", str(config), "--scene", "00/000000", "--predictions", str(export)]
    assert tool.main([*args, "--out", str(out), *SOFTWARE]) == 0
    assert "rendered with backend software" in capsys.readouterr().out
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (300, 600, 3)
    error_panel = image[22:-40, 400:]
    assert ((error_panel == (255, 0, 0)).all(-1)).mean() > 0.001  # the 2000 wrong points
    # An existing picture is kept unless asked.
    assert tool.main([*args, "--out", str(out), *SOFTWARE]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert tool.main([*args, "--out", str(out), "--overwrite", *SOFTWARE, "--view", "top"]) == 0


def test_bad_inputs_are_named(tool, config, one_scene, tmp_path, capsys) -> None:
    short = tmp_path / "short.npy"
    np.save(short, np.zeros(10, dtype=np.int64))
    out = ["--out", str(tmp_path / "x.png"), *SOFTWARE]
    assert tool.main(["scan", str(config), "--predictions", str(short), *out]) == 2
    assert "short.npy: prediction count 10 != point count" in capsys.readouterr().err
    assert tool.main(["scan", str(config), "--predictions", str(tmp_path / "none"), *out]) == 2
    assert "prediction file not found" in capsys.readouterr().err
    assert tool.main(["scan", str(config), "--scene", "07/000001", *out]) == 2
    assert "scene '07/000001' is not in this split; it has: 00/000000" in capsys.readouterr().err
    assert tool.main(["scan", str(config), "--modes", "error", *out]) == 2
    assert "need predictions" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_scan_predicted_with_a_checkpoint(tool, config, tmp_path) -> None:
    loaded = load_config(config)
    model = build.build_model(loaded, 19)
    checkpoint = tmp_path / "model.pth"
    save_checkpoint(checkpoint, {"model": model.state_dict(), "config": loaded.to_dict()})
    out = tmp_path / "pred.png"
    args = ["scan", str(config), "--checkpoint", str(checkpoint), "--modes", "pred", "error"]
    assert tool.main([*args, "--out", str(out), *SOFTWARE]) == 0
    assert Image.open(out).size == (600, 300)


def test_active_learning_round(tool, config, one_scene, tmp_path, capsys) -> None:
    loop = tmp_path / "al" / "random_s0"
    (loop / "round_01").mkdir(parents=True)
    loop_record = {"settings": {}, "config": load_config(config).to_dict()}
    (loop / "loop.json").write_text(json.dumps(loop_record))
    write_scene_arrays(loop / "round_01" / "selection.npz", {"00/000000": np.arange(0, 4000, 200)})
    out = tmp_path / "round.png"
    assert tool.main(["queries", str(loop / "round_01"), "--out", str(out), *SOFTWARE]) == 0
    image = np.asarray(Image.open(out).convert("RGB"))
    assert ((image[22:-40] == (255, 0, 255)).all(-1)).sum() > 20  # magenta queries in view


def test_segments(tool, config, one_scene, tmp_path) -> None:
    n = len(SemanticKITTIDataset(one_scene, sequences=["00"]).read(0)["coord"])
    np.save(tmp_path / "segments.npy", np.arange(n) // 300)
    out = tmp_path / "segments.png"
    args = ["segments", str(config), "--segments", str(tmp_path / "segments.npy")]
    assert tool.main([*args, "--out", str(out), *SOFTWARE, "--no-labels"]) == 0
    assert Image.open(out).size == (600, 300)


def test_plots_of_a_run_folder(tool, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    (run / "eval_val").mkdir(parents=True)
    lines = [
        {"step": s, "split": "train", "time": 0.0, "loss": 1.0 / s, "lr": 0.01} for s in (1, 2)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    metrics = {
        "iou": [0.5, None],
        "miou": 0.5,
        "confusion": [[5, 5], [0, 0]],
        "class_names": ["a", "b"],
    }
    (run / "eval_val" / "metrics.json").write_text(json.dumps(metrics))
    assert tool.main(["plots", str(run), "--out", str(tmp_path / "plots")]) == 0
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == ["eval_val_class_iou.png", "eval_val_confusion.png", "run_training.png"]
    assert tool.main(["plots", str(run), "--out", str(tmp_path / "plots")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert tool.main(["plots", str(tmp_path / "plots"), "--out", str(tmp_path)]) == 2
    assert "holds no results file" in capsys.readouterr().err
