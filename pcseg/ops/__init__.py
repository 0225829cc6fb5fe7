"""Python face of ``pcseg._C``: each op dispatches per call to its kernel or its reference.

Importing this package loads the extension when it was built (so ``torch.ops.pcseg.*`` exist);
without it every op runs its PyTorch reference.
"""

from pcseg.ops._ext import extension_available
from pcseg.ops.depthwise_conv import depthwise_sparse_conv, depthwise_sparse_conv_reference
from pcseg.ops.kernel_map import KernelMap, SparseConvMap, build_kernel_map
from pcseg.ops.region_margin import region_margin, region_margin_reference
from pcseg.ops.region_mask import draw_masked_regions, region_mask, region_mask_reference
from pcseg.ops.selection import suppressed_selection, suppressed_selection_reference
from pcseg.ops.superpixel_pool import superpixel_pool, superpixel_pool_reference
from pcseg.ops.voxelize import (
    Voxelization,
    segment_mean,
    segment_mean_reference,
    voxelize,
    voxelize_reference,
)

extension_available()

__all__ = [
    "KernelMap",
    "SparseConvMap",
    "Voxelization",
    "build_kernel_map",
    "depthwise_sparse_conv",
    "depthwise_sparse_conv_reference",
    "draw_masked_regions",
    "extension_available",
    "region_margin",
    "region_margin_reference",
    "region_mask",
    "region_mask_reference",
    "segment_mean",
    "segment_mean_reference",
    "superpixel_pool",
    "superpixel_pool_reference",
    "suppressed_selection",
    "suppressed_selection_reference",
    "voxelize",
    "voxelize_reference",
]
