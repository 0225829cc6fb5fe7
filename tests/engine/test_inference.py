"""Predicting one scan with a checkpoint gives what evaluation exports for it."""

from __future__ import annotations

import numpy as np
import torch

from pcseg.config import config_from_dict
from pcseg.engine import build, inference  # inference.test_checkpoint: pytest would collect it
from pcseg.engine.checkpoint import save_checkpoint


def test_predict_scene_matches_the_exported_predictions(one_scene, make_config, tmp_path):
    config = config_from_dict(make_config(one_scene))
    torch.manual_seed(0)
    model = build.build_model(config, 19)
    with torch.no_grad():  # an untrained head spread out, so that points get different classes
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    checkpoint = tmp_path / "model.pth"
    save_checkpoint(checkpoint, {"model": model.state_dict(), "config": config.to_dict()})
    export = tmp_path / "export"
    inference.test_checkpoint(
        config, checkpoint, out_dir=tmp_path, export_dir=export, progress=False
    )
    dataset = build.build_dataset(config, "val")
    pred = inference.predict_scene(config, checkpoint, dataset, 0)
    assert pred.shape == (len(dataset.read(0)["coord"]),) and len(np.unique(pred)) > 1
    np.testing.assert_array_equal(pred, dataset.read_prediction(dataset.prediction_path(0, export)))
