"""Tools are scripts, not modules: load one by name from tools/ to call its ``main``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def import_tool(name: str):
    """Import ``tools/<name>.py`` (with tools/ importable, as when it runs as a script)."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(f"pcseg_tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_tool():
    """:func:`import_tool` as a fixture."""
    return import_tool
