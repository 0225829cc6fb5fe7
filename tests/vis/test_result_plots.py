"""Plots drawn from the files the trainer and the tools write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pcseg.active.report import aggregate_rounds
from pcseg.data.meta import s3dis
from pcseg.engine.label_efficiency import aggregate
from pcseg.engine.metrics import segmentation_scores
from pcseg.engine.runlog import RunLog
from pcseg.vis.result_plots import plot_confusion, plot_results


def _is_picture(path: Path) -> bool:
    image = np.asarray(Image.open(path).convert("RGB"))
    return (
        image.shape[0] > 100
        and image.shape[1] > 100
        and len(np.unique(image.reshape(-1, 3), axis=0)) > 20
    )


def test_training_curves_from_the_trainers_log(tmp_path) -> None:
    log = RunLog(tmp_path / "run")  # the trainer's own writer
    for step in (10, 20, 30):
        log.write(
            step,
            "train",
            {
                "loss": 1 / step,
                "lr": 0.01,
                "ce": 0.5 / step,
                "labelled_points": 40.0,
                "points_per_s": 1e5,
            },
        )
    log.write(30, "val", {"miou": 0.4, "macc": 0.5, "allacc": 0.8, "iou": [0.4, None]})
    log.close()
    (written,) = plot_results(tmp_path / "run" / "metrics.jsonl", tmp_path / "plots")
    assert written == tmp_path / "plots" / "run_training.png" and _is_picture(written)
    with pytest.raises(FileExistsError, match="run_training"):
        plot_results(tmp_path / "run" / "metrics.jsonl", tmp_path / "plots")
    plot_results(tmp_path / "run" / "metrics.jsonl", tmp_path / "plots", overwrite=True)


def test_class_iou_and_confusion_from_test_metrics(tmp_path) -> None:
    k = len(s3dis.CLASS_NAMES)
    rng = np.random.default_rng(0)
    confusion = rng.integers(0, 50, (k, k)) + np.diag(rng.integers(200, 900, k))
    confusion[3] = 0  # a class without ground truth: no IoU, a blank row
    scores = segmentation_scores(torch.from_numpy(confusion))
    scores.update(confusion=confusion.tolist(), class_names=list(s3dis.CLASS_NAMES))
    (tmp_path / "eval_val").mkdir()
    (tmp_path / "eval_val" / "metrics.json").write_text(json.dumps(scores))
    iou, matrix = plot_results(tmp_path / "eval_val" / "metrics.json", tmp_path)
    assert iou.name == "eval_val_class_iou.png" and matrix.name == "eval_val_confusion.png"
    assert _is_picture(iou) and _is_picture(matrix)
    with pytest.raises(ValueError, match="does not fit 3 classes"):
        plot_confusion(confusion, ["a", "b", "c"], tmp_path / "bad.png")


def test_sweep_curves_from_their_reports(tmp_path) -> None:
    runs = [
        {"method": m, "rate": r, "seed": s, "miou": 0.3 + 0.01 * s, "macc": 0.4, "allacc": 0.8}
        for m, r in (("full", None), ("cpcm", 0.001), ("cpcm", 0.0001)) for s in (0, 1)
    ]  # fmt: skip
    (tmp_path / "le").mkdir()
    report = {"config": "c.yaml", "runs": runs, "table": aggregate(runs)}
    (tmp_path / "le" / "label_efficiency.json").write_text(json.dumps(report))
    rounds = [
        {"strategy": "random", "seed": s, "round": r, "miou": 0.1 * r,
         "labelled_fraction": 1e-4 * (r + 1), "labelled_points": 25 * (r + 1)}
        for s in (0, 1) for r in range(3)
    ]  # fmt: skip
    (tmp_path / "al").mkdir()
    report = {"config": "c.yaml", "rounds": rounds, "table": aggregate_rounds(rounds)}
    (tmp_path / "al" / "active_learning.json").write_text(json.dumps(report))
    (le,) = plot_results(tmp_path / "le" / "label_efficiency.json", tmp_path / "out")
    (al,) = plot_results(tmp_path / "al" / "active_learning.json", tmp_path / "out")
    assert le.name == "le_label_efficiency.png" and al.name == "al_active_learning.png"
    assert _is_picture(le) and _is_picture(al)


def test_unknown_or_broken_files_are_named(tmp_path) -> None:
    (tmp_path / "other.json").write_text(json.dumps({"miou": 0.3}))
    with pytest.raises(ValueError, match=r"other\.json: not a results file"):
        plot_results(tmp_path / "other.json", tmp_path)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match=r"broken\.json: unreadable JSON"):
        plot_results(tmp_path / "broken.json", tmp_path)
    (tmp_path / "sweep.json").write_text(json.dumps({"runs": []}))
    with pytest.raises(ValueError, match="without its 'table'"):
        plot_results(tmp_path / "sweep.json", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        plot_results(tmp_path / "missing.json", tmp_path)
