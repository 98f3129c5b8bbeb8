"""`TerminateOnNaN`: stop training at the first step whose loss is NaN or infinite."""

from __future__ import annotations

import math

from ._callback import Callback, Logs


class TerminateOnNaN(Callback):
    """Stop training as soon as a training step's `loss` is NaN or infinite.

    It reads the loss of every step, so the host waits for each step to finish: the
    price of stopping at the first bad step. `stopped_batch` and `stopped_epoch` record
    where it stopped (None if it never did).
    """

    reads_states_per_batch = False  # only the batch logs

    def __init__(self) -> None:
        super().__init__()
        self.stopped_epoch: int | None = None
        self.stopped_batch: int | None = None
        self._epoch = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.stopped_epoch = self.stopped_batch = None

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self.stopped_batch is not None or logs is None or "loss" not in logs:
            return
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            print(f"Epoch {self._epoch + 1}, batch {batch}: invalid loss {loss}, stopping.")
            self.stopped_epoch, self.stopped_batch = self._epoch, batch
            self.model.stop_training = True
