"""The software rasteriser: square splats, the nearest point wins, points off-screen vanish."""

from __future__ import annotations

import numpy as np

from pcseg.vis.camera import Camera
from pcseg.vis.raster import rasterise
from pcseg.vis.render import Layer

TOP = Camera(eye=(0.0, 0.0, 10.0), target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), fov_deg=40.0)
WHITE = (255, 255, 255)


def _layer(coord, color, scale=1.0) -> Layer:
    coord = np.asarray(coord, dtype=np.float32)
    return Layer(coord, np.tile(np.uint8(color), (len(coord), 1)), size_scale=scale)


def test_splats_are_squares_of_the_point_size() -> None:
    for size in (1, 2, 3, 5):
        image = rasterise(
            [_layer([[0, 0, 0]], (255, 0, 0))], TOP, 33, 33, point_size=size, background=WHITE
        )
        assert (image != 255).any(-1).sum() == size * size


def test_the_nearest_point_wins_whatever_the_order() -> None:
    far, near = _layer([[0, 0, 0]], (0, 0, 255)), _layer([[0, 0, 1]], (255, 0, 0))
    for layers in ([far, near], [near, far]):
        image = rasterise(layers, TOP, 33, 33, point_size=3, background=WHITE)
        assert (image[16, 16] == (255, 0, 0)).all()


def test_highlight_layers_are_drawn_larger() -> None:
    layers = [_layer([[0, 0, 0]], (0, 0, 255)), _layer([[0, 0, 0.5]], (255, 0, 255), scale=3)]
    image = rasterise(layers, TOP, 33, 33, point_size=2, background=WHITE)
    assert (image == (255, 0, 255)).all(-1).sum() == 36 and not (image == (0, 0, 255)).all(-1).any()


def test_points_outside_the_frame_or_behind_the_camera_draw_nothing() -> None:
    layer = _layer([[100, 0, 0], [0, 0, 20]], (255, 0, 0))
    image = rasterise([layer], TOP, 33, 33, point_size=3, background=WHITE)
    assert (image == 255).all()
