"""LiM3D's three stages for LiDAR with few labelled frames, resumable stage by stage.

1. ``stage1_train``: the config's training (LiM3D: a mean teacher, with ``data.labelled_frames``
   naming the labelled frames; the others feed only its unlabelled terms).
2. ``stage2_pseudo_labels``: class-range-balanced pseudo-labels from stage 1's teacher for every
   training frame (:mod:`pcseg.engine.pseudo_label`), in a label tree of its own.
3. ``stage3_retrain``: the same training from scratch on those labels (every frame labelled:
   ``data.train.label_root`` points at them and ``data.labelled_frames`` is dropped).

Each stage is done once: a finished stage is read back (its ``train_summary.json`` or
``crb.json``), an interrupted training resumes from its last checkpoint, an interrupted
pseudo-labelling is redone. ``WORK/pipeline.yaml`` keeps the config; running again with another
config is refused rather than mixing stages of two set-ups. ``WORK/summary.json`` gathers the
validation scores of both trainings and the pseudo-labels' accuracy.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from pcseg.config import Config, config_changes, config_from_dict, dump_config, load_raw
from pcseg.data.formats.files import write_text
from pcseg.engine.pseudo_label import MANIFEST, write_crb_labels
from pcseg.engine.trainer import train_once
from pcseg.methods.pseudo_labels import CRBSettings

STAGES = ("stage1_train", "stage2_pseudo_labels", "stage3_retrain")


def retrain_config(config: Config, pseudo_labels: Path) -> Config:
    """``config`` training on the pseudo-label tree at ``pseudo_labels`` (every frame labelled)."""
    train = {**config.data.train, "label_root": str(pseudo_labels), "label_dir": "labels"}
    data = dataclasses.replace(config.data, train=train, labelled_frames=None)
    return dataclasses.replace(config, data=data)


def _check_same_config(work_dir: Path, config: Config) -> None:
    saved = work_dir / "pipeline.yaml"
    if saved.is_file():
        changes = config_changes(config_from_dict(load_raw(saved)), config)
        if changes:
            listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
            raise ValueError(
                f"{work_dir} holds a pipeline of another config ({listed}); use a new work dir"
            )
    else:
        work_dir.mkdir(parents=True, exist_ok=True)
        write_text(saved, dump_config(config), overwrite=False)


def _scores(summary: dict[str, Any]) -> dict[str, Any] | None:
    val = summary.get("val")
    return None if val is None else {k: val[k] for k in ("miou", "macc", "allacc") if k in val}


def run_pipeline(
    config: Config,
    work_dir: str | Path,
    *,
    crb: CRBSettings | None = None,
    retrain: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the stages in ``work_dir``; ``retrain=False`` stops after stage 1.
    Returns the summary written to ``work_dir/summary.json``."""
    work_dir = Path(work_dir)
    _check_same_config(work_dir, config)
    first = train_once(config, work_dir / STAGES[0], progress)
    summary: dict[str, Any] = {"stage1": _scores(first), "stage1_seconds": first.get("seconds")}
    if retrain:
        pseudo_dir = work_dir / STAGES[1]
        if (pseudo_dir / MANIFEST).is_file():
            manifest = json.loads((pseudo_dir / MANIFEST).read_text())
        else:
            manifest = write_crb_labels(
                config, first["checkpoint"], pseudo_dir, settings=crb, progress=progress
            )
        summary["pseudo_labels"] = {
            k: manifest[k] for k in ("pseudo_labelled", "accuracy", "settings")
        }
        third = train_once(retrain_config(config, pseudo_dir), work_dir / STAGES[2], progress)
        summary.update(stage3=_scores(third), stage3_seconds=third.get("seconds"))
    write_text(work_dir / "summary.json", json.dumps(summary, indent=2), overwrite=True)
    return summary
