"""SLidR: camera samples from a synthetic drive with rendered images, augmentations that keep
pairings on the same pixels, the superpixel InfoNCE loss by hand, a short pre-training whose
loss falls, and fine-tuning that starts from the pre-trained backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pcseg.config import config_from_dict
from pcseg.data.collate import collate
from pcseg.data.datasets import SemanticKITTIDataset
from pcseg.data.image_transforms import DropCuboids, FlipImages, ResizedCrop
from pcseg.data.synthetic import write_outdoor_sequences
from pcseg.engine.checkpoint import load_checkpoint
from pcseg.engine.trainer import fit
from pcseg.methods.slidr import superpixel_contrastive_loss
from tests.conftest import config_dict


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    """Two frames of one synthetic street with image_2 at 320 x 96 pixels."""
    root = tmp_path_factory.mktemp("drive")
    write_outdoor_sequences(root, frames=2, azimuth_steps=512, image_size=(320, 96), seed=4)
    return root


@pytest.fixture(scope="module")
def camera_sample(drive, tmp_path_factory):
    dataset = SemanticKITTIDataset(
        drive,
        sequences=["00"],
        cameras=["image_2"],
        superpixels={"n_segments": 40, "cache_dir": tmp_path_factory.mktemp("sp")},
    )
    sample = dataset.read(0)
    return {**sample, "point_index": np.arange(len(sample["coord"]))}


def looked_up(sample, key: str) -> np.ndarray:
    """Value of ``sample[key]`` (images or superpixels) at each pairing's pixel."""
    return np.stack([sample[key][c][r, k] for _, c, r, k in sample["pairing"].tolist()])


def looked_up_before(sample, reference, key: str) -> np.ndarray:
    """The same, at the pixel each kept pairing had in ``reference`` (matched by point_index)."""
    before = {}
    for p, c, r, k in reference["pairing"].tolist():
        before[(int(reference["point_index"][p]), c)] = reference[key][c][r, k]
    return np.stack([before[(int(sample["point_index"][p]), c)]
                     for p, c, _, _ in sample["pairing"].tolist()])  # fmt: skip


def test_camera_sample_pairs_points_with_superpixels(camera_sample):
    s = camera_sample
    assert len(s["images"]) == len(s["superpixels"]) == 1
    assert s["images"][0].shape == (96, 320, 3) and s["superpixels"][0].shape == (96, 320)
    assert s["pairing"].shape[1] == 4 and len(s["pairing"]) > 500
    assert 10 <= s["superpixels"][0].max() + 1 <= 60


@pytest.mark.parametrize(
    "transform",
    [
        ResizedCrop(size=(48, 96), min_pairings=100),
        FlipImages(p=1.0),
        DropCuboids(min_pairings=100),
    ],
    ids=["resized_crop", "flip", "drop_cuboids"],
)
def test_augmentations_keep_each_point_on_its_pixel(camera_sample, transform):
    rng = np.random.default_rng(0)
    out = transform(camera_sample, rng)
    assert len(out["pairing"]) > 100
    before = looked_up_before(out, camera_sample, "images").astype(float)
    after = looked_up(out, "images").astype(float)
    if not isinstance(transform, ResizedCrop):
        assert np.array_equal(before, after)  # pixels move (flip) or points go, colours stay
        return
    assert out["images"][0].shape == (48, 96, 3)
    # Resizing blends neighbouring pixels, so colours match closely rather than exactly: much
    # closer than to the colour of another pairing's pixel.
    own = np.linalg.norm(after - before, axis=1)
    other = np.linalg.norm(after - np.roll(before, 7, axis=0), axis=1)
    assert np.median(own) < 0.25 * np.median(other)
    same_superpixel = looked_up(out, "superpixels") == looked_up_before(
        out, camera_sample, "superpixels"
    )
    assert same_superpixel.mean() > 0.95


def test_contrastive_loss_by_hand():
    # Two images of 1 x 2 pixels, one superpixel per pixel; three points.
    pixels = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]], [[[0.6, 0.0]], [[0.8, 1.0]]]])
    superpixels = torch.tensor([[[0, 1]], [[0, 1]]])
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    pairing = torch.tensor([[0, 0, 0, 0], [1, 0, 0, 1], [2, 1, 0, 0]])
    loss, logs = superpixel_contrastive_loss(points, pixels, pairing, superpixels, temperature=0.5)
    # Superpixel (image 1, id 1) holds no point and is dropped: k = points, q = 3 pixel rows.
    k = points
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    want = torch.nn.functional.cross_entropy(k @ q.T / 0.5, torch.arange(3))
    torch.testing.assert_close(loss, want)
    assert int(logs["superpixels"]) == 3 and float(logs["match_accuracy"]) == 1.0


def pretrain_config(root, work):
    return config_from_dict(config_dict(
        root,
        data={
            "train": {"sequences": ["00"], "label_dir": None, "cameras": ["image_2"],
                      "superpixels": {"n_segments": 40, "cache_dir": str(work / "sp")}},
            "val": None,
            "features": ["remission"],
            "train_transforms": [
                {"name": "random_rotate", "axis": "z", "degrees": [-180, 180]},
                {"name": "drop_cuboids", "min_pairings": 100},
                {"name": "resized_crop", "size": [48, 96], "min_pairings": 100},
                {"name": "flip_images"},
            ],
            "batch_size": 2,
            "voxel_size": 0.4,
        },
        method={"name": "slidr", "feature_dim": 16},
        optim={"name": "sgd", "lr": 0.5, "momentum": 0.9, "dampening": 0.1, "nesterov": False},
        train={"max_steps": 16, "log_every": 4, "checkpoint_every": 16},
    ))  # fmt: skip


def test_pretraining_loss_falls_and_fine_tuning_starts_from_its_backbone(drive, tmp_path):
    torch.manual_seed(0)
    work = tmp_path / "pretrain"
    fit(pretrain_config(drive, tmp_path), work, progress=False)
    lines = [__import__("json").loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if x.get("split") == "train"]
    assert losses[-1] < losses[0] - 0.3, losses
    checkpoint = work / "checkpoints" / "step_00000016.pth"
    saved = load_checkpoint(checkpoint)["model"]
    assert any(k.startswith("image_encoder.head.") for k in saved)

    config = config_from_dict(config_dict(
        drive, data={"features": ["remission"], "voxel_size": 0.4},
        model={"init_from": str(checkpoint)},
        train={"max_steps": 1},
    ))  # fmt: skip
    from pcseg.engine import build
    from pcseg.engine.inference import load_weights

    model = build.build_model(config, 19)
    load_weights(model, checkpoint, config)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, saved[f"backbone.{key}"]), key
    wrong = config_from_dict(config_dict(drive, model={"init_from": str(checkpoint)}))
    with pytest.raises(ValueError, match=r"data\.features"):
        load_weights(build.build_model(wrong, 19), checkpoint, wrong)


def test_batch_of_camera_samples_collates(camera_sample):
    crop = ResizedCrop(size=(48, 96), min_pairings=100)
    samples = [crop(camera_sample, np.random.default_rng(s)) for s in (0, 1)]
    for i, s in enumerate(samples):
        s.update(index=i)
    batch = collate(samples, voxel_size=0.1, features=["remission"])
    n0 = len(samples[0]["coord"])
    assert batch.images.shape == (2, 3, 48, 96) and batch.superpixels.shape == (2, 48, 96)
    second = batch.pairing[batch.pairing[:, 1] == 1]
    assert (second[:, 0] >= n0).all() and len(batch.pairing) == sum(
        len(s["pairing"]) for s in samples
    )
