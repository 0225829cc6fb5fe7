"""DepthwiseSparseConv3d: real parameters (optimised, saved, loaded), spconv-compatible outputs,
kernel-map caching under an indice_key, and use among spconv layers."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from pcseg.models.depthwise import CACHE_PREFIX, DepthwiseSparseConv3d, DepthwiseSubMConv3d
from pcseg.models.sparse import spconv
from pcseg.ops import build_kernel_map, depthwise_sparse_conv

GRID = [12, 10, 8]


def sparse_tensor(seed: int, channels: int = 4, n: int = 400) -> spconv.SparseConvTensor:
    gen = torch.Generator().manual_seed(seed)
    coords = torch.stack([torch.randint(0, s, (n,), generator=gen) for s in GRID], 1)
    sites = torch.unique(torch.cat([torch.randint(0, 2, (n, 1), generator=gen), coords], 1), dim=0)
    features = torch.randn(len(sites), channels, generator=gen)
    return spconv.SparseConvTensor(features, sites.int(), GRID, 2)


def test_weight_and_bias_are_parameters_that_train_and_round_trip():
    torch.manual_seed(0)
    layer = DepthwiseSubMConv3d(4, 3, bias=True, indice_key="a")
    assert dict(layer.named_parameters()).keys() == {"weight", "bias"}
    assert layer.weight.shape == (27, 4) and layer.bias.shape == (4,)
    assert layer.weight.abs().max() <= 1 / 27**0.5
    x = sparse_tensor(1)
    before = layer.weight.detach().clone()
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).features.square().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    optimiser.step()
    assert not torch.equal(layer.weight, before)
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state.keys() == {"weight", "bias"}
    fresh = DepthwiseSubMConv3d(4, 3, bias=True, indice_key="a")
    assert not torch.equal(fresh.weight, layer.weight)
    fresh.load_state_dict(state)
    assert torch.equal(fresh(x).features, layer(x).features)
    with pytest.raises(RuntimeError, match="size mismatch"):
        DepthwiseSubMConv3d(4, 5).load_state_dict({"weight": state["weight"]})


@pytest.mark.parametrize(
    ("kernel_size", "options"),
    [(3, {"subm": True}), ((1, 3, 3), {"subm": True}), (3, {"stride": 2, "padding": 1})],
)
def test_output_is_the_op_on_spconv_sites(kernel_size, options):
    layer = DepthwiseSparseConv3d(4, kernel_size, **options)
    x = sparse_tensor(2)
    out = layer(x)
    conv_map = build_kernel_map(x.indices, GRID, kernel_size, **options)
    assert torch.equal(out.features, depthwise_sparse_conv(x.features, layer.weight, conv_map[2]))
    assert torch.equal(out.indices, conv_map.out_indices)
    spconv_options = {k: v for k, v in options.items() if k != "subm"}
    layer_type = spconv.SubMConv3d if options.get("subm") else spconv.SparseConv3d
    theirs = layer_type(4, 4, kernel_size, bias=False, **spconv_options)(x)
    assert out.spatial_shape == theirs.spatial_shape and out.batch_size == 2
    assert {tuple(r) for r in out.indices.tolist()} == {tuple(r) for r in theirs.indices.tolist()}
    if options.get("subm"):
        assert out.indices is x.indices


def test_kernel_map_is_cached_under_the_indice_key_and_checked():
    x = sparse_tensor(3)
    first = DepthwiseSubMConv3d(4, indice_key="s")(x)
    assert not x.indice_dict  # the input's own dict is untouched
    cached = first.indice_dict[CACHE_PREFIX + "s"]
    second = DepthwiseSubMConv3d(4, indice_key="s")(first)
    assert second.indice_dict[CACHE_PREFIX + "s"].conv_map is cached.conv_map
    # spconv's own entry under the same key lives beside ours.
    third = spconv.SubMConv3d(4, 4, 3, bias=False, indice_key="s")(second)
    assert {"s", CACHE_PREFIX + "s"} <= third.indice_dict.keys()
    assert DepthwiseSubMConv3d(4, indice_key="s")(third).features.shape == (len(x.indices), 4)
    with pytest.raises(ValueError, match="holds a kernel map of another geometry"):
        DepthwiseSubMConv3d(4, 5, indice_key="s")(first)
    down = DepthwiseSparseConv3d(4, 2, stride=2, indice_key="s")
    with pytest.raises(ValueError, match="holds a kernel map of another geometry"):
        down(first)
    moved = spconv.SparseConvTensor(
        first.features, x.indices.flip(0), GRID, 2, indice_dict=first.indice_dict
    )
    with pytest.raises(ValueError, match="other sites"):
        DepthwiseSubMConv3d(4, indice_key="s")(moved)


def test_stands_in_for_spconv_layers_in_a_network():
    torch.manual_seed(4)
    net = spconv.SparseSequential(
        spconv.SubMConv3d(3, 8, 3, bias=False, indice_key="s0"),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        DepthwiseSubMConv3d(8, 3, indice_key="s0"),
        nn.ReLU(),
        DepthwiseSparseConv3d(8, 3, stride=2, padding=1, bias=True),
        spconv.SubMConv3d(8, 8, 1, bias=False, indice_key="pointwise"),
        DepthwiseSubMConv3d(8, (3, 1, 3), indice_key="s1"),
    )
    x = sparse_tensor(5, channels=3)
    out = net(x)
    assert out.spatial_shape == [6, 5, 4]
    out.features.square().mean().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.isfinite().all(), name
    assert net[3].weight.grad.abs().sum() > 0


def test_float64_and_bad_arguments():
    layer = DepthwiseSubMConv3d(4).double()
    x = sparse_tensor(6)
    assert layer(x.replace_feature(x.features.double())).features.dtype == torch.float64
    with pytest.raises(ValueError, match=r"in the features' dtype torch\.float32"):
        layer(x)
    with pytest.raises(ValueError, match=r"expected \(\d+, 4\) features"):
        layer(x.replace_feature(x.features[:, :3]))
    with pytest.raises(ValueError, match="odd kernel sizes and stride 1"):
        DepthwiseSubMConv3d(4, 2)
    with pytest.raises(ValueError, match="odd kernel sizes and stride 1"):
        DepthwiseSparseConv3d(4, 3, stride=2, subm=True)
    with pytest.raises(ValueError, match="channels must be >= 1"):
        DepthwiseSparseConv3d(0)
    with pytest.raises(ValueError, match="an int or 3 ints"):
        DepthwiseSparseConv3d(4, (3, 3))
    assert "DepthwiseSparseConv3d(4, kernel_size=(2, 2, 2), stride=(2, 2, 2)" in repr(
        DepthwiseSparseConv3d(4, 2, stride=2)
    )
