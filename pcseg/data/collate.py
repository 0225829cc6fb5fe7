"""Samples -> one voxelised batch (``PointBatch``), and point-budget batching.

``collate`` concatenates the transformed samples, assembles their input features, and voxelises
them in one call (voxel features are the mean of their points). Every original point keeps its
voxel through ``inverse``, so losses and metrics can be computed per point at full resolution.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from pcseg.data.sample import Sample
from pcseg.data.transforms import assemble_features
from pcseg.ops import voxelize


@dataclasses.dataclass
class PointBatch:
    """B samples, N points, V voxels.

    Attributes:
        coord: float32 (N, 3) transformed point coordinates.
        label: int64 (N,) class per point, -1 = ignore.
        label_mask: bool (N,) labels a method may train on.
        batch_index: int64 (N,) sample of each point.
        point_offsets: int64 (B + 1,) start of each sample's points.
        point_index: int64 (N,) index of each point in its scan as read (crops keep it).
        voxel_coords: int32 (V, 4) ``[b, i, j, k]``.
        voxel_feat: float32 (V, C) mean input features per voxel.
        inverse: int64 (N,) voxel of each point.
        scene_ids: the B scene ids; indices: the B dataset indices.
        images: float32 (I, 3, H, W) in [0, 1], the I images of all samples in order (only
            for samples with cameras; all must share one size).
        superpixels: int64 (I, H, W) superpixel id of every pixel.
        pairing: int64 (P, 4) (point in the batch, image in the batch, row, col).
    """

    coord: Tensor
    label: Tensor
    label_mask: Tensor
    batch_index: Tensor
    point_offsets: Tensor
    point_index: Tensor
    voxel_coords: Tensor
    voxel_feat: Tensor
    inverse: Tensor
    scene_ids: list[str]
    indices: list[int]
    images: Tensor | None = None
    superpixels: Tensor | None = None
    pairing: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return len(self.scene_ids)

    @property
    def num_points(self) -> int:
        return len(self.coord)

    def to(self, device: torch.device | str) -> PointBatch:
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=True)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return dataclasses.replace(self, **moved)


def collate(samples: Sequence[Sample], *, voxel_size: float, features: Sequence[str]) -> PointBatch:
    """Concatenate transformed samples and voxelise them (mean features per voxel)."""
    sizes = [len(s["coord"]) for s in samples]
    coord = torch.from_numpy(np.concatenate([s["coord"] for s in samples]).astype(np.float32))
    feat = np.concatenate([assemble_features(s, features) for s in samples])
    batch_index = torch.repeat_interleave(torch.arange(len(samples)), torch.tensor(sizes))
    voxels = voxelize(coord, voxel_size, batch=batch_index, feat=torch.from_numpy(feat))
    return PointBatch(
        coord=coord,
        label=torch.from_numpy(np.concatenate([s["label"] for s in samples])),
        label_mask=torch.from_numpy(np.concatenate([s["label_mask"] for s in samples])),
        batch_index=batch_index,
        point_offsets=torch.tensor(np.concatenate([[0], np.cumsum(sizes)]), dtype=torch.long),
        point_index=torch.from_numpy(np.concatenate([s["point_index"] for s in samples])),
        voxel_coords=voxels.coords,
        voxel_feat=voxels.feat,
        inverse=voxels.inverse,
        scene_ids=[str(s["scene_id"]) for s in samples],
        indices=[int(s["index"]) for s in samples],
        **collate_cameras(samples, sizes),
    )


def collate_cameras(samples: Sequence[Sample], sizes: Sequence[int]) -> dict[str, Tensor]:
    """Images, superpixels and pairings of the samples, numbered batch-wide (empty dict when the
    samples have no cameras)."""
    if not all("pairing" in s for s in samples):
        return {}
    shapes = {image.shape for s in samples for image in s["images"]}
    if len(shapes) > 1:
        raise ValueError(
            f"images of one batch must share a size, got {sorted(shapes)}: add a resized_crop "
            "transform (or batch_size 1)"
        )
    pairings, first_point, first_image = [], 0, 0
    for sample, size in zip(samples, sizes, strict=True):
        pairing = sample["pairing"].copy()
        pairing[:, 0] += first_point
        pairing[:, 1] += first_image
        pairings.append(pairing)
        first_point += size
        first_image += len(sample["images"])
    images = np.stack([image for s in samples for image in s["images"]])
    return {
        "images": torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255),
        "superpixels": torch.from_numpy(
            np.stack([m for s in samples for m in s["superpixels"]]).astype(np.int64)
        ),
        "pairing": torch.from_numpy(np.concatenate(pairings).astype(np.int64)),
    }


def matching_points(first: PointBatch, second: PointBatch) -> tuple[Tensor, Tensor]:
    """Rows ``(i, j)`` of two views of the same scans that are the same original point.

    Points are matched by (scan in the batch, ``point_index``); a point one view cropped away
    has no match. Both views must hold the same scans in the same order.
    """
    if first.scene_ids != second.scene_ids:
        raise ValueError(f"views hold different scans: {first.scene_ids} vs {second.scene_ids}")
    span = int(max(first.point_index.max(), second.point_index.max())) + 1
    keys_first = first.batch_index * span + first.point_index
    keys_second = second.batch_index * span + second.point_index
    order = torch.argsort(keys_second)
    sorted_second = keys_second[order]
    slot = torch.searchsorted(sorted_second, keys_first).clamp_(max=len(sorted_second) - 1)
    found = sorted_second[slot] == keys_first
    return torch.nonzero(found).squeeze(1), order[slot[found]]


class MultiView(Dataset):
    """Several views of each scan, view ``v`` read through ``datasets[v]``.

    The datasets list the same scans and differ in their transforms (e.g. the same augmented
    dataset twice, or an un-augmented one beside an augmented one). Item ``(index, seed)`` is a
    list of one sample per view, view ``v`` drawn with its own seed derived from ``(seed, v)``;
    ``point_index`` ties their points together.
    """

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        if not datasets:
            raise ValueError("MultiView needs at least one dataset")
        sizes = {len(dataset) for dataset in datasets}  # type: ignore[arg-type]
        if len(sizes) != 1:
            raise ValueError(f"the views' datasets differ in length: {sorted(sizes)}")
        self.datasets = list(datasets)

    def __len__(self) -> int:
        return len(self.datasets[0])  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> list[Sample]:
        index, seed = key
        views = len(self.datasets)
        seeds = np.random.SeedSequence([seed, views]).generate_state(views)
        return [
            dataset[(index, int(view_seed))]
            for dataset, view_seed in zip(self.datasets, seeds, strict=True)
        ]


def collate_views(
    items: Sequence[Sequence[Sample]], *, voxel_size: float, features: Sequence[str]
) -> tuple[PointBatch, ...]:
    """One :class:`PointBatch` per view of :class:`MultiView` items, scans in the same order."""
    return tuple(
        collate([item[view] for item in items], voxel_size=voxel_size, features=features)
        for view in range(len(items[0]))
    )


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one item in one epoch (independent of order and workers)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class PointBudgetBatches(Sampler[list[tuple[int, int]]]):
    """Batches of at most ``point_budget`` points and ``max_batch_size`` scans.

    Each epoch shuffles the items with ``seed + epoch`` (when ``shuffle``), packs them greedily
    in that order, and deals whole batches to the ranks round-robin, dropping the last few so
    that every rank takes the same number of steps. A batch is a list of ``(index, seed)``
    keys for :class:`pcseg.data.datasets.SceneDataset`.

    Args:
        costs: upper bound of each item's point count after cropping.
        point_budget: most points in one batch; an item above it alone is an error.
        max_batch_size: most items in one batch.
        seed: run seed; shuffle: reshuffle every epoch.
        rank, world_size: this process's share of the batches.
    """

    def __init__(
        self,
        costs: Sequence[int],
        *,
        point_budget: int,
        max_batch_size: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.costs = np.asarray(costs, dtype=np.int64)
        too_big = np.flatnonzero(self.costs > point_budget)
        if len(too_big):
            raise ValueError(
                f"item {too_big[0]} has {self.costs[too_big[0]]:,} points, more than the "
                f"batch point budget {point_budget:,}: raise data.point_budget or add a "
                "sphere_crop transform with max_points <= the budget"
            )
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.point_budget, self.max_batch_size = point_budget, max_batch_size
        self.seed, self.shuffle = seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and the first batch of it this rank yields (to resume mid-epoch)."""
        self.epoch, self.start = epoch, start

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All ranks' batches of an epoch, as item indices."""
        order = np.arange(len(self.costs))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.costs))
        batches: list[list[int]] = []
        current: list[int] = []
        points = 0
        for index in order.tolist():
            cost = int(self.costs[index])
            if current and (
                points + cost > self.point_budget or len(current) == self.max_batch_size
            ):
                batches.append(current)
                current, points = [], 0
            current.append(index)
            points += cost
        if current:
            batches.append(current)
        usable = len(batches) // self.world_size * self.world_size
        if usable == 0:
            raise ValueError(
                f"{len(batches)} batch(es) cannot be shared by {self.world_size} ranks"
            )
        return batches[:usable]

    def rank_batches(self, epoch: int) -> list[list[int]]:
        return self.epoch_batches(epoch)[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self.rank_batches(self.epoch)) - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.rank_batches(self.epoch)[self.start :]:
            yield [(index, sample_seed(self.seed, self.epoch, index)) for index in batch]
