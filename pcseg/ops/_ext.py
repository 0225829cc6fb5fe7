"""Loads ``pcseg._C`` on first use and says, per device, whether a compiled kernel can run."""

from __future__ import annotations

import functools
import importlib
import logging
import os

import torch

log = logging.getLogger(__name__)


@functools.cache
def _load() -> object | None:
    try:
        module = importlib.import_module("pcseg._C")
    except ImportError as error:
        log.debug("pcseg._C not importable, using PyTorch references: %s", error)
        return None
    importlib.import_module("pcseg.ops._registrations")
    log.debug("pcseg._C loaded (CUDA kernels: %s)", module.compiled_with_cuda())
    return module


def extension_available() -> bool:
    """True when the compiled extension imports."""
    return _load() is not None


def has_kernel(device: torch.device) -> bool:
    """True when a compiled kernel exists for ``device`` and references are not forced."""
    if os.environ.get("PCSEG_FORCE_REFERENCE", "0") == "1":
        return False
    module = _load()
    if module is None:
        return False
    if device.type == "cpu":
        return True
    return device.type == "cuda" and bool(module.compiled_with_cuda())
