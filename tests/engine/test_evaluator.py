"""Evaluation: TTA views, view geometry, full-resolution scoring, export and TTA averaging."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pcseg.config import TTAConfig
from pcseg.data.datasets import SemanticKITTIDataset
from pcseg.data.formats import semantickitti as kitti
from pcseg.data.meta import semantickitti as kitti_meta
from pcseg.data.synthetic import write_outdoor_sequences
from pcseg.data.transforms import build_transforms
from pcseg.engine.evaluator import apply_view, evaluate, predict_probabilities, tta_views
from pcseg.models.segmentor import build_segmentor

CPU = torch.device("cpu")
VOXEL = 0.25
FEATURES = ["coord", "remission"]
K = kitti_meta.NUM_CLASSES
TINY = {"name": "spunet", "stem_channels": 4, "planes": [4, 4, 4, 4], "layers": [1, 1, 1, 1]}


def test_tta_views_are_every_combination() -> None:
    assert tta_views(None) == [(0.0, "none", 1.0)]
    assert len(tta_views(TTAConfig())) == 4 * 2 * 3
    views = tta_views(TTAConfig(rotations=3, flips=["none", "x", "y"], scales=[0.9, 1.1]))
    assert len(views) == 3 * 3 * 2 and len(set(views)) == 18
    angles = sorted({angle for angle, _, _ in views})
    np.testing.assert_allclose(angles, [0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    assert {flip for _, flip, _ in views} == {"none", "x", "y"}
    assert {scale for _, _, scale in views} == {0.9, 1.1}
    assert tta_views(TTAConfig(rotations=1, flips=["none"], scales=[1.0])) == [(0.0, "none", 1.0)]
    assert len(tta_views(TTAConfig(rotations=0, flips=["none"], scales=[1.0]))) == 1
    with pytest.raises(ValueError, match="'z'"):
        tta_views(TTAConfig(flips=["z"]))


def _square() -> dict:
    # bounding box x 0..2, y 0..4: the centre is (1, 2, 0) (z is not centred)
    coord = np.array([[0, 0, 1], [2, 0, 0], [2, 4, 3], [0, 4, 0], [1, 2, 5]], np.float32)
    return {"coord": coord, "label": np.arange(5), "scene_id": "square"}


def test_apply_view_rotates_flips_and_scales_about_the_centre() -> None:
    sample = _square()
    original = sample["coord"].copy()
    quarter = apply_view(sample, (math.pi / 2, "none", 1.0))["coord"]
    # counter-clockwise by 90 degrees about (1, 2): (2, 0) -> local (1, -2) -> (2, 1) -> (3, 3)
    np.testing.assert_allclose(quarter[1], [3, 3, 0], atol=1e-6)
    np.testing.assert_allclose(quarter[0], [3, 1, 1], atol=1e-6)
    np.testing.assert_allclose(quarter[4], [1, 2, 5], atol=1e-6)  # the centre column stays
    flipped = apply_view(sample, (math.pi / 2, "x", 1.0))["coord"]
    np.testing.assert_allclose(flipped[1], [-1, 3, 0], atol=1e-6)  # local x negated after turn
    scaled = apply_view(sample, (0.0, "y", 2.0))["coord"]
    np.testing.assert_allclose(scaled[1], [3, 6, 0], atol=1e-6)  # local (1, -2) -> (2, 4)
    np.testing.assert_allclose(scaled[2], [3, -2, 6], atol=1e-6)  # z scales about z = 0
    np.testing.assert_array_equal(sample["coord"], original)  # the input is not modified
    view = apply_view(sample, (1.0, "x", 1.0))
    assert view["label"] is sample["label"] and view["coord"].dtype == np.float32


@pytest.mark.parametrize("view", [(1.234, "none", 1.0), (4.0, "y", 1.0), (0.3, "x", 1.0)])
def test_apply_view_preserves_distances_at_scale_one(view) -> None:
    coord = np.random.default_rng(0).uniform(-20, 30, (200, 3)).astype(np.float32)
    moved = apply_view({"coord": coord}, view)["coord"].astype(np.float64)
    before = np.linalg.norm(coord[:, None] - coord[None], axis=-1)
    after = np.linalg.norm(moved[:, None] - moved[None], axis=-1)
    np.testing.assert_allclose(after, before, atol=1e-4)
    np.testing.assert_allclose(moved[:, 2], coord[:, 2], atol=1e-5)
    assert not np.allclose(moved, coord, atol=0.1)
    doubled = apply_view({"coord": coord}, (view[0], view[1], 2.0))["coord"].astype(np.float64)
    np.testing.assert_allclose(
        np.linalg.norm(doubled[:, None] - doubled[None], axis=-1), 2 * before, atol=2e-4
    )


# --- evaluation on a tiny synthetic dataset ---------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny sparse convolutions: extra intra-op threads only contend on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SemanticKITTIDataset:
    """Two synthetic frames; the first 300 points of frame 0 are relabelled unlabeled (ignore)."""
    root = tmp_path_factory.mktemp("kitti")
    (seq,) = write_outdoor_sequences(root, frames=2, azimuth_steps=80, beams=64, image_size=None)
    path = seq / "labels" / "000000.label"
    semantic, instance = kitti.read_label(path)
    semantic[:300] = 0
    kitti.write_label(path, semantic, instance, overwrite=True)
    return SemanticKITTIDataset(root, sequences=["00"])


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_segmentor(TINY, in_channels=4, num_classes=K)
    # Spread the untrained head so that predictions differ between points and classes.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    return model.eval()


def _probabilities(model, sample, views=((0.0, "none", 1.0),)) -> torch.Tensor:
    return predict_probabilities(
        model, sample, voxel_size=VOXEL, features=FEATURES, device=CPU, views=views
    )


def test_predict_probabilities_are_per_point_distributions(model, dataset) -> None:
    sample = dataset[0]
    probabilities = _probabilities(model, sample)
    assert probabilities.shape == (len(sample["coord"]), K)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(len(probabilities)))
    assert len(probabilities.argmax(1).unique()) > 1
    # points of one voxel share their voxel's prediction
    cell = np.floor(sample["coord"].astype(np.float64) / VOXEL).astype(np.int64)
    _, first, inverse = np.unique(cell, axis=0, return_index=True, return_inverse=True)
    torch.testing.assert_close(probabilities, probabilities[first[inverse.ravel()]])


def test_evaluate_scores_every_labelled_point(model, dataset, tmp_path: Path) -> None:
    model.train()
    scores = evaluate(
        model, dataset, voxel_size=VOXEL, features=FEATURES, device=CPU, export_dir=tmp_path
    )
    assert model.training  # the mode is restored
    model.eval()
    labels = [dataset[i]["label"] for i in range(len(dataset))]
    counts = np.bincount(np.concatenate(labels).clip(-1) + 1, minlength=K + 1)[1:]
    assert scores["scans"] == 2 and scores["tta_views"] == 1
    assert scores["points"] == sum(int((label >= 0).sum()) for label in labels) == counts.sum()
    assert (np.concatenate(labels) == -1).any()  # ignored points exist and are left out
    confusion = np.asarray(scores["confusion"])
    assert confusion.shape == (K, K)
    np.testing.assert_array_equal(confusion.sum(1), counts)
    expected = np.zeros((K, K), dtype=np.int64)
    for i, label in enumerate(labels):
        pred = _probabilities(model, dataset[i]).argmax(1).numpy()
        path = tmp_path / "sequences" / "00" / "predictions" / f"{i:06d}.label"
        raw, _ = kitti.read_label(path, len(label))
        np.testing.assert_array_equal(kitti.raw_to_class(path, raw), pred)
        keep = label >= 0
        np.add.at(expected, (label[keep], pred[keep]), 1)
    np.testing.assert_array_equal(confusion, expected)
    assert scores["gt_points"] == counts.tolist()
    assert scores["allacc"] == pytest.approx(np.trace(expected) / counts.sum())


def test_evaluation_refuses_dropped_points(model, dataset, tmp_path: Path) -> None:
    cropped = SemanticKITTIDataset(
        dataset.root,
        sequences=["00"],
        transforms=build_transforms([{"name": "sphere_crop", "max_points": 500}]),
    )
    for export_dir in (tmp_path, None):
        with pytest.raises(ValueError, match="dropped points"):
            evaluate(
                model,
                cropped,
                voxel_size=VOXEL,
                features=FEATURES,
                device=CPU,
                export_dir=export_dir,
            )
    assert not any(tmp_path.iterdir())


def test_tta_averages_the_views(model, dataset) -> None:
    tta = TTAConfig(rotations=2, flips=["none", "x"], scales=[0.9])
    views = tta_views(tta)
    sample = dataset[1]
    averaged = _probabilities(model, sample, views)
    per_view = torch.stack([_probabilities(model, sample, [view]) for view in views])
    torch.testing.assert_close(averaged, per_view.mean(0))
    # the views really differ, so the average is not any single one of them
    assert (per_view[0] - per_view[1]).abs().max() > 1e-3
    assert (averaged - per_view[0]).abs().max() > 1e-3
    frame1 = SemanticKITTIDataset(dataset.root, sequences=["00"], frames=[1])
    scores = evaluate(model, frame1, voxel_size=VOXEL, features=FEATURES, device=CPU, tta=tta)
    assert scores["tta_views"] == len(views) == 4
    label, pred = sample["label"], averaged.argmax(1).numpy()
    expected = np.zeros((K, K), dtype=np.int64)
    np.add.at(expected, (label[label >= 0], pred[label >= 0]), 1)
    np.testing.assert_array_equal(np.asarray(scores["confusion"]), expected)
    assert not np.array_equal(pred, per_view[0].argmax(1).numpy())
