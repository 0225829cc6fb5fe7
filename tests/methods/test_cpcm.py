"""CPCM: the JS loss, ramp-up, view correspondences, and a short run that learns to see
through the masks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from pcseg.config import config_from_dict
from pcseg.data.budgets import make_budget
from pcseg.data.collate import collate
from pcseg.data.label_budget import write_budget
from pcseg.data.sample import make_sample
from pcseg.engine import build
from pcseg.methods import METHODS
from pcseg.methods.cpcm import corresponding_voxels, js_divergence, rampup
from pcseg.models.segmentor import build_segmentor
from pcseg.ops import draw_masked_regions, region_mask


def test_js_divergence_matches_cpcm_formula_by_hand():
    a = torch.tensor([[math.log(3.0), 0.0]])  # softmax (0.75, 0.25)
    b = torch.tensor([[0.0, math.log(3.0)]])  # softmax (0.25, 0.75)
    eps = 1e-4
    term = 0.75 * math.log(0.75 / (0.5 + eps) + eps) + 0.25 * math.log(0.25 / (0.5 + eps) + eps)
    assert js_divergence(a, b).item() == pytest.approx(2 * term, rel=1e-5)
    logits = torch.randn(50, 7)
    # eps keeps it from being exactly 0 (CPCM's formula): about -eps * (K - 1).
    assert js_divergence(logits, logits).item() == pytest.approx(0.0, abs=5e-3)
    other = torch.randn(50, 7)
    assert js_divergence(logits, other).item() == pytest.approx(js_divergence(other, logits).item())
    assert js_divergence(logits, other).item() > 0.01
    empty = torch.zeros(0, 7, requires_grad=True)
    assert js_divergence(empty, empty).item() == 0.0


def test_rampup_follows_exp_minus_five_one_minus_t_squared():
    assert rampup(10.0, 0.0, 5) == pytest.approx(10.0 * math.exp(-5.0))
    assert rampup(10.0, 2.5, 5) == pytest.approx(10.0 * math.exp(-1.25))
    assert rampup(10.0, 5.0, 5) == rampup(10.0, 50.0, 5) == 10.0
    assert rampup(10.0, 0.0, 0) == 10.0


def _views(shift_voxels: int = 1, keep: slice = slice(None)):
    rng = np.random.default_rng(0)
    coord = rng.uniform(0, 4, (3000, 3)).astype(np.float32)
    first = make_sample(coord=coord, feat=np.ones((3000, 1)), label=np.zeros(3000), scene_id="s")
    first.update(point_index=np.arange(3000), index=0)
    second = {key: value for key, value in first.items()}
    second["coord"] = coord + 0.5 * shift_voxels
    for key in ("coord", "feat", "label", "label_mask", "point_index"):
        second[key] = second[key][keep]
    return (
        collate([first], voxel_size=0.5, features=["coord"]),
        collate([second], voxel_size=0.5, features=["coord"]),
    )


def test_corresponding_voxels_pair_the_voxels_holding_the_same_points():
    first, second = _views(shift_voxels=1)
    i, j = corresponding_voxels(first, second)
    # A shift by exactly one voxel maps every voxel onto its neighbour, one to one; voxel
    # coordinates count from each sample's minimum, so the neighbour has the same coordinates.
    assert len(i) == len(first.voxel_coords) == len(second.voxel_coords)
    offset = second.voxel_coords[j, 1:] - first.voxel_coords[i, 1:]
    assert bool((offset == 0).all())
    cropped_first, cropped_second = _views(shift_voxels=1, keep=slice(0, 1000))
    ci, cj = corresponding_voxels(cropped_first, cropped_second)
    held = torch.unique(cropped_first.inverse[:1000])
    assert torch.equal(torch.sort(ci).values, held)
    assert bool(
        (cropped_second.voxel_coords[cj, 1:] - cropped_first.voxel_coords[ci, 1:] == 0).all()
    )


def _config(root, sparse):
    raw = {
        "data": {
            "name": "semantickitti",
            "root": str(root),
            "train": {"sequences": ["00"]},
            "voxel_size": 0.2,
            "features": ["coord", "remission"],
            "train_transforms": [
                {"name": "random_rotate", "axis": "z", "degrees": [-180, 180], "center": "origin"},
                {"name": "random_scale", "low": 0.9, "high": 1.1},
            ],
            "sparse_labels": str(sparse),
            "batch_size": 2,
            "num_workers": 0,
        },
        "model": {
            "backbone": {
                "name": "spunet",
                "stem_channels": 8,
                "planes": [8, 16, 16, 8],
                "layers": [1, 1, 1, 1],
            }
        },
        "method": {"name": "cpcm", "grid": 4, "mask_ratio": 0.75, "mask_weight": 5.0},
        "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0},
    }
    return config_from_dict(raw)


def _agreement(model, batch, generator_seed: int) -> float:
    generator = torch.Generator().manual_seed(generator_seed)
    chosen = draw_masked_regions(batch.batch_size, 4, 0.75, generator)
    feat, _, masked = region_mask(batch.voxel_coords, batch.voxel_feat, 4, chosen)
    with torch.no_grad():
        clean = model(batch.voxel_coords, batch.voxel_feat, batch.batch_size).argmax(1)
        seen = model(batch.voxel_coords, feat, batch.batch_size).argmax(1)
    return float((clean[masked] == seen[masked]).float().mean())


def test_short_cpcm_run_learns_to_predict_through_the_masks(small_sequences, tmp_path):
    torch.manual_seed(0)
    config = _config(small_sequences, tmp_path / "budget.npz")
    dataset = build.build_dataset(
        dataclasses.replace(config, data=dataclasses.replace(config.data, sparse_labels=None)),
        "train",
        augment=False,
    )
    write_budget(tmp_path / "budget", make_budget(dataset, rate=0.01, seed=0, progress=False))
    train_set = build.build_dataset(config, "train")
    method = build.build_method(config)
    loader, sampler = build.build_train_loader(config, train_set, views=method.views)
    model = build.build_model(config, train_set.num_classes)
    optimizer = build.build_optimizer(config, model)
    probe = next(iter(loader))[1]
    before = _agreement(model, probe, 7)
    mask_losses, labelled = [], []
    for epoch in range(30):
        sampler.set_epoch(epoch)
        for views in loader:
            loss, logs = method.training_step(model, views, epoch=float(epoch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            mask_losses.append(float(logs["mask_self"] + logs["mask_corr"]))
            labelled.append(int(logs["labelled_points"]))
    after = _agreement(model, probe, 7)
    # Sparse labels only: a few percent of the points of each view.
    assert 0 < max(labelled) < 0.05 * probe.num_points * 2
    assert np.mean(mask_losses[-5:]) < 0.5 * np.mean(mask_losses[2:7])
    assert after > before + 0.1 and after > 0.8


def test_masking_off_skips_the_third_pass_and_consistency_off_its_term():
    method = METHODS.build({"name": "cpcm", "mask_weight": 0.0, "consistency_weight": 0.0})
    first, second = _views()
    model = build_segmentor(
        {"name": "spunet", "stem_channels": 4, "planes": [4, 4], "layers": [1, 1]},
        in_channels=3,
        num_classes=2,
    )
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    _, logs = method.training_step(model, (first, second), epoch=10.0)
    assert len(calls) == 2 and set(logs) == {"ce", "labelled_points", "loss"}
    both = METHODS.build({"name": "cpcm", "mask_weight": 1.0, "consistency_weight": 1.0})
    _, logs = both.training_step(model, (first, second), epoch=10.0)
    assert len(calls) == 5 and {"consistency", "mask_self", "mask_corr"} <= set(logs)


def test_masking_zeroes_only_the_non_geometric_inputs_by_default():
    _, second = _views()
    rng = np.random.default_rng(1)
    second.voxel_feat = torch.from_numpy(rng.uniform(1, 2, (len(second.voxel_feat), 4))).float()
    seen = []
    model = build_segmentor(
        {"name": "spunet", "stem_channels": 4, "planes": [4, 4], "layers": [1, 1]},
        in_channels=4,
        num_classes=2,
    )
    model.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    method = METHODS.build(
        {"name": "cpcm", "grid": 2, "mask_ratio": 0.5}, input_features=["coord", "remission"]
    )
    method.masked_logits(model, second)
    feat = seen[-1]
    assert torch.equal(feat[:, :3], second.voxel_feat[:, :3])  # coordinates stay
    zeroed = feat[:, 3] == 0
    assert 0 < int(zeroed.sum()) < len(feat)
    assert torch.equal(feat[~zeroed, 3], second.voxel_feat[~zeroed, 3])
    with pytest.raises(ValueError, match="nothing to mask"):
        METHODS.build({"name": "cpcm"}, input_features=["coord"])
    with pytest.raises(ValueError, match="not inputs"):
        METHODS.build({"name": "cpcm", "masked_features": ["color"]}, input_features=["coord"])


def test_config_with_nothing_to_mask_fails_its_check(make_config, tmp_path):
    from pcseg.registry import ConfigError

    config = config_from_dict(
        make_config(tmp_path, data={"features": ["coord"]}, method={"name": "cpcm"})
    )
    with pytest.raises(ConfigError, match="method: nothing to mask"):
        build.check_config(config)
