"""Interactive viewing: an Open3D window with one key per panel and keys for the point size.

Keys: each panel's letter (G ground truth, P prediction, E errors, Q queries, S segments) or
its number 1-9 shows it; ``+``/``=`` and ``-`` (also on the keypad) change the point size;
Open3D's own keys stay (mouse to orbit, R resets the view, Q/Esc close the window unless a
panel took the letter). The legend of the shown panel is printed, since the window has none.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pcseg.vis.camera import Camera, default_camera
from pcseg.vis.colors import BACKGROUND
from pcseg.vis.open3d_render import RenderError, import_open3d, point_cloud, set_legacy_camera
from pcseg.vis.render import Panel

# GLFW key codes: "=" (which is "+" with shift), "-", and the keypad's "+" and "-".
GROW_KEYS = (61, 334)
SHRINK_KEYS = (45, 333)
MIN_POINT_SIZE, MAX_POINT_SIZE = 1.0, 20.0


def has_display() -> bool:
    """Whether a window can be shown (an X11 or Wayland display is set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class ViewerState:
    """Which panel is shown and the point size; what the key callbacks change."""

    def __init__(self, panels: Sequence[Panel], *, point_size: float) -> None:
        if not panels:
            raise ValueError("nothing to show: no panels")
        self.panels = list(panels)
        self.index = 0
        self.point_size = point_size

    def keys(self) -> dict[int, int]:
        """Key code -> panel index: each panel's letter, and its 1-based number."""
        codes = {ord(str(i + 1)): i for i in range(min(len(self.panels), 9))}
        codes.update({ord(p.key.upper()): i for i, p in enumerate(self.panels) if p.key})
        return codes

    def show(self, index: int) -> bool:
        """Switch to panel ``index``; True when that changes what is shown."""
        changed = index != self.index
        self.index = index
        return changed

    def resize(self, factor: float) -> float:
        self.point_size = float(np.clip(self.point_size * factor, MIN_POINT_SIZE, MAX_POINT_SIZE))
        return self.point_size

    def describe(self) -> str:
        panel = self.panels[self.index]
        legend = ", ".join(f"{e.name} {e.color}" for e in panel.legend)
        return f"[{self.index + 1}/{len(self.panels)}] {panel.title}" + (
            f"\n  colours: {legend}" if legend else ""
        )

    def help(self) -> str:
        lines = [f"  {p.key or i + 1}: {p.title}" for i, p in enumerate(self.panels)]
        return "\n".join(["keys:", *lines, "  +/-: point size", "  R: reset view"])


def show(
    panels: Sequence[Panel],
    *,
    point_size: float = 2.0,
    camera: Camera | None = None,
    width: int = 1280,
    height: int = 800,
    window_name: str = "pcseg",
) -> None:
    """Open a window on the panels (one at a time) and block until it is closed.

    Raises:
        RenderError: no display, or Open3D cannot open a window.
    """
    if not has_display():
        raise RenderError("no display (DISPLAY and WAYLAND_DISPLAY are unset): use --out FILE.png")
    o3d = import_open3d()
    state = ViewerState(panels, point_size=point_size)
    visualizer = o3d.visualization.VisualizerWithKeyCallback()
    if not visualizer.create_window(window_name=window_name, width=width, height=height):
        raise RenderError("open3d could not open a window on this display")
    options = visualizer.get_render_option()  # set before any geometry (see open3d_render)
    options.point_size = point_size
    options.background_color = np.array(BACKGROUND, dtype=np.float64) / 255
    clouds = [[point_cloud(o3d, layer) for layer in panel.layers] for panel in panels]
    for cloud in clouds[0]:
        visualizer.add_geometry(cloud)
    set_legacy_camera(
        o3d, visualizer, camera or default_camera(panels[0].layers[0].coord), width, height
    )
    for code, callback in _callbacks(state, clouds).items():
        visualizer.register_key_callback(code, callback)
    print(state.help())
    print(state.describe(), flush=True)
    visualizer.run()
    visualizer.destroy_window()


def _callbacks(state: ViewerState, clouds: list[list[Any]]) -> dict[int, Callable[[Any], bool]]:
    """Key code -> Open3D callback; switching keeps the viewpoint (no bounding-box reset)."""

    def switch(index: int) -> Callable[[Any], bool]:
        def callback(visualizer: Any) -> bool:
            if state.show(index):
                visualizer.clear_geometries()
                for cloud in clouds[index]:
                    visualizer.add_geometry(cloud, reset_bounding_box=False)
                print(state.describe(), flush=True)
            return True

        return callback

    def resize(factor: float) -> Callable[[Any], bool]:
        def callback(visualizer: Any) -> bool:
            visualizer.get_render_option().point_size = state.resize(factor)
            return True

        return callback

    callbacks = {code: switch(index) for code, index in state.keys().items()}
    callbacks.update({code: resize(1.25) for code in GROW_KEYS})
    callbacks.update({code: resize(0.8) for code in SHRINK_KEYS})
    return callbacks
