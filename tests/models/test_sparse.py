"""spconv's CPU convolution, computed by pcseg over spconv's rulebook, against dense conv3d."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from pcseg.models.sparse import spconv

GRID = 10


def _cloud(seed: int, channels: int, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    coords = torch.unique(torch.randint(0, GRID, (400, 3), generator=generator), dim=0)
    indices = torch.cat([torch.zeros(len(coords), 1, dtype=torch.long), coords], 1).int()
    feat = torch.randn(len(coords), channels, generator=generator, dtype=dtype)
    return indices, feat.requires_grad_(True)


def _dense(indices: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
    grid = feat.new_zeros(GRID, GRID, GRID, feat.shape[1])
    c = indices[:, 1:].long()
    return grid.index_put((c[:, 0], c[:, 1], c[:, 2]), feat).permute(3, 0, 1, 2)[None]


def _at(dense: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    c = indices[:, 1:].long()
    return dense[0][:, c[:, 0], c[:, 1], c[:, 2]].T


def _grads(out: torch.Tensor, reference: torch.Tensor, feat, weight):
    probe = torch.randn_like(out)
    grad = torch.autograd.grad((out * probe).sum(), (feat, weight))
    grad_ref = torch.autograd.grad((reference * probe).sum(), (feat, weight))
    return grad, grad_ref


def test_submanifold_conv_matches_dense_conv3d_values_and_gradients():
    indices, feat = _cloud(0, 3)
    conv = spconv.SubMConv3d(3, 5, 3, padding=1, bias=True, indice_key="s").double()
    out = conv(spconv.SparseConvTensor(feat, indices, [GRID] * 3, 1)).features
    weight = conv.weight.permute(0, 4, 1, 2, 3)  # (O, k, k, k, I) -> (O, I, k, k, k)
    reference = _at(F.conv3d(_dense(indices, feat), weight, conv.bias, padding=1), indices)
    torch.testing.assert_close(out, reference)
    grad, grad_ref = _grads(out, reference, feat, conv.weight)
    torch.testing.assert_close(grad[0], grad_ref[0])
    torch.testing.assert_close(grad[1], grad_ref[1])


def test_strided_and_inverse_conv_match_dense_equivalents():
    indices, feat = _cloud(1, 2)
    down = spconv.SparseConv3d(2, 4, 2, stride=2, bias=False, indice_key="d").double()
    up = spconv.SparseInverseConv3d(4, 3, 2, bias=False, indice_key="d").double()
    coarse = down(spconv.SparseConvTensor(feat, indices, [GRID] * 3, 1))
    fine = up(coarse)
    dense_down = F.conv3d(_dense(indices, feat), down.weight.permute(0, 4, 1, 2, 3), stride=2)
    torch.testing.assert_close(coarse.features, _at(dense_down, coarse.indices))
    # The transposed convolution of the same rulebook scatters each coarse voxel back to the
    # fine voxels that fed it, through the matching kernel offset.
    coarse_dense = F.conv3d(_dense(indices, feat), down.weight.permute(0, 4, 1, 2, 3), stride=2)
    back = F.conv_transpose3d(coarse_dense, up.weight.permute(4, 0, 1, 2, 3), stride=2)
    reference = _at(back, indices)
    torch.testing.assert_close(fine.features, reference)
    assert torch.equal(fine.indices, indices)
    grad, grad_ref = _grads(fine.features, reference, feat, up.weight)
    torch.testing.assert_close(grad[0], grad_ref[0])
    torch.testing.assert_close(grad[1], grad_ref[1])


def test_cpu_convolution_is_deterministic_with_several_threads():
    """spconv's own CPU path gives different (wrong) results on 2+ threads; ours must not."""
    indices, feat = _cloud(2, 8, dtype=torch.float32)
    conv = spconv.SubMConv3d(8, 16, 3, padding=1, bias=False, indice_key="s")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, 2))
    try:
        outputs = []
        for _ in range(3):
            x = spconv.SparseConvTensor(feat.detach(), indices, [GRID] * 3, 1)
            outputs.append(conv(x).features)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(outputs[0], other) for other in outputs[1:])


@pytest.mark.parametrize("subm", [True, False])
def test_fused_activation_is_refused_on_cpu(subm):
    import spconv.pytorch.ops as ops

    _, feat = _cloud(3, 2, dtype=torch.float32)
    pairs = torch.zeros(2, 27, 1, dtype=torch.int32)
    with pytest.raises(NotImplementedError, match="fused activations"):
        ops.indice_conv(
            feat.detach(),
            torch.zeros(4, 3, 3, 3, 2),
            pairs,
            torch.zeros(27, dtype=torch.int32),
            len(feat),
            False,
            subm,
            act_type=ops.tv.gemm.Activation.ReLU,
        )


def test_cpu_features_use_the_native_algorithm_whatever_the_layer_was_built_with():
    """A CUDA build of spconv builds most layers with implicit GEMM, which has no CPU path."""
    indices, feat = _cloud(4, 3)
    conv = spconv.SubMConv3d(3, 4, 3, padding=1, bias=False, indice_key="s").double()
    reference = conv(spconv.SparseConvTensor(feat, indices, [GRID] * 3, 1)).features
    conv.algo = spconv.ConvAlgo.MaskImplicitGemm
    out = conv(spconv.SparseConvTensor(feat, indices, [GRID] * 3, 1)).features
    torch.testing.assert_close(out, reference)
    assert conv.algo == spconv.ConvAlgo.MaskImplicitGemm
