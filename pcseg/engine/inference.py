"""Evaluate a checkpoint on a split: scores, per-class table, ``metrics.json``, exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pcseg.config import Config, config_changes, config_from_dict
from pcseg.data.datasets import DATASETS, SceneDataset
from pcseg.data.formats.files import write_text
from pcseg.engine import build
from pcseg.engine.checkpoint import load_checkpoint
from pcseg.engine.distributed import select_device
from pcseg.engine.evaluator import (
    check_every_point,
    evaluate,
    full_resolution,
    predict_probabilities,
    tta_views,
)
from pcseg.engine.metrics import format_table
from pcseg.methods import METHODS
from pcseg.models.segmentor import Segmentor

# What a model's predictions depend on besides its weights: these must match the checkpoint.
_MODEL_INPUTS = ("data.name", "data.voxel_size", "data.features", "model.backbone")


# What a pre-trained backbone depends on: its data (and classes) may differ from the config's.
_BACKBONE_INPUTS = ("data.features", "model.backbone")


def _check_same_inputs(
    checkpoint: str | Path, saved: dict, config: Config, keys: tuple[str, ...] = _MODEL_INPUTS
) -> None:
    for key, (old, new) in config_changes(config_from_dict(saved), config).items():
        if key in keys:
            raise ValueError(f"{checkpoint}: trained with {key} = {old}, but the config has {new}")


def _pretrained(saved_config: dict) -> bool:
    """Whether a checkpoint comes from a backbone pre-training method (e.g. SLidR)."""
    name = (saved_config.get("method") or {}).get("name")
    return name in METHODS.names() and getattr(METHODS.get(name), "pretrains_backbone", False)


def _load_backbone(model: nn.Module, checkpoint: str | Path, state: dict, config: Config) -> None:
    """Only the backbone of a pre-training checkpoint; the classifier keeps its initialisation."""
    _check_same_inputs(checkpoint, state["config"], config, _BACKBONE_INPUTS)
    prefix = "backbone."
    backbone = {k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)}
    try:
        model.backbone.load_state_dict(backbone)
    except RuntimeError as error:
        raise RuntimeError(
            f"{checkpoint}: pre-trained backbone does not fit the config's: {error}"
        ) from None


WEIGHTS = ("model", "teacher")


def load_weights(
    model: nn.Module, checkpoint: str | Path, config: Config, *, weights: str = "model"
) -> None:
    """Put the checkpoint's model weights (``weights="model"``) or its mean teacher's
    (``"teacher"``) into ``model`` (strict: every key must match). From a pre-training
    checkpoint (SLidR) only the backbone is taken, and only features and backbone must match.

    The checkpoint's dataset, voxel size, input features and model must be the config's.
    """
    state = load_checkpoint(checkpoint)
    if "model" not in state or "config" not in state:
        raise KeyError(f"{checkpoint}: not a training checkpoint (no model weights or config)")
    if _pretrained(state["config"]) and weights == "model":
        _load_backbone(model, checkpoint, state, config)
        return
    _check_same_inputs(checkpoint, state["config"], config)
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}; valid: {', '.join(WEIGHTS)}")
    chosen = state["model"]
    if weights == "teacher":
        method = state.get("method")
        chosen = method.get("teacher") if isinstance(method, dict) else None
        if chosen is None:
            raise KeyError(f"{checkpoint}: holds no teacher weights (not a mean-teacher run)")
    try:
        model.load_state_dict(chosen)
    except RuntimeError as error:
        raise RuntimeError(
            f"{checkpoint}: weights do not fit the config's model: {error}"
        ) from None


def load_model(
    config: Config, checkpoint: str | Path, device: torch.device, *, weights: str = "model"
) -> Segmentor:
    """The config's model with the checkpoint's weights (see :func:`load_weights`)."""
    num_classes = len(DATASETS.get(config.data.name).class_names)
    model = build.build_model(config, num_classes)
    load_weights(model, checkpoint, config, weights=weights)
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
    if export_dir is not None and Path(export_dir).exists() and any(Path(export_dir).iterdir()):
        raise FileExistsError(f"{export_dir} is not empty; export into a new folder")
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


def predict_scan(
    config: Config,
    model: nn.Module,
    dataset: SceneDataset,
    index: int,
    device: torch.device,
    *,
    tta: bool = False,
) -> tuple[dict, torch.Tensor]:
    """Scan ``index`` (every point, as its test transforms give it) and its (N, K) class
    probabilities under the config's voxels and inputs, as :func:`test_checkpoint` scores it."""
    sample = dataset[index]
    check_every_point(dataset, index, sample)
    probabilities = predict_probabilities(
        model,
        sample,
        voxel_size=config.data.voxel_size,
        features=config.data.features,
        device=device,
        views=tta_views(config.eval.tta if tta else None),
    )
    return sample, probabilities


def predict_scene(
    config: Config, checkpoint: str | Path, dataset: SceneDataset, index: int, *, tta: bool = False
) -> np.ndarray:
    """Predicted class (int64) of every point of scan ``index``, in the order its reader
    returns them, as :func:`test_checkpoint` would score and export it."""
    device = select_device(config.train.device)
    model = load_model(config, checkpoint, device).eval()
    sample, probabilities = predict_scan(config, model, dataset, index, device, tta=tta)
    return full_resolution(sample, probabilities.argmax(1))
