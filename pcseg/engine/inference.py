"""Evaluate a checkpoint on a split: scores, per-class table, ``metrics.json``, exports."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pcseg.config import Config
from pcseg.data.formats.files import write_text
from pcseg.engine import build
from pcseg.engine.checkpoint import load_checkpoint
from pcseg.engine.distributed import select_device
from pcseg.engine.evaluator import evaluate
from pcseg.engine.metrics import format_table
from pcseg.models.segmentor import Segmentor


def load_model(config: Config, checkpoint: str | Path, device: torch.device) -> Segmentor:
    """The config's model with the checkpoint's weights (strict: every key must match)."""
    state = load_checkpoint(checkpoint)
    if "model" not in state:
        raise KeyError(f"{checkpoint}: checkpoint holds no model weights")
    dataset_classes = build.build_dataset(config, "train", augment=False).num_classes
    model = build.build_model(config, dataset_classes)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise RuntimeError(
            f"{checkpoint}: weights do not fit the config's model: {error}"
        ) from None
    return model.to(device)


def test_checkpoint(
    config: Config,
    checkpoint: str | Path,
    *,
    out_dir: Path,
    split: str | None = None,
    tta: bool = False,
    export_dir: Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Score ``checkpoint`` on ``split`` (default ``eval.split``); writes ``out_dir/metrics.json``.

    Returns the scores with ``table`` (the printed per-class table) added.
    """
    build.check_config(config)
    split = split or config.eval.split
    metrics_path = Path(out_dir) / "metrics.json"
    if metrics_path.exists() and not overwrite:
        raise FileExistsError(f"{metrics_path} exists; pass --overwrite or another --out")
    device = select_device(config.train.device)
    model = load_model(config, checkpoint, device)
    dataset = build.build_dataset(config, split)
    scores = evaluate(
        model,
        dataset,
        voxel_size=config.data.voxel_size,
        features=config.data.features,
        device=device,
        tta=config.eval.tta if tta else None,
        export_dir=export_dir,
        progress=progress,
    )
    scores.update(checkpoint=str(checkpoint), split=split, class_names=list(dataset.class_names))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_text(metrics_path, json.dumps(scores, indent=2), overwrite=overwrite)
    scores["table"] = format_table(scores, dataset.class_names)
    return scores
