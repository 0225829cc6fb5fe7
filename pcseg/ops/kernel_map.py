"""Kernel maps of 3-D sparse convolutions as neighbour tables, built with sorts and searches.

A kernel map says which input voxel each output voxel reads through each kernel offset:
``neighbours`` int64 (N_out, K), entry ``[o, k]`` the input row seen by output ``o`` through
offset ``k``, or -1 when that site is empty. Offsets are numbered x slowest, z fastest, ``k =
(a * ky + b) * kz + c`` for the kernel cell (a, b, c): the flattening of spconv's weight
(O, kx, ky, kz, I) and of ``conv3d``'s (O, I, kx, ky, kz). For a fixed offset each input feeds at
most one output, so the map also has a transpose ``transposed`` (N_in, K) (the output that reads
input ``i`` through offset ``k``, or -1), with which gradients are gathers too.

Geometry follows spconv (indices ``[b, x, y, z]`` in a grid of ``spatial_shape``):

- submanifold (``subm=True``): outputs are the inputs, in their order; output ``o`` reads input
  ``o + (a, b, c) * dilation - (k // 2) * dilation`` (odd kernels only; padding and stride do not
  apply, as in spconv's ``SubMConv3d``);
- strided: output ``o`` reads input ``o * stride - padding + (a, b, c) * dilation``; the output grid
  is ``(S + 2 * padding - dilation * (k - 1) - 1) // stride + 1`` per axis and the outputs are the
  sites whose window holds at least one input (spconv's ``SparseConv3d``), sorted by (b, x, y, z).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

_MAX_KEY = 2**62  # batch x grid volume must fit an int64 key


class KernelMap:
    """A checked neighbour table and its transpose (see the module docstring).

    ``KernelMap(neighbours, num_inputs)`` checks the table (int64 (N_out, K), values in
    [-1, num_inputs), no input read twice through one offset) and computes the transpose once;
    ops trust a ``KernelMap`` and check nothing per call beyond what they index with.
    """

    __slots__ = ("neighbours", "transposed")

    def __init__(self, neighbours: Tensor, num_inputs: int) -> None:
        if neighbours.dtype != torch.long or neighbours.ndim != 2 or neighbours.shape[1] < 1:
            raise ValueError(
                f"kernel map: neighbours must be int64 (N_out, K) with K >= 1, "
                f"got {neighbours.dtype} {tuple(neighbours.shape)}"
            )
        if isinstance(num_inputs, bool) or not isinstance(num_inputs, numbers.Integral):
            raise ValueError(f"kernel map: num_inputs must be an integer, got {num_inputs!r}")
        if num_inputs < 0:
            raise ValueError(f"kernel map: num_inputs must be >= 0, got {num_inputs}")
        if neighbours.numel():
            low, high = (v.item() for v in torch.aminmax(neighbours))
            if low < -1 or high >= num_inputs:
                raise ValueError(
                    f"kernel map: neighbours must lie in [-1, {num_inputs}) (-1: no input), "
                    f"got [{low}, {high}]"
                )
        self.neighbours = neighbours.contiguous()
        self.transposed = _transpose(self.neighbours, int(num_inputs))

    @classmethod
    def _trusted(cls, neighbours: Tensor, transposed: Tensor) -> KernelMap:
        """A map whose tables are valid by construction (the builders'): no checks."""
        kernel_map = cls.__new__(cls)
        kernel_map.neighbours, kernel_map.transposed = neighbours, transposed
        return kernel_map

    @property
    def num_inputs(self) -> int:
        return self.transposed.shape[0]

    @property
    def num_outputs(self) -> int:
        return self.neighbours.shape[0]

    @property
    def kernel_volume(self) -> int:
        return self.neighbours.shape[1]

    def to(self, device: torch.device | str) -> KernelMap:
        return KernelMap._trusted(self.neighbours.to(device), self.transposed.to(device))

    def __repr__(self) -> str:
        return (
            f"KernelMap(inputs={self.num_inputs}, outputs={self.num_outputs}, "
            f"K={self.kernel_volume}, device={self.neighbours.device})"
        )


def _transpose(neighbours: Tensor, num_inputs: int) -> Tensor:
    """(N_in, K) table of the output reading each input through each offset, or -1."""
    kernel = neighbours.shape[1]
    rows, offsets = (neighbours >= 0).nonzero(as_tuple=True)
    flat = neighbours.new_full((num_inputs * kernel,), -1)
    flat[neighbours[rows, offsets] * kernel + offsets] = rows
    if int((flat >= 0).sum()) != len(rows):
        raise ValueError(
            "kernel map: an input is read by two outputs through the same offset; a convolution "
            "map reads each input at most once per offset"
        )
    return flat.view(num_inputs, kernel)


class SparseConvMap(NamedTuple):
    """Result of :func:`build_kernel_map`.

    Attributes:
        out_indices: int32 (N_out, 4) ``[b, x, y, z]`` of the outputs (the input tensor itself
            for a submanifold map).
        out_spatial_shape: the output grid, 3 ints.
        kernel_map: the neighbour table and its transpose.
    """

    out_indices: Tensor
    out_spatial_shape: list[int]
    kernel_map: KernelMap


def _triple(value: int | Sequence[int], name: str, minimum: int) -> list[int]:
    values = [value] * 3 if isinstance(value, numbers.Integral) else list(value)
    if len(values) != 3 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum for v in values
    ):
        raise ValueError(f"kernel map: {name} must be an integer >= {minimum} or 3 of them")
    return [int(v) for v in values]


def kernel_offsets(kernel_size: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """(K, 3) int64 offsets ``(a, b, c) * dilation`` of the kernel cells, x slowest."""
    axes = [torch.arange(k) * d for k, d in zip(kernel_size, dilation, strict=True)]
    return torch.cartesian_prod(*axes).reshape(-1, 3)


def conv_output_shape(
    spatial_shape: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> list[int]:
    """spconv's (and ``conv3d``'s) output grid of a strided convolution."""
    return [
        (s + 2 * p - d * (k - 1) - 1) // st + 1
        for s, k, st, p, d in zip(
            spatial_shape, kernel_size, stride, padding, dilation, strict=True
        )
    ]


def _keys(batch: Tensor, xyz: Tensor, shape: Sequence[int]) -> Tensor:
    """int64 keys ordering sites by (b, x, y, z)."""
    return ((batch * shape[0] + xyz[:, 0]) * shape[1] + xyz[:, 1]) * shape[2] + xyz[:, 2]


def _check_indices(indices: Tensor, spatial_shape: Sequence[int]) -> tuple[Tensor, list[int]]:
    if indices.ndim != 2 or indices.shape[1] != 4 or indices.dtype not in (torch.int32, torch.long):
        raise ValueError(
            f"kernel map: indices must be int32 or int64 (N, 4) [b, x, y, z], "
            f"got {indices.dtype} {tuple(indices.shape)}"
        )
    shape = _triple(spatial_shape, "spatial_shape", 1)
    coords = indices.long()
    if len(coords):
        low, high = coords.amin(0).tolist(), coords.amax(0).tolist()
        if low[0] < 0 or any(
            lo < 0 or hi >= s for lo, hi, s in zip(low[1:], high[1:], shape, strict=True)
        ):
            raise ValueError(
                f"kernel map: indices must have batch >= 0 and x, y, z inside the grid "
                f"{shape}, got minima {low} and maxima {high}"
            )
        if (high[0] + 1) * shape[0] * shape[1] * shape[2] >= _MAX_KEY:
            raise ValueError("kernel map: batch size x grid volume exceeds 2**62")
    return coords, shape


def build_kernel_map(
    indices: Tensor,
    spatial_shape: Sequence[int],
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    subm: bool = False,
) -> SparseConvMap:
    """Kernel map of a 3-D sparse convolution over the active sites ``indices``.

    Args:
        indices: int32/int64 (N, 4) ``[b, x, y, z]`` of distinct active sites in the grid.
        spatial_shape: the grid, 3 ints.
        kernel_size, stride, padding, dilation: an int or 3 ints each, as for spconv.
        subm: submanifold (outputs = inputs; odd kernels; stride 1; padding ignored) or strided.

    Returns:
        :class:`SparseConvMap`, on the device of ``indices``.
    """
    coords, shape = _check_indices(indices, spatial_shape)
    sorted_keys, perm = _keys(coords[:, 0], coords[:, 1:], shape).sort()
    if bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
        raise ValueError("kernel map: indices hold the same site twice")
    ksize = _triple(kernel_size, "kernel_size", 1)
    strides = _triple(stride, "stride", 1)
    pads = _triple(padding, "padding", 0)
    dilations = _triple(dilation, "dilation", 1)
    if subm:
        if any(k % 2 == 0 for k in ksize) or strides != [1, 1, 1]:
            raise ValueError(
                f"kernel map: a submanifold map needs odd kernel sizes and stride 1, "
                f"got kernel {ksize}, stride {strides}"
            )
        centre = torch.tensor(
            [k // 2 * d for k, d in zip(ksize, dilations, strict=True)], device=coords.device
        )
        deltas = kernel_offsets(ksize, dilations).to(coords.device) - centre
        table = _submanifold(coords[perm, 1:], sorted_keys, perm, shape, deltas)
        # Input i + delta feeds output i through offset delta, so output i feeds input
        # i - delta through the mirrored offset: the transpose is the table with offsets reversed.
        kernel_map = KernelMap._trusted(table, table.flip(1).contiguous())
        return SparseConvMap(indices, shape, kernel_map)
    out_shape = conv_output_shape(shape, ksize, strides, pads, dilations)
    if min(out_shape) < 1:
        raise ValueError(f"kernel map: the output grid {out_shape} of input grid {shape} is empty")
    return _strided(coords, out_shape, ksize, dilations, strides, pads)


def _submanifold(
    xyz: Tensor, sorted_keys: Tensor, perm: Tensor, shape: list[int], deltas: Tensor
) -> Tensor:
    """(N, K) neighbour table of output i = input i through each offset delta, from the sites'
    sorted keys, the order ``perm`` that sorts them and their x, y, z in that order."""
    n = len(perm)
    table = perm.new_empty(len(deltas), n)  # offset-major while filling: rows contiguous
    last = max(n - 1, 0)
    position = found = None
    previous: list[int] | None = None
    for k, (dx, dy, dz) in enumerate(deltas.tolist()):  # one vectorised pass per offset
        # Inside the grid a site's key moves by a constant per offset, so the queries stay
        # sorted, and the binary searches walk the keys in order.
        step = (dx * shape[1] + dy) * shape[2] + dz
        query = sorted_keys + step
        if previous == [dx, dy, dz - 1] and position is not None:
            # The next z: as keys are distinct integers, the count of keys below query + 1 is
            # the count below query plus whether query is a key. No search needed.
            position = position + found
        else:
            position = torch.searchsorted(sorted_keys, query)
        clamped = position.clamp(max=last)
        found = (sorted_keys[clamped] == query) & (position < n)
        previous = [dx, dy, dz]
        hit = found
        for coord, d, size in zip(xyz.unbind(1), (dx, dy, dz), shape, strict=True):
            if d:  # the key steps across a row end when a coordinate leaves the grid
                hit = hit & ((coord >= -d) if d < 0 else (coord < size - d))
        table[k].index_copy_(0, perm, torch.where(hit, perm[clamped], -1))
    return table.T.contiguous()


def _strided(
    coords: Tensor,
    out_shape: list[int],
    kernel_size: list[int],
    dilation: list[int],
    stride: list[int],
    padding: list[int],
) -> SparseConvMap:
    """Outputs (sorted by (b, x, y, z)) and tables of a strided convolution."""
    # Per axis and kernel index: does the input land on an output, and on which (kx + ky + kz
    # passes over N values instead of kx * ky * kz).
    hits, sites = [], []
    for axis in range(3):
        shifted = coords[:, axis + 1] + padding[axis]
        axis_hits, axis_sites = [], []
        for t in range(kernel_size[axis]):
            numerator = shifted - t * dilation[axis]
            site = torch.div(numerator, stride[axis], rounding_mode="floor")
            axis_hits.append(
                (numerator % stride[axis] == 0) & (site >= 0) & (site < out_shape[axis])
            )
            axis_sites.append(site)
        hits.append(axis_hits)
        sites.append(axis_sites)
    sx, sy, sz = out_shape
    out_keys, sources, kernel_ids = [], [], []
    k = 0
    for a in range(kernel_size[0]):
        x_key = (coords[:, 0] * sx + sites[0][a]) * sy
        for b in range(kernel_size[1]):
            xy_key = (x_key + sites[1][b]) * sz
            xy_hit = hits[0][a] & hits[1][b]
            for c in range(kernel_size[2]):
                source = (xy_hit & hits[2][c]).nonzero()[:, 0]
                out_keys.append(xy_key[source] + sites[2][c][source])
                sources.append(source)
                kernel_ids.append(torch.full_like(source, k))
                k += 1
    keys, source, kernel = torch.cat(out_keys), torch.cat(sources), torch.cat(kernel_ids)
    unique_keys, output = torch.unique(keys, sorted=True, return_inverse=True)
    # For a fixed offset an input reaches one output and an output one input, so these writes
    # never collide.
    table = coords.new_full((len(unique_keys) * k,), -1)
    table[output * k + kernel] = source
    transposed = coords.new_full((len(coords) * k,), -1)
    transposed[source * k + kernel] = output
    out_indices = torch.stack(
        [
            unique_keys // (sx * sy * sz),
            unique_keys // (sy * sz) % sx,
            unique_keys // sz % sy,
            unique_keys % sz,
        ],
        dim=1,
    ).int()
    kernel_map = KernelMap._trusted(table.view(-1, k), transposed.view(-1, k))
    return SparseConvMap(out_indices, out_shape, kernel_map)


__all__ = [
    "KernelMap",
    "SparseConvMap",
    "build_kernel_map",
    "conv_output_shape",
    "kernel_offsets",
]
