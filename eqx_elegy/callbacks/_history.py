"""`History`: the epoch logs of a fit, as Keras returns them."""

from __future__ import annotations

from typing import Any

from ._callback import Callback, Logs


class History(Callback):
    """Records each epoch's logs: `history` maps each log name to a list over epochs, and
    `epoch` lists the epoch numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch: list[int] = []
        self.history: dict[str, list[Any]] = {}

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
