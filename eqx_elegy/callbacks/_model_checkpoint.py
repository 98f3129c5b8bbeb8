"""`ModelCheckpoint`: save the model during training, every epoch, every N steps, or only
when a monitored log improves."""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from typing import Any

from ._callback import Callback, Logs
from ._files import check_writable
from ._monitor import Monitor


class ModelCheckpoint(Callback):
    """Save the model with `model.save` (a directory, written atomically) while it trains.

    `filepath` may hold format fields filled from the epoch (`{epoch}`, counted from 1),
    the batch (`{batch}`, for step-wise saves) and the logs, e.g.
    `"ckpt/epoch{epoch:02d}-{val_loss:.2f}"`; a field that is not a log is an error.
    `save_freq="epoch"` saves at the end of each epoch; an int N saves every N training
    steps (with `steps_per_execution` > 1, the states saved are those at the end of the
    compiled chunk holding that step). With `save_best_only`, a save happens only when
    `monitor` improves on the best value so far (direction from `mode`; starting from
    `initial_value_threshold` if given). `save_weights_only` saves the network's parameters
    and states (`net_params`, `net_states`) rather than all the states.

    Each save is a `model.save` directory (load it with `model.load`) whose manifest's
    metadata records `epoch` (counted from 1; after an epoch-end save, the
    `initial_epoch` to resume from), `batch` (for step-wise saves) and the logs.
    """

    reads_states_per_batch = False  # step-wise saves read them through self.model

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: int | str = "epoch",
        initial_value_threshold: float | None = None,
    ):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.fields = _fields(self.filepath)
        if save_freq != "epoch" and (
            isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1
        ):
            raise ValueError(
                f"ModelCheckpoint: save_freq must be 'epoch' or an int >= 1 (steps), got "
                f"{save_freq!r}."
            )
        self.monitor = Monitor("ModelCheckpoint", monitor, mode) if save_best_only else None
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self.best = None if initial_value_threshold is None else float(initial_value_threshold)
        self._every = save_freq if isinstance(save_freq, int) else None
        if self._every is not None:
            # Only then does it have a batch hook, so epoch-wise saving costs nothing per step.
            self.on_train_batch_end = self._batch_end  # type: ignore[method-assign]
        self._epoch = 0
        self._since_save = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        # The directory part before any format field must exist or be creatable.
        directory = os.path.dirname(self.filepath.split("{", 1)[0])
        check_writable("ModelCheckpoint", "filepath", directory or ".")
        self._since_save = 0

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def _batch_end(self, batch: int, logs: Logs | None = None) -> None:
        assert self._every is not None
        self._since_save += 1
        if self._since_save >= self._every:
            self._since_save = 0
            self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _save(self, epoch: int, batch: int | None, logs: Logs | None) -> None:
        if self.monitor is not None:
            current = self.monitor.value(logs, "nothing is saved on such steps.")
            if current is None:
                return
            if not self.monitor.improved(current, self.best):
                if self.verbose and self.is_main_process():
                    print(f"Epoch {epoch + 1}: {self.monitor.name} did not improve on {self.best}.")
                return
            self.best = current
        values = {name: float(value) for name, value in (logs or {}).items()}
        path = self.format_path(epoch, batch, values)
        if self.verbose and self.is_main_process():
            print(f"Epoch {epoch + 1}: saving the model to {path}")
        metadata = {"epoch": epoch + 1, "batch": None if batch is None else batch + 1}
        self.model.save(
            path, weights_only=self.save_weights_only, metadata={**metadata, "logs": values}
        )

    def format_path(self, epoch: int, batch: int | None, logs: Mapping[str, Any]) -> str:
        """`filepath` with its fields filled from the epoch (from 1), batch and logs."""
        values: dict[str, Any] = dict(logs)
        values["epoch"] = epoch + 1
        if batch is not None:
            values["batch"] = batch + 1
        missing = [field for field in self.fields if field not in values]
        if missing:
            raise ValueError(
                f"ModelCheckpoint: filepath {self.filepath!r} uses {{{missing[0]}}}, which is "
                f"not a log of this fit; available: {', '.join(sorted(values))}."
            )
        return self.filepath.format(**values)


def _fields(filepath: str) -> list[str]:
    """The names of the format fields in `filepath`, checked to be names (not positions)."""
    try:
        parsed = list(string.Formatter().parse(filepath))
    except ValueError as error:
        raise ValueError(
            f"ModelCheckpoint: filepath {filepath!r} is not a valid format string ({error}); "
            "write fields as {epoch} or {val_loss:.2f}, and braces as {{ }}."
        ) from error
    fields = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = field.split(".", 1)[0].split("[", 1)[0]
        if not name.isidentifier():
            raise ValueError(
                f"ModelCheckpoint: filepath {filepath!r} has the field {{{field}}}; fields must "
                "name a log or epoch/batch, e.g. {epoch} or {val_loss:.2f}."
            )
        fields.append(name)
    return fields
