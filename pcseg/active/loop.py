"""The active-labelling loop: rounds of select -> label -> train, resumable at every stage.

Round r lives in ``<work>/round_XX`` and is a sequence of files, each written once, atomically:

1. ``selection.npz`` / ``selection.json``: the points to ask about, in the order chosen. Round
   0 asks about random points; round r > 0 ranks every point with round r - 1's model
   (``scores.npz`` keeps every point's score) and chooses with the loop's strategy among the
   points never asked about (a point a person could not label is not asked again).
2. ``labels.npz`` / ``labels.json``: the labelled set round r trains on, round r - 1's plus
   the answers. The ground-truth oracle answers from the dataset's labels (simulation); the
   human oracle writes ``queries/`` (a PLY per scan, ``queries.csv``, ``README.txt``) and
   waits for the answers (:mod:`pcseg.active.answers`), checked before anything is written.
3. ``train/``: an ordinary training run (round r > 0 starts from round r - 1's weights).
4. ``round.json``: the round's scores and label counts; the round is done.

A stopped loop started again with the same settings continues at the first missing file, and
nothing a finished stage wrote is ever replaced.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcseg.active.answers import (
    ground_truth_answers,
    human_answers,
    query_scenes,
)
from pcseg.active.labels import initial_selection, labelled_budget, merge_labels
from pcseg.active.oracle import QUERIES_NAME, README_NAME, QueryScene, write_queries
from pcseg.active.selection import STRATEGIES, select_round
from pcseg.config import Config
from pcseg.data.datasets import SceneDataset
from pcseg.data.formats.files import write_text
from pcseg.data.label_budget import (
    LabelBudget,
    read_budget,
    read_scene_arrays,
    write_budget,
    write_scene_arrays,
)
from pcseg.engine import build
from pcseg.engine.distributed import select_device
from pcseg.engine.inference import load_model
from pcseg.engine.trainer import train_once

ORACLES = ("ground_truth", "human")


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """What a loop is; stored in ``<work>/loop.json`` and checked when a loop resumes.

    Exactly one of ``budget_percent`` (points per round, % of all training points, chosen
    over all scans; HPAL: 0.02) and ``points_per_scene`` is set. Round 0 labels
    ``initial_fraction`` of one round's budget at random in every scan (HPAL: the same amount
    as a round, i.e. 1.0).
    """

    strategy: str = "hmmu_fds"
    rounds: int = 5
    budget_percent: float | None = 0.02
    points_per_scene: int | None = None
    initial_fraction: float = 1.0
    oracle: str = "ground_truth"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy {self.strategy!r}; valid: {', '.join(STRATEGIES)}")
        if self.oracle not in ORACLES:
            raise ValueError(f"oracle {self.oracle!r}; valid: {', '.join(ORACLES)}")
        if (self.budget_percent is None) == (self.points_per_scene is None):
            raise ValueError("give exactly one of budget_percent and points_per_scene")
        if self.budget_percent is not None and not 0 < self.budget_percent <= 100:
            raise ValueError(f"budget_percent must be in (0, 100], got {self.budget_percent}")
        if self.points_per_scene is not None and self.points_per_scene < 1:
            raise ValueError(f"points_per_scene must be >= 1, got {self.points_per_scene}")
        if self.rounds < 1 or not 0 < self.initial_fraction <= 100:
            raise ValueError("rounds must be >= 1 and initial_fraction in (0, 100]")


def _initial_count(settings: LoopSettings, size: int) -> float:
    if settings.budget_percent is not None:
        return round(size * settings.budget_percent / 100 * settings.initial_fraction)
    return round(settings.points_per_scene * settings.initial_fraction)


def round_dir(work_dir: Path, index: int) -> Path:
    return Path(work_dir) / f"round_{index:02d}"


def _check_settings(work_dir: Path, settings: LoopSettings, config: Config) -> None:
    """Write ``loop.json`` once; a resumed loop must match it (its round count may grow)."""
    path = work_dir / "loop.json"
    record = {"settings": dataclasses.asdict(settings), "config": config.to_dict()}
    if not path.is_file():
        write_text(path, json.dumps(record, indent=1) + "\n", overwrite=False)
        return
    saved = json.loads(path.read_text())
    mine = {k: v for k, v in record["settings"].items() if k != "rounds"}
    theirs = {k: v for k, v in saved["settings"].items() if k != "rounds"}
    if mine != theirs or saved["config"] != record["config"]:
        raise ValueError(
            f"{path}: this folder holds a loop with other settings or another config; "
            "use another --work-dir"
        )


def _scan_sizes(dataset: SceneDataset) -> dict[str, int]:
    return {dataset.scene_id(i): len(dataset.read(i)["coord"]) for i in range(len(dataset))}


def _round_budget(settings: LoopSettings, sizes: dict[str, int]) -> int | None:
    if settings.budget_percent is None:
        return None
    return round(sum(sizes.values()) * settings.budget_percent / 100)


def _write_selection(
    directory: Path,
    chosen: dict[str, np.ndarray],
    info: dict[str, Any],
    *,
    scores: dict[str, np.ndarray] | None,
    queries: list[QueryScene] | None,
    class_names: Sequence[str],
) -> None:
    """``scores.npz`` (if any), ``selection.npz``, the queries for a person (if any), and last
    ``selection.json``, the marker of a finished stage."""
    if scores is not None:
        write_scene_arrays(directory / "scores.npz", scores)
    write_scene_arrays(directory / "selection.npz", chosen)
    if queries is not None:
        write_queries(directory / "queries", queries, class_names=class_names)
    summary = {**info, "selected_points": int(sum(map(len, chosen.values())))}
    write_text(directory / "selection.json", json.dumps(summary, indent=1) + "\n", overwrite=False)


def _selection_leftovers(directory: Path) -> list[Path]:
    """What an unfinished selection stage may have written (never a person's answers)."""
    queries = directory / "queries"
    ours = [queries / QUERIES_NAME, queries / README_NAME, *queries.glob("*.ply")]
    return [directory / "scores.npz", directory / "selection.npz", *ours]


def _asked(work_dir: Path, index: int) -> dict[str, np.ndarray]:
    """Every point asked about before round ``index``, answered or not (never asked again)."""
    asked: dict[str, np.ndarray] = {}
    for earlier in range(index):
        for scene, chosen in read_scene_arrays(
            round_dir(work_dir, earlier) / "selection.npz"
        ).items():
            asked[scene] = np.union1d(asked.get(scene, np.empty(0, np.int64)), chosen)
    return asked


def _clear_partial(marker: Path, files: list[Path]) -> None:
    """Remove what a stage killed before its marker file left behind (never a finished stage)."""
    if not marker.exists():
        for path in files:
            path.unlink(missing_ok=True)


def _previous_checkpoint(work_dir: Path, index: int) -> str:
    summary = round_dir(work_dir, index - 1) / "train" / "train_summary.json"
    return json.loads(summary.read_text())["checkpoint"]


def _select_stage(context: _Context, index: int) -> None:
    """Choose this round's queries and write the selection (and, for a person, the queries)."""
    directory = round_dir(context.work_dir, index)
    _clear_partial(directory / "selection.json", _selection_leftovers(directory))
    settings, started = context.settings, time.perf_counter()
    info: dict[str, Any] = {"round": index, "strategy": settings.strategy}
    human = settings.oracle == "human"
    names = context.dataset.class_names
    if index == 0:
        chosen = initial_selection(
            context.sizes, count_of=lambda size: _initial_count(settings, size), seed=settings.seed
        )
        info.update(strategy="random (initial)", seconds=time.perf_counter() - started)
        queries = query_scenes(context.dataset, chosen) if human else None
        _write_selection(directory, chosen, info, scores=None, queries=queries, class_names=names)
        return
    checkpoint = _previous_checkpoint(context.work_dir, index)
    model = load_model(context.config, checkpoint, context.device)
    scans, scores, picked = select_round(
        model,
        context.dataset,
        _asked(context.work_dir, index),
        strategy=settings.strategy,
        budget=_round_budget(settings, context.sizes),
        points_per_scene=settings.points_per_scene,
        seed=settings.seed * 1000 + index,
        voxel_size=context.config.data.voxel_size,
        features=context.config.data.features,
        device=context.device,
        progress=context.progress,
    )
    info.update(model=checkpoint, seconds=time.perf_counter() - started)
    chosen = {scan.scene_id: p for scan, p in zip(scans, picked, strict=True)}
    queries = None
    if human:
        queries = query_scenes(context.dataset, chosen, predictions=scans, scores=scores)
    _write_selection(
        directory,
        chosen,
        info,
        scores={scan.scene_id: s.numpy() for scan, s in zip(scans, scores, strict=True)},
        queries=queries,
        class_names=names,
    )


@dataclasses.dataclass
class _Context:
    """What every stage of every round needs."""

    config: Config
    settings: LoopSettings
    work_dir: Path
    dataset: SceneDataset
    sizes: dict[str, int]
    device: torch.device
    progress: bool


def _labels_stage(
    context: _Context, index: int, previous: LabelBudget | None, wait: bool, poll_seconds: float
) -> None:
    directory = round_dir(context.work_dir, index)
    stem = directory / "labels"
    _clear_partial(
        directory / "labels.json", [directory / "labels.npz", directory / "labels.labels.npz"]
    )
    chosen = read_scene_arrays(directory / "selection.npz")
    if context.settings.oracle == "ground_truth":
        answers = ground_truth_answers(context.dataset, chosen)
    else:
        answers = human_answers(
            directory / "queries", context.dataset, chosen, wait=wait, poll_seconds=poll_seconds
        )
    given = context.settings.oracle == "human"
    indices, labels = merge_labels(previous, answers, given=given)
    for scene in context.sizes:  # scans nobody labelled yet still belong to the budget
        indices.setdefault(scene, np.empty(0, np.int64))
        if labels is not None:
            labels.setdefault(scene, np.empty(0, np.int64))
    extra = {"round": index, "strategy": context.settings.strategy, "seed": context.settings.seed}
    write_budget(stem, labelled_budget(indices, labels, context.sizes, extra))


def _round_config(context: _Context, index: int) -> Config:
    """The training config of round ``index``: its labels, and the previous round's weights."""
    labels = (round_dir(context.work_dir, index) / "labels.npz").resolve()
    data = dataclasses.replace(context.config.data, sparse_labels=str(labels))
    init = (
        _previous_checkpoint(context.work_dir, index)
        if index > 0
        else context.config.model.init_from
    )
    model = dataclasses.replace(context.config.model, init_from=init)
    return dataclasses.replace(context.config, data=data, model=model)


def _round_result(index: int, budget: LabelBudget, summary: dict[str, Any]) -> dict[str, Any]:
    scores = summary.get("val") or {}
    return {
        "round": index,
        "labelled_points": budget.manifest["labelled_points"],
        "labelled_fraction": budget.manifest["labelled_fraction"],
        "miou": scores.get("miou"),
        "macc": scores.get("macc"),
        "allacc": scores.get("allacc"),
        "iou": scores.get("iou"),
        "checkpoint": summary["checkpoint"],
        "train_seconds": summary.get("seconds"),
    }


def run_loop(
    config: Config,
    work_dir: str | Path,
    settings: LoopSettings,
    *,
    wait: bool = True,
    poll_seconds: float = 10.0,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run (or resume) the loop; returns one result per finished round.

    Raises:
        AwaitingAnswers: the human oracle's answers are missing and ``wait`` is False.
    """
    if config.data.sparse_labels is not None:
        raise ValueError("the loop makes its own labels: remove data.sparse_labels from the config")
    if config.data.val is None:
        raise ValueError("the loop scores every round on data.val; this config defines none")
    build.check_config(config)
    config = dataclasses.replace(config, seed=settings.seed)
    work_dir = Path(work_dir).resolve()  # checkpoint paths in the rounds stay valid anywhere
    work_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(work_dir, settings, config)
    dataset = build.build_dataset(config, "train", augment=False)
    context = _Context(
        config,
        settings,
        work_dir,
        dataset,
        _scan_sizes(dataset),
        select_device(config.train.device),
        progress,
    )
    results, previous = [], None
    for index in range(settings.rounds):
        directory = round_dir(work_dir, index)
        directory.mkdir(exist_ok=True)
        done = directory / "round.json"
        if not done.is_file():
            if not (directory / "selection.json").is_file():
                _select_stage(context, index)
            if not (directory / "labels.json").is_file():
                _labels_stage(context, index, previous, wait, poll_seconds)
            budget = read_budget(directory / "labels")
            if progress:
                print(f"round {index}: {budget.num_labelled} labelled points, training", flush=True)
            summary = train_once(_round_config(context, index), directory / "train", progress)
            result = _round_result(index, budget, summary)
            write_text(done, json.dumps(result, indent=1) + "\n", overwrite=False)
        results.append(json.loads(done.read_text()))
        previous = read_budget(directory / "labels")
    return results
