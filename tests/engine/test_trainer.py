"""The training loop end to end on synthetic scans in SemanticKITTI format."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pcseg.config import config_from_dict, load_config
from pcseg.data.formats import semantickitti
from pcseg.engine.checkpoint import load_checkpoint
from pcseg.engine.runlog import read_metrics
from pcseg.engine.trainer import TrainingDiverged, fit


def test_small_backbone_overfits_one_scene(one_scene, tmp_path, make_config):
    config = config_from_dict(make_config(one_scene, train={"max_steps": 160, "log_every": 20}))
    summary = fit(config, tmp_path / "run", progress=False)
    val = summary["val"]
    assert val["miou"] >= 0.9, val["iou"]
    assert val["points"] > 10_000
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["split"] == "train"]
    assert len(losses) == 8 and losses[-1] < 0.25 * losses[0]
    assert all(r["points_per_s"] > 0 for r in records if r["split"] == "train")
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert load_config(tmp_path / "run" / "config.yaml") == config
    state = load_checkpoint(summary["checkpoint"])
    assert state["position"]["step"] == 160
    assert config_from_dict(state["config"]) == config


def test_run_is_reproducible_on_cpu(small_sequences, tmp_path, make_config):
    augment = [{"name": "random_rotate"}, {"name": "random_scale"}, {"name": "random_jitter"}]
    data = {"train_transforms": augment, "batch_size": 2}
    config = config_from_dict(make_config(small_sequences, data=data, train={"max_steps": 4}))
    first = load_checkpoint(fit(config, tmp_path / "a", progress=False)["checkpoint"])
    second = load_checkpoint(fit(config, tmp_path / "b", progress=False)["checkpoint"])
    for key, value in first["model"].items():
        assert torch.equal(value, second["model"][key]), key


def test_divergence_stops_the_run_and_keeps_good_checkpoints(one_scene, tmp_path, make_config):
    optim = {"name": "sgd", "lr": 1e30, "momentum": 0.9}
    config = config_from_dict(
        make_config(one_scene, optim=optim, train={"max_steps": 10, "checkpoint_every": 1})
    )
    with pytest.raises(TrainingDiverged, match=r"at step \d+ \(scans 00/000000\).*last good"):
        fit(config, tmp_path / "run", progress=False)
    saved = sorted((tmp_path / "run" / "checkpoints").glob("step_*.pth"))
    assert saved, "the steps before the divergence were checkpointed"
    for path in saved:
        weights = load_checkpoint(path)["model"]
        assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_existing_run_is_never_reused_without_resume(one_scene, tmp_path, make_config):
    config = config_from_dict(make_config(one_scene, train={"max_steps": 1}))
    fit(config, tmp_path / "run", progress=False)
    saved = (tmp_path / "run" / "config.yaml").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        fit(config, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "config.yaml").read_bytes() == saved
    changed = config_from_dict(make_config(one_scene, optim={"lr": 0.5}, train={"max_steps": 2}))
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in \['optim.lr'\]"):
        fit(changed, tmp_path / "run", resume=True, progress=False)
    longer = config_from_dict(make_config(one_scene, train={"max_steps": 2}))
    assert fit(longer, tmp_path / "run", resume=True, progress=False)["steps"] == 2


def test_resume_with_more_steps_stretches_the_schedule(one_scene, tmp_path, make_config):
    schedule = {"name": "cosine"}
    train = {"max_steps": 2, "log_every": 1}
    short = config_from_dict(make_config(one_scene, schedule=schedule, train=train))
    fit(short, tmp_path / "run", progress=False)
    train["max_steps"] = 4
    longer = config_from_dict(make_config(one_scene, schedule=schedule, train=train))
    fit(longer, tmp_path / "run", resume=True, progress=False)
    rates = [r["lr"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "lr" in r]
    # Steps 1, 2 of the 2-step run, then 3, 4 of the resumed 4-step run, whose learning rate
    # after step 3 is 0.01 * 0.5 * (1 + cos(3 pi / 4)), not the finished short schedule's 0.
    third = 0.01 * 0.5 * (1 + np.cos(np.pi * 3 / 4))
    assert rates == pytest.approx([0.005, 0.0, third, 0.0])


def test_run_stopped_before_its_first_checkpoint_starts_afresh(one_scene, tmp_path, make_config):
    raw = make_config(one_scene, train={"max_steps": 2, "log_every": 1})
    work = tmp_path / "run"
    work.mkdir()
    (work / "config.yaml").write_text("stale: true\n")
    (work / "metrics.jsonl").write_text(json.dumps({"step": 7, "split": "train"}) + "\n")
    fit(config_from_dict(raw), work, progress=False)
    assert [r["step"] for r in read_metrics(work / "metrics.jsonl")] == [1, 2, 2]
    assert load_config(work / "config.yaml") == config_from_dict(raw)


def test_resume_without_checkpoint_is_a_clear_error(one_scene, tmp_path, make_config):
    config = config_from_dict(make_config(one_scene))
    with pytest.raises(FileNotFoundError, match="no usable checkpoint"):
        fit(config, tmp_path / "run", resume=True, progress=False)


def write_config(path, config: dict):
    path.write_text(yaml.safe_dump(config))
    return path


def test_summary_file_lists_the_final_scores(one_scene, tmp_path, make_config):
    config = config_from_dict(make_config(one_scene, train={"max_steps": 2}))
    fit(config, tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["world_size"] == 1
    assert 0.0 <= summary["val"]["miou"] <= 1.0


TRAIN = Path(__file__).resolve().parents[2] / "tools" / "train.py"


def _wait_for_checkpoint(process: subprocess.Popen, directory: Path, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(directory.glob("step_*.pth")):
            return
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.01)
    raise AssertionError("no checkpoint appeared")


def test_killed_run_resumes_to_the_same_weights(small_sequences, tmp_path, make_config):
    """SIGKILL after the first checkpoint (mid-epoch: 2 batches per epoch, a checkpoint every
    3 steps), resume, and end bit-identical to a run that was never interrupted."""
    augment = [{"name": "random_rotate"}, {"name": "random_flip"}, {"name": "random_jitter"}]
    raw = make_config(
        small_sequences,
        data={"train_transforms": augment, "num_workers": 1},
        train={"max_steps": 20, "checkpoint_every": 3},
    )
    path = write_config(tmp_path / "config.yaml", raw)
    reference = fit(config_from_dict(raw), tmp_path / "reference", progress=False)
    work = tmp_path / "killed"
    command = [sys.executable, str(TRAIN), str(path), "--work-dir", str(work), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for_checkpoint(process, work / "checkpoints")
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = max(int(p.stem.split("_")[1]) for p in (work / "checkpoints").glob("step_*.pth"))
    assert killed_at < 20
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    expected = load_checkpoint(reference["checkpoint"])
    final = load_checkpoint(work / "checkpoints" / "step_00000020.pth")
    assert final["position"] == expected["position"]
    for key, value in expected["model"].items():
        assert torch.equal(value, final["model"][key]), key
    for key, value in expected["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg"], final["optimizer"]["state"][key]["exp_avg"])


def test_training_on_the_real_frame_beats_the_majority_class(shared_data, tmp_path, make_config):
    """All labels of the real SemanticKITTI scan 00/000000, 20 cm voxels, the tiny network,
    scored on every point of the same scan (the transductive setting)."""
    root = shared_data / "semantickitti"
    label = semantickitti.read_frame(root / "sequences" / "00", 0)["label"]
    counts = np.bincount(label[label >= 0])
    majority_miou = counts.max() / counts.sum() / np.count_nonzero(counts)
    config = config_from_dict(make_config(root, data={"voxel_size": 0.2}, train={"max_steps": 120}))
    val = fit(config, tmp_path / "run", progress=False)["val"]
    assert val["points"] == counts.sum()
    print(f"real frame: mIoU {val['miou']:.3f}, majority-class mIoU {majority_miou:.3f}")
    assert val["miou"] > 0.6 and val["miou"] > 10 * majority_miou


def test_init_from_starts_a_run_from_a_checkpoints_weights(one_scene, tmp_path, make_config):
    from pcseg.registry import ConfigError

    first = fit(
        config_from_dict(make_config(one_scene, data={"val": None})), tmp_path / "a", progress=False
    )
    source = load_checkpoint(first["checkpoint"])["model"]
    # SGD with lr 0 and no momentum leaves the weights where they started.
    frozen = make_config(
        one_scene,
        data={"val": None},
        model={"init_from": first["checkpoint"]},
        optim={"name": "sgd", "lr": 0.0, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
        train={"max_steps": 1},
    )
    second = fit(config_from_dict(frozen), tmp_path / "b", progress=False)
    weights = load_checkpoint(second["checkpoint"])["model"]
    for key, value in source.items():
        if value.is_floating_point() and "running" not in key:  # BN statistics still update
            assert torch.equal(value, weights[key]), key
    other = {**frozen, "data": {**frozen["data"], "voxel_size": 0.2}}
    with pytest.raises(ValueError, match="voxel_size"):
        fit(config_from_dict(other), tmp_path / "c", progress=False)
    missing = {**frozen, "model": {**frozen["model"], "init_from": str(tmp_path / "nope.pth")}}
    with pytest.raises(ConfigError, match="init_from"):
        fit(config_from_dict(missing), tmp_path / "d", progress=False)


def test_run_resumed_after_its_last_checkpoint_still_reports_scores(
    one_scene, tmp_path, make_config
):
    """Killed during the final validation: the resumed run validates instead of skipping it."""
    config = config_from_dict(make_config(one_scene, train={"max_steps": 2, "checkpoint_every": 2}))
    first = fit(config, tmp_path / "run", progress=False)
    (tmp_path / "run" / "train_summary.json").unlink()
    again = fit(config, tmp_path / "run", resume=True, progress=False)
    assert again["val"]["miou"] == pytest.approx(first["val"]["miou"])
