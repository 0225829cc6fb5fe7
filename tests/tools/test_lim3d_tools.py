"""tools/select_frames.py, tools/pseudo_label.py and tools/lim3d.py as a user runs them, on
synthetic stop-and-go drives in SemanticKITTI format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pcseg.data.datasets import SemanticKITTIDataset
from pcseg.data.formats import semantickitti
from pcseg.data.frame_selection import read_frame_list
from pcseg.data.synthetic import write_outdoor_sequences

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = {"name": "spunet", "stem_channels": 4, "planes": [4, 8, 8, 4], "layers": [1, 1, 1, 1]}


@pytest.fixture(scope="module")
def drives(tmp_path_factory) -> Path:
    """Two training drives of 10 frames (standing still for 40 % of them), one to validate."""
    root = tmp_path_factory.mktemp("drives")
    write_outdoor_sequences(
        root, sequences=("00", "01"), frames=10, azimuth_steps=96, image_size=None,
        stop_fraction=0.4, seed=2,
    )  # fmt: skip
    write_outdoor_sequences(root, sequences=("02",), frames=2, azimuth_steps=96, image_size=None)
    return root


def _config(tmp_path: Path, root: Path, **data) -> Path:
    path = tmp_path / "lim3d_tiny.yaml"
    settings = {
        "data": {
            "root": str(root),
            "train": {"sequences": ["00", "01"]},
            "val": {"sequences": ["02"]},
            "voxel_size": 0.3,
            "point_budget": 100_000,
            **data,
        },
        "model": {"backbone": {**TINY, "block_conv": "sdsc"}},
        "train": {"max_steps": 6, "checkpoint_every": 3, "log_every": 3},
        "schedule": {"name": "constant", "warmup_steps": 0},
    }
    base = (CONFIGS / "demo" / "lim3d_small_sequences.yaml").as_posix()
    path.write_text(f"base: {base}\n" + yaml.safe_dump(settings))
    return path


def test_select_frames_writes_a_list_that_drops_standing_frames(drives, tmp_path, load_tool):
    tool = load_tool("select_frames")
    out = tmp_path / "strfd.txt"
    args = [str(drives), "--sequences", "00", "01", "--fraction", "0.3", "--out", str(out)]
    assert tool.main(args) == 0
    chosen = sorted(read_frame_list(out, drives))
    assert len(chosen) == 6
    # Standing still repeats a position; no two chosen frames of a drive share one.
    for name in ("00", "01"):
        x = semantickitti.read_sequence_poses(drives / "sequences" / name)[:, 0, 3]
        frames = [int(s.split("/")[1]) for s in chosen if s.startswith(name)]
        assert len(np.unique(np.round(x[frames], 6))) == len(frames) >= 1
    assert tool.main(args) == 2  # never replaces the list
    uniform = tmp_path / "uniform.txt"
    assert tool.main([*args[:-1], str(uniform), "--strategy", "uniform"]) == 0
    assert len(read_frame_list(uniform, drives)) == 6


def test_pipeline_runs_resumes_and_its_pseudo_labels_read_back(drives, tmp_path, load_tool):
    config = _config(tmp_path, drives)
    work = tmp_path / "lim3d"
    tool = load_tool("lim3d")
    args = [str(config), "--work-dir", str(work), "--fraction", "0.2", "--no-progress"]
    assert tool.main(args) == 0
    listed = read_frame_list(work / "labelled_frames.txt", drives)
    assert len(listed) == 4
    run = work / "s0"
    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["stage1"]["miou"] <= 1 and 0 <= summary["stage3"]["miou"] <= 1
    manifest = json.loads((run / "stage2_pseudo_labels" / "crb.json").read_text())
    assert manifest["frames"] == 20 and manifest["pseudo_labelled"] > 0
    assert 0 <= manifest["accuracy"] <= 1
    # The label tree reads back through the dataset: labelled frames keep their labels, the
    # others hold pseudo-labels only where confident; about half of each (range, class) cell.
    pseudo = SemanticKITTIDataset(
        drives, sequences=["00", "01"], label_root=run / "stage2_pseudo_labels"
    )
    truth = SemanticKITTIDataset(drives, sequences=["00", "01"])
    hidden = kept = 0
    for index in range(len(truth)):
        mine, real = pseudo.read(index)["label"], truth.read(index)["label"]
        if truth.scene_id(index) in listed:
            np.testing.assert_array_equal(mine, real)
        else:
            hidden += len(mine)
            kept += int((mine >= 0).sum())
    assert kept == manifest["pseudo_labelled"]
    assert 0.4 < kept / hidden < 0.7
    assert not (drives / "sequences" / "00" / "labels").samefile(
        run / "stage2_pseudo_labels" / "sequences" / "00" / "labels"
    )
    # A second run redoes nothing: no stage's files change.
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert tool.main(args) == 0
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    changed = [p.name for p in stamps if after[p] != stamps[p]]
    assert changed == ["summary.json"], changed
    # Other choices in the same work dir are refused, not mixed in.
    assert tool.main([*args[:-2], "0.5", "--no-progress"]) == 2
    assert tool.main([*args, "--set", "optim.lr=0.5"]) == 2


def test_interrupted_pseudo_labelling_is_redone_and_other_folders_are_refused(
    drives, tmp_path, load_tool
):
    config = _config(tmp_path, drives)
    work = tmp_path / "stage1"
    assert (
        load_tool("lim3d").main(
            [
                str(config),
                "--work-dir",
                str(work),
                "--fraction",
                "0.2",
                "--no-retrain",
                "--no-progress",
            ]
        )
        == 0
    )
    checkpoint = sorted((work / "s0" / "stage1_train" / "checkpoints").glob("*.pth"))[-1]
    tool = load_tool("pseudo_label")
    frames = f"data.labelled_frames={work / 'labelled_frames.txt'}"
    out = tmp_path / "pseudo"
    (out / "sequences").mkdir(parents=True)
    (out / "sequences" / "notes.txt").write_text("mine")
    args = [str(config), "--checkpoint", str(checkpoint), "--out", str(out), "--set", frames]
    assert tool.main([*args, "--no-progress"]) == 2  # a folder it did not start: untouched
    assert (out / "sequences" / "notes.txt").read_text() == "mine"
    out = tmp_path / "pseudo2"
    (out / "sequences" / "00" / "labels").mkdir(parents=True)
    (out / ".pcseg-pseudo-labels").touch()  # an interrupted run of the tool
    (out / "sequences" / "00" / "labels" / "000000.label").write_bytes(b"partial")
    args[4] = str(out)
    assert tool.main([*args, "--no-progress", "--keep", "0.3"]) == 0
    manifest = json.loads((out / "crb.json").read_text())
    assert manifest["settings"]["keep"] == 0.3 and not (out / ".pcseg-pseudo-labels").exists()
    label = out / "sequences" / "00" / "labels" / "000000.label"
    assert (
        label.stat().st_size
        == 4
        * semantickitti.read_scan(drives / "sequences" / "00" / "velodyne" / "000000.bin").shape[0]
    )
    assert tool.main([*args, "--no-progress"]) == 2  # finished: never written again
