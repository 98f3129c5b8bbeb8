"""`ProgbarLogger`: progress that never makes the device wait.

Batch logs are read (and so fetched from the device) only when the display refreshes,
at most `refresh_per_second` times a second, never once per step.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ._callback import Callback, Logs


def _format(logs: Mapping[str, Any]) -> str:
    return " - ".join(f"{k}: {float(v):.4g}" for k, v in logs.items())


class ProgbarLogger(Callback):
    """verbose=1: a rich progress bar per epoch with steps/s, ETA and the latest logs
    (plain lines when the output is not a terminal); verbose=2: one line per epoch."""

    reads_states_per_batch = False

    def __init__(self, refresh_per_second: float = 4.0, console: Console | None = None):
        super().__init__()
        self.interval = 1.0 / refresh_per_second
        self.console = console or Console()
        self._progress: Progress | None = None
        self._task: Any = None
        self._last = 0.0
        self._start = 0.0
        self._seen = 0

    @property
    def _verbose(self) -> int:
        return int(self.params.get("verbose", 1))

    def _open(self, title: str) -> None:
        self._start = self._last = time.perf_counter()
        self._seen = 0
        if self._verbose != 1 or not self.console.is_terminal:
            return
        self._progress = Progress(
            TextColumn(title),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[logs]}"),
            console=self.console,
            auto_refresh=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            title, total=self.params.get("steps"), rate="", logs=""
        )

    def _step(self, batch: int, logs: Logs | None) -> None:
        self._seen = batch + 1
        now = time.perf_counter()
        if self._progress is None or now - self._last < self.interval:
            return
        self._last = now
        rate = self._seen / max(now - self._start, 1e-9)
        self._progress.update(
            self._task, completed=self._seen, rate=f"{rate:.1f} steps/s", logs=_format(logs or {})
        )
        self._progress.refresh()

    def _close(self, prefix: str, logs: Logs | None) -> None:
        elapsed = time.perf_counter() - self._start
        if self._progress is not None:
            self._progress.update(self._task, completed=self._seen, logs=_format(logs or {}))
            self._progress.refresh()
            self._progress.stop()
            self._progress = None
        elif self._verbose in (1, 2):
            self.console.print(
                f"{prefix} - {elapsed:.1f}s - {_format(logs or {})}", highlight=False
            )

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}"
        self._open(self._epoch)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._step(batch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._close(self._epoch, logs)

    def on_test_begin(self, logs: Logs | None = None) -> None:
        if self._progress is None and "epochs" not in self.params:
            self._open("Evaluate")

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if "epochs" not in self.params:
            self._step(batch, logs)

    def on_test_end(self, logs: Logs | None = None) -> None:
        if "epochs" not in self.params:
            self._close("Evaluate", logs)

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        self._open("Predict")

    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._step(batch, None)

    def on_predict_end(self, logs: Logs | None = None) -> None:
        self._close("Predict", {})
