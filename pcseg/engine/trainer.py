"""The training loop, top to bottom: build, (resume), then step until ``train.max_steps``.

Every ``train.checkpoint_every`` steps the whole state -- model, optimiser, schedule, AMP scaler,
position in the epoch, RNG states and the resolved config -- is written atomically, so a killed
run resumed with ``resume=True`` continues exactly where the last checkpoint left it (each
sample's augmentation is seeded by run seed, epoch and index, not by a global generator). A
non-finite loss stops the run before the optimiser touches the weights, naming the step and the
scans; the checkpoints already written stay as they are.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pcseg.config import Config, config_changes, config_from_dict, dump_config
from pcseg.data.collate import PointBatch
from pcseg.data.formats.files import write_text
from pcseg.engine import build, distributed
from pcseg.engine.checkpoint import CheckpointManager, capture_rng_state, restore_rng_state
from pcseg.engine.evaluator import evaluate
from pcseg.engine.inference import load_weights
from pcseg.engine.runlog import RunLog


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite."""


@dataclasses.dataclass
class Position:
    """Where the run is: optimiser steps taken, epoch, batches of this epoch already used."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_work_dir(work_dir: Path, *, resume: bool) -> None:
    """Create the work dir; never reuse another run's folder.

    A folder whose run stopped before its first checkpoint holds nothing to resume and is
    started afresh.
    """
    has_run = bool(CheckpointManager(work_dir / "checkpoints").paths())
    if has_run and not resume:
        raise FileExistsError(
            f"{work_dir} already holds a run (checkpoints/); pass --resume to continue it, "
            "or choose another --work-dir"
        )
    work_dir.mkdir(parents=True, exist_ok=True)


# What may change when a run is resumed: its length, bookkeeping and evaluation, not its data,
# model or optimisation.
RESUMABLE_CHANGES = (
    "train.max_steps", "train.log_every", "train.eval_every", "train.checkpoint_every",
    "train.keep_checkpoints", "train.device", "data.num_workers", "eval.",
)  # fmt: skip


def _check_resumable(state: dict[str, Any], config: Config, world_size: int) -> None:
    changes = config_changes(config_from_dict(state["config"]), config)
    changed = [key for key in changes if not key.startswith(RESUMABLE_CHANGES)]
    if changed:
        raise ValueError(f"cannot resume: the config differs from the checkpoint's in {changed}")
    if state["world_size"] != world_size:
        raise ValueError(
            f"cannot resume: the checkpoint was written by {state['world_size']} process(es), "
            f"this run has {world_size}; the order of the batches would change"
        )


def _state(model, method, optimizer, scheduler, scaler, position: Position, config, world_size):
    # A method with state of its own (e.g. a mean teacher) has it saved beside the model.
    extra = {"method": method.state_dict()} if hasattr(method, "state_dict") else {}
    return {
        **extra,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "position": dataclasses.asdict(position),
        "world_size": world_size,
        "rng": capture_rng_state(),
        "config": config.to_dict(),
    }


def _resume(
    manager, model, method, optimizer, scheduler, scaler, config: Config, world_size
) -> Position:
    found = manager.latest_valid()
    if found is None:
        raise FileNotFoundError(f"--resume: no usable checkpoint in {manager.directory}")
    path, state = found
    _check_resumable(state, config, world_size)
    model.load_state_dict(state["model"])
    if hasattr(method, "load_state_dict"):
        method.load_state_dict(state["method"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    # The schedule's own attributes come back from the checkpoint; the run may be longer now.
    schedule = scheduler.lr_lambdas[0]
    schedule.max_steps = config.train.max_steps
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base * schedule(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    if state["scaler"]:  # empty when the run started without AMP (e.g. on a CPU)
        scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"])
    print(f"resumed from {path}")
    return Position(**state["position"])


def _backward(loss, model, optimizer, scaler, config: Config) -> float:
    """Backward and clip; returns the total gradient norm (computed before any clipping)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    limit = config.train.clip_grad_norm or float("inf")
    return float(nn.utils.clip_grad_norm_(model.parameters(), limit))


def _new_window() -> dict[str, Any]:
    """Sums over the steps since the last log line."""
    return {"loss": 0.0, "terms": {}, "points": 0, "steps": 0, "start": time.perf_counter()}


def _views(batch: PointBatch | tuple[PointBatch, ...]) -> tuple[PointBatch, ...]:
    return batch if isinstance(batch, tuple) else (batch,)


def _to_device(batch, device: torch.device):
    """Move a batch, or each view of a multi-view batch, to ``device``."""
    moved = tuple(view.to(device) for view in _views(batch))
    return moved if isinstance(batch, tuple) else moved[0]


def _diverged(step: int, what: str, value: float, batch, manager: CheckpointManager) -> Exception:
    batch = _views(batch)[0]
    saved = manager.paths()
    last = f"the last good checkpoint is {saved[-1]}" if saved else "no checkpoint was written"
    return TrainingDiverged(
        f"{what} is {value} at step {step} (scans {', '.join(batch.scene_ids)}); training "
        f"stopped and {last}. Lower optim.lr, set train.clip_grad_norm, or check these scans."
    )


def _validate(model, val_set, config: Config, info, log: RunLog, step: int) -> dict:
    scores = evaluate(
        model,
        val_set,
        voxel_size=config.data.voxel_size,
        features=config.data.features,
        device=info.device,
        rank=info.rank,
        world_size=info.world_size,
    )
    summary = {k: scores[k] for k in ("miou", "macc", "allacc")}
    log.write(step, "val", {**summary, "iou": scores["iou"]})
    return scores


def fit(config: Config, work_dir: str | Path, *, resume: bool = False, progress: bool = True):
    """Train ``config`` in ``work_dir``; returns a summary (final scores, checkpoint, checksums)."""
    work_dir = Path(work_dir)
    build.check_config(config)
    info = distributed.setup(config.train.device)
    seed_everything(config.seed)
    if info.is_main:
        prepare_work_dir(work_dir, resume=resume)
    train_set = build.build_dataset(config, "train")
    val_set = build.build_dataset(config, "val") if config.data.val is not None else None
    method = build.build_method(config)
    loader, sampler = build.build_train_loader(
        config,
        train_set,
        rank=info.rank,
        world_size=info.world_size,
        views=getattr(method, "views", 1),
    )
    model = build.build_model(config, train_set.num_classes)
    if config.model.init_from is not None:
        load_weights(model, config.model.init_from, config)
    if hasattr(method, "wrap_model"):  # pre-training methods add modules around the backbone
        model = method.wrap_model(model)
    model = model.to(info.device)
    if hasattr(method, "attach"):  # methods that keep a copy of the model (mean teacher)
        method.attach(model)
    optimizer = build.build_optimizer(config, model)
    scheduler = build.build_scheduler(config, optimizer)
    use_amp = config.train.amp and info.device.type == "cuda"
    scaler = torch.amp.GradScaler(info.device.type, enabled=use_amp)
    manager = CheckpointManager(work_dir / "checkpoints", keep=config.train.keep_checkpoints)
    position = Position()
    if resume:
        position = _resume(
            manager, model, method, optimizer, scheduler, scaler, config, info.world_size
        )
    if info.is_main:  # after a resume only once the config was checked against the checkpoint's
        write_text(work_dir / "config.yaml", dump_config(config), overwrite=True)
    trained = model
    if info.world_size > 1:
        trained = nn.parallel.DistributedDataParallel(model)
    log = RunLog(work_dir, enabled=info.is_main, start_step=position.step)
    bar = tqdm(
        total=config.train.max_steps,
        initial=position.step,
        desc="training",
        unit="step",
        disable=not (progress and info.is_main),
    )
    window = _new_window()
    scores = None
    while position.step < config.train.max_steps:
        sampler.set_epoch(position.epoch, position.batch_in_epoch)
        for batch in loader:
            batch = _to_device(batch, info.device)
            epoch = position.epoch + position.batch_in_epoch / max(len(sampler), 1)
            with torch.autocast(info.device.type, enabled=use_amp):
                loss, logs = method.training_step(trained, batch, epoch=epoch)
            loss_value = float(loss.detach())
            if not distributed.all_ranks_true(np.isfinite(loss_value), info.device):
                raise _diverged(position.step + 1, "the loss", loss_value, batch, manager)
            norm = _backward(loss, trained, optimizer, scaler, config)
            # Under AMP an inf gradient is the scaler's signal to skip the step and lower
            # its scale; without it, it means the run has diverged.
            if not use_amp and not distributed.all_ranks_true(np.isfinite(norm), info.device):
                raise _diverged(position.step + 1, "the gradient norm", norm, batch, manager)
            scaler.step(optimizer)
            scaler.update()
            if hasattr(method, "after_step"):
                method.after_step(model)
            scheduler.step()
            position.step += 1
            position.batch_in_epoch += 1
            window["loss"] += loss_value
            for key, value in logs.items():
                if key != "loss":  # the method's own terms, averaged over the log window
                    window["terms"][key] = window["terms"].get(key, 0.0) + float(value)
            window["points"] += sum(view.num_points for view in _views(batch))
            window["steps"] += 1
            lr = optimizer.param_groups[0]["lr"]
            elapsed = time.perf_counter() - window["start"]
            points_per_s = window["points"] * info.world_size / max(elapsed, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", pts_s=f"{points_per_s:,.0f}")
            at_end = position.step >= config.train.max_steps
            if position.step % config.train.log_every == 0 or at_end:
                record = {"loss": window["loss"] / window["steps"], "lr": lr}
                terms = {k: v / window["steps"] for k, v in window["terms"].items()}
                log.write(position.step, "train", {**record, **terms, "points_per_s": points_per_s})
                window = _new_window()
            if position.step % config.train.checkpoint_every == 0 or at_end:
                checksums = distributed.parameter_checksums(model)
                if len(set(checksums)) != 1:
                    raise RuntimeError(f"replicas differ across ranks: {checksums}")
                if info.is_main:
                    state = _state(
                        model,
                        method,
                        optimizer,
                        scheduler,
                        scaler,
                        position,
                        config,
                        info.world_size,
                    )
                    manager.save(position.step, state)
            evaluate_now = config.train.eval_every and position.step % config.train.eval_every == 0
            if val_set is not None and (evaluate_now or at_end):
                scores = _validate(model, val_set, config, info, log, position.step)
            if at_end:
                break
        else:
            position.epoch += 1
            position.batch_in_epoch = 0
    if val_set is not None and scores is None:  # resumed after the last step's checkpoint
        scores = _validate(model, val_set, config, info, log, position.step)
    bar.close()
    log.close()
    summary = {
        "steps": position.step,
        "checkpoint": str(manager.paths()[-1]) if info.is_main else None,
        "parameter_checksums": distributed.parameter_checksums(model),
        "world_size": info.world_size,
        "val": None if scores is None else {k: v for k, v in scores.items() if k != "confusion"},
    }
    if info.is_main:
        write_text(work_dir / "train_summary.json", json.dumps(summary, indent=2), overwrite=True)
    return summary


def train_once(config: Config, run_dir: Path, progress: bool) -> dict[str, Any]:
    """Train (or resume, or read back) one run; returns its train summary."""
    summary_file = run_dir / "train_summary.json"
    if summary_file.is_file():
        return json.loads(summary_file.read_text())
    resume = bool(CheckpointManager(run_dir / "checkpoints").paths())
    start = time.perf_counter()
    summary = fit(config, run_dir, resume=resume, progress=progress)
    summary["seconds"] = time.perf_counter() - start
    write_text(summary_file, json.dumps(summary, indent=2), overwrite=True)
    return summary
