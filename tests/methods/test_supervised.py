"""Supervised cross-entropy sees only the visible labels, at point resolution."""

from __future__ import annotations

import numpy as np
import torch

from pcseg.data.collate import collate
from pcseg.data.sample import make_sample
from pcseg.methods import METHODS
from pcseg.models.segmentor import build_segmentor

TINY = {"name": "spunet", "stem_channels": 4, "planes": [4, 4], "layers": [1, 1]}


def _batch(mask: np.ndarray | None = None):
    rng = np.random.default_rng(0)
    coord = rng.uniform(0, 2, (500, 3)).astype(np.float32)
    label = rng.integers(0, 3, 500)
    label[:20] = -1
    sample = make_sample(coord=coord, feat=np.ones((500, 1)), label=label, scene_id="s")
    if mask is not None:
        sample["label_mask"] = mask
    sample.update(point_index=np.arange(500), index=0)
    return collate([sample], voxel_size=0.25, features=["coord"])


def test_loss_is_point_level_cross_entropy_over_visible_labels():
    torch.manual_seed(0)
    model = build_segmentor(TINY, in_channels=3, num_classes=3)
    mask = np.zeros(500, dtype=bool)
    mask[::7] = True
    batch = _batch(mask)
    loss, logs = METHODS.build({"name": "supervised"}).training_step(model, batch)
    logits = model(batch.voxel_coords, batch.voxel_feat, 1)[batch.inverse]
    visible = batch.label_mask & (batch.label >= 0)
    expected = torch.nn.functional.cross_entropy(logits[visible], batch.label[visible])
    torch.testing.assert_close(loss, expected)
    assert int(logs["labelled_points"]) == int(visible.sum()) < 500 // 7 + 1


def test_batch_without_visible_labels_gives_zero_loss_and_zero_gradients():
    model = build_segmentor(TINY, in_channels=3, num_classes=3)
    loss, _ = METHODS.build({"name": "supervised"}).training_step(
        model, _batch(np.zeros(500, dtype=bool))
    )
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
