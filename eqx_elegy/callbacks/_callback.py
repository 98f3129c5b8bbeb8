"""The `Callback` base class with Keras' hooks, and `CallbackList` that fans them out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self

from .._engine import engine
from .._states import States
from .._strategy import is_main_process, strategy_of

if TYPE_CHECKING:
    from .._model import Model

Logs = Mapping[str, Any]


class Callback:
    """Base class: override the hooks you need. `self.params` holds `epochs`, `steps` and
    `verbose`.

    The callback's view of the run (see docs/callbacks.md):

    - `self.model`: the model being run. During `fit` its `states` are brought up to date
      when this property is read (Keras' approach on JAX): reading it after a compiled
      step costs about as much as a small model's step, once; not reading it costs
      nothing.
    - `self.set_states(states)`: replace the model's states; training continues from them.
    - `self.resume_at(epoch, step)`: in `on_train_begin`, start this fit at that point.
    - `self.is_main_process()`: whether this process writes files and output.
    - Saving with metadata: `self.model.save(path, metadata={...})`.

    Batch hooks receive logs whose values are fetched from the device only when read, so a
    callback that ignores them costs nothing per step.
    """

    params: dict[str, Any]
    # After a `Population.fit`, a callback that acts on each member on its own
    # (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, TerminateOnNaN) holds its copies
    # here, one per member in member order (e.g. `early_stopping.members[2].stopped_epoch`).
    members: list[Self]
    # Whether the batch hooks may read the model's states by some other way than
    # `self.model` (e.g. a function closing over the model, as with LambdaCallback): then
    # the loop stores them on the model before each of those hooks, whether they are read
    # or not (rebuilding the `States` pytree costs about as much as a small model's step).
    # A callback whose batch hooks read states only through `self.model`, or not at all,
    # sets this to False: the states are then stored only when `self.model` is read.
    reads_states_per_batch: bool = True
    # Seconds between two calls of this callback's batch-end hooks; 0 calls them after
    # every step. A display that redraws a few times a second sets its refresh interval:
    # the loop then calls it at most that often (with the latest step's index and logs)
    # and at each epoch's or evaluation's last step, so that it costs nothing per step.
    batch_end_interval: float = 0.0

    def __init__(self) -> None:
        self.params = {}

    def set_model(self, model: Model) -> None:
        self._model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    @property
    def model(self) -> Model:
        """The model this callback runs with, its `states` up to date."""
        model = self._attached()
        engine(model).sync()
        return model

    @model.setter
    def model(self, model: Model) -> None:
        self.set_model(model)

    def set_states(self, states: States) -> None:
        """Make `states` the model's states (e.g. restored weights, or an optimizer state
        with a new learning rate). In `fit` the next step starts from them; their
        structure, shapes and dtypes should match the current states, or the step
        compiles again."""
        if not isinstance(states, States):
            raise TypeError(
                f"{type(self).__name__}.set_states takes elegy.States (e.g. "
                f"self.model.states.update(...)), got {type(states).__name__}."
            )
        engine(self._attached()).commit(states)

    def resume_at(self, epoch: int, step: int = 0) -> None:
        """Start the `fit` that is beginning at step `step` of epoch `epoch` instead of at
        its `initial_epoch`, as if the steps before had run (the model's states should be
        those they left, e.g. loaded from a backup). Call it in `on_train_begin`; the
        batches, their order and the random keys from that point on are those an
        uninterrupted fit would have used."""
        for name, value in (("epoch", epoch), ("step", step)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"{type(self).__name__}.resume_at: {name} must be an int >= 0, got {value!r}."
                )
        engine(self._attached()).resume_at = (epoch, step)

    def is_main_process(self) -> bool:
        """Whether this process is the one that writes files and progress output (the
        model's strategy decides; always True with one process). Before the callback has a
        model (its hooks called by hand), process 0 is."""
        model: Model | None = getattr(self, "_model", None)
        return is_main_process() if model is None else strategy_of(model).is_main_process()

    def _attached(self) -> Model:
        model: Model | None = getattr(self, "_model", None)
        if model is None:
            raise AttributeError(
                f"{type(self).__name__} has no model yet: fit, evaluate and predict give a "
                "callback its model before calling its first hook."
            )
        return model

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


HOOKS = tuple(name for name in vars(Callback) if name.startswith("on_"))


def as_callbacks(callbacks: Any) -> list[Callback]:
    """The `callbacks=` argument of fit/evaluate/predict as a list: None, one callback (as
    Keras 3 takes it), or a list or tuple of them (nested ones flattened, as in Keras).
    Anything else is a TypeError that says what to pass."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, list | tuple):
        return [_one(callbacks, "callbacks")]
    found: list[Callback] = []
    for i, callback in enumerate(callbacks):
        if isinstance(callback, list | tuple):
            found.extend(as_callbacks(callback))
        else:
            found.append(_one(callback, f"callbacks[{i}]"))
    return found


def _one(callback: Any, where: str) -> Callback:
    if isinstance(callback, Callback):
        return callback
    if isinstance(callback, type) and issubclass(callback, Callback):
        raise TypeError(
            f"{where} is the class {callback.__name__}, not a callback: pass an instance, "
            f"e.g. callbacks=[{callback.__name__}()]."
        )
    what = f"{type(callback).__name__} {callback!r}"
    if len(what) > 80:
        what = what[:77] + "..."
    raise TypeError(
        f"{where} is {what}, not an elegy.callbacks.Callback: pass a list of callbacks, "
        "e.g. callbacks=[EarlyStopping()]; to call a function, wrap it in LambdaCallback "
        "(e.g. LambdaCallback(on_epoch_end=fn))."
    )


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
        self._throttled: dict[str, Throttled] = {}
        for hook in HOOKS:
            every = [cb for cb in self.callbacks if _every_step(cb, hook)]
            object.__setattr__(self, hook, _fan_out([getattr(cb, hook) for cb in every]))
            sparse = [cb for cb in self.callbacks if overrides(cb, hook) and cb not in every]
            if sparse:
                interval = min(cb.batch_end_interval for cb in sparse)
                self._throttled[hook] = Throttled([getattr(cb, hook) for cb in sparse], interval)

    def wants(self, hook: str) -> bool:
        """Whether a callback overrides `hook` and wants it called at every step."""
        return any(_every_step(cb, hook) for cb in self.callbacks)

    def reads_states(self, hook: str) -> bool:
        """Whether a callback overriding `hook` may read the model's states there."""
        return any(_every_step(cb, hook) and cb.reads_states_per_batch for cb in self.callbacks)

    def throttled(self, hook: str) -> Throttled | None:
        """The batch-end `hook` of the callbacks that want it only every
        `batch_end_interval` seconds (see `Throttled`), or None if there are none."""
        return self._throttled.get(hook)


class Throttled:
    """A batch-end hook for callbacks that want it at most every `interval` seconds.

    The loop checks `time.perf_counter() >= throttled.next` after each compiled call (one
    clock read: nothing else happens per step) and calls it when due, and once more after
    the last step of an epoch or evaluation, so the final count is exact."""

    __slots__ = ("_methods", "_interval", "next")

    def __init__(self, methods: list[Callable[..., Any]], interval: float):
        self._methods = methods
        self._interval = interval
        self.next = 0.0

    def __call__(self, batch: int, logs: Logs | None = None) -> None:
        for method in self._methods:
            method(batch, logs)
        self.next = time.perf_counter() + self._interval


def overrides(callback: Callback, hook: str) -> bool:
    """Whether `callback` does something on `hook`: its class overrides the method, or the
    instance carries its own function for it (as `LambdaCallback` does)."""
    return hook in vars(callback) or getattr(type(callback), hook) is not getattr(Callback, hook)


def _every_step(callback: Callback, hook: str) -> bool:
    """Whether `callback` overrides `hook` and wants it at every step (it is not a
    batch-end hook that the callback asked to be throttled)."""
    if not overrides(callback, hook):
        return False
    return not (hook.endswith("_batch_end") and callback.batch_end_interval > 0)


def _fan_out(methods: list[Any]) -> Any:
    """One callable for a hook: the only callback's method itself when there is one (batch
    hooks run every step, so the extra call layer would be paid each time)."""
    if len(methods) == 1:
        return methods[0]

    def call(*args: Any, **kwargs: Any) -> None:
        for method in methods:
            method(*args, **kwargs)

    return call
