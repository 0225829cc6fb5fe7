"""The SDSC variant of the sparse UNet (depthwise + pointwise block convolutions) and the
parameter / multiply-add counts that compare it with the standard one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.func import functional_call

from pcseg.models.backbones import BACKBONES
from pcseg.models.backbones.spunet import SeparableSubMConv3d
from pcseg.models.complexity import count_multiply_adds
from pcseg.models.depthwise import DepthwiseSubMConv3d
from pcseg.models.segmentor import build_segmentor, count_parameters
from pcseg.models.sparse import spconv

TINY = {"name": "spunet", "stem_channels": 4, "planes": [4, 6, 6, 4], "layers": [1, 1, 1, 1]}


def _voxels(seed: int = 0, size: int = 12, n: int = 300) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coords = torch.unique(torch.randint(0, size, (n, 3), generator=generator), dim=0)
    return torch.cat([torch.zeros(len(coords), 1, dtype=torch.long), coords], 1).int()


def test_sdsc_replaces_every_block_convolution_and_keeps_the_rest():
    standard = BACKBONES.build({"name": "spunet"}, in_channels=4)
    sdsc = BACKBONES.build({"name": "spunet", "block_conv": "sdsc"}, in_channels=4)
    blocks = 2 * (2 + 3 + 4 + 6 + 2 + 2 + 2 + 2)
    separable = [m for m in sdsc.modules() if isinstance(m, SeparableSubMConv3d)]
    assert len(separable) == blocks
    dense_subm = [m for m in sdsc.modules() if isinstance(m, spconv.SubMConv3d)]
    assert len(dense_subm) == 1  # the stem
    # Each 3x3x3 C_in -> C_out convolution (27 C_in C_out weights) becomes 27 C_in + C_in C_out.
    saved = sum(
        27 * m.depthwise.channels * m.pointwise.out_features
        - (27 * m.depthwise.channels + m.pointwise.weight.numel())
        for m in separable
    )
    assert count_parameters(standard) - count_parameters(sdsc) == saved
    assert count_parameters(sdsc) < count_parameters(standard) / 5


def test_unknown_block_conv_is_refused():
    with pytest.raises(ValueError, match="unknown block_conv 'grouped'; valid: standard, sdsc"):
        BACKBONES.build({"name": "spunet", "block_conv": "grouped"}, in_channels=3)


def test_sdsc_network_gradients_match_finite_differences():
    coords = _voxels(n=200, size=10)
    model = build_segmentor({**TINY, "block_conv": "sdsc"}, in_channels=3, num_classes=4)
    model = model.double()
    feat = torch.randn(len(coords), 3, dtype=torch.float64, requires_grad=True)
    check = torch.autograd.gradcheck
    assert check(lambda f: model(coords, f, 1), (feat,), eps=1e-6, atol=1e-5, fast_mode=True)
    names = ["backbone.encoder.0.blocks.0.conv1.depthwise.weight"]
    names += ["backbone.decoder.1.blocks.0.conv2.depthwise.weight"]
    params = dict(model.named_parameters())
    weights = tuple(params[n].detach().clone().requires_grad_(True) for n in names)

    def logits(*values):
        return functional_call(
            model, {**params, **dict(zip(names, values, strict=True))}, (coords, feat, 1)
        )

    assert check(logits, weights, eps=1e-6, atol=1e-5, fast_mode=True)


def test_sdsc_weights_train_and_round_trip_through_the_state_dict():
    torch.manual_seed(0)
    coords, model = (
        _voxels(),
        build_segmentor({**TINY, "block_conv": "sdsc"}, in_channels=3, num_classes=5),
    )
    feat, target = torch.randn(len(coords), 3), torch.randint(0, 5, (len(coords),))
    name = "backbone.encoder.1.blocks.0.conv2.depthwise.weight"
    before = dict(model.named_parameters())[name].detach().clone()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(coords, feat, 1), target).backward()
        optimiser.step()
    assert not torch.equal(dict(model.named_parameters())[name], before)
    fresh = build_segmentor({**TINY, "block_conv": "sdsc"}, in_channels=3, num_classes=5)
    fresh.load_state_dict(model.state_dict())
    model.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(coords, feat, 1), model(coords, feat, 1))


def _brute_pairs(coords: np.ndarray, offsets: range) -> int:
    sites = {tuple(c) for c in coords.tolist()}
    return sum(
        (x + a, y + b, z + c) in sites
        for x, y, z in sites
        for a, b, c in itertools.product(offsets, repeat=3)
    )


def test_multiply_adds_count_the_kernel_map_pairs():
    coords = _voxels(seed=3, size=8, n=150)
    xyz = coords[:, 1:].numpy()
    pairs = _brute_pairs(xyz, range(-1, 2))
    tensor = spconv.SparseConvTensor(torch.randn(len(coords), 5), coords, [8, 8, 8], 1)
    dense = spconv.SubMConv3d(5, 7, 3, padding=1, bias=False)
    assert count_multiply_adds(dense, lambda: dense(tensor))["conv"] == pairs * 5 * 7
    depthwise = DepthwiseSubMConv3d(5, 3)
    assert count_multiply_adds(depthwise, lambda: depthwise(tensor)) == {
        "conv": 0, "depthwise": pairs * 5, "linear": 0, "total": pairs * 5,
    }  # fmt: skip
    # A stride-2 kernel-2 convolution reads every input once; its inverse as many pairs.
    down = spconv.SparseConv3d(5, 6, 2, stride=2, bias=False, indice_key="d")
    up = spconv.SparseInverseConv3d(6, 5, 2, bias=False, indice_key="d")
    counts = count_multiply_adds(torch.nn.Sequential(down, up), lambda: up(down(tensor)))
    assert counts["conv"] == len(coords) * 5 * 6 + len(coords) * 6 * 5


def test_sdsc_needs_fewer_multiply_adds_on_the_same_voxels():
    coords = _voxels(seed=1, size=16, n=1500)
    feat = torch.randn(len(coords), 3)
    counts = {}
    for kind in ("standard", "sdsc"):
        model = build_segmentor({**TINY, "block_conv": kind}, in_channels=3, num_classes=5)
        counts[kind] = count_multiply_adds(model, lambda m=model: m(coords, feat, 1))
    assert counts["standard"]["depthwise"] == 0 and counts["sdsc"]["depthwise"] > 0
    assert counts["sdsc"]["conv"] < counts["standard"]["conv"]
    assert counts["sdsc"]["total"] < counts["standard"]["total"]
