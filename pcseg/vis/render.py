"""Headless rendering: panels of coloured points side by side, titled, with one legend, as PNG.

Three backends draw the panels (:data:`BACKENDS`): Open3D's OffscreenRenderer (``open3d``),
Open3D's legacy Visualizer in a hidden window (``legacy``) and a numpy rasteriser
(``software``). ``auto`` takes the first that works here; whether an Open3D backend works is
found out in a child process, because on a machine without the right drivers the native code
may abort rather than raise. Titles and the legend are drawn with Pillow, so every backend
gives the same layout and an image of exactly the requested size.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcseg.data.formats.files import atomic_output
from pcseg.vis.camera import Camera, default_camera
from pcseg.vis.colors import BACKGROUND, LegendEntry
from pcseg.vis.open3d_render import HINTS, RENDERERS, RenderError
from pcseg.vis.raster import rasterise

BACKENDS = ("open3d", "legacy", "software")
PROBING = "PCSEG_RENDER_PROBE"  # set in the child that tries a backend: draw, do not probe
TITLE_HEIGHT = 22
LEGEND_ROW = 20
MIN_PANEL = 32

__all__ = ["BACKENDS", "Layer", "Panel", "RenderError", "render_image", "render_panels", "save_png"]


@dataclass
class Layer:
    """Points drawn with one point size: ``coord`` float (N, 3), ``colors`` uint8 (N, 3).

    ``size_scale`` multiplies the point size (highlighted queries are drawn larger).
    """

    coord: np.ndarray
    colors: np.ndarray
    size_scale: float = 1.0

    def __post_init__(self) -> None:
        self.coord = np.asarray(self.coord, dtype=np.float32)
        self.colors = np.asarray(self.colors, dtype=np.uint8)
        if self.coord.ndim != 2 or self.coord.shape[1] != 3:
            raise ValueError(f"coord must be (N, 3), got {self.coord.shape}")
        if self.colors.shape != self.coord.shape:
            raise ValueError(
                f"colors must be {self.coord.shape} like coord, got {self.colors.shape}"
            )


@dataclass
class Panel:
    """One view of a scan: a title, its layers, what its colours mean, and the key that shows
    it in the interactive viewer."""

    title: str
    layers: list[Layer]
    legend: list[LegendEntry] = field(default_factory=list)
    key: str = ""


def _probe(backend: str) -> str | None:
    """Why ``backend`` cannot render here (None when it can), found out in a child process
    whose native output is kept, so that a crash still says why."""
    code = (
        "import numpy as np\n"
        "import pcseg.vis.open3d_render as backends\n"
        "from pcseg.vis.render import Layer, render_panels\n"
        "backends.CAPTURE_NATIVE_OUTPUT = False\n"
        "coord = np.random.default_rng(0).random((200, 3))\n"
        "layer = Layer(coord, np.tile(np.uint8([255, 0, 0]), (200, 1)))\n"
        f"images, _ = render_panels([[layer]], width=32, height=32, backend={backend!r})\n"
        "assert (images[0] == [255, 0, 0]).all(axis=-1).mean() > 0.05, 'rendered no points'\n"
    )
    env = {**os.environ, PROBING: "1"}
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
        )
    except subprocess.TimeoutExpired:
        return "timed out after 120 s"
    if result.returncode == 0:
        return None
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode > 0:  # a Python exception: its last line is the message
        return lines[-1].removeprefix(f"{RenderError.__module__}.") if lines else "failed"
    status = f"killed by {signal.Signals(-result.returncode).name}"  # a native crash
    return f"{status}: " + " / ".join(lines[-3:]) if lines else status


@functools.cache
def backend_problem(backend: str) -> str | None:
    """Cached :func:`_probe` (None: works); the software backend always works."""
    return None if backend == "software" else _probe(backend)


def choose_backend(backend: str) -> tuple[str, list[str]]:
    """The backend to use for ``backend`` ("auto" or a name) and, for auto, why the ones
    before it were skipped."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
        return backend, []
    skipped = []
    for name in BACKENDS:
        problem = backend_problem(name)
        if problem is None:
            return name, skipped
        skipped.append(f"{name}: {problem}")
    raise RenderError("no backend can render")  # unreachable: software always works


def render_panels(
    panels: Sequence[Sequence[Layer]],
    *,
    width: int,
    height: int,
    point_size: float = 2.0,
    camera: Camera | None = None,
    backend: str = "auto",
) -> tuple[list[np.ndarray], str]:
    """One uint8 (height, width, 3) image per panel, and the backend that drew them.

    Every panel is seen by the same ``camera`` (default: :func:`default_camera` of the first
    panel's points), so panels can be compared pixel by pixel.
    """
    if camera is None:
        camera = default_camera(np.concatenate([layer.coord for layer in panels[0]]))
    name, _ = choose_backend(backend)
    if name != "software" and not os.environ.get(PROBING):
        problem = backend_problem(name)  # a crash in a child, not in this process
        if problem is not None:
            raise RenderError(
                f"backend {name} cannot render here: {problem}\n  {HINTS[name]}; "
                "the software backend always works"
            )
    settings = {"point_size": point_size, "background": BACKGROUND}
    if name == "software":
        images = [rasterise(layers, camera, width, height, **settings) for layers in panels]
    else:
        images = RENDERERS[name](panels, camera, width, height, **settings)
    return images, name


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _legend_rows(entries: Sequence[LegendEntry], width: int, draw, font) -> list[list[tuple]]:
    """Entries laid out left to right, wrapping at ``width``: rows of (entry, x)."""
    rows: list[list[tuple]] = [[]]
    x = 6
    for entry in entries:
        span = 18 + int(draw.textlength(entry.name, font=font)) + 14
        if rows[-1] and x + span > width:
            rows.append([])
            x = 6
        rows[-1].append((entry, x))
        x += span
    return rows if rows[0] else []


def _unique_entries(panels: Sequence[Panel]) -> list[LegendEntry]:
    return list(dict.fromkeys(entry for panel in panels for entry in panel.legend))


def render_image(
    panels: Sequence[Panel],
    *,
    width: int,
    height: int,
    point_size: float = 2.0,
    camera: Camera | None = None,
    backend: str = "auto",
) -> tuple[np.ndarray, str]:
    """The panels side by side under their titles, with one legend below: a uint8 (height,
    width, 3) image, and the backend that drew the points."""
    from PIL import Image, ImageDraw

    font = _font(13)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    rows = _legend_rows(_unique_entries(panels), width, draw, font)
    panel_width = width // len(panels)
    panel_height = height - TITLE_HEIGHT - LEGEND_ROW * len(rows)
    if panel_width < MIN_PANEL or panel_height < MIN_PANEL:
        raise ValueError(
            f"{width}x{height} is too small for {len(panels)} panels and {len(rows)} legend rows"
        )
    images, backend = render_panels(
        [panel.layers for panel in panels],
        width=panel_width,
        height=panel_height,
        point_size=point_size,
        camera=camera,
        backend=backend,
    )
    for index, (panel, image) in enumerate(zip(panels, images, strict=True)):
        sheet.paste(Image.fromarray(image), (index * panel_width, TITLE_HEIGHT))
        draw.text((index * panel_width + 6, 4), panel.title, fill=(0, 0, 0), font=font)
    top = TITLE_HEIGHT + panel_height
    for r, row in enumerate(rows):
        y = top + r * LEGEND_ROW + 4
        for entry, x in row:
            draw.rectangle([x, y, x + 12, y + 12], fill=entry.color, outline=(0, 0, 0))
            draw.text((x + 18, y - 1), entry.name, fill=(0, 0, 0), font=font)
    return np.asarray(sheet), backend


def save_png(image: np.ndarray, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``image`` (uint8 (H, W, 3)) as a PNG atomically; an existing file is replaced
    only with ``overwrite``."""
    from PIL import Image

    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path
