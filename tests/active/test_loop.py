"""The active-labelling loop end to end on small synthetic streets: labels grow by the budget
each round, selection follows the scores, a killed loop resumes without redoing or rewriting
finished rounds, and a person's answers are checked before they are used."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pcseg.active.answers import AwaitingAnswers
from pcseg.active.labels import initial_selection, merge_labels
from pcseg.active.loop import LoopSettings, round_dir, run_loop
from pcseg.active.oracle import AnswerError
from pcseg.config import config_from_dict
from pcseg.data.label_budget import LabelBudget, read_budget, read_scene_arrays

TOOL = Path(__file__).resolve().parents[2] / "tools" / "active_learning.py"


def _raw(root: Path, make_config) -> dict:
    return make_config(
        root,
        data={"val": {"sequences": ["01"]}, "voxel_size": 0.2},
        method={"name": "mean_teacher"},
        train={"max_steps": 3, "checkpoint_every": 3},
    )


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_initial_selection_and_merging():
    sizes = {"a": 100, "b": 40, "c": 3}
    chosen = initial_selection(sizes, count_of=lambda n: round(n * 0.05), seed=3)
    assert [len(chosen[s]) for s in sizes] == [5, 2, 1]  # at least one point per scan
    assert np.array_equal(chosen["a"], np.unique(chosen["a"]))
    again = initial_selection({"a": 100}, count_of=lambda n: round(n * 0.05), seed=3)
    assert np.array_equal(again["a"], chosen["a"])  # per scan, whatever the other scans
    previous = LabelBudget(
        {"a": np.array([2, 7])},
        {"mode": "active"},
        labels={"a": np.array([1, 1])},
    )
    answers = {"a": (np.array([5, 7]), np.array([4, 9])), "b": (np.array([0]), np.array([3]))}
    indices, labels = merge_labels(previous, answers, given=True)
    assert indices["a"].tolist() == [2, 5, 7] and labels["a"].tolist() == [1, 4, 1]
    assert indices["b"].tolist() == [0] and labels["b"].tolist() == [3]
    indices, labels = merge_labels(None, answers, given=False)
    assert labels is None and indices["a"].tolist() == [5, 7]


def test_ground_truth_loop_grows_labels_by_the_budget(small_sequences, tmp_path, make_config):
    config = config_from_dict(_raw(small_sequences, make_config))
    settings = LoopSettings(strategy="margin", rounds=3, budget_percent=None, points_per_scene=20)
    results = run_loop(config, tmp_path, settings, progress=False)
    assert [r["round"] for r in results] == [0, 1, 2]
    assert [r["labelled_points"] for r in results] == [40, 80, 120]  # 2 scans x 20 per round
    assert all(0.0 <= r["miou"] <= 1.0 for r in results)
    for index in (1, 2):
        directory = round_dir(tmp_path, index)
        before = read_budget(round_dir(tmp_path, index - 1) / "labels")
        after = read_budget(directory / "labels")
        chosen = read_scene_arrays(directory / "selection.npz")
        scores = read_scene_arrays(directory / "scores.npz", dtype=np.float32)
        for scene, picked in chosen.items():
            assert len(picked) == 20 and not np.isin(picked, before.indices[scene]).any()
            assert np.array_equal(np.union1d(before.indices[scene], picked), after.indices[scene])
            # Margin: the 20 lowest scores among the points not labelled before.
            free = np.setdiff1d(np.arange(len(scores[scene])), before.indices[scene])
            lowest = free[np.argsort(scores[scene][free], kind="stable")[:20]]
            assert np.array_equal(lowest, picked)  # in the order chosen
        train_config = yaml.safe_load((directory / "train" / "config.yaml").read_text())
        assert train_config["model"]["init_from"].endswith("step_00000003.pth")
        assert f"round_{index - 1:02d}" in train_config["model"]["init_from"]
    # Asking for more rounds continues; nothing already written changes.
    finished = _snapshot(tmp_path / "round_00") | _snapshot(tmp_path / "round_02")
    more = run_loop(
        config, tmp_path, LoopSettings(**{**settings.__dict__, "rounds": 4}), progress=False
    )
    assert more[3]["labelled_points"] == 160
    assert (_snapshot(tmp_path / "round_00") | _snapshot(tmp_path / "round_02")) == finished
    with pytest.raises(ValueError, match="other settings"):
        run_loop(config, tmp_path, LoopSettings(strategy="random", rounds=4), progress=False)


def _answer(queries_csv: Path, label: str) -> Path:
    rows = list(csv.DictReader(queries_csv.open()))
    answers = queries_csv.with_name("answers.csv")
    with answers.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "label": label})
    return answers


def test_human_oracle_round_trip_rejects_a_bad_file_and_keeps_the_state(
    small_sequences, tmp_path, make_config
):
    config = config_from_dict(_raw(small_sequences, make_config))
    settings = LoopSettings(
        strategy="hmmu_fds", rounds=2, budget_percent=None, points_per_scene=10, oracle="human"
    )
    with pytest.raises(AwaitingAnswers, match=r"answers\.csv"):
        run_loop(config, tmp_path, settings, wait=False, progress=False)
    queries = round_dir(tmp_path, 0) / "queries"
    assert len(list(queries.glob("*.ply"))) == 2 and (queries / "README.txt").is_file()
    # Killed after the queries but before the stage's marker: the stage is redone cleanly.
    (round_dir(tmp_path, 0) / "selection.json").unlink()
    with pytest.raises(AwaitingAnswers):
        run_loop(config, tmp_path, settings, wait=False, progress=False)
    assert (round_dir(tmp_path, 0) / "selection.json").is_file()
    bad = _answer(queries / "queries.csv", "not-a-class")
    state = _snapshot(tmp_path)
    with pytest.raises(AnswerError, match="unknown class"):
        run_loop(config, tmp_path, settings, wait=False, progress=False)
    assert _snapshot(tmp_path) == state  # nothing written, nothing changed
    bad.unlink()
    _answer(queries / "queries.csv", "car")
    with pytest.raises(AwaitingAnswers):
        run_loop(config, tmp_path, settings, wait=False, progress=False)
    budget = read_budget(round_dir(tmp_path, 0) / "labels")
    assert budget.manifest["labels"] == "given" and budget.num_labelled == 20
    assert all((values == 0).all() for values in budget.labels.values())  # "car" is class 0
    second = round_dir(tmp_path, 1) / "queries"
    rows = list(csv.DictReader((second / "queries.csv").open()))
    assert len(rows) == 20 and all(row["predicted_name"] for row in rows)
    _answer(second / "queries.csv", "road")
    results = run_loop(config, tmp_path, settings, wait=False, progress=False)
    assert [r["labelled_points"] for r in results] == [20, 40]
    final = read_budget(round_dir(tmp_path, 1) / "labels")
    given = np.unique(np.concatenate(list(final.labels.values())))
    assert given.tolist() == [0, 8]  # car, road


def test_killed_loop_resumes_where_it_stopped(small_sequences, tmp_path, make_config):
    raw = _raw(small_sequences, make_config)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    work = tmp_path / "work"
    command = [
        sys.executable, str(TOOL), str(config_path), "--work-dir", str(work), "--rounds", "3",
        "--strategy", "random", "--points-per-scene", "15", "--no-progress",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = work / "random_s0" / "round_01" / "round.json"
    deadline = time.monotonic() + 300
    while not marker.is_file():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "round 1 never finished"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = _snapshot(work / "random_s0" / "round_00") | _snapshot(
        work / "random_s0" / "round_01"
    )
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (
        _snapshot(work / "random_s0" / "round_00") | _snapshot(work / "random_s0" / "round_01")
    ) == finished
    report = json.loads((work / "active_learning.json").read_text())
    assert [r["labelled_points"] for r in report["rounds"]] == [30, 60, 90]
    assert (work / "active_learning.png").stat().st_size > 1000
    assert "round 2" in (work / "active_learning.md").read_text()
