"""The one entry point to spconv, with its CPU convolution computed by torch.

spconv builds the rulebook (which input voxel feeds which output voxel through which kernel
offset) and, on CUDA, also runs the convolution. Its CPU convolution (spconv 2.3.8) cannot be
used for training:

* the backward, ``spconv.pytorch.ops.indice_conv_backward``, asks for the current CUDA stream
  before it looks at the tensors' device, so on a CPU-only torch it raises "Torch not compiled
  with CUDA enabled" (the forward was fixed upstream in spconv #366, the backward was not);
* the forward and backward give wrong, run-to-run different results as soon as torch runs more
  than one intra-op thread (max |error| ~0.7 against a dense ``conv3d`` for a 4->16 channel
  submanifold convolution of 20k voxels on 2 threads; exact on 1 thread).

So, for CPU tensors only, ``indice_conv`` and ``indice_conv_backward`` -- the two functions that
spconv's autograd functions call for every (submanifold, strided, inverse) convolution of its
"native" algorithm -- are replaced by the same gather -> matmul -> scatter-add over spconv's own
rulebook, written with ``index_select``, ``mm`` and ``index_add_`` (deterministic on CPU). A CUDA
build of spconv gives most layers its implicit-GEMM algorithm, which exists only on CUDA, so a
layer called with CPU features runs that call with the native algorithm. CUDA tensors go to
spconv's kernels unchanged. ``tests/models/test_sparse.py`` checks both directions against a dense
``conv3d`` and the whole network against finite differences.

spconv also calls ``torch.fx``'s deprecated ``is_fx_tracing`` on every forward; torch 2.13 logs a
warning about it that says nothing to a pcseg user, so that one message is filtered.

Every pcseg module imports spconv from here (``from pcseg.models.sparse import spconv``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import spconv.pytorch as spconv
import spconv.pytorch.ops as _spconv_ops
import torch
from torch import Tensor

_Convolution = spconv.conv.SparseConvolution
_spconv_convolution_forward = _Convolution.forward
_spconv_indice_conv = _spconv_ops.indice_conv
_spconv_indice_conv_backward = _spconv_ops.indice_conv_backward


def _rulebook(
    indice_pairs: Tensor, pair_num: Tensor, inverse: bool, subm: bool
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """(kernel offset, source rows, target rows) of every offset that has pairs.

    A submanifold rulebook stores the counts of the offsets past the centre under their mirror
    images, and its centre is the identity map (handled by the callers as one matmul).
    """
    pair_in, pair_out = indice_pairs[int(inverse)], indice_pairs[int(not inverse)]
    counts = pair_num.tolist()
    kv = len(counts)
    for offset in range(kv):
        count = counts[kv - offset - 1] if subm and offset > kv // 2 else counts[offset]
        if count > 0 and not (subm and offset == kv // 2):
            yield offset, pair_in[offset, :count].long(), pair_out[offset, :count].long()


def indice_conv_cpu(
    features: Tensor,
    filters: Tensor,
    indice_pairs: Tensor,
    indice_pair_num: Tensor,
    num_activate_out: int,
    inverse: bool = False,
    subm: bool = False,
) -> Tensor:
    """Sparse convolution over a spconv rulebook: features (N, I), filters (O, *k, I) -> (M, O)."""
    weight = filters.reshape(filters.shape[0], -1, filters.shape[-1])  # (O, K, I)
    if subm:
        out = features @ weight[:, weight.shape[1] // 2].T
    else:
        out = features.new_zeros(num_activate_out, weight.shape[0])
    for offset, source, target in _rulebook(indice_pairs, indice_pair_num, inverse, subm):
        out.index_add_(0, target, features.index_select(0, source) @ weight[:, offset].T)
    return out


def indice_conv_backward_cpu(
    features: Tensor,
    filters: Tensor,
    out_bp: Tensor,
    indice_pairs: Tensor,
    indice_pair_num: Tensor,
    inverse: bool = False,
    subm: bool = False,
) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`indice_conv_cpu` for its features and filters."""
    weight = filters.reshape(filters.shape[0], -1, filters.shape[-1])
    grad_weight = torch.zeros_like(weight)
    if subm:
        centre = weight.shape[1] // 2
        grad_weight[:, centre] = out_bp.T @ features
        grad_features = out_bp @ weight[:, centre]
    else:
        grad_features = torch.zeros_like(features)
    for offset, source, target in _rulebook(indice_pairs, indice_pair_num, inverse, subm):
        grad_out = out_bp.index_select(0, target)
        grad_weight[:, offset] = grad_out.T @ features.index_select(0, source)
        grad_features.index_add_(0, source, grad_out @ weight[:, offset])
    return grad_features, grad_weight.reshape(filters.shape)


_FLAGS = ("inverse", "subm")


def _flags(positional: tuple, kwargs: dict) -> dict[str, bool]:
    flags = dict(zip(_FLAGS, positional, strict=False))
    return flags | {key: kwargs[key] for key in _FLAGS if key in kwargs}


def _indice_conv(features: Tensor, filters: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    if features.is_cuda:
        return _spconv_indice_conv(features, filters, *args, **kwargs)
    # spconv's layout: (pairs, pair_num, num_out, inverse, subm, *, algo, timer, bias, act_*).
    flags = _flags(args[3:5], kwargs)
    act_type = kwargs.get("act_type")
    if act_type is not None and act_type != _spconv_ops.tv.gemm.Activation.None_:
        raise NotImplementedError("sparse convolution on CPU: fused activations are not supported")
    out = indice_conv_cpu(features.contiguous(), filters, *args[:3], **flags)
    bias = kwargs.get("bias")
    return out if bias is None else out + bias


def _indice_conv_backward(
    features: Tensor, filters: Tensor, *args: Any, **kwargs: Any
) -> tuple[Tensor, Tensor]:
    if features.is_cuda:
        return _spconv_indice_conv_backward(features, filters, *args, **kwargs)
    # spconv's layout: (out_bp, pairs, pair_num, inverse, subm, *, algo, timer).
    flags = _flags(args[3:5], kwargs)
    return indice_conv_backward_cpu(features.contiguous(), filters, *args[:3], **flags)


def _convolution_forward(self: _Convolution, input: spconv.SparseConvTensor):
    if input.features.is_cuda or self.algo == spconv.ConvAlgo.Native:
        return _spconv_convolution_forward(self, input)
    chosen, self.algo = self.algo, spconv.ConvAlgo.Native
    try:
        return _spconv_convolution_forward(self, input)
    finally:
        self.algo = chosen


class _DropFxTracingNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "is_fx_tracing will return true" not in record.getMessage()


if _spconv_ops.indice_conv is not _indice_conv:
    _spconv_ops.indice_conv = _indice_conv
    _spconv_ops.indice_conv_backward = _indice_conv_backward
    _Convolution.forward = _convolution_forward
    logging.getLogger("torch.fx._symbolic_trace").addFilter(_DropFxTracingNotice())

__all__ = ["indice_conv_backward_cpu", "indice_conv_cpu", "spconv"]
