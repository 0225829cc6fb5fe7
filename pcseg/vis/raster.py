"""The software backend: points projected through a pinhole camera, drawn as z-buffered squares.

It needs only numpy, so it renders wherever Python runs (CI machines without a GPU, a display
or Vulkan) and gives the same pixels on every machine, which makes it the backend tests can
check exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from pcseg.vis.camera import Camera, project

if TYPE_CHECKING:
    from pcseg.vis.render import Layer


def _splats(uv: np.ndarray, size: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel index of every pixel of every point's ``size`` x ``size`` square, and the
    point each belongs to; pixels outside the image are dropped. Rows are point-major."""
    offsets = np.arange(size) - (size - 1) // 2
    centre = np.floor(uv + 0.5).astype(np.int64)
    cols = centre[:, 0, None, None] + offsets[None, None, :]
    rows = centre[:, 1, None, None] + offsets[None, :, None]
    cols, rows = np.broadcast_arrays(cols, rows)
    owner = np.broadcast_to(np.arange(len(uv))[:, None, None], cols.shape)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    return (rows * width + cols)[inside], owner[inside]


def rasterise(
    layers: Sequence[Layer],
    camera: Camera,
    width: int,
    height: int,
    *,
    point_size: float,
    background: tuple[int, int, int],
) -> np.ndarray:
    """uint8 (height, width, 3) image of the layers' points; the nearest point wins a pixel.

    A layer's points are squares of ``round(point_size * layer.size_scale)`` pixels (at least
    one), so highlighted points can be drawn larger than the rest.
    """
    pixels, depths, colors = [], [], []
    for layer in layers:
        uv, depth, kept = project(layer.coord, camera, width, height)
        size = max(round(point_size * layer.size_scale), 1)
        pixel, owner = _splats(uv, size, width, height)
        pixels.append(pixel)
        depths.append(depth[owner])
        colors.append(layer.colors[kept[owner]])
    image = np.empty((height * width, 3), dtype=np.uint8)
    image[:] = background
    pixel, depth, color = (np.concatenate(a) for a in (pixels, depths, colors))
    if len(pixel):
        nearest_first = np.argsort(depth, kind="stable")
        # np.unique sorts stably, so each pixel's first occurrence is its nearest point.
        unique, first = np.unique(pixel[nearest_first], return_index=True)
        image[unique] = color[nearest_first[first]]
    return image.reshape(height, width, 3)
