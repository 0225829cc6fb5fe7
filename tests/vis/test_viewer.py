"""The interactive viewer's key handling, and its refusal without a display."""

from __future__ import annotations

import pytest

from pcseg.vis import viewer
from pcseg.vis.render import RenderError
from pcseg.vis.scenes import label_panels


def test_keys_switch_panels_and_resize_points(scan) -> None:
    pred = scan.label.copy()
    state = viewer.ViewerState(label_panels(scan, pred, ["gt", "pred", "error"]), point_size=2)
    keys = state.keys()
    assert keys[ord("G")] == keys[ord("1")] == 0 and keys[ord("E")] == keys[ord("3")] == 2
    assert state.show(keys[ord("P")]) and not state.show(1)
    assert state.describe().startswith("[2/3] prediction\n  colours: ground")
    assert state.resize(1.25) == 2.5
    for _ in range(30):
        state.resize(0.8)
    assert state.point_size == viewer.MIN_POINT_SIZE
    assert "E: errors" in state.help() and "+/-: point size" in state.help()


def test_no_display_is_a_clear_error(scan, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RenderError, match=r"no display.*--out FILE\.png"):
        viewer.show(label_panels(scan, None, ["gt"]))
