"""Full-resolution evaluation: every original point gets its voxel's prediction.

Scans are predicted one at a time. With test-time augmentation every view (rotation about the
vertical axis x flip x scale, all about the scan's centre) is voxelised and predicted on its own,
and the class probabilities of each point are averaged over the views. Confusion matrices are
summed over data-parallel ranks, so every rank reports the same scores.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from pcseg.config import TTAConfig
from pcseg.data.collate import collate
from pcseg.data.datasets import SceneDataset
from pcseg.data.sample import Sample
from pcseg.engine.distributed import all_reduce_sum
from pcseg.engine.metrics import confusion_matrix, segmentation_scores

View = tuple[float, str, float]  # rotation (radians) about z, flip axis or "none", scale


def tta_views(tta: TTAConfig | None) -> list[View]:
    """The views to average: only the identity without TTA."""
    if tta is None:
        return [(0.0, "none", 1.0)]
    angles = [2 * math.pi * k / max(tta.rotations, 1) for k in range(max(tta.rotations, 1))]
    for flip in tta.flips:
        if flip not in ("none", "x", "y"):
            raise ValueError(f"eval.tta.flips: {flip!r}; valid: none, x, y")
    return list(itertools.product(angles, tta.flips, tta.scales))


def apply_view(sample: Sample, view: View) -> Sample:
    """A copy of ``sample`` with its coordinates rotated, flipped and scaled about its centre."""
    angle, flip, scale = view
    coord = sample["coord"].astype(np.float64)
    centre = (coord.min(0) + coord.max(0)) / 2
    centre[2] = 0.0
    local = coord - centre
    cos, sin = math.cos(angle), math.sin(angle)
    local[:, :2] = local[:, :2] @ np.array([[cos, sin], [-sin, cos]])
    if flip != "none":
        local[:, "xy".index(flip)] *= -1
    viewed = dict(sample)
    viewed["coord"] = (local * scale + centre).astype(np.float32)
    return viewed


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    sample: Sample,
    *,
    voxel_size: float,
    features: Sequence[str],
    device: torch.device,
    views: Sequence[View] = ((0.0, "none", 1.0),),
) -> Tensor:
    """(N, K) class probabilities of every point of ``sample``, averaged over ``views``."""
    total = None
    for view in views:
        batch = collate([apply_view(sample, view)], voxel_size=voxel_size, features=features)
        batch = batch.to(device)
        logits = model(batch.voxel_coords, batch.voxel_feat, 1).float()
        probabilities = torch.softmax(logits, dim=1)[batch.inverse]
        total = probabilities if total is None else total + probabilities
    return total / len(views)


def check_every_point(dataset: SceneDataset, index: int, sample: Sample) -> None:
    """Predictions are scored and written for every point of a scan: refuse transformed
    samples that lost some."""
    if len(sample["coord"]) != sample["points_read"]:
        raise ValueError(
            f"{dataset.scene_id(index)}: the test transforms dropped points; evaluation "
            "scores every point, so remove cropping transforms from data.test_transforms"
        )


def full_resolution(sample: Sample, pred: Tensor) -> np.ndarray:
    """Predictions in the scan's own point order (test transforms may reorder points)."""
    full = np.empty(int(sample["points_read"]), dtype=np.int64)
    full[sample["point_index"]] = pred.cpu().numpy()
    return full


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: SceneDataset,
    *,
    voxel_size: float,
    features: Sequence[str],
    device: torch.device,
    tta: TTAConfig | None = None,
    export_dir: Path | None = None,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
) -> dict:
    """Predict every scan of ``dataset`` and score it against all of its labels.

    Returns the scores of :func:`pcseg.engine.metrics.segmentation_scores` plus ``confusion``
    (K x K list, rows = ground truth), ``scans`` and ``points``; with ``export_dir`` each scan's
    predictions are also written in the dataset's native format.
    """
    was_training = model.training
    model.eval()
    views = tta_views(tta)
    confusion = torch.zeros(dataset.num_classes, dataset.num_classes, dtype=torch.long)
    indices = range(rank, len(dataset), world_size)
    for index in tqdm(indices, desc="evaluating", unit="scan", disable=not progress):
        sample = dataset[index]
        check_every_point(dataset, index, sample)
        probabilities = predict_probabilities(
            model, sample, voxel_size=voxel_size, features=features, device=device, views=views
        )
        pred = probabilities.argmax(1).cpu()
        label = torch.from_numpy(sample["label"])
        confusion += confusion_matrix(pred, label, dataset.num_classes)
        if export_dir is not None:
            dataset.export(index, full_resolution(sample, pred), export_dir)
    model.train(was_training)
    confusion = all_reduce_sum(confusion.to(device)).cpu()
    scores = segmentation_scores(confusion)
    scores["confusion"] = confusion.tolist()
    scores["scans"] = len(dataset)
    scores["points"] = int(confusion.sum())
    scores["tta_views"] = len(views)
    return scores
