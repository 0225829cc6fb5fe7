"""Headless renders through every backend that works here: a synthetic scene and the real
SemanticKITTI scan, the error view, image layout and file handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pcseg.data.datasets import SemanticKITTIDataset
from pcseg.data.meta import semantickitti as kitti_meta
from pcseg.vis.camera import Camera, default_camera, project
from pcseg.vis.colors import BACKGROUND, WRONG
from pcseg.vis.render import (
    TITLE_HEIGHT,
    Layer,
    choose_backend,
    render_image,
    render_panels,
    save_png,
)
from pcseg.vis.scenes import label_panels, load_scan

TOP = Camera(eye=(0.0, 0.0, 6.0), target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), fov_deg=50.0)


def _strict_red(image: np.ndarray) -> np.ndarray:
    """Pixels that are the error colour itself (not an anti-aliased blend at an edge)."""
    pixels = image.astype(np.int64)
    return (pixels[..., 0] >= 230) & (pixels[..., 1] <= 40) & (pixels[..., 2] <= 40)


def test_synthetic_scene_shows_its_classes(scan, render, colour_share) -> None:
    (panel,) = label_panels(scan, None, ["gt"])
    # Points 3 px wide cover the 2.1 px grid spacing in every backend (Open3D's round,
    # anti-aliased points leave gaps at 2 px).
    image = render(panel.layers, width=320, height=240, camera=TOP, point_size=3)
    assert image.shape == (240, 320, 3) and image.dtype == np.uint8
    assert colour_share(image, BACKGROUND, tolerance=0) < 0.9  # not blank
    # Seen from above, the grid fills a 4 m square (about 43 % of this frame) and the box
    # hides 1/16 of it.
    assert 0.25 < colour_share(image, scan.palette[0]) < 0.5
    assert 0.01 < colour_share(image, scan.palette[1]) < 0.06


def test_error_view_colours_only_wrong_points(scan, render, colour_share) -> None:
    pred = scan.label.copy()
    wrong = (scan.coord[:, 0] > 1.0) & (scan.coord[:, 1] < -1.0)  # a ground corner, 1 m²
    pred[wrong] = 1
    (panel,) = label_panels(scan, pred, ["error"])
    image = render(panel.layers, width=320, height=240, camera=TOP, point_size=3)
    red = _strict_red(image)
    # Where the wrong points land, widened by the splat size: red may appear nowhere else.
    uv, _, _ = project(scan.coord[wrong], TOP, 320, 240)
    low, high = np.floor(uv.min(0)) - 4, np.ceil(uv.max(0)) + 4
    rows, cols = np.nonzero(red)
    assert red.any()
    assert (cols >= low[0]).all() and (cols <= high[0]).all()
    assert (rows >= low[1]).all() and (rows <= high[1]).all()
    # The corner is 1/16 of the ground square: red covers about that share of drawn pixels.
    drawn = colour_share(image, BACKGROUND, tolerance=0)
    assert red.mean() / (1 - drawn) == pytest.approx(1 / 16, abs=0.02)


def test_software_error_view_is_exact(scan) -> None:
    pred = scan.label.copy()
    pred[scan.label == 1] = 0  # the whole box is wrong; its top is what the camera sees
    (panel,) = label_panels(scan, pred, ["error"])
    (image,), _ = render_panels(
        [panel.layers], width=320, height=240, camera=TOP, backend="software", point_size=3
    )
    box_only = render_panels(
        [[Layer(scan.coord[scan.label == 1], np.tile(WRONG, ((scan.label == 1).sum(), 1)))]],
        width=320, height=240, camera=TOP, backend="software", point_size=3,
    )[0][0]  # fmt: skip
    assert np.array_equal((image == WRONG).all(-1), (box_only == WRONG).all(-1))


def test_composite_has_the_requested_size_titles_and_legend(scan, tmp_path, colour_share) -> None:
    pred = scan.label.copy()
    pred[:500] = 2
    panels = label_panels(scan, pred, ["gt", "pred", "error"])
    image, used = render_image(panels, width=900, height=360, backend="software")
    assert image.shape == (360, 900, 3) and used == "software"
    assert (image[: TITLE_HEIGHT - 4, :6] == BACKGROUND).all()
    legend = image[-40:]
    for color in (*scan.palette, WRONG):  # every class shown, and the error colour, has a swatch
        assert colour_share(legend, color, tolerance=0) > 0
    path = save_png(image, tmp_path / "out.png")
    assert Image.open(path).size == (900, 360)
    with pytest.raises(FileExistsError, match=r"out\.png"):
        save_png(image, path)
    save_png(image, path, overwrite=True)


def test_too_small_an_image_is_refused(scan) -> None:
    with pytest.raises(ValueError, match="too small"):
        render_image(label_panels(scan, None, ["gt"]), width=60, height=40, backend="software")


def test_auto_uses_the_first_working_backend() -> None:
    name, skipped = choose_backend("auto")
    assert name in ("open3d", "legacy", "software")
    assert len(skipped) == ("open3d", "legacy", "software").index(name)
    with pytest.raises(ValueError, match="valid: auto"):
        choose_backend("vulkan")


def test_real_semantickitti_scan(shared_data, render, colour_share) -> None:
    dataset = SemanticKITTIDataset(shared_data / "semantickitti", sequences=["00"])
    scan = load_scan(dataset, 0)
    panels = label_panels(scan, None, ["gt"])
    camera = default_camera(scan.coord, view="top")
    image = render(panels[0].layers, width=480, height=360, camera=camera, point_size=3)
    assert colour_share(image, BACKGROUND, tolerance=0) < 0.9
    # From above, road and vegetation dominate the scan around the sensor; a traffic sign is
    # a speck (measured: road 7.0-8.1 %, vegetation 6.4-7.7 %, sign 0.03-0.04 % of pixels).
    share = {
        name: colour_share(image, kitti_meta.PALETTE[kitti_meta.CLASS_NAMES.index(name)])
        for name in ("road", "vegetation", "traffic-sign")
    }
    assert 0.04 < share["road"] < 0.15 and 0.03 < share["vegetation"] < 0.15
    assert share["traffic-sign"] < 0.005


BROKEN = """
import json
from pcseg.vis.render import Layer, RenderError, choose_backend, render_panels
import numpy as np
layer = Layer(np.random.default_rng(0).random((50, 3)), np.zeros((50, 3), np.uint8))
outcome = {"auto": choose_backend("auto")}
for name in ("open3d", "legacy"):
    try:
        render_panels([[layer]], width=32, height=32, backend=name)
        outcome[name] = "rendered"
    except RenderError as error:
        outcome[name] = str(error)
print(json.dumps(outcome))
"""


def test_backends_that_cannot_render_fail_clearly() -> None:
    # No Vulkan driver, no EGL vendor and no display: neither Open3D backend can draw. The
    # OffscreenRenderer then aborts its process, so the error must come from a child's crash.
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(VK_ICD_FILENAMES="/nonexistent.json", __EGL_VENDOR_LIBRARY_FILENAMES="/none.json")
    result = subprocess.run(
        [sys.executable, "-c", BROKEN], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    name, skipped = outcome["auto"]
    assert name == "software" and [s.split(":")[0] for s in skipped] == ["open3d", "legacy"]
    for backend in ("open3d", "legacy"):
        assert outcome[backend].startswith(f"backend {backend} cannot render here: ")
