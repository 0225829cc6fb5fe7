"""Python face of ``pcseg._C``: each op dispatches per call to its kernel or its reference."""

from pcseg.ops.voxelize import (
    Voxelization,
    segment_mean,
    segment_mean_reference,
    voxelize,
    voxelize_reference,
)

__all__ = [
    "Voxelization",
    "segment_mean",
    "segment_mean_reference",
    "voxelize",
    "voxelize_reference",
]
