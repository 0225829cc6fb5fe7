"""ScanNet Data-Efficient "limited annotation" files (``tasks/points/points20`` ... ``points200``).

Each is a ``torch.save`` pickle (legacy, non-zip format) of ``{scene_id: int64 ndarray}``: the
indices of the labelled vertices of each train scene's ``_vh_clean_2.ply``. A pickle can run
code when it is loaded, so these are read with ``torch.load(weights_only=True)`` and an explicit
allow-list of the few numpy globals that rebuild integer arrays.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcseg.data.formats.validation import DataFormatError


def check_indices(values: Any, *, what: str) -> np.ndarray:
    """1-D, integer, non-negative, unique indices -> a sorted int64 copy (ValueError otherwise)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what}: indices must be 1-D, got shape {array.shape}")
    if array.size == 0:
        return np.empty(0, np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{what}: indices must be integers, got {array.dtype}")
    if array.dtype.kind == "u" and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{what}: index {array.max()} does not fit in int64")
    array = np.sort(array.astype(np.int64))
    if array[0] < 0:
        raise ValueError(f"{what}: negative index {array[0]}")
    repeated = array[1:][array[1:] == array[:-1]]
    if len(repeated):
        raise ValueError(f"{what}: index {repeated[0]} appears more than once")
    return array


def _la_safe_globals() -> list[Any]:
    """What unpickling a dict of numpy int arrays needs, and nothing else.

    A pickled array refers to numpy's array rebuild function by the module path of the numpy
    that wrote it (``numpy.core`` in 1.x, ``numpy._core`` in 2.x); both names map to this
    numpy's function. Rebuilding the dtype sets its state on its class (``Int64DType``), so
    that class must be allowed too; only int32 and int64 dtypes are.
    """
    reconstruct = np.zeros(0).__reduce__()[0]
    return [
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        type(np.dtype(np.int32)),
        type(np.dtype(np.int64)),
    ]


def _refusal(error: Exception) -> str:
    """The reason in torch's refusal message, without its generic advice."""
    parts = [part.strip() for part in re.split(r"\n\s*\n", str(error)) if part.strip()]
    advice = ("Weights only load failed", "Check the documentation", "Please file an issue")
    reasons = [part for part in parts if not part.startswith(advice)]
    return " ".join(reasons) or (parts[0] if parts else type(error).__name__)


def read_limited_annotation(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ScanNet limited-annotation file (``points20`` ...): scene id -> sorted indices.

    The files are ``torch.save`` pickles (legacy, non-zip) of ``{scene_id: int64 ndarray}``.
    They are loaded with ``torch.load(weights_only=True)`` and only the numpy globals of
    :func:`_la_safe_globals` allowed, so a file can build arrays but never run code. Values
    may also be torch tensors or lists of ints.

    Raises:
        DataFormatError: missing, refused or malformed file (naming it): not a dict of str to
            1-D integer indices, or indices negative or repeated.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "limited-annotation file not found")
    try:
        with torch.serialization.safe_globals(_la_safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise DataFormatError(path, f"refused to unpickle: {_refusal(error)}") from None
    except Exception as error:  # whatever a malformed file makes the loader raise
        raise DataFormatError(path, f"not a readable torch.save file: {error}") from None
    if not isinstance(data, dict):
        raise DataFormatError(path, f"expected a dict of scene id -> indices, got {type(data)}")
    table: dict[str, np.ndarray] = {}
    for scene, values in data.items():
        if not isinstance(scene, str):
            raise DataFormatError(path, f"scene ids must be strings, got {scene!r}")
        if isinstance(values, torch.Tensor):
            values = values.numpy()
        elif isinstance(values, list) and all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values
        ):
            try:
                values = np.array(values, dtype=np.int64)
            except OverflowError:
                raise DataFormatError(path, f"scene {scene!r}: index beyond int64") from None
        elif not isinstance(values, np.ndarray):
            raise DataFormatError(path, f"scene {scene!r}: expected indices, got {type(values)}")
        try:
            table[scene] = check_indices(values, what=f"scene {scene!r}")
        except ValueError as error:
            raise DataFormatError(path, str(error)) from None
    return table
