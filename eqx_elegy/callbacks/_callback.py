"""The `Callback` base class with Keras' hooks, and `CallbackList` that fans them out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._model import Model

Logs = Mapping[str, Any]


class Callback:
    """Base class: override the hooks you need. `self.model` is the model being run and
    `self.params` holds `epochs`, `steps` and `verbose`.

    Batch hooks receive logs whose values are fetched from the device only when read, so a
    callback that ignores them costs nothing per step.
    """

    model: Model
    params: dict[str, Any]
    # During fit the model's states are brought up to date before each batch hook of a
    # callback that may read them. A callback whose batch hooks never read
    # `self.model.states` sets this to False and spares the loop that work per step.
    reads_states_per_batch: bool = True

    def __init__(self) -> None:
        self.params = {}

    def set_model(self, model: Model) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None: ...
    def on_train_end(self, logs: Logs | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_test_begin(self, logs: Logs | None = None) -> None: ...
    def on_test_end(self, logs: Logs | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_predict_begin(self, logs: Logs | None = None) -> None: ...
    def on_predict_end(self, logs: Logs | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...


_HOOKS = tuple(name for name in vars(Callback) if name.startswith("on_"))


class CallbackList(Callback):
    """Calls each hook on every callback, in order, skipping callbacks that do not
    override it (so an unused batch hook costs nothing per step)."""

    def __init__(self, callbacks: Iterable[Callback], model: Model, params: dict[str, Any]) -> None:
        super().__init__()
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(
                    f"callbacks must be elegy.callbacks.Callback instances, got "
                    f"{type(callback).__name__}."
                )
            callback.set_model(model)
            callback.set_params(params)
        self.set_model(model)
        self.set_params(params)
        for hook in _HOOKS:
            active = [
                getattr(cb, hook)
                for cb in self.callbacks
                if getattr(type(cb), hook) is not getattr(Callback, hook)
            ]
            object.__setattr__(self, hook, _fan_out(active))

    def wants(self, hook: str) -> bool:
        """Whether any callback overrides `hook`."""
        return any(getattr(type(cb), hook) is not getattr(Callback, hook) for cb in self.callbacks)

    def reads_states(self, hook: str) -> bool:
        """Whether a callback overriding `hook` may read the model's states there."""
        return any(
            getattr(type(cb), hook) is not getattr(Callback, hook) and cb.reads_states_per_batch
            for cb in self.callbacks
        )


def _fan_out(methods: list[Any]) -> Any:
    def call(*args: Any, **kwargs: Any) -> None:
        for method in methods:
            method(*args, **kwargs)

    return call
