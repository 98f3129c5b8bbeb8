"""`ReduceLROnPlateau`, and reading or changing the learning rate held in the state of an
optimizer built with `optax.inject_hyperparams`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import optax

from ._callback import Callback, Logs
from ._monitor import Monitor

if TYPE_CHECKING:
    from .._model import Model

_INJECTED = (optax.InjectStatefulHyperparamsState, optax.InjectHyperparamsState)


def _has_rate(node: Any) -> bool:
    return isinstance(node, _INJECTED) and "learning_rate" in node.hyperparams


def learning_rates(optimizer_states: Any) -> list[float]:
    """The learning rates in an optimizer state (one per `optax.inject_hyperparams`
    optimizer inside it; empty if there is none). Reading them waits for the device."""
    found = jax.tree.leaves(optimizer_states, is_leaf=_has_rate)
    return [
        float(np.asarray(node.hyperparams["learning_rate"])) for node in found if _has_rate(node)
    ]


def learning_rate_log(optimizer_states: Any) -> float | np.ndarray | None:
    """The first learning rate in an optimizer state, as the epoch logs carry it: a float,
    or, for a `Population`'s stacked states, an array with one rate per member; None if
    the optimizer injects none."""
    found = [n for n in jax.tree.leaves(optimizer_states, is_leaf=_has_rate) if _has_rate(n)]
    if not found:
        return None
    rate = np.asarray(found[0].hyperparams["learning_rate"])
    return float(rate) if rate.ndim == 0 else rate


def with_learning_rates(optimizer_states: Any, change: Callable[[float], float]) -> Any:
    """`optimizer_states` with each learning rate `lr` replaced by `change(lr)`.

    The new value is a new array with the dtype, shape and placement of the old one, so
    the compiled step takes it without compiling again, and the next step uses it (optax
    reads a constant hyperparameter from its state)."""

    def replace(node: Any) -> Any:
        if not _has_rate(node):
            return node
        old = node.hyperparams["learning_rate"]
        value = change(float(np.asarray(old)))
        # full_like keeps the dtype, weak type, placement and commitment: a committed array
        # where the step had uncommitted ones would make the step compile again.
        new: Any
        if isinstance(old, jax.Array):
            new = jax.lax.full_like(old, value)
        else:
            new = np.full(np.shape(old), value, dtype=np.asarray(old).dtype)
        return node._replace(hyperparams={**node.hyperparams, "learning_rate": new})

    return jax.tree.map(replace, optimizer_states, is_leaf=_has_rate)


NO_LEARNING_RATE = (
    "the optimizer state holds no learning rate to change. Build the optimizer with "
    "optax.inject_hyperparams, e.g. optimizer=optax.inject_hyperparams(optax.adam)"
    "(learning_rate=1e-3), so that its learning rate lives in the optimizer state "
    "(a schedule passed as learning_rate is recomputed every step and cannot be changed)."
)


def has_learning_rate(optimizer_states: Any) -> bool:
    """Whether an optimizer state (concrete or abstract) holds an injected learning rate."""
    return any(_has_rate(node) for node in jax.tree.leaves(optimizer_states, is_leaf=_has_rate))


def require_learning_rate(model: Model, who: str) -> None:
    """Raise the error that says how to inject a learning rate, when `model`'s optimizer
    state (or, before it exists, the state its optimizer would build, traced abstractly:
    nothing compiles) has none. A model whose optimizer state cannot be known yet is
    checked when training begins."""
    states = model.states
    optimizer_states = None if states is None else states.optimizer_states
    if optimizer_states is None:
        params = None if states is None else states.net_params
        if model.optimizer is None or params is None:
            return
        with jax.numpy_dtype_promotion("standard"):
            optimizer_states = jax.eval_shape(model.optimizer.init, params)
    if not has_learning_rate(optimizer_states):
        raise ValueError(f"{who}: {NO_LEARNING_RATE}")


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved (by more than
    `min_delta`) for `patience` epochs, then wait `cooldown` epochs before counting again;
    never below `min_lr`.

    The optimizer must keep its learning rate in its state:
    `optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)`. The new rate is written
    into `states.optimizer_states` (every `inject_hyperparams` state in it is changed),
    and the next training step uses it without recompiling.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ):
        super().__init__()
        if not isinstance(factor, int | float) or not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor!r}.")
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"ReduceLROnPlateau: {name} must be an int >= 0, got {value!r}.")
        if not isinstance(min_lr, int | float) or min_lr < 0:
            raise ValueError(f"ReduceLROnPlateau: min_lr must be a number >= 0, got {min_lr!r}.")
        self.monitor = Monitor("ReduceLROnPlateau", monitor, mode, min_delta)
        self.factor = float(factor)
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.min_lr = float(min_lr)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.cooldown_counter = 0
        self.best: float | None = None

    def set_model(self, model: Model) -> None:
        require_learning_rate(model, "ReduceLROnPlateau")  # before anything compiles
        super().set_model(model)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if not learning_rates(self.model.states.optimizer_states):
            raise ValueError(f"ReduceLROnPlateau: {NO_LEARNING_RATE}")
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if isinstance(logs, dict):  # the rate this epoch trained with, as Keras logs it
            logs["learning_rate"] = learning_rates(self.model.states.optimizer_states)[0]
        current = self.monitor.value(logs, "the learning rate is not changed on such epochs.")
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.monitor.improved(current, self.best):
            self.best = current
            self.wait = 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        states = self.model.states
        if max(learning_rates(states.optimizer_states)) <= self.min_lr:
            return
        optimizer_states = with_learning_rates(
            states.optimizer_states, lambda lr: max(lr * self.factor, self.min_lr)
        )
        self.set_states(states.update(optimizer_states=optimizer_states))
        if self.verbose:
            new = learning_rates(optimizer_states)
            print(f"Epoch {epoch + 1}: ReduceLROnPlateau set the learning rate to {new[0]:.4g}.")
        self.cooldown_counter = self.cooldown
        self.wait = 0
