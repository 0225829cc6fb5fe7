"""Shared fixtures: the real sample data beside the project (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ``../shared/data``; tests using it skip on machines without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("real sample data (../shared/data) not present")
    return SHARED_DATA
