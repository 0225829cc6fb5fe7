"""The residual sparse UNet: structure, shapes, and gradients against finite differences."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from pcseg.models.backbones import BACKBONES
from pcseg.models.segmentor import build_segmentor, count_parameters
from pcseg.models.sparse import spconv

TINY = {"name": "spunet", "stem_channels": 4, "planes": [4, 6, 6, 4], "layers": [1, 1, 1, 1]}


def _voxels(seed: int = 0, size: int = 12, n: int = 300):
    generator = torch.Generator().manual_seed(seed)
    coords = torch.unique(torch.randint(0, size, (n, 3), generator=generator), dim=0)
    return torch.cat([torch.zeros(len(coords), 1, dtype=torch.long), coords], 1).int()


def test_34c_structure_has_the_standard_widths_and_depths():
    backbone = BACKBONES.build({"name": "spunet"}, in_channels=4)
    modules = list(backbone.modules())
    subm = [m for m in modules if isinstance(m, spconv.SubMConv3d)]
    down = [m for m in modules if isinstance(m, spconv.SparseConv3d)]
    up = [m for m in modules if isinstance(m, spconv.SparseInverseConv3d)]
    assert len(subm) == 1 + 2 * (2 + 3 + 4 + 6 + 2 + 2 + 2 + 2)
    assert [m.out_channels for m in down] == [32, 64, 128, 256]
    assert [m.out_channels for m in up] == [256, 128, 96, 96]
    assert backbone.out_channels == 96
    # 39.1 M parameters: the size usually quoted for the 34C network.
    assert 38e6 < count_parameters(backbone) < 40e6


def test_forward_gives_logits_for_every_voxel_in_input_order():
    coords = _voxels()
    model = build_segmentor(TINY, in_channels=3, num_classes=5)
    feat = torch.randn(len(coords), 3)
    logits = model(coords, feat, 1)
    assert logits.shape == (len(coords), 5)
    permutation = torch.randperm(len(coords), generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        again = model(coords[permutation], feat[permutation], 1)
        torch.testing.assert_close(again, model(coords, feat, 1)[permutation])


def test_two_samples_in_a_batch_do_not_see_each_other():
    coords = _voxels()
    feat = torch.randn(len(coords), 3)
    model = build_segmentor(TINY, in_channels=3, num_classes=5).eval()
    second = coords.clone()
    second[:, 0] = 1
    with torch.no_grad():
        alone = model(coords, feat, 1)
        both = model(torch.cat([coords, second]), torch.cat([feat, torch.randn_like(feat)]), 2)
    torch.testing.assert_close(both[: len(coords)], alone)


def test_network_gradients_match_finite_differences():
    """The whole network in float64 (train mode, batch norm included) through gradcheck: the
    CPU backward of every sparse convolution is exercised and checked numerically."""
    coords = _voxels(n=200, size=10)
    model = build_segmentor(TINY, in_channels=3, num_classes=4).double()
    feat = torch.randn(len(coords), 3, dtype=torch.float64, requires_grad=True)
    check = torch.autograd.gradcheck
    assert check(lambda f: model(coords, f, 1), (feat,), eps=1e-6, atol=1e-5, fast_mode=True)
    names = ["backbone.stem.0.weight", "backbone.encoder.1.resample.weight"]
    names += ["backbone.decoder.0.resample.weight", "backbone.decoder.1.blocks.0.conv2.weight"]
    params = dict(model.named_parameters())
    weights = tuple(params[n].detach().clone().requires_grad_(True) for n in names)

    def logits(*values):
        return functional_call(
            model, {**params, **dict(zip(names, values, strict=True))}, (coords, feat, 1)
        )

    assert check(logits, weights, eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"planes": [4, 4, 4], "layers": [1, 1, 1]}, "even length"),
        ({"planes": [4, 4], "layers": [1, 0]}, "decoder stage"),
        ({"planes": [4, 0], "layers": [1, 1]}, "positive"),
    ],
)
def test_invalid_shapes_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BACKBONES.build({"name": "spunet", **kwargs}, in_channels=3)


def test_empty_batch_is_a_clear_error():
    model = build_segmentor(TINY, in_channels=3, num_classes=4)
    with pytest.raises(ValueError, match="no voxels"):
        model(torch.zeros(0, 4, dtype=torch.int32), torch.zeros(0, 3), 1)
