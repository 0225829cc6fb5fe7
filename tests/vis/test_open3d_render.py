"""Open3D's native chatter is captured, and shown only when something fails."""

from __future__ import annotations

import os

from pcseg.vis.open3d_render import captured_native_output


def test_native_output_is_captured_and_the_streams_restored(capfd) -> None:
    with captured_native_output() as text:
        os.write(1, b"native stdout\n")
        os.write(2, b"native stderr\n")
    assert text == ["native stdout\nnative stderr\n"]
    os.write(1, b"visible again\n")
    assert capfd.readouterr().out == "visible again\n"
