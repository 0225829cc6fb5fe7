"""Grid sampling of (batch, x, y, z): unique voxels, point->voxel map, counts, voxel features.

Voxels come out sorted by (batch, i, j, k), so the output order is deterministic and identical
for the kernels and the reference. Grid indices are ``floor(p / voxel_size)`` in float64, shifted
so that the smallest index is 0 (or ``floor((p - origin) / voxel_size)`` for an explicit origin):
a point's voxel never depends on the other points of the call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from pcseg.ops._ext import has_kernel

_MAX_GRID_INDEX = 2**31 - 1  # voxel coordinates are int32


class Voxelization(NamedTuple):
    """Result of :func:`voxelize` (V voxels, N points).

    Attributes:
        coords: int32 (V, 4) ``[batch, i, j, k]``, sorted lexicographically.
        inverse: int64 (N,) voxel of each point.
        counts: int64 (V,) points per voxel.
        order: int64 (N,) point indices grouped by voxel, ascending within a voxel.
        representative: int64 (V,) one point per voxel (lowest index, or random).
        feat: (V, C) per-voxel features (mean or representative's) or None.
        origin: float64 (3,) grid origin in the voxelisation space.
        voxel_size: float64 (3,) voxel size in the voxelisation space.
    """

    coords: Tensor
    inverse: Tensor
    counts: Tensor
    order: Tensor
    representative: Tensor
    feat: Tensor | None
    origin: Tensor
    voxel_size: Tensor


def to_cylindrical(coord: Tensor) -> Tensor:
    """(N, 3) Cartesian x, y, z -> (N, 3) float64 rho, phi (radians, [-pi, pi]), z."""
    xyz = coord.double()
    rho = torch.hypot(xyz[:, 0], xyz[:, 1])
    phi = torch.atan2(xyz[:, 1], xyz[:, 0])
    return torch.stack([rho, phi, xyz[:, 2]], dim=1)


def voxelize_reference(
    coord: Tensor, batch: Tensor, voxel_size: Sequence[float], origin: Sequence[float] = ()
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Pure-PyTorch spec of the ``voxelize`` kernel: (coords, inverse, counts, order, origin).

    With an ``origin`` the grid index is ``floor((p - origin) / size)`` and must be >= 0.
    Without one the grid is anchored at 0 (``floor(p / size)``, so a point's voxel does not
    depend on the other points) and shifted by its per-axis minimum; the returned origin is
    ``shift * size``.
    """
    if not torch.isfinite(coord).all():
        raise RuntimeError("voxelize: coordinates contain NaN or inf")
    device = coord.device
    start = torch.tensor(list(origin) or [0.0] * 3, dtype=torch.float64, device=device)
    size = torch.tensor(voxel_size, dtype=torch.float64, device=device)
    scaled = (coord.double() - start) / size
    if len(coord) == 0:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return torch.empty(0, 4, dtype=torch.int32, device=device), empty, empty, empty, start.cpu()
    if scaled.abs().max() >= _MAX_GRID_INDEX:
        raise RuntimeError("voxelize: grid index exceeds int32; use a larger voxel size")
    grid = torch.floor(scaled).long()
    if not len(origin):
        shift = grid.amin(0)
        grid -= shift
        start = shift.double() * size
    if grid.min() < 0 or batch.min() < 0:
        raise RuntimeError("voxelize: points lie below the grid origin or batch indices < 0")
    extent = grid.amax(0) + 1
    key = ((batch * extent[0] + grid[:, 0]) * extent[1] + grid[:, 1]) * extent[2] + grid[:, 2]
    _, inverse, counts = torch.unique(key, sorted=True, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    first = order[torch.cumsum(counts, 0) - counts]
    coords = torch.cat([batch[first, None], grid[first]], dim=1).int()
    return coords, inverse, counts, order, start.cpu()


def segment_mean_reference(feat: Tensor, order: Tensor, offsets: Tensor) -> Tensor:
    """Pure-PyTorch spec of ``segment_mean``.

    Returns (V, C): row v is the mean of ``feat[order[offsets[v]:offsets[v + 1]]]``.
    """
    counts = offsets.diff()
    segment = torch.repeat_interleave(torch.arange(len(counts), device=feat.device), counts)
    sums = feat.new_zeros(len(counts), feat.shape[1]).index_add_(0, segment, feat[order])
    return sums / counts.clamp_min(1)[:, None].to(feat.dtype)


def segment_mean(feat: Tensor, order: Tensor, offsets: Tensor) -> Tensor:
    """Differentiable per-segment mean, (N, C) -> (V, C); an empty segment gives 0."""
    if has_kernel(feat.device):
        return torch.ops.pcseg.segment_mean(feat, order, offsets)
    return segment_mean_reference(feat, order, offsets)


def _voxel_space(coord: Tensor, mode: str) -> Tensor:
    if mode == "cartesian":
        return coord
    if mode == "cylindrical":
        return to_cylindrical(coord)
    raise ValueError(f"voxelize: mode must be 'cartesian' or 'cylindrical', got {mode!r}")


def _check_args(
    coord: Tensor,
    voxel_size: float | Sequence[float],
    batch: Tensor | None,
    feat: Tensor | None,
    reduce: str,
    origin: Sequence[float] | None,
) -> list[float]:
    """Validate :func:`voxelize` arguments once, for kernels and references alike."""
    if coord.ndim != 2 or coord.shape[1] != 3 or not coord.is_floating_point():
        raise ValueError(f"voxelize: coord must be float (N, 3), got {tuple(coord.shape)}")
    sizes = [float(v) for v in np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), 3)]
    if not all(math.isfinite(v) and v > 0 for v in sizes):
        raise ValueError(f"voxelize: voxel sizes must be finite and positive, got {sizes}")
    if batch is not None and (batch.shape != (len(coord),) or batch.dtype != torch.long):
        raise ValueError(
            f"voxelize: batch must be int64 ({len(coord)},), got {batch.dtype} {tuple(batch.shape)}"
        )
    if feat is not None and (feat.ndim != 2 or len(feat) != len(coord)):
        raise ValueError(f"voxelize: feat must be ({len(coord)}, C), got {tuple(feat.shape)}")
    if reduce not in ("mean", "representative"):
        raise ValueError(f"voxelize: reduce must be 'mean' or 'representative', got {reduce!r}")
    if origin is not None and len(origin) != 3:
        raise ValueError("voxelize: origin needs 3 values")
    return sizes


def voxelize(
    coord: Tensor,
    voxel_size: float | Sequence[float],
    *,
    batch: Tensor | None = None,
    feat: Tensor | None = None,
    mode: Literal["cartesian", "cylindrical"] = "cartesian",
    reduce: Literal["mean", "representative"] = "mean",
    origin: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
) -> Voxelization:
    """Voxelise a (batched) point cloud.

    Args:
        coord: float (N, 3) x, y, z in metres.
        voxel_size: one size or three; for ``cylindrical`` the sizes are (rho m, phi rad, z m).
        batch: int64 (N,) sample index of each point; all zeros when omitted.
        feat: optional (N, C) features reduced per voxel.
        mode: ``cartesian`` or ``cylindrical`` (rho, phi, z) voxels.
        reduce: ``mean`` of the voxel's features, or the representative point's features.
        origin: grid origin in the voxelisation space; by default the grid is anchored at 0, so
            a point's voxel never depends on the other points (or samples) of the call.
        generator: when given, the representative is a random point of the voxel drawn from it;
            otherwise the point with the lowest index.
    """
    sizes = _check_args(coord, voxel_size, batch, feat, reduce, origin)
    if batch is None:
        batch = torch.zeros(len(coord), dtype=torch.long, device=coord.device)
    space = _voxel_space(coord, mode)
    run = torch.ops.pcseg.voxelize if has_kernel(coord.device) else voxelize_reference
    try:
        coords, inverse, counts, order, start = run(space, batch, sizes, list(origin or []))
    except RuntimeError as error:
        if "NaN or inf" in str(error):
            raise ValueError("voxelize: coordinates contain NaN or inf") from error
        raise
    offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    representative = _representatives(order, offsets, generator)
    voxel_feat = None
    if feat is not None:
        if reduce == "mean":
            voxel_feat = segment_mean(feat, order, offsets)
        else:
            voxel_feat = feat[representative]
    return Voxelization(
        coords,
        inverse,
        counts,
        order,
        representative,
        voxel_feat,
        start,
        torch.tensor(sizes, dtype=torch.float64),
    )


def _representatives(order: Tensor, offsets: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None or len(order) == 0:
        return order[offsets[:-1]]
    counts = offsets.diff()
    # Drawn on the generator's device (a CPU generator may serve CUDA points), then moved.
    draw = torch.rand(len(counts), generator=generator, device=generator.device)
    pick = (draw.to(counts.device) * counts).long().clamp_max(counts - 1)
    return order[offsets[:-1] + pick]
