"""Shared load-time checks: record sizes, id maps and manifest paths that must stay in the root."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.data.formats.validation import (
    DataFormatError,
    build_lut,
    map_ids,
    read_records,
    resolve_inside,
)


@pytest.mark.parametrize(
    "entry", ["../outside.txt", "/etc/passwd", "a/../../b", "scans/x;rm", "a\\..\\b", ""]
)
def test_hostile_manifest_entries_are_refused(tmp_path, entry):
    with pytest.raises(DataFormatError, match="refusing path"):
        resolve_inside(tmp_path, entry)


def test_symlink_escaping_the_root_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(DataFormatError, match="resolves outside"):
        resolve_inside(root, "link/file.txt")
    assert resolve_inside(root, "scans/scene0000_00") == (root / "scans/scene0000_00").resolve()


def test_read_records_refuses_partial_records(tmp_path):
    (tmp_path / "ok.bin").write_bytes(np.arange(8, dtype=np.float32).tobytes())
    assert read_records(tmp_path / "ok.bin", np.float32, 4).shape == (2, 4)
    (tmp_path / "bad.bin").write_bytes(np.arange(7, dtype=np.float32).tobytes())
    with pytest.raises(DataFormatError, match="28 bytes is not a multiple of the 16-byte"):
        read_records(tmp_path / "bad.bin", np.float32, 4)
    with pytest.raises(DataFormatError, match="file not found"):
        read_records(tmp_path / "missing.bin", np.float32, 4)


def test_map_ids_reports_every_unknown_id(tmp_path):
    lut = build_lut({0: -1, 3: 0, 7: 1})
    assert map_ids(tmp_path, np.array([3, 7, 0]), lut, what="x").tolist() == [0, 1, -1]
    with pytest.raises(DataFormatError, match=r"unknown x id\(s\): 1, 9 \(3 points\)"):
        map_ids(tmp_path, np.array([1, 9, 3, 9]), lut, what="x")
