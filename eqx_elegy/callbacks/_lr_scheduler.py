"""`LearningRateScheduler`: Keras' per-epoch learning-rate schedule, on an optimizer built
with `optax.inject_hyperparams`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ._callback import Callback, Logs
from ._reduce_lr import NO_LEARNING_RATE, learning_rates, require_learning_rate, with_learning_rates

if TYPE_CHECKING:
    from .._model import Model


def _takes_rate(schedule: Callable[..., Any]) -> bool:
    """Whether `schedule` takes `(epoch, lr)` (Keras' signature) rather than `(epoch)`."""
    try:
        inspect.signature(schedule).bind(0, 0.0)
    except TypeError:
        return False
    except ValueError:  # no signature to read (some builtins): Keras' signature
        return True
    return True


class LearningRateScheduler(Callback):
    """At the start of each epoch, set the learning rate to `schedule(epoch, lr)` (`lr` is
    the current rate; a schedule of `epoch` alone works too, as in Keras), and log the
    rate as `learning_rate` at the epoch's end. `verbose=1` prints each change.

    The optimizer must keep its learning rate in its state:
    `optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)`. The new rate is written
    into `states.optimizer_states`, so the compiled step is reused as it is: changing the
    rate never recompiles.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(
                "LearningRateScheduler: schedule must be a callable (epoch, lr) -> lr, got "
                f"{type(schedule).__name__}."
            )
        self.schedule = schedule
        self.verbose = verbose
        self._with_rate = _takes_rate(schedule)

    def set_model(self, model: Model) -> None:
        require_learning_rate(model, "LearningRateScheduler")  # before anything compiles
        super().set_model(model)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        states = self.model.states
        rates = learning_rates(states.optimizer_states)
        if not rates:
            raise ValueError(f"LearningRateScheduler: {NO_LEARNING_RATE}")
        value = self.schedule(epoch, rates[0]) if self._with_rate else self.schedule(epoch)
        if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
            raise ValueError(
                f"LearningRateScheduler: schedule must return a float, got {value!r} for "
                f"epoch {epoch}."
            )
        rate = float(value)
        self.set_states(
            states.update(
                optimizer_states=with_learning_rates(states.optimizer_states, lambda _: rate)
            )
        )
        if self.verbose > 0:
            print(
                f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {rate:.6g}."
            )

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if isinstance(logs, dict):
            logs["learning_rate"] = learning_rates(self.model.states.optimizer_states)[0]
