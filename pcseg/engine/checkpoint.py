"""Crash-safe checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and Python scalars/containers. Writing goes through a
temporary file in the same directory that is fsync'd and renamed, so a crash at any moment
leaves either the previous file or the new one, never a partial one. Loading checks the CRC of
every record in the zip container before unpickling, and never unpickles arbitrary objects:
a checkpoint that needs them is refused rather than trusted.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcseg.data.formats.files import atomic_output

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "CheckpointManager",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "pcseg-checkpoint-1"

logger = logging.getLogger(__name__)

# What the weights-only unpickler accepts by default. Exact types, not isinstance: numpy
# scalars subclass float/int and would pass an isinstance check, then fail at load time.
# OrderedDict/Size/device are beyond the bare minimum because ``state_dict()`` and shapes
# produce them and the unpickler allows them.
_SCALARS = (str, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)
_MAPPINGS = (dict, OrderedDict)
_SEQUENCES = (list, tuple)
_TENSORS = (torch.Tensor, torch.nn.Parameter)
_STEP_FILE = re.compile(r"step_(\d{8,})\.pth")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, damaged or not a checkpoint this code may load."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (plus the format tag) to ``path``.

    Args:
        path: Destination file; its directory is created if needed. An existing file is
            replaced only once the new one is completely on disk.
        state: Dict of tensors, dtypes and plain Python values (dict/list/tuple/str/int/
            float/bool/None), nested arbitrarily.

    Raises:
        TypeError: ``state`` holds a value ``torch.load(weights_only=True)`` would refuse
            (numpy arrays and scalars included); the message names its key path.
        ValueError: ``state`` already carries a different ``"format"`` entry.
    """
    if not isinstance(state, dict):
        raise TypeError(f"state: expected a dict, got {type(state).__name__}")
    _check_weights_only(state, "state", set())
    if state.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
        raise ValueError(f"state['format'] is reserved for {CHECKPOINT_FORMAT!r}")
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        torch.save({**state, "format": CHECKPOINT_FORMAT}, tmp)
    # The rename itself lives in the directory entry; without this a power loss can
    # resurrect the old file or leave none at all.
    _fsync_directory(path.parent)


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Verify and load a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: Checkpoint file.
        map_location: Device the tensors are loaded onto.

    Returns:
        The saved state, without the ``"format"`` entry.

    Raises:
        CheckpointError: The file is missing, truncated or corrupt, contains objects other
            than weights, or is not in :data:`CHECKPOINT_FORMAT`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    _verify_container(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(_refusal(path, exc)) from exc
    except RuntimeError as exc:
        if "weights only" not in str(exc).lower():
            raise CheckpointError(f"{path}: cannot be loaded: {exc}") from exc
        raise CheckpointError(_refusal(path, exc)) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path}: not a checkpoint in format {CHECKPOINT_FORMAT!r} (found {found!r})"
        )
    return {key: value for key, value in state.items() if key != "format"}


class CheckpointManager:
    """Numbered checkpoints ``step_XXXXXXXX.pth`` in one directory, keeping the newest few.

    Args:
        directory: Where the checkpoints live; created on the first save.
        keep: How many of the newest checkpoints survive each save (at least 1).
    """

    def __init__(self, directory: str | Path, *, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write the checkpoint for ``step``, then delete all but the newest ``keep``.

        Returns:
            Path of the written file.
        """
        if step < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        path = self.directory / f"step_{step:08d}.pth"
        save_checkpoint(path, state)
        # Never delete what was just written, even if stale higher steps linger (e.g. after
        # resuming from an older checkpoint because the newest one was damaged).
        for old in self.paths()[: -self.keep]:
            if old != path:
                old.unlink(missing_ok=True)
        return path

    def paths(self) -> list[Path]:
        """Checkpoint files in the directory, oldest (lowest step) first."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            match = _STEP_FILE.fullmatch(entry.name)
            if match and entry.is_file():
                found.append((int(match.group(1)), entry))
        return [entry for _, entry in sorted(found)]

    def latest_valid(self) -> tuple[Path, dict[str, Any]] | None:
        """Load the newest checkpoint that verifies, skipping damaged ones with a warning.

        Returns:
            ``(path, state)``, or None when no checkpoint loads.
        """
        for path in reversed(self.paths()):
            try:
                return path, load_checkpoint(path)
            except CheckpointError as exc:
                logger.warning("skipping checkpoint: %s", exc)
        return None


def capture_rng_state() -> dict[str, Any]:
    """Snapshot the Python, numpy (legacy global), torch CPU and CUDA generators.

    Returns:
        A dict that passes :func:`save_checkpoint`'s type check; ``"cuda"`` is None when
        CUDA is unavailable.
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": (int(version), tuple(int(x) for x in internal), gauss_next),
        "numpy": (
            str(name),
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore generators from :func:`capture_rng_state`'s output.

    CUDA state is skipped when CUDA is unavailable here; with fewer devices than were
    recorded, only the devices present are restored.
    """
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = np.asarray(keys.cpu().numpy() if torch.is_tensor(keys) else keys, dtype=np.int64)
    np.random.set_state((str(name), keys.astype(np.uint32), int(pos), int(has_gauss), cached))
    # set_rng_state only takes a CPU ByteTensor; map_location may have moved it.
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), device)


def _check_weights_only(value: Any, where: str, active: set[int]) -> None:
    """Raise TypeError naming ``where`` if ``value`` is not weights-only loadable."""
    kind = type(value)
    if kind in _SCALARS or kind in _TENSORS:
        return
    if kind not in _MAPPINGS and kind not in _SEQUENCES:
        name = f"{kind.__module__}.{kind.__qualname__}"
        hint = "; convert numpy values with torch.from_numpy or .item()" if "numpy" in name else ""
        raise TypeError(f"{where}: {name} cannot be loaded with weights_only=True{hint}")
    if id(value) in active:
        raise TypeError(f"{where}: container refers to itself")
    active.add(id(value))
    if kind in _MAPPINGS:
        for key, item in value.items():
            _check_weights_only(key, f"{where} (key {key!r})", active)
            _check_weights_only(item, f"{where}[{key!r}]", active)
    else:
        for index, item in enumerate(value):
            _check_weights_only(item, f"{where}[{index}]", active)
    active.discard(id(value))


def _verify_container(path: Path) -> None:
    """Check the zip structure and every record's CRC32 before anything is unpickled."""
    problem = None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            problem = f"CRC mismatch in record {bad!r}"
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, ValueError) as exc:
        problem = str(exc) or type(exc).__name__
    if problem is not None:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({problem})")


def _refusal(path: Path, exc: Exception) -> str:
    """Message for a file the weights-only unpickler rejected, with its one useful line."""
    detail = [line for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line]
    reason = f" ({detail[0].strip()})" if detail else ""
    return f"{path}: refused: the file contains objects other than weights{reason}"


def _fsync_directory(directory: Path) -> None:
    """Persist a rename in ``directory``; a no-op where directories cannot be opened."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
