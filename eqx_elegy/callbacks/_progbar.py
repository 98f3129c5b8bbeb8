"""`ProgbarLogger`: progress that never makes the device wait.

Its batch-end hooks are throttled (`Callback.batch_end_interval`): the loop reads the
clock after each step and calls them only when a redraw is due, at most
`refresh_per_second` times a second, and at the last step of each epoch. Batch logs are
read (and so fetched from the device) only when the display redraws: one short wait for
the device per redraw, never one per step.

Drawing is kept cheap too: the line is one `rich.text.Text` built by hand (rich's
`Progress` lays out a table on every redraw, milliseconds each), and the live display
starts only when an epoch outlasts one refresh interval; a shorter epoch costs one printed
line.
"""

from __future__ import annotations

import atexit
import importlib.util
import math
import time
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.text import Text

from ._callback import Callback, Logs
from ._monitor import direction

_BAR_WIDTH = 30

# Live displays still running (a fit that raised never reaches its epoch's end); stopped
# at the next display on the same console, or when the interpreter exits, so that the
# terminal's cursor comes back.
_LIVE: weakref.WeakSet[Live] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for live in list(_LIVE):
        live.stop()


def format_value(value: Any) -> str:
    """A log value as Keras shows it: 4 decimals, or scientific notation when small."""
    number = float(value)
    return f"{number:.4f}" if abs(number) >= 1e-3 or number == 0 else f"{number:.4e}"


def format_members(name: str, values: Any) -> str:
    """A population's log (one value per member) in brief: the best member's value, the
    mean and the worst member's value. Best is the lowest for names that look like losses
    or errors, the highest for accuracies and the like; for other names the three are the
    lowest, the mean and the highest."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    with warnings.catch_warnings():  # members whose values are all NaN show nan
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high, mean = np.nanmin(values), np.nanmax(values), np.nanmean(values)
    best, worst = (high, low) if direction(name) == "max" else (low, high)
    return f"best {format_value(best)}, mean {format_value(mean)}, worst {format_value(worst)}"


def format_logs(logs: Mapping[str, Any]) -> str:
    return " - ".join(
        f"{name}: {format_value(value) if np.ndim(value) == 0 else format_members(name, value)}"
        for name, value in logs.items()
    )


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-:--:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _can_redraw(console: Console) -> bool:
    """Whether a live bar can redraw in place: a real terminal, or Jupyter with the
    widgets rich needs; otherwise (a file, a pipe, CI) progress is printed as lines."""
    if console.is_jupyter:
        return importlib.util.find_spec("ipywidgets") is not None
    return console.is_terminal and not console.is_dumb_terminal


class ProgbarLogger(Callback):
    """Progress for fit, evaluate and predict.

    verbose=1: a bar per epoch with the steps done, elapsed time, ETA, steps/s and the
    latest logs, redrawn at most `refresh_per_second` times a second, in a terminal or in
    Jupyter (with ipywidgets); where the output cannot redraw (a file, a pipe, CI) it
    prints one line per epoch instead. verbose=2: one line per epoch. verbose=0: nothing.
    `console` is the rich console to draw on (default: a new `rich.console.Console()`);
    passing a ProgbarLogger in `callbacks` replaces the default one.
    """

    reads_states_per_batch = False  # only the batch logs

    def __init__(self, refresh_per_second: float = 4.0, console: Console | None = None):
        super().__init__()
        if not isinstance(refresh_per_second, int | float) or not refresh_per_second > 0:
            raise ValueError(
                f"ProgbarLogger: refresh_per_second must be > 0, got {refresh_per_second!r}."
            )
        self.interval = 1.0 / refresh_per_second
        # The loop calls the batch-end hooks only about as often as the bar redraws.
        self.batch_end_interval = self.interval
        self.console = console or Console()
        self._live: Live | None = None
        self._bar = False
        self._title = ""
        self._total: int | None = None
        self._start = 0.0
        self._next = math.inf
        self._seen = 0

    @property
    def _verbose(self) -> int:
        # In a multi-process run only process 0 shows progress.
        return int(self.params.get("verbose", 1)) if self.is_main_process() else 0

    def _open(self, title: str) -> None:
        self._stop()
        self._title = title
        total = self.params.get("steps")
        self._total = int(total) if total else None
        self._seen = 0
        self._start = time.perf_counter()
        self._bar = self._verbose == 1 and _can_redraw(self.console)
        # Without a bar, nothing happens between an epoch's start and end.
        self._next = self._start + self.interval if self._bar else math.inf

    def _step(self, batch: int, logs: Logs | None = None) -> None:
        # The hot path: called after every step.
        self._seen = batch + 1
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + self.interval
        line = self._line(now, logs, final=False)
        line.no_wrap, line.overflow = True, "ellipsis"  # one row that redraws in place
        self._draw(line)

    def _draw(self, line: Text) -> None:
        if self._live is None:
            for stale in [live for live in _LIVE if live.console is self.console]:
                stale.stop()
                _LIVE.discard(stale)
            self._live = Live(
                line,
                console=self.console,
                auto_refresh=False,  # no drawing thread: it would compete with the steps
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
            _LIVE.add(self._live)
        self._live.update(line, refresh=True)

    def _line(self, now: float, logs: Logs | None, final: bool) -> Text:
        elapsed = now - self._start
        seen, total = self._seen, self._total
        line = Text(self._title)
        if self._bar:
            line.append(" ")
            done = _BAR_WIDTH if total is None and final else 0
            if total:
                done = min(_BAR_WIDTH, _BAR_WIDTH * seen // total)
            line.append("━" * done, style="bar.complete" if done < _BAR_WIDTH else "bar.finished")
            line.append("━" * (_BAR_WIDTH - done), style="bar.back")
            line.append(f" {seen}/{total or '?'} {_clock(elapsed)}")
            if not final:
                rate = seen / max(elapsed, 1e-9)
                eta = (total - seen) / rate if total and rate > 0 else math.inf
                line.append(f" ETA {_clock(eta)} {rate:.1f} steps/s")
        else:
            line.append(f" - {seen}/{total or seen} steps - {elapsed:.1f}s")
        if final and seen:
            line.append(f" - {1e3 * elapsed / seen:.1f}ms/step")
        text = format_logs(logs or {})
        if text:
            line.append(f" - {text}")
        return line

    def _close(self, logs: Logs | None) -> None:
        if self._verbose not in (1, 2):
            return
        line = self._line(time.perf_counter(), logs, final=True)
        if self._live is not None:
            self._live.update(line)  # drawn once more as the display stops
            self._stop()
        else:
            self.console.print(line, soft_wrap=True)
        self._next = math.inf

    def _stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            _LIVE.discard(self._live)
            self._live = None

    @property
    def _in_fit(self) -> bool:
        return "epochs" in self.params

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._open(f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}")

    on_train_batch_end = _step

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._close(logs)

    def on_test_begin(self, logs: Logs | None = None) -> None:
        if not self._in_fit:
            self._open("Evaluate")

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if not self._in_fit:
            self._step(batch, logs)

    def on_test_end(self, logs: Logs | None = None) -> None:
        if not self._in_fit:
            self._close(logs)

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        self._open("Predict")

    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._step(batch, None)

    def on_predict_end(self, logs: Logs | None = None) -> None:
        self._close(None)
