"""Render fixtures: each backend (skipped with the reason where it cannot render here), and a
small synthetic scene whose classes sit at known places."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import pytest

from pcseg.vis.camera import Camera
from pcseg.vis.render import BACKENDS, Layer, backend_problem, render_panels
from pcseg.vis.scenes import Scan

# Renders one panel in a fresh process: once Open3D's OffscreenRenderer has run in a process,
# the legacy Visualizer can no longer open a window there (measured with open3d 0.20).
CHILD = """
import json, sys
import numpy as np
from pcseg.vis.camera import Camera
from pcseg.vis.render import Layer, render_panels
arrays, options = np.load(sys.argv[1]), json.loads(sys.argv[2])
layers = [Layer(arrays[f"coord{i}"], arrays[f"colors{i}"], float(arrays[f"scale{i}"]))
          for i in range(options.pop("layers"))]
options["camera"] = Camera(**options["camera"])
(image,), used = render_panels([layers], **options)
assert used == options["backend"], used
np.save(sys.argv[3], image)
"""

PALETTE = ((40, 160, 40), (30, 60, 200), (230, 200, 20))
NAMES = ("ground", "car", "pole")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each renderer; Open3D ones skip on machines where they cannot draw (see the reason)."""
    problem = backend_problem(request.param)
    if problem is not None:
        pytest.skip(f"backend {request.param} cannot render here: {problem}")
    return request.param


def synthetic_scan() -> Scan:
    """A 4 m x 4 m ground grid (class 0, 5 cm spacing) with a 1 m box (class 1) on it and a
    thin pole (class 2); 60 unlabelled ground points at one corner."""
    axis = np.arange(-2.0, 2.0, 0.05)
    gx, gy = np.meshgrid(axis, axis, indexing="ij")
    ground = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1)
    box_axis = np.arange(0.0, 1.0, 0.05)
    bx, by, bz = np.meshgrid(box_axis, box_axis, box_axis, indexing="ij")
    box = np.stack([bx.ravel() - 1.5, by.ravel() - 1.5, bz.ravel()], axis=1)
    pole_z = np.arange(0.0, 2.0, 0.02)
    pole = np.stack([np.full_like(pole_z, 1.5), np.full_like(pole_z, 1.5), pole_z], axis=1)
    coord = np.concatenate([ground, box, pole]).astype(np.float32)
    label = np.concatenate([np.zeros(len(ground)), np.ones(len(box)), np.full(len(pole), 2)])
    label = label.astype(np.int64)
    label[:60] = -1
    return Scan("synthetic/000000", coord, label, NAMES, PALETTE)


@pytest.fixture
def render(backend, tmp_path):
    """``render(layers, camera=..., width=..., height=..., point_size=...)`` -> one panel's
    image from ``backend``; Open3D backends draw in a child process of their own."""

    def run(layers: Sequence[Layer], *, camera: Camera, **options) -> np.ndarray:
        if backend == "software":
            return render_panels([layers], camera=camera, backend=backend, **options)[0][0]
        arrays = {}
        for i, layer in enumerate(layers):
            arrays.update({f"coord{i}": layer.coord, f"colors{i}": layer.colors})
            arrays[f"scale{i}"] = np.float64(layer.size_scale)
        np.savez(tmp_path / "layers.npz", **arrays)
        options.update(layers=len(layers), camera=asdict(camera), backend=backend)
        command = [sys.executable, "-c", CHILD, str(tmp_path / "layers.npz"), json.dumps(options)]
        subprocess.run([*command, str(tmp_path / "image.npy")], check=True, timeout=120)
        return np.load(tmp_path / "image.npy")

    return run


@pytest.fixture
def scan() -> Scan:
    return synthetic_scan()


def _colour_share(image: np.ndarray, color, *, tolerance: int = 12) -> float:
    """Share of the image's pixels within ``tolerance`` of ``color`` in every channel (the
    Open3D backends blend colours at point edges, so exact matches undercount)."""
    close = np.abs(image.astype(np.int64) - np.array(color)).max(axis=-1) <= tolerance
    return float(close.mean())


@pytest.fixture
def colour_share():
    """:func:`_colour_share` as a fixture."""
    return _colour_share
