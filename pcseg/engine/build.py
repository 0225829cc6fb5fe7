"""Config -> objects: datasets, loaders, model, method, optimiser, schedule.

``check_config`` validates every component spec of a :class:`pcseg.config.Config` against its
registry without building anything, so that a bad config fails before a run starts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from pcseg.config import Config
from pcseg.data.collate import MultiView, PointBudgetBatches, collate, collate_views
from pcseg.data.datasets import DATASETS, SceneDataset
from pcseg.data.frame_selection import LabelledFrames, read_frame_list
from pcseg.data.label_budget import SparseLabels, budget_paths, read_budget
from pcseg.data.transforms import FEATURE_CHANNELS, TRANSFORMS, build_transforms
from pcseg.engine.evaluator import tta_views
from pcseg.engine.optim import OPTIMIZERS, SCHEDULES
from pcseg.methods import METHODS
from pcseg.models.backbones import BACKBONES
from pcseg.models.segmentor import Segmentor, build_segmentor
from pcseg.registry import ConfigError

SPLITS = ("train", "val", "test")


def in_channels(config: Config) -> int:
    return sum(FEATURE_CHANNELS[key] for key in config.data.features)


def _split_spec(config: Config, split: str) -> dict[str, Any]:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    options = getattr(config.data, split)
    if options is None:
        raise ConfigError(f"data.{split}: this config defines no {split} split")
    return {"name": config.data.name, "root": config.data.root, **options}


def check_config(config: Config) -> None:
    """Raise ConfigError for any spec that would not build."""
    unknown = [key for key in config.data.features if key not in FEATURE_CHANNELS]
    if unknown:
        raise ConfigError(
            f"data.features: unknown {', '.join(unknown)}; valid: {', '.join(FEATURE_CHANNELS)}"
        )
    for split in SPLITS:
        if getattr(config.data, split) is not None:
            spec = _split_spec(config, split)
            DATASETS.check(spec, where=f"data.{split}", provided=("transforms",))
    for key in ("train_transforms", "test_transforms"):
        for i, spec in enumerate(getattr(config.data, key)):
            TRANSFORMS.check(spec, where=f"data.{key}[{i}]")
    BACKBONES.check(config.model.backbone, where="model.backbone", provided=("in_channels",))
    init = config.model.init_from
    if init is not None and not Path(init).is_file():
        raise ConfigError(f"model.init_from: {init} is not a file (a training checkpoint)")
    METHODS.check(config.method, where="method", provided=("input_features",))
    try:
        build_method(config)  # cheap; catches values the signature cannot
    except (TypeError, ValueError) as error:
        raise ConfigError(f"method: {error}") from None
    OPTIMIZERS.check(config.optim, where="optim", provided=("params",))
    SCHEDULES.check(config.schedule, where="schedule", provided=("max_steps",))
    if config.eval.split not in SPLITS:
        raise ConfigError(f"eval.split: {config.eval.split!r}; valid: {', '.join(SPLITS)}")
    _check_ranges(config)
    try:
        tta_views(config.eval.tta)  # the evaluator's own validation, run before training
    except ValueError as error:
        raise ConfigError(str(error)) from None
    weights = config.method.get("class_weights")
    classes = len(DATASETS.get(config.data.name).class_names)
    if weights is not None and len(weights) != classes:
        raise ConfigError(f"method.class_weights: {len(weights)} values for {classes} classes")


def _check_ranges(config: Config) -> None:
    """Numbers that would otherwise fail (or silently misbehave) in the middle of a run."""
    train, data, tta = config.train, config.data, config.eval.tta
    warmup = config.schedule.get("warmup_steps", 0)
    start = config.schedule.get("warmup_start", 0.01)
    rules = {
        "data.voxel_size must be > 0": data.voxel_size > 0,
        "data.point_budget must be >= 1": data.point_budget >= 1,
        "data.batch_size must be >= 1": data.batch_size >= 1,
        "data.num_workers must be >= 0": data.num_workers >= 0,
        "train.max_steps must be >= 1": train.max_steps >= 1,
        "train.log_every must be >= 1": train.log_every >= 1,
        "train.checkpoint_every must be >= 1": train.checkpoint_every >= 1,
        "train.eval_every must be >= 0 (0: only at the end)": train.eval_every >= 0,
        "train.keep_checkpoints must be >= 1": train.keep_checkpoints >= 1,
        "train.clip_grad_norm must be > 0 or null": (train.clip_grad_norm or 1.0) > 0,
        f"schedule.warmup_steps ({warmup}) must be in [0, train.max_steps)": 0
        <= warmup
        < train.max_steps,
        "schedule.warmup_start must be in [0, 1]": 0 <= start <= 1,
        "eval.tta.rotations must be >= 1": tta.rotations >= 1,
        "eval.tta.flips and eval.tta.scales must not be empty": bool(tta.flips and tta.scales),
        "eval.tta.scales must be > 0": all(scale > 0 for scale in tta.scales),
    }
    broken = [rule for rule, holds in rules.items() if not holds]
    if broken:
        raise ConfigError("; ".join(broken))


def build_dataset(config: Config, split: str, *, augment: bool | None = None) -> SceneDataset:
    """The dataset of a split with its transforms (training augmentation for "train").

    The training split sees only the labels of ``data.sparse_labels`` when a budget is set, and
    only those of the frames ``data.labelled_frames`` lists when a frame list is set; evaluation
    splits always keep every label.
    """
    augment = split == "train" if augment is None else augment
    specs = config.data.train_transforms if augment else config.data.test_transforms
    key = "train_transforms" if augment else "test_transforms"
    transforms = build_transforms(specs, where=f"data.{key}")
    if split == "train" and config.data.sparse_labels is not None:
        budget = sparse_labels_path(config)
        if not budget_paths(budget)[0].is_file():
            raise ConfigError(
                f"data.sparse_labels: {budget} not found; write it with tools/make_sparse_labels.py"
            )
        transforms.transforms.insert(0, SparseLabels(read_budget(budget)))
    labelled = None
    if split == "train" and config.data.labelled_frames is not None:
        frame_list = Path(config.data.root) / config.data.labelled_frames
        labelled = LabelledFrames(read_frame_list(frame_list, config.data.root), source=frame_list)
        transforms.transforms.insert(0, labelled)
    dataset = DATASETS.build(
        _split_spec(config, split), where=f"data.{split}", transforms=transforms
    )
    if labelled is not None:
        outside = labelled.scenes - {dataset.scene_id(i) for i in range(len(dataset))}
        if outside:
            raise ConfigError(
                f"data.labelled_frames: {labelled.source} names {len(outside)} frames that are "
                f"not in data.train (e.g. {min(outside)})"
            )
    return dataset


def sparse_labels_path(config: Config) -> Path:
    """``data.sparse_labels`` resolved against ``data.root`` (absolute paths are kept)."""
    return Path(config.data.root) / str(config.data.sparse_labels)


def point_cap(config: Config) -> int | None:
    """Most points a training sample can have after ``sphere_crop`` (None without a crop)."""
    caps = [s["max_points"] for s in config.data.train_transforms if s["name"] == "sphere_crop"]
    return min(caps) if caps else None


def view_augmentation(views: int | Sequence[bool]) -> list[bool]:
    """Per view, whether it gets the training augmentation: ``n`` means n augmented views."""
    augmented = [True] * views if isinstance(views, int) else [bool(v) for v in views]
    if not augmented:
        raise ValueError(f"a method needs at least one view, got {views!r}")
    return augmented


def build_train_loader(
    config: Config,
    dataset: SceneDataset,
    *,
    rank: int = 0,
    world_size: int = 1,
    views: int | Sequence[bool] = 1,
) -> tuple[DataLoader, PointBudgetBatches]:
    """Point-budget batches of ``dataset``; with several views each batch is a tuple of views.

    ``views`` is a method's ``views``: a number of augmented views, or one flag per view saying
    whether it is augmented (``dataset``) or clean (the same split through
    ``data.test_transforms``). The point budget applies to each view, since each view is its
    own pass through the model; a clean view is never cropped.
    """
    augmented = view_augmentation(views)
    cap = point_cap(config) if all(augmented) else None
    costs = [dataset.num_points(i) for i in range(len(dataset))]
    if cap is not None:
        costs = [min(c, cap) for c in costs]
    sampler = PointBudgetBatches(
        costs,
        point_budget=config.data.point_budget,
        max_batch_size=config.data.batch_size,
        seed=config.seed,
        rank=rank,
        world_size=world_size,
    )
    clean = None if all(augmented) else build_dataset(config, "train", augment=False)
    single = augmented == [True]
    loader = DataLoader(
        dataset if single else MultiView([dataset if a else clean for a in augmented]),
        batch_sampler=sampler,
        collate_fn=functools.partial(
            collate if single else collate_views,
            voxel_size=config.data.voxel_size,
            features=config.data.features,
        ),
        num_workers=config.data.num_workers,
    )
    return loader, sampler


def build_model(config: Config, num_classes: int) -> Segmentor:
    return build_segmentor(
        config.model.backbone, in_channels=in_channels(config), num_classes=num_classes
    )


def build_method(config: Config) -> Any:
    """The training method; one that takes ``input_features`` gets ``data.features``."""
    provided = {}
    if "input_features" in METHODS.parameters(config.method["name"], where="method"):
        provided["input_features"] = list(config.data.features)
    return METHODS.build(config.method, where="method", **provided)


def build_optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    return OPTIMIZERS.build(config.optim, where="optim", params=model.parameters())


def build_scheduler(
    config: Config, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LambdaLR:
    schedule = SCHEDULES.build(config.schedule, where="schedule", max_steps=config.train.max_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
