"""Answers from the simulated annotator and from SemanticKITTI label files a person wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcseg.active.answers import AwaitingAnswers, ground_truth_answers, human_answers
from pcseg.active.oracle import AnswerError
from pcseg.data.datasets import SemanticKITTIDataset
from pcseg.data.formats import semantickitti


def test_ground_truth_answers_are_the_datasets_labels(small_sequences: Path):
    dataset = SemanticKITTIDataset(root=small_sequences, sequences=["00"])
    chosen = {dataset.scene_id(0): np.array([3, 10, 50])}
    answers = ground_truth_answers(dataset, chosen)
    indices, classes = answers[dataset.scene_id(0)]
    assert indices.tolist() == [3, 10, 50]
    assert classes.tolist() == dataset.read(0)["label"][[3, 10, 50]].tolist()
    assert set(answers) == {dataset.scene_id(0)}


def test_native_label_files_answer_the_queries(small_sequences: Path, tmp_path: Path):
    dataset = SemanticKITTIDataset(root=small_sequences, sequences=["00"])
    scene = dataset.scene_id(1)  # "00/000001"
    size = len(dataset.read(1)["coord"])
    chosen = {scene: np.array([7, 2, 40])}
    with pytest.raises(AwaitingAnswers, match="answers/sequences"):
        human_answers(tmp_path, dataset, chosen, wait=False, poll_seconds=0.01)
    raw = np.full(size, 40, dtype=np.uint32)  # road everywhere ...
    raw[2] = 10  # ... a car at point 2 ...
    raw[40] = 0  # ... and "cannot tell" (unlabelled) at point 40
    path = tmp_path / "answers" / "sequences" / "00" / "labels" / "000001.label"
    path.parent.mkdir(parents=True)
    semantickitti.write_label(path, raw)
    answers = human_answers(tmp_path, dataset, chosen, wait=False, poll_seconds=0.01)
    indices, classes = answers[scene]
    assert indices.tolist() == [2, 7]
    assert classes.tolist() == [0, 8]  # car, road
    path.write_bytes(path.read_bytes()[:-4])  # one point short
    with pytest.raises(AnswerError, match=r"000001\.label"):
        human_answers(tmp_path, dataset, chosen, wait=False, poll_seconds=0.01)
