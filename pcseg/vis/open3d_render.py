"""Open3D backends: Filament's OffscreenRenderer ("open3d") and the legacy OpenGL Visualizer
with a hidden window ("legacy").

Open3D is imported only when one of these renders. Measured on a CPU-only Debian 12 machine
without a display (open3d-cpu 0.20): the OffscreenRenderer needs Vulkan (``libvulkan1`` and
``mesa-vulkan-drivers``, which give the llvmpipe software device) and fails with "Failed to load
vulkan library!" without them; the legacy Visualizer falls back to an EGL offscreen context
(Mesa) and works without them. With Vulkan installed but no working driver, creating the
OffscreenRenderer aborts the process (an uncatchable C++ panic), which is why
:mod:`pcseg.vis.render` tries each Open3D backend in a child process first. Once the
OffscreenRenderer has run in a process, the legacy Visualizer cannot open a window in it: use
one Open3D backend per process. Their native libraries print to the process's stdout/stderr, so
that output is captured and shown only when something fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pcseg.vis.camera import Camera

if TYPE_CHECKING:
    from pcseg.vis.render import Layer

VULKAN_HINT = (
    "the OffscreenRenderer needs Vulkan: apt-get install libvulkan1 mesa-vulkan-drivers "
    "(make system-packages)"
)
HINTS = {
    "open3d": VULKAN_HINT,
    "legacy": "the legacy Visualizer needs a display or EGL (Debian libegl1, libegl-mesa0)",
}


# Off in the child process that probes a backend, whose output is the diagnosis.
CAPTURE_NATIVE_OUTPUT = True


class RenderError(RuntimeError):
    """A backend cannot render on this machine; the message says why and what to try."""


@contextlib.contextmanager
def captured_native_output() -> Iterator[list[str]]:
    """Send file descriptors 1 and 2 to a temporary file while the block runs.

    Yields a list that holds the captured text once the block ends (also on error), for error
    messages. C stdio buffers are flushed first so nothing leaks past the redirection.
    """
    text: list[str] = []
    if not CAPTURE_NATIVE_OUTPUT:
        yield text
        return
    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile() as sink:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield text
        finally:
            libc.fflush(None)
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text.append(sink.read().decode(errors="replace"))


def _last_lines(text: list[str], count: int = 6) -> str:
    lines = [line for line in "".join(text).splitlines() if line.strip()]
    return ("\n  " + "\n  ".join(lines[-count:])) if lines else ""


def import_open3d() -> Any:
    """``open3d`` with its own log limited to errors; a clear RenderError when it is missing."""
    try:
        import open3d
    except (ImportError, OSError) as error:
        raise RenderError(
            f"open3d cannot be imported ({error}); install open3d-cpu (CPU machines) or open3d, "
            "and the Debian package libusb-1.0-0"
        ) from None
    open3d.utility.set_verbosity_level(open3d.utility.VerbosityLevel.Error)
    return open3d


def point_cloud(o3d: Any, layer: Layer) -> Any:
    """An Open3D point cloud of a layer's points and colours."""
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(layer.coord.astype(np.float64)))
    cloud.colors = o3d.utility.Vector3dVector(layer.colors.astype(np.float64) / 255)
    return cloud


def _to_uint8(image: Any, width: int, height: int, backend: str) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    if array.shape[:2] != (height, width):
        raise RenderError(
            f"{backend}: rendered {array.shape[1]}x{array.shape[0]}, asked for {width}x{height}"
        )
    return np.ascontiguousarray(array[..., :3])


def render_offscreen(
    panels: Sequence[Sequence[Layer]],
    camera: Camera,
    width: int,
    height: int,
    *,
    point_size: float,
    background: tuple[int, int, int],
) -> list[np.ndarray]:
    """One image per panel from Open3D's OffscreenRenderer (Filament, unlit points)."""
    o3d = import_open3d()
    rendering = o3d.visualization.rendering
    with captured_native_output() as log:
        try:
            renderer = rendering.OffscreenRenderer(width, height)
        except RuntimeError as error:
            raise RenderError(f"open3d OffscreenRenderer: {error}; {VULKAN_HINT}") from None
    images = []
    with captured_native_output() as log:
        try:
            renderer.scene.set_background([*(np.array(background) / 255), 1.0])
            renderer.scene.view.set_post_processing(False)  # no tone mapping: exact colours
            for p, layers in enumerate(panels):
                renderer.scene.clear_geometry()
                for i, layer in enumerate(layers):
                    material = rendering.MaterialRecord()
                    material.shader = "defaultUnlit"
                    material.point_size = float(point_size * layer.size_scale)
                    renderer.scene.add_geometry(f"p{p}l{i}", point_cloud(o3d, layer), material)
                # After the geometry: Open3D derives the near and far planes from its bounds.
                renderer.setup_camera(
                    camera.intrinsic(width, height), camera.extrinsic(), width, height
                )
                images.append(_to_uint8(renderer.render_to_image(), width, height, "open3d"))
        except RuntimeError as error:
            raise RenderError(
                f"open3d OffscreenRenderer failed: {error}{_last_lines(log)}"
            ) from None
        finally:
            del renderer
    return images


def render_legacy(
    panels: Sequence[Sequence[Layer]],
    camera: Camera,
    width: int,
    height: int,
    *,
    point_size: float,
    background: tuple[int, int, int],
) -> list[np.ndarray]:
    """One image per panel from the legacy Visualizer in a hidden window.

    The legacy renderer has one point size for everything, so highlighted layers are drawn
    at the base size here.
    """
    o3d = import_open3d()
    visualizer = o3d.visualization.Visualizer()
    with captured_native_output() as log:
        opened = visualizer.create_window(visible=False, width=width, height=height)
    if not opened:
        raise RenderError(
            f"open3d legacy Visualizer could not open a hidden window{_last_lines(log)}"
        )
    images = []
    with captured_native_output() as log:
        try:
            # Options before any geometry: set afterwards, a second window in the same process
            # renders blank (measured with open3d 0.20 on EGL).
            options = visualizer.get_render_option()
            options.point_size = float(point_size)
            options.background_color = np.array(background, dtype=np.float64) / 255
            for layers in panels:
                visualizer.clear_geometries()
                for layer in layers:
                    visualizer.add_geometry(point_cloud(o3d, layer))
                set_legacy_camera(o3d, visualizer, camera, width, height)
                image = visualizer.capture_screen_float_buffer(do_render=True)
                images.append(_to_uint8(image, width, height, "legacy"))
        finally:
            visualizer.destroy_window()
    return images


def set_legacy_camera(o3d: Any, visualizer: Any, camera: Camera, width: int, height: int) -> None:
    """Point a legacy Visualizer's view through ``camera`` (exact pinhole parameters)."""
    parameters = o3d.camera.PinholeCameraParameters()
    parameters.intrinsic = o3d.camera.PinholeCameraIntrinsic(
        width, height, camera.intrinsic(width, height)
    )
    parameters.extrinsic = camera.extrinsic()
    control = visualizer.get_view_control()
    if not control.convert_from_pinhole_camera_parameters(parameters, allow_arbitrary=True):
        raise RenderError("open3d legacy Visualizer rejected the camera parameters")


RENDERERS = {"open3d": render_offscreen, "legacy": render_legacy}
