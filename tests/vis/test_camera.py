"""The pinhole camera every backend shares."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.vis.camera import Camera, default_camera, project


def test_target_projects_to_the_image_centre_and_up_is_up() -> None:
    camera = Camera(eye=(-10.0, 0.0, 5.0), target=(0.0, 0.0, 0.0))
    uv, depth, kept = project(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), camera, 200, 100)
    assert uv[0] == pytest.approx([99.5, 49.5])
    assert uv[1, 1] < uv[0, 1]  # higher in the world is higher in the image
    assert depth[0] == pytest.approx(np.hypot(10, 5)) and kept.tolist() == [0, 1]


def test_points_behind_the_camera_are_dropped() -> None:
    camera = Camera(eye=(0.0, 0.0, 10.0), target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0))
    _, _, kept = project(np.array([[0.0, 0.0, 11.0], [1.0, 0.0, 0.0]]), camera, 64, 64)
    assert kept.tolist() == [1]


def test_field_of_view_sets_the_focal_length() -> None:
    camera = Camera(eye=(0.0, 0.0, 1.0), target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), fov_deg=90)
    # A 90 degree vertical view: a point at 45 degrees lands on the top or bottom border.
    uv, _, _ = project(np.array([[0.0, 1.0, 0.0]]), camera, 100, 100)
    assert uv[0, 1] == pytest.approx(49.5 - 50)


@pytest.mark.parametrize("view", ["oblique", "top"])
def test_default_camera_frames_the_bulk_of_the_points(view) -> None:
    rng = np.random.default_rng(0)
    coord = rng.uniform([-20, -20, 0], [20, 20, 3], size=(5000, 3))
    coord[:20] *= 10  # far outliers must not shrink the view
    camera = default_camera(coord, view=view)
    uv, _, _ = project(coord, camera, 400, 300)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < 400) & (uv[:, 1] >= 0) & (uv[:, 1] < 300)
    assert inside.sum() > 0.7 * len(coord)
    spread = np.ptp(uv[inside], axis=0)
    assert spread[0] > 200 and spread[1] > 150  # the bulk fills a good part of the frame


def test_bad_cameras_are_refused() -> None:
    with pytest.raises(ValueError, match="differ"):
        Camera(eye=(1.0, 1.0, 1.0), target=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="parallel"):
        Camera(eye=(0.0, 0.0, 5.0), target=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="view"):
        default_camera(np.zeros((3, 3)), view="side")
