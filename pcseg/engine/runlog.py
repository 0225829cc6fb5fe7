"""Run metrics: one JSON object per line in ``metrics.jsonl`` and TensorBoard scalars."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from pcseg.data.formats.files import write_text


class RunLog:
    """Writes ``work_dir/metrics.jsonl`` and ``work_dir/tensorboard/`` (main process only).

    Each record is ``{"step", "split", "time", **values}``; lines are flushed as written, so a
    crashed run keeps everything it logged. Records past ``start_step`` (logged by a run that
    crashed after its last checkpoint, or that never wrote one) are dropped when the log is
    opened, so a resumed run does not log those steps twice.
    """

    def __init__(self, work_dir: Path, *, enabled: bool = True, start_step: int = 0) -> None:
        self.enabled = enabled
        self.path = Path(work_dir) / "metrics.jsonl"
        self.tensorboard_dir = Path(work_dir) / "tensorboard"
        self._writer = None
        self._stream = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: slow

            if self.path.is_file():
                kept = [r for r in read_metrics(self.path) if r["step"] <= start_step]
                text = "".join(json.dumps(record) + "\n" for record in kept)
                write_text(self.path, text, overwrite=True)
            self._writer = SummaryWriter(str(self.tensorboard_dir), purge_step=start_step + 1)
            self._stream = self.path.open("a", encoding="utf-8")

    def write(self, step: int, split: str, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "split": split, "time": time.time(), **values}
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()
        for key, value in values.items():
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if numeric and math.isfinite(value):
                self._writer.add_scalar(f"{split}/{key}", value, step)
        self._writer.flush()

    def close(self) -> None:
        if self.enabled:
            self._stream.close()
            self._writer.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file."""
    with Path(path).open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]
