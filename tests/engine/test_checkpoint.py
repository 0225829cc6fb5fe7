"""Checkpoints: round trips, damaged and hostile files, rotation, RNG state, kill -9 safety."""

from __future__ import annotations

import logging
import os
import random
import shlex
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pcseg.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    CheckpointManager,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

REPO = Path(__file__).resolve().parents[2]


def _state() -> dict[str, Any]:
    model = torch.nn.Linear(4, 3)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    optim.step()
    return {
        "model": model.state_dict(),
        "optim": optim.state_dict(),
        "step": 7,
        "meta": {"name": "run", "best": 0.5, "tags": ["a", "b"], "pair": (1, None)},
        "dtype": torch.float16,
        "ints": torch.arange(5, dtype=torch.int64),
    }


def _assert_same(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def test_round_trip_preserves_everything(tmp_path: Path) -> None:
    state = {**_state(), "rng": capture_rng_state()}
    path = tmp_path / "sub" / "ckpt.pth"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    _assert_same(loaded, state)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pth"]


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    save_checkpoint(good, {"w": torch.randn(1000)})
    bad = tmp_path / "half.pth"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value)


def test_flipped_byte_in_tensor_record_is_refused(tmp_path: Path, corrupt_record) -> None:
    path = tmp_path / "flip.pth"
    save_checkpoint(path, {"w": torch.randn(1000)})
    corrupt_record(path, "/data/0")
    with pytest.raises(CheckpointError, match=r"corrupt.*CRC") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


class _RunsShell:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_pickle_with_code_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": _RunsShell(marker)}, path)
    with zipfile.ZipFile(path) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"system" in pickled  # the payload really is in the file
    with pytest.raises(CheckpointError, match=r"refused.*other than weights") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("state", "where"),
    [
        ({"rng": {"numpy": ("MT19937", np.zeros(3))}}, r"state\['rng'\]\['numpy'\]\[1\]"),
        ({"lr": np.float64(0.1)}, r"state\['lr'\]"),
        ({"items": [1, object()]}, r"state\['items'\]\[1\]"),
    ],
)
def test_values_weights_only_cannot_load_are_rejected(
    tmp_path: Path, state: dict[str, Any], where: str
) -> None:
    with pytest.raises(TypeError, match=where):
        save_checkpoint(tmp_path / "x.pth", state)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, {"v": 1})

    def broken_save(obj: Any, f: Any) -> None:
        Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"v": 2})
    assert list(tmp_path.iterdir()) == [path]
    assert load_checkpoint(path) == {"v": 1}


@pytest.mark.parametrize("payload", [{"format": "other-1"}, {"w": 1}, [1, 2]])
def test_wrong_or_missing_format_is_refused(tmp_path: Path, payload: Any) -> None:
    path = tmp_path / "x.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=CHECKPOINT_FORMAT):
        load_checkpoint(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth")


def test_manager_keeps_newest_and_ignores_other_files(tmp_path: Path) -> None:
    unrelated = ["notes.txt", "step_5.pth", "step_00000001.pth.bak", "best.pth"]
    for name in unrelated:
        (tmp_path / name).write_text("x")
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2, 10, 3):
        manager.save(step, {"step": step})
    assert [p.name for p in manager.paths()] == ["step_00000003.pth", "step_00000010.pth"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*unrelated, "step_00000003.pth", "step_00000010.pth"]
    )


def test_latest_valid_skips_a_damaged_newest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = CheckpointManager(tmp_path, keep=3)
    assert manager.latest_valid() is None
    for step in (1, 2, 3):
        manager.save(step, {"step": step, "w": torch.full((100,), float(step))})
    newest = manager.paths()[-1]
    newest.write_bytes(newest.read_bytes()[:-50])
    with caplog.at_level(logging.WARNING, logger="pcseg.engine.checkpoint"):
        found = manager.latest_valid()
    assert found is not None
    path, state = found
    assert path.name == "step_00000002.pth" and state["step"] == 2
    assert newest.name in caplog.text and "truncated or corrupt" in caplog.text
    for p in manager.paths():
        p.write_bytes(b"junk")
    assert manager.latest_valid() is None


def test_rng_round_trip_reproduces_next_numbers(tmp_path: Path) -> None:
    random.gauss(0, 1)  # leave a cached gaussian in both generators
    np.random.randn()
    save_checkpoint(tmp_path / "rng.pth", {"rng": capture_rng_state()})
    expected = (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3),
        np.random.randn(),
        torch.rand(4),
    )
    for _ in range(5):  # move every generator on
        random.random(), np.random.rand(), torch.rand(1)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pth")["rng"])
    got = (random.random(), random.gauss(0, 1), np.random.rand(3), np.random.randn(), torch.rand(4))
    assert got[:2] == expected[:2]
    np.testing.assert_array_equal(got[2], expected[2])
    assert got[3] == expected[3]
    assert torch.equal(got[4], expected[4])


_WRITER = """
import sys, torch
from pcseg.engine.checkpoint import save_checkpoint
path, numel = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
if sys.stdin.readline() != "go\\n":
    sys.exit(1)
for i in range(10_000):
    value = torch.full((numel,), float(i))
    print(i, flush=True)
    save_checkpoint(path, {"i": i, "value": value})
"""


def _temp_file_has_data(directory: Path) -> bool:
    """Whether a hidden temporary file beside the checkpoint holds any bytes."""
    for entry in directory.iterdir():
        try:
            if entry.name.startswith(".") and entry.stat().st_size > 0:
                return True
        except FileNotFoundError:  # renamed onto the target while we looked
            pass
    return False


def test_kill_during_save_leaves_old_or_new_never_partial(tmp_path: Path) -> None:
    numel = 12_500_000  # 50 MB: a write takes long enough to be hit in the middle
    # (save index at which to kill, delay after that save began; None: as soon as the
    # temporary file holds data, which guarantees at least one kill in mid-write)
    plans = [(1, None), (0, 0.0), (2, 0.03)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    runs = []
    for k in range(len(plans)):  # start all first so the torch imports overlap
        path = tmp_path / f"run{k}" / "ckpt.pth"
        path.parent.mkdir()
        cmd = [sys.executable, "-c", _WRITER, str(path), str(numel)]
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        runs.append((path, subprocess.Popen(cmd, env=env, text=True, **pipes)))
    try:
        partial_seen = sum(
            _kill_and_check(path, proc, *plan, numel)
            for (path, proc), plan in zip(runs, plans, strict=True)
        )
    finally:
        for _, proc in runs:
            proc.kill()
            proc.communicate()
    # A kill must have landed mid-write, or the test proved nothing.
    assert partial_seen >= 1


def _kill_and_check(
    path: Path, proc: subprocess.Popen[str], kill_at: int, delay: float | None, numel: int
) -> bool:
    """Let the writer run into save ``kill_at``, kill it, check ``path``; True if mid-write."""
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.stdin.write("go\n")  # one writer at a time, so the disk is not shared
    proc.stdin.flush()
    while int(proc.stdout.readline()) != kill_at:
        pass
    deadline = time.monotonic() + 10
    while delay is None and not _temp_file_has_data(path.parent) and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(delay or 0.0)
    proc.kill()
    proc.wait()
    if path.exists():
        state = load_checkpoint(path)
        assert state["i"] >= kill_at - 1
        assert state["value"].shape == (numel,)
        assert bool((state["value"] == float(state["i"])).all())
    else:
        assert kill_at == 0
    return _temp_file_has_data(path.parent)


def test_recorded_cuda_state_is_skipped_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    state = capture_rng_state()
    assert state["cuda"] is None
    expected = torch.rand(3)
    restore_rng_state({**state, "cuda": [torch.zeros(16, dtype=torch.uint8)]})
    assert torch.equal(torch.rand(3), expected)
