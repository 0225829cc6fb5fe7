"""Safe output for every writer: no half-written files after a crash, and no existing file is
replaced unless the caller asks for it (``overwrite=True``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: str | Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it onto ``path``.

    The temporary name keeps the suffix, since some writers (laspy: ``.laz``) choose the
    encoding from it. On failure the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes, *, overwrite: bool) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str, *, overwrite: bool) -> None:
    """Atomically write ``text`` to ``path``."""
    write_bytes(path, text.encode(), overwrite=overwrite)
