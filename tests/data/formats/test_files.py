"""Atomic output: a failed write leaves the old file and no temporary; existing files are kept."""

from __future__ import annotations

import pytest

from pcseg.data.formats.files import atomic_output, write_text


def test_failed_write_leaves_the_target_untouched(tmp_path):
    target = tmp_path / "labels.txt"
    write_text(target, "original", overwrite=False)
    with (
        pytest.raises(RuntimeError, match="disk on fire"),
        atomic_output(target, overwrite=True) as tmp,
    ):
        tmp.write_text("half of the new")
        raise RuntimeError("disk on fire")
    assert target.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.txt"]


def test_existing_files_are_replaced_only_when_asked(tmp_path):
    target = tmp_path / "deep" / "dir" / "scan.laz"
    write_text(target, "a", overwrite=False)
    with pytest.raises(FileExistsError, match=r"scan\.laz: already exists"):
        write_text(target, "b", overwrite=False)
    with atomic_output(target, overwrite=True) as tmp:
        assert tmp.suffix == ".laz" and tmp.parent == target.parent  # same filesystem, same type
        tmp.write_text("b")
    assert target.read_text() == "b"
