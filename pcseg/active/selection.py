"""One round's choice of points to label: predict every training scan, score, select.

Strategies are a score (:mod:`pcseg.active.uncertainty`) plus a selection rule: ``*_fds``
walks the global ranking with HPAL's feature-distance suppression
(:func:`pcseg.ops.suppressed_selection`), the others take the lowest scores. Either way labelled
points are never chosen, ties go to the lower index, and the budget is exact unless the
candidates run out. The budget is global (the lowest scores over all scans, as HPAL) or per
scan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from pcseg.active.uncertainty import uncertainty_scores
from pcseg.data.budgets import scene_rng
from pcseg.data.collate import collate
from pcseg.data.datasets import SceneDataset
from pcseg.ops import suppressed_selection

STRATEGIES = ("hmmu_fds", "hmmu", "margin", "entropy", "lc", "random")
FDS_RADIUS = 0.2
FDS_COS_THRESHOLD = 0.8


@dataclasses.dataclass
class ScanPrediction:
    """A scan's points in reader order: coordinates, class probabilities, features."""

    scene_id: str
    coord: np.ndarray  # float32 (N, 3)
    probs: Tensor  # float32 (N, K)
    feat: Tensor  # float32 (N, F), the backbone's last features

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(dim=1).numpy()


@torch.no_grad()
def predict_scan(
    model: nn.Module,
    dataset: SceneDataset,
    index: int,
    *,
    voxel_size: float,
    features: Sequence[str],
    device: torch.device,
) -> ScanPrediction:
    """Probabilities and backbone features of every point of scan ``index`` (eval mode)."""
    sample = dataset[index]
    if len(sample["coord"]) != sample["points_read"]:
        raise ValueError(
            f"{dataset.scene_id(index)}: the test transforms dropped points; active learning "
            "scores every point, so remove cropping transforms from data.test_transforms"
        )
    batch = collate([sample], voxel_size=voxel_size, features=features).to(device)
    voxel_feat = model.features(batch.voxel_coords, batch.voxel_feat, 1)
    probs = torch.softmax(model.head(voxel_feat).float(), dim=1)
    order = torch.argsort(batch.point_index)  # back to reader order
    point_voxel = batch.inverse[order]
    return ScanPrediction(
        scene_id=dataset.scene_id(index),
        coord=np.asarray(sample["coord"], dtype=np.float32)[order.cpu().numpy()],
        probs=probs[point_voxel].cpu(),
        feat=voxel_feat.float()[point_voxel].cpu(),
    )


def lowest_unlabelled(score: Tensor, labelled: Tensor, budget: int) -> Tensor:
    """Indices of the ``budget`` lowest scores among unlabelled rows (ties: lower index)."""
    candidates = torch.nonzero(~labelled).squeeze(1)
    order = torch.sort(score[candidates], stable=True).indices[:budget]
    return candidates[order]


def choose(
    strategy: str,
    scans: Sequence[ScanPrediction],
    scores: Sequence[Tensor],
    labelled: Sequence[np.ndarray],
    budget: int,
) -> list[np.ndarray]:
    """Pooled selection over ``scans``: per scan, the chosen indices in the order chosen."""
    sizes = [len(scan.coord) for scan in scans]
    is_labelled = torch.zeros(sum(sizes), dtype=torch.bool)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for start, indices in zip(starts, labelled, strict=False):
        is_labelled[torch.from_numpy(start + indices)] = True
    score = torch.cat(list(scores))
    if strategy.endswith("_fds"):
        chosen = suppressed_selection(
            torch.from_numpy(np.concatenate([scan.coord for scan in scans])),
            torch.cat([scan.feat for scan in scans]),
            score,
            torch.repeat_interleave(torch.arange(len(scans)), torch.tensor(sizes)),
            is_labelled,
            budget=budget,
            radius=FDS_RADIUS,
            cos_threshold=FDS_COS_THRESHOLD,
        )
    else:
        chosen = lowest_unlabelled(score, is_labelled, budget)
    chosen = chosen.numpy()
    scan_of = np.searchsorted(starts, chosen, side="right") - 1
    return [chosen[scan_of == i] - starts[i] for i in range(len(scans))]


def select_round(
    model: nn.Module,
    dataset: SceneDataset,
    labelled: dict[str, np.ndarray],
    *,
    strategy: str,
    budget: int | None,
    points_per_scene: int | None,
    seed: int,
    voxel_size: float,
    features: Sequence[str],
    device: torch.device,
    progress: bool = True,
) -> tuple[list[ScanPrediction], list[Tensor], list[np.ndarray]]:
    """Predict and score every scan of ``dataset``, then choose the points to ask about.

    Exactly one of ``budget`` (points over all scans) and ``points_per_scene`` is given.
    Returns the predictions, the scores and the chosen indices, one entry per scan.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if (budget is None) == (points_per_scene is None):
        raise ValueError("give exactly one of budget and points_per_scene")
    model.eval()
    scans, scores = [], []
    for index in tqdm(range(len(dataset)), desc="scoring", unit="scan", disable=not progress):
        scan = predict_scan(
            model, dataset, index, voxel_size=voxel_size, features=features, device=device
        )
        rng = scene_rng(seed, scan.scene_id)
        scores.append(
            uncertainty_scores(strategy.removesuffix("_fds"), scan.probs, scan.coord, rng=rng)
        )
        scans.append(scan)
    known = [labelled.get(scan.scene_id, np.empty(0, np.int64)) for scan in scans]
    if budget is not None:
        return scans, scores, choose(strategy, scans, scores, known, budget)
    chosen = [
        choose(strategy, [scan], [score], [mine], points_per_scene)[0]
        for scan, score, mine in zip(scans, scores, known, strict=True)
    ]
    return scans, scores, chosen
