"""Collation into a voxelised PointBatch, and point-budget batching across epochs and ranks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from pcseg.data.collate import PointBudgetBatches, collate, sample_seed
from pcseg.data.sample import make_sample

VOXEL = 0.1


def _sample(rng: np.random.Generator, n: int, index: int, offset: float) -> dict:
    # Points straddle 0 so that flooring (not truncation) toward the grid is exercised.
    coord = rng.uniform(-0.35, 0.35, (n, 3)) + offset
    sample = make_sample(
        coord=coord,
        feat=np.zeros((n, 0)),
        label=rng.integers(-1, 5, n),
        scene_id=f"scene{index}",
        color=rng.uniform(0, 1, (n, 3)).astype(np.float32),
    )
    sample["label_mask"] = rng.random(n) < 0.5
    sample["point_index"] = rng.permutation(n).astype(np.int64)
    sample["index"] = index
    return sample


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    rng = np.random.default_rng(0)
    # Both samples cover the same region, so equal grid cells must still split by sample.
    return [_sample(rng, 300, 7, 0.0), _sample(rng, 200, 3, 0.02)]


def test_collate_concatenates_samples(samples) -> None:
    batch = collate(samples, voxel_size=VOXEL, features=["coord", "color"])
    assert batch.batch_size == 2 and batch.num_points == 500
    assert batch.scene_ids == ["scene7", "scene3"] and batch.indices == [7, 3]
    assert batch.point_offsets.tolist() == [0, 300, 500]
    assert batch.batch_index.tolist() == [0] * 300 + [1] * 200
    assert batch.coord.dtype == torch.float32
    np.testing.assert_array_equal(batch.coord[300:].numpy(), samples[1]["coord"])
    for key in ("label", "label_mask", "point_index"):
        expected = np.concatenate([s[key] for s in samples])
        np.testing.assert_array_equal(getattr(batch, key).numpy(), expected)
    assert batch.label.dtype == torch.int64 and batch.label_mask.dtype == torch.bool


def test_every_point_maps_to_the_voxel_of_its_coordinates(samples) -> None:
    batch = collate(samples, voxel_size=VOXEL, features=["coord", "color"])
    coord = batch.coord.numpy().astype(np.float64)
    grid = np.floor(coord / VOXEL).astype(np.int64)
    grid -= grid.min(0)
    assert grid.min() == 0 and (np.floor(coord / VOXEL) < 0).any()
    expected = np.column_stack([batch.batch_index.numpy(), grid])
    voxel_coords = batch.voxel_coords.numpy()
    assert voxel_coords.dtype == np.int32 and voxel_coords.shape[1] == 4
    np.testing.assert_array_equal(voxel_coords[batch.inverse.numpy()], expected)
    # one voxel per distinct (sample, cell), and none left without points
    assert len(voxel_coords) == len(np.unique(expected, axis=0))
    assert len(np.unique(batch.inverse.numpy())) == len(voxel_coords)
    # the same cell in both samples gives two voxels
    cells = [{tuple(c) for c in grid[batch.batch_index.numpy() == b]} for b in (0, 1)]
    assert cells[0] & cells[1]


def test_voxel_features_are_the_mean_of_their_points(samples) -> None:
    batch = collate(samples, voxel_size=VOXEL, features=["color", "coord", "ones"])
    point_feat = np.concatenate(
        [np.column_stack([s["color"], s["coord"], np.ones(len(s["coord"]))]) for s in samples]
    )
    inverse = batch.inverse.numpy()
    num_voxels = len(batch.voxel_coords)
    sums = np.zeros((num_voxels, 7))
    np.add.at(sums, inverse, point_feat)
    counts = np.bincount(inverse, minlength=num_voxels)
    assert counts.max() > 1  # some voxels really average several points
    assert batch.voxel_feat.shape == (num_voxels, 7) and batch.voxel_feat.dtype == torch.float32
    np.testing.assert_allclose(batch.voxel_feat.numpy(), sums / counts[:, None], rtol=1e-5)


# --- point-budget batching ----------------------------------------------------------------------

COSTS = np.random.default_rng(1).integers(1, 120, 60).tolist()
BUDGET, MAX_SIZE = 250, 4


def _sampler(**kwargs) -> PointBudgetBatches:
    options = dict(point_budget=BUDGET, max_batch_size=MAX_SIZE, seed=5)
    return PointBudgetBatches(COSTS, **{**options, **kwargs})


def _indices(batches) -> list[list[int]]:
    return [[index for index, _ in batch] for batch in batches]


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_batches_respect_the_budget_and_cover_every_item_once(epoch: int) -> None:
    sampler = _sampler()
    sampler.set_epoch(epoch)
    batches = _indices(sampler)
    assert len(batches) == len(sampler)
    assert all(sum(COSTS[i] for i in b) <= BUDGET and 1 <= len(b) <= MAX_SIZE for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(len(COSTS)))
    # greedy packing: each batch was closed only because the next item did not fit
    for batch, following in itertools.pairwise(batches):
        full = len(batch) == MAX_SIZE
        assert full or sum(COSTS[i] for i in batch) + COSTS[following[0]] > BUDGET


def test_batches_carry_each_items_augmentation_seed() -> None:
    sampler = _sampler()
    sampler.set_epoch(3)
    for batch in sampler:
        assert all(seed == sample_seed(5, 3, index) for index, seed in batch)


def test_epochs_reshuffle_and_seeds_reproduce() -> None:
    first, second = _sampler(), _sampler()
    orders = []
    for epoch in (0, 1):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        assert list(first) == list(second)
        orders.append([i for b in _indices(first) for i in b])
    assert orders[0] != orders[1]
    other = _sampler(seed=6)
    assert _indices(other) != _indices(_sampler())


def test_without_shuffle_items_keep_their_order() -> None:
    sampler = _sampler(shuffle=False)
    sampler.set_epoch(4)
    assert [i for b in _indices(sampler) for i in b] == list(range(len(COSTS)))


def test_ranks_get_disjoint_equal_shares() -> None:
    ranks = [_sampler(rank=r, world_size=2) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(1)
    shares = [_indices(s) for s in ranks]
    assert len(shares[0]) == len(shares[1]) == len(ranks[0]) > 0
    items = [{i for b in share for i in b} for share in shares]
    assert not items[0] & items[1]
    everything = ranks[0].epoch_batches(1)
    assert len(everything) % 2 == 0
    assert shares[0] == everything[0::2] and shares[1] == everything[1::2]
    # at most one batch (the last) is dropped so that both ranks take the same steps
    single = _sampler()
    single.set_epoch(1)
    assert 0 <= len(_indices(single)) - len(everything) <= 1
    assert _indices(single)[: len(everything)] == everything


def test_set_epoch_start_skips_the_first_batches_of_this_rank() -> None:
    for world_size, rank in ((1, 0), (2, 1)):
        sampler = _sampler(rank=rank, world_size=world_size)
        sampler.set_epoch(2)
        full = list(sampler)
        sampler.set_epoch(2, start=3)
        assert len(sampler) == len(full) - 3
        assert list(sampler) == full[3:]
        sampler.set_epoch(2)
        assert list(sampler) == full


def test_an_item_above_the_budget_is_an_error() -> None:
    with pytest.raises(ValueError, match="sphere_crop") as error:
        PointBudgetBatches([10, 300, 20], point_budget=BUDGET, max_batch_size=2, seed=0)
    assert "item 1" in str(error.value)
    with pytest.raises(ValueError, match="max_batch_size"):
        PointBudgetBatches([10], point_budget=BUDGET, max_batch_size=0, seed=0)
    lonely = PointBudgetBatches([10], point_budget=BUDGET, max_batch_size=1, seed=0, world_size=2)
    with pytest.raises(ValueError, match="ranks"):
        list(lonely)


def test_sample_seed_is_deterministic_and_distinct() -> None:
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2)
    seeds = {sample_seed(0, epoch, index) for epoch in range(5) for index in range(100)}
    assert len(seeds) == 500
    assert sample_seed(0, 0, 0) != sample_seed(1, 0, 0)
    assert sample_seed(0, 1, 2) != sample_seed(0, 2, 1)
    assert all(0 <= s < 2**32 for s in seeds)
