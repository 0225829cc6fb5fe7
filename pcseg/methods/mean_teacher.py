"""Mean teacher: a student on strongly augmented views, its running average as the teacher.

Each step sees two views of the same scans: the clean view (``data.test_transforms``) goes
through the teacher, the augmented view (``data.train_transforms``) through the student, and
points are matched across the views by ``point_index``::

    L = CE(student, visible labels)
        + kl_weight * KL(p_teacher || p_student)                   every matched point
        + pseudo_weight * CE(student, argmax p_teacher)            unlabelled matched points
                                                                   with max p_teacher >= threshold

After every optimiser step the teacher moves towards the student,
``teacher = keep * teacher + (1 - keep) * student`` (parameters and floating-point buffers).
The teacher predicts in eval mode, without gradients, and is saved in every checkpoint.

The KL term is the per-point divergence summed over classes and averaged over points. HPAL's
code averages ``F.kl_div`` over points *and classes*, i.e. this term divided by K; its weight 1
there is ``kl_weight = 1 / K`` here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pcseg.data.collate import PointBatch, matching_points
from pcseg.methods import METHODS
from pcseg.methods.supervised import labelled_cross_entropy, point_logits


def kl_to_teacher(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """Mean over rows of KL(softmax(teacher) || softmax(student)); 0 (with a graph) for no rows."""
    if len(student_logits) == 0:
        return student_logits.sum() * 0.0
    teacher_log = torch.log_softmax(teacher_logits.float(), dim=1)
    student_log = torch.log_softmax(student_logits.float(), dim=1)
    return (teacher_log.exp() * (teacher_log - student_log)).sum(dim=1).mean()


def ema_update(teacher: nn.Module, student: nn.Module, *, keep: float) -> None:
    """``teacher = keep * teacher + (1 - keep) * student``; integer buffers are copied."""
    with torch.no_grad():
        for mine, theirs in zip(teacher.parameters(), student.parameters(), strict=True):
            mine.lerp_(theirs.detach(), 1.0 - keep)
        for mine, theirs in zip(teacher.buffers(), student.buffers(), strict=True):
            if mine.is_floating_point():
                mine.lerp_(theirs, 1.0 - keep)
            else:
                mine.copy_(theirs)


@METHODS.register("mean_teacher")
class MeanTeacher:
    """Semi-supervised training with an EMA teacher (see the module docstring).

    Args:
        ema_keep: the teacher's keep rate per step (HPAL: 0.955).
        kl_weight: weight of KL(teacher || student) over every matched point.
        pseudo_weight: weight of the cross-entropy on the teacher's confident pseudo-labels.
        pseudo_threshold: least teacher probability for a pseudo-label (HPAL: 0.75).
        label_smoothing: label smoothing of the supervised cross-entropy.
        class_weights: optional weight per class of the supervised cross-entropy.
    """

    views = (False, True)  # the teacher's clean view, the student's augmented view

    def __init__(
        self,
        *,
        ema_keep: float = 0.955,
        kl_weight: float = 1.0,
        pseudo_weight: float = 1.0,
        pseudo_threshold: float = 0.75,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        if not 0.0 <= ema_keep <= 1.0:
            raise ValueError(f"ema_keep must be in [0, 1], got {ema_keep}")
        if kl_weight < 0 or pseudo_weight < 0:
            raise ValueError("kl_weight and pseudo_weight must be >= 0")
        if not 0.0 <= pseudo_threshold <= 1.0:
            raise ValueError(f"pseudo_threshold must be in [0, 1], got {pseudo_threshold}")
        self.ema_keep, self.kl_weight = ema_keep, kl_weight
        self.pseudo_weight, self.pseudo_threshold = pseudo_weight, pseudo_threshold
        self.label_smoothing = label_smoothing
        self.class_weights = None if class_weights is None else torch.tensor(class_weights)
        self.teacher: nn.Module | None = None

    def attach(self, model: nn.Module) -> None:
        """Start the teacher as a copy of the (initialised) student."""
        self.teacher = copy.deepcopy(model).requires_grad_(False).eval()

    def after_step(self, model: nn.Module) -> None:
        ema_update(self._teacher(), model, keep=self.ema_keep)

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self._teacher().state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._teacher().load_state_dict(state["teacher"])

    def _teacher(self) -> nn.Module:
        if self.teacher is None:
            raise RuntimeError("mean_teacher: attach(model) must be called before training")
        return self.teacher

    def training_step(
        self, model: nn.Module, batch: tuple[PointBatch, PointBatch], *, epoch: float = 0.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss and logs of one batch of (clean, augmented) views; ``epoch`` is unused."""
        clean, augmented = batch
        student = point_logits(model, augmented)
        ce, labelled = labelled_cross_entropy(
            student, augmented, weight=self.class_weights, label_smoothing=self.label_smoothing
        )
        with torch.no_grad():
            teacher = point_logits(self._teacher(), clean).float()
        rows_student, rows_teacher = matching_points(augmented, clean)
        student, teacher = student[rows_student], teacher[rows_teacher]
        kl = kl_to_teacher(teacher, student)
        pseudo_ce, logs = self._pseudo_label_loss(student, teacher, augmented, rows_student)
        loss = ce + self.kl_weight * kl + self.pseudo_weight * pseudo_ce
        logs.update(loss=loss.detach(), ce=ce.detach(), kl=kl.detach(), labelled_points=labelled)
        return loss, logs

    def _pseudo_label_loss(
        self, student: Tensor, teacher: Tensor, batch: PointBatch, rows: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy on confident teacher labels of unlabelled points, and its logs.

        For monitoring only, ``pseudo_checked`` counts the pseudo-labelled points whose
        ground truth is known (hidden labels of a simulation) and ``pseudo_correct`` how many
        of them the teacher got right.
        """
        confidence, pseudo = torch.softmax(teacher, dim=1).max(dim=1)
        chosen = ~batch.label_mask[rows] & (confidence >= self.pseudo_threshold)
        truth = batch.label[rows][chosen]
        known = truth >= 0
        logs = {
            "pseudo_points": chosen.sum(),
            "pseudo_checked": known.sum(),
            "pseudo_correct": (pseudo[chosen][known] == truth[known]).sum(),
        }
        if not bool(chosen.any()):
            return student.sum() * 0.0, logs
        return nn.functional.cross_entropy(student[chosen], pseudo[chosen]), logs
