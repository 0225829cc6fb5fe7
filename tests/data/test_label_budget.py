"""Budgets that carry their own labels (a human annotator's answers): files, checks, and the
transform that puts the given labels in place of the dataset's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcseg.data.formats.validation import DataFormatError
from pcseg.data.label_budget import (
    LabelBudget,
    SparseLabels,
    labels_path,
    read_budget,
    write_budget,
)


def _budget(given=None, **manifest_changes) -> LabelBudget:
    indices = {"00/000000": np.array([1, 4, 6]), "00/000001": np.array([0])}
    scenes = {"00/000000": {"points": 8, "labelled": 3}, "00/000001": {"points": 5, "labelled": 1}}
    manifest = {
        "format": "pcseg.sparse_labels",
        "version": 1,
        "mode": "active",
        "scenes": scenes,
        "num_scenes": 2,
        "labelled_points": 4,
        "labels": "given" if given is not None else "dataset",
        **manifest_changes,
    }
    return LabelBudget(indices, manifest, labels=given)


GIVEN = {"00/000000": np.array([3, 0, 2]), "00/000001": np.array([5])}


def test_given_labels_round_trip_and_replace_the_datasets(tmp_path: Path) -> None:
    npz, _ = write_budget(tmp_path / "round_01.labels", _budget(GIVEN))
    assert labels_path(npz).name == "round_01.labels.labels.npz" and labels_path(npz).is_file()
    loaded = read_budget(npz)
    for scene, values in GIVEN.items():
        assert np.array_equal(loaded.labels[scene], values)
    sample = {
        "scene_id": "00/000000",
        "point_index": np.array([6, 0, 1, 4, 7]),  # shuffled and cropped
        "points_read": 8,
        "label": np.array([9, 9, 9, 9, 9]),
        "label_mask": np.ones(5, dtype=bool),
    }
    out = SparseLabels(loaded)(sample, np.random.default_rng(0))
    assert out["label_mask"].tolist() == [True, False, True, True, False]
    assert out["label"].tolist() == [2, -1, 3, 0, -1]


def test_budget_without_given_labels_keeps_the_datasets(tmp_path: Path) -> None:
    write_budget(tmp_path / "plain", _budget())
    loaded = read_budget(tmp_path / "plain")
    assert loaded.labels is None and not labels_path(tmp_path / "plain").exists()
    sample = {
        "scene_id": "00/000001",
        "point_index": np.arange(5),
        "points_read": 5,
        "label": np.arange(5),
        "label_mask": np.ones(5, dtype=bool),
    }
    out = SparseLabels(loaded)(sample, np.random.default_rng(0))
    assert out["label"].tolist() == [0, 1, 2, 3, 4] and out["label_mask"].sum() == 1


def test_given_labels_must_fit_the_indices_and_the_manifest(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one given label per index"):
        _budget({"00/000000": np.array([1, 2]), "00/000001": np.array([5])})
    with pytest.raises(ValueError, match="'given' exactly when"):
        write_budget(tmp_path / "a", _budget(GIVEN, labels="dataset"))
    with pytest.raises(ValueError, match="'given' exactly when"):
        write_budget(tmp_path / "b", _budget(None, labels="given"))
    assert not list(tmp_path.iterdir())
    npz, _ = write_budget(tmp_path / "c", _budget(GIVEN))
    labels_path(npz).unlink()
    with pytest.raises(DataFormatError, match=r"c\.labels\.npz"):
        read_budget(npz)


def test_given_labels_follow_their_indices_when_sorted() -> None:
    unsorted = LabelBudget(
        {"s": np.array([6, 1, 4])}, {"mode": "active"}, labels={"s": np.array([60, 10, 40])}
    )
    assert unsorted.indices["s"].tolist() == [1, 4, 6]
    assert unsorted.labels["s"].tolist() == [10, 40, 60]
