"""Mean teacher: KL and EMA by hand, which points get pseudo-labels, the clean and augmented
views, and a run whose teacher is restored on resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pcseg.config import config_from_dict
from pcseg.data.budgets import make_budget
from pcseg.data.collate import collate
from pcseg.data.label_budget import write_budget
from pcseg.data.sample import make_sample
from pcseg.engine import build
from pcseg.engine.checkpoint import load_checkpoint
from pcseg.engine.trainer import fit
from pcseg.methods import METHODS
from pcseg.methods.mean_teacher import ema_update, kl_to_teacher

AUGMENT = [
    {"name": "random_rotate", "axis": "z", "degrees": [-180, 180], "center": "origin"},
    {"name": "random_scale", "low": 0.9, "high": 1.1},
    {"name": "sphere_crop", "max_points": 3000, "mode": "random"},
]


def test_kl_to_teacher_by_hand():
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # (0.75, 0.25)
    student = torch.tensor([[0.0, 0.0]])  # (0.5, 0.5)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kl_to_teacher(teacher, student).item() == pytest.approx(expected, rel=1e-6)
    logits = torch.randn(20, 5)
    assert kl_to_teacher(logits, logits).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_to_teacher(torch.zeros(0, 5), torch.zeros(0, 5, requires_grad=True)).item() == 0.0


def test_ema_update_mixes_parameters_and_float_buffers_and_copies_counters():
    student, teacher = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        student.weight.fill_(2.0)
        teacher.weight.fill_(1.0)
        student.running_mean.fill_(4.0)
    student.num_batches_tracked.fill_(7)
    ema_update(teacher, student, keep=0.75)
    assert torch.allclose(teacher.weight, torch.full((3,), 1.25))
    assert torch.allclose(teacher.running_mean, torch.full((3,), 1.0))
    assert int(teacher.num_batches_tracked) == 7


def _batch(label_mask: np.ndarray, coord: np.ndarray):
    n = len(coord)
    sample = make_sample(coord=coord, feat=np.ones((n, 1)), label=np.arange(n) % 2, scene_id="s")
    sample.update(point_index=np.arange(n), index=0)
    sample["label_mask"] = label_mask
    return collate([sample], voxel_size=0.5, features=["coord"])


class _Fixed(nn.Module):
    """Logits from a fixed table per point position, whatever the view (for exact checks)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)
        self.batch: object = None

    def forward(self, voxel_coords, voxel_feat, batch_size):
        # One point per voxel below, in point order: voxel v holds point order[v].
        return self.logits[self.batch.point_index[torch.argsort(self.batch.inverse)]]


def test_pseudo_labels_only_for_confident_unlabelled_points():
    coord = np.array([[0, 0, 0], [2, 0, 0], [4, 0, 0], [6, 0, 0]], dtype=np.float32)
    mask = np.array([True, False, False, False])
    batch = _batch(mask, coord)
    # Teacher probabilities of class 1: 0.9 (labelled point), 0.9, 0.6, 0.1.
    probs = torch.tensor([0.9, 0.9, 0.6, 0.1])
    logits = torch.stack([torch.log(1 - probs), torch.log(probs)], dim=1)
    student, teacher = _Fixed(torch.zeros(4, 2)), _Fixed(logits)
    student.batch = teacher.batch = batch
    method = METHODS.build({"name": "mean_teacher", "pseudo_threshold": 0.75})
    method.teacher = teacher
    loss, logs = method.training_step(student, (batch, batch))
    # Points 1 (class 1, p 0.9) and 3 (class 0, p 0.9) are pseudo-labelled; point 1's true
    # label is 1 and point 3's is 1: one right of two checked.
    assert int(logs["pseudo_points"]) == 2 and int(logs["pseudo_checked"]) == 2
    assert int(logs["pseudo_correct"]) == 1
    ce = math.log(2.0)  # uniform student on the one labelled point and on both pseudo-labels
    kl = float(kl_to_teacher(logits, torch.zeros(4, 2)))
    assert float(logs["ce"]) == pytest.approx(ce, rel=1e-6)
    assert float(logs["kl"]) == pytest.approx(kl, rel=1e-6)
    assert float(loss) == pytest.approx(ce + kl + ce, rel=1e-6)


def test_teacher_sees_the_clean_view_and_the_student_the_augmented_one(one_scene, make_config):
    config = config_from_dict(
        make_config(
            one_scene,
            data={"train_transforms": AUGMENT},
            method={"name": "mean_teacher"},
        )
    )
    method = build.build_method(config)
    train_set = build.build_dataset(config, "train")
    loader, _ = build.build_train_loader(config, train_set, views=method.views)
    clean, augmented = next(iter(loader))
    read = train_set.read(0)
    assert clean.num_points == len(read["coord"]) and augmented.num_points == 3000
    order = torch.argsort(clean.point_index)
    assert np.allclose(clean.coord[order].numpy(), read["coord"], atol=1e-5)
    mine = augmented.coord.numpy()
    theirs = read["coord"][augmented.point_index.numpy()]
    assert not np.allclose(mine, theirs, atol=1e-2)  # rotated and scaled
    # The radii about the origin differ only by the scale factor.
    ratio = np.linalg.norm(mine[:, :2], axis=1) / np.linalg.norm(theirs[:, :2], axis=1)
    assert np.allclose(ratio, ratio[0], rtol=1e-4) and 0.9 <= ratio[0] <= 1.1


def test_run_moves_the_teacher_and_resumes_it_from_the_checkpoint(
    small_sequences, tmp_path, make_config
):
    raw = make_config(
        small_sequences,
        data={
            "train_transforms": AUGMENT[:2],
            "sparse_labels": str(tmp_path / "budget.npz"),
            "val": None,
        },
        method={"name": "mean_teacher", "ema_keep": 0.8},
        train={"max_steps": 8, "checkpoint_every": 4, "log_every": 4},
    )
    unlabelled = config_from_dict({**raw, "data": {**raw["data"], "sparse_labels": None}})
    dataset = build.build_dataset(unlabelled, "train", augment=False)
    write_budget(tmp_path / "budget", make_budget(dataset, rate=0.02, seed=0, progress=False))
    summary = fit(config_from_dict(raw), tmp_path / "run", progress=False)
    final = load_checkpoint(summary["checkpoint"])
    teacher, student = final["method"]["teacher"], final["model"]
    lag = max(
        float((teacher[k] - student[k]).abs().max())
        for k in student
        if student[k].is_floating_point()
    )
    assert lag > 1e-3  # the teacher trails the student
    records = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert '"kl"' in records and '"pseudo_points"' in records
    # Resume from step 4 in a copy. A teacher re-copied from the student at the resume would
    # end ~lag away; restored from the checkpoint it ends where the uninterrupted run did (up
    # to float summation order in the sparse convolutions).
    copy_dir = tmp_path / "resumed"
    (copy_dir / "checkpoints").mkdir(parents=True)
    first = tmp_path / "run" / "checkpoints" / "step_00000004.pth"
    (copy_dir / "checkpoints" / first.name).write_bytes(first.read_bytes())
    resumed = fit(config_from_dict(raw), copy_dir, resume=True, progress=False)
    again = load_checkpoint(resumed["checkpoint"])["method"]["teacher"]
    for key, value in teacher.items():
        assert torch.allclose(value.double(), again[key].double(), atol=1e-5), key
