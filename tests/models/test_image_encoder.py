"""The 2-D encoder: torchvision-layout ResNet-50 (parameter count, names), weights from a
torchvision state dict and from a MoCo checkpoint, frozen trunk, normalised full-size output."""

from __future__ import annotations

import pytest
import torch

from pcseg.models.image_encoder import DilatedResNet50, ImageEncoder, read_resnet_weights


def test_trunk_matches_torchvision_resnet50_without_its_classifier():
    trunk = DilatedResNet50()
    # torchvision's resnet50 has 25,557,032 parameters, 2,049,000 of them in fc.
    assert sum(p.numel() for p in trunk.parameters()) == 25_557_032 - 2_049_000
    names = trunk.state_dict()
    assert "layer4.2.bn3.running_var" in names and "layer3.0.downsample.1.weight" in names
    # Output stride 4: a 64 x 96 image gives a 16 x 24 map of 2048 channels.
    assert trunk.eval()(torch.rand(1, 3, 64, 96)).shape == (1, 2048, 16, 24)


@pytest.mark.parametrize("layout", ["torchvision", "moco"])
def test_weights_load_from_either_layout(tmp_path, layout):
    source = DilatedResNet50()
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in source.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    if layout == "moco":
        state = {"state_dict": {f"module.encoder_q.{k}": v for k, v in state.items()}}
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    encoder = ImageEncoder(out_channels=16, weights=path)
    want = state["state_dict"] if layout == "moco" else state
    key = "module.encoder_q.layer2.1.conv2.weight" if layout == "moco" else "layer2.1.conv2.weight"
    assert torch.equal(encoder.trunk.layer2[1].conv2.weight, want[key])


def test_foreign_checkpoint_is_refused_with_its_name(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"other\.pth: not a ResNet-50"):
        read_resnet_weights(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        read_resnet_weights(tmp_path / "missing.pth")


def test_trunk_is_frozen_and_stays_in_eval_mode():
    torch.manual_seed(0)
    encoder = ImageEncoder(out_channels=8).train()
    assert not encoder.trunk.training and encoder.head.training
    images = torch.rand(2, 3, 32, 48)
    out = encoder(images)
    assert out.shape == (2, 8, 32, 48)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2, 32, 48))
    out.sum().backward()
    assert all(p.grad is None for p in encoder.trunk.parameters())
    assert encoder.head.weight.grad is not None and encoder.head.weight.grad.abs().sum() > 0
    running = encoder.trunk.bn1.running_mean.clone()
    encoder(images)
    assert torch.equal(running, encoder.trunk.bn1.running_mean)
