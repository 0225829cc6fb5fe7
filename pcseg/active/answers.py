"""Where a round's labels come from: the dataset's own labels (simulation) or a person.

A person answers the queries of ``round_XX/queries/`` either in ``answers.csv`` (see
:mod:`pcseg.active.oracle`) or, for SemanticKITTI, with label files in the dataset's own layout,
``answers/sequences/<seq>/labels/<frame>.label`` (as annotation tools write them, one raw id per
point; raw id 0, unlabelled, means "cannot tell"). Only the queried points are taken.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pcseg.active.oracle import ANSWERS_NAME, AnswerError, QueryScene, read_answers
from pcseg.active.selection import ScanPrediction
from pcseg.data.datasets import SceneDataset, SemanticKITTIDataset
from pcseg.data.formats import semantickitti
from pcseg.data.formats.validation import DataFormatError

NATIVE_ANSWERS_DIR = "answers"


class AwaitingAnswers(RuntimeError):
    """A person has not answered this round's queries yet (the loop can be run again)."""


def _color(sample: dict) -> np.ndarray | None:
    color = sample.get("color")
    return None if color is None else (np.asarray(color) * 255).round().astype(np.uint8)


def query_scenes(
    dataset: SceneDataset,
    chosen: dict[str, np.ndarray],
    *,
    predictions: Sequence[ScanPrediction] | None = None,
    scores: Sequence[torch.Tensor] | None = None,
) -> list[QueryScene]:
    """The queries of every scan with any, points as read; without ``predictions`` the
    predicted classes are -1 (no model yet) and without ``scores`` the scores 0."""
    by_scene = {p.scene_id: (p, s) for p, s in zip(predictions or [], scores or [], strict=False)}
    scenes = []
    for index in range(len(dataset)):
        scene = dataset.scene_id(index)
        if scene not in chosen:
            continue
        sample, picked = dataset.read(index), chosen[scene]
        prediction, score = by_scene.get(scene, (None, None))
        size = len(sample["coord"])
        scenes.append(
            QueryScene(
                scene_id=scene,
                coord=np.asarray(sample["coord"]),
                color=_color(sample),
                queries=picked,
                predicted=np.full(size, -1) if prediction is None else prediction.predicted,
                scores=np.zeros(len(picked), np.float32)
                if score is None
                else score.numpy()[picked],
            )
        )
    return scenes


def ground_truth_answers(
    dataset: SceneDataset, chosen: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The dataset's labels of the chosen points (the simulated annotator)."""
    answers = {}
    for index in range(len(dataset)):
        scene = dataset.scene_id(index)
        if scene in chosen:
            answers[scene] = (chosen[scene], dataset.read(index)["label"][chosen[scene]])
    return answers


def _native_answers(
    folder: Path, dataset: SemanticKITTIDataset, scenes: Sequence[QueryScene]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Answers from SemanticKITTI ``.label`` files, one per queried scan."""
    answers, problems = {}, []
    for scene in scenes:
        sequence, frame = scene.scene_id.split("/")
        path = folder / "sequences" / sequence / "labels" / f"{frame}.label"
        try:
            raw, _ = semantickitti.read_label(path, num_points=len(scene.coord))
            classes = semantickitti.raw_to_class(path, raw[scene.queries])
        except (DataFormatError, OSError) as error:
            problems.append(str(error))
            continue
        known = classes >= 0  # raw 0 (unlabelled) and outliers map to ignore
        if known.any():
            order = np.argsort(scene.queries[known])
            answers[scene.scene_id] = (scene.queries[known][order], classes[known][order])
    if problems:
        raise AnswerError(folder, problems)
    return answers


def _settled(path: Path, poll_seconds: float) -> None:
    """Wait until a file that just appeared stops changing (an editor may still be saving)."""
    last = None
    while path.is_file() and (state := (path.stat().st_size, path.stat().st_mtime_ns)) != last:
        last = state
        time.sleep(poll_seconds)


def human_answers(
    queries: Path,
    dataset: SceneDataset,
    chosen: dict[str, np.ndarray],
    *,
    wait: bool,
    poll_seconds: float,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A person's checked answers to the queries in folder ``queries`` (waiting for them)."""
    csv_file, native = queries / ANSWERS_NAME, queries / NATIVE_ANSWERS_DIR
    accepts_native = isinstance(dataset, SemanticKITTIDataset)

    def answered() -> bool:
        return csv_file.is_file() or (accepts_native and native.is_dir())

    if not answered():
        message = (
            f"waiting for answers to the queries in {queries} (see README.txt there): "
            f"save them as {csv_file}"
            + (f" or as .label files under {native}/sequences/" if accepts_native else "")
        )
        if not wait:
            raise AwaitingAnswers(message + ", then run the loop again")
        print(message, flush=True)
        while not answered():
            time.sleep(poll_seconds)
        _settled(csv_file, poll_seconds)
    scenes = query_scenes(dataset, chosen)
    if csv_file.is_file():
        return read_answers(csv_file, scenes, class_names=dataset.class_names)
    return _native_answers(native, dataset, scenes)
