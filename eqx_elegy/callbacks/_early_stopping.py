"""`EarlyStopping`: stop when a monitored log stops improving, optionally rewinding to the
best epoch's weights."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ._callback import Callback, Logs
from ._monitor import Monitor


def snapshot(tree: Any) -> Any:
    """A copy of the arrays in `tree` that survives the loop donating their buffers: a
    host copy where the whole array is addressable, a device copy otherwise (a shard of a
    multi-host array cannot be fetched whole)."""

    def copy(leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array):
            return leaf
        return np.array(leaf) if leaf.is_fully_addressable else leaf.copy()

    return jax.tree.map(copy, tree)


def restore(saved: Any, like: Any) -> Any:
    """`saved` (from `snapshot`) back on the devices, laid out as the arrays of `like`."""

    def put(value: Any, current: Any) -> Any:
        if not (isinstance(value, np.ndarray) and isinstance(current, jax.Array)):
            return value
        # Committed only where the loop's arrays are: a mix would make the step compile again.
        return jax.device_put(value, current.sharding if current.committed else None)

    return jax.tree.map(put, saved, like)


class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved for `patience` epochs.

    An epoch improves when the value beats the best so far by more than `min_delta` in the
    direction of `mode` ("min", "max", or "auto" from the log's name). With `baseline`,
    only an epoch that also beats the baseline resets the patience count (as in Keras). Epochs
    before `start_from_epoch` are ignored (a warm-up). The first epoch that counts never
    stops training (Keras stops only after epoch 0), and a NaN value never improves: a NaN
    first epoch starts the patience count, and the first finite value after it is the best
    so far (to stop as soon as the loss is NaN, use `TerminateOnNaN`). With `restore_best_weights`, the
    model's `net_params` and `net_states` are rewound at the end of training to those of
    the best epoch; they are copied when that epoch ends, since the loop reuses the
    buffers of the states it trains.

    After training, `stopped_epoch` is the epoch training stopped at (None if it ran to
    the end) and `best_epoch` the best one.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ):
        super().__init__()
        self.monitor = Monitor("EarlyStopping", monitor, mode, min_delta)
        _check_count("EarlyStopping", "patience", patience)
        _check_count("EarlyStopping", "start_from_epoch", start_from_epoch)
        if baseline is not None and not isinstance(baseline, int | float):
            raise TypeError(f"EarlyStopping: baseline must be a number or None, got {baseline!r}.")
        self.patience = patience
        self.verbose = verbose
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self._counted = 0  # epochs that counted so far in this fit
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_weights: Any = None
        self.stopped_epoch: int | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = self.monitor.value(logs, "early stopping is not checked on such epochs.")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # The first epoch that counts is the best so far, even if its value is NaN.
            self._keep(epoch)
        self.wait += 1
        self._counted += 1
        if self.monitor.improved(current, self.best):
            self.best = current
            self._keep(epoch)
            if self.baseline is None or self.monitor.improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and self._counted > 1:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def _keep(self, epoch: int) -> None:
        self.best_epoch = epoch
        if self.restore_best_weights:
            states = self.model.states
            self.best_weights = snapshot((states.net_params, states.net_states))

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch is not None and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_epoch is not None:
            if self.verbose:
                print(f"Restoring the weights of the best epoch, {self.best_epoch + 1}.")
            states = self.model.states
            net_params, net_states = restore(
                self.best_weights, (states.net_params, states.net_states)
            )
            self.set_states(states.update(net_params=net_params, net_states=net_states))


def _check_count(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{owner}: {name} must be an int >= 0, got {value!r}.")
