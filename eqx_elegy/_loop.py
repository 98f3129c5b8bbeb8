"""The compiled engine behind `fit`, `evaluate` and `predict`.

Speed rules it follows: each step kind is one `jax.jit` built once per model, with the
states donated in training; `steps_per_execution` steps run in one call through
`lax.scan`; numpy batches go straight to the compiled call; logs stay on the device and
are fetched only when something reads them (the epoch's end, or a callback that asks).
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any, Literal, cast

import jax
import numpy as np

from ._engine import Engine, engine
from ._export import remember_inputs
from ._flat import Layout, unflatten_ahead, unflatten_ready, unflatten_states_on_host
from ._jit import Carry, Evaluation, PackedLogs
from ._preflight import check_callbacks, check_sparse_labels, output_shapes
from ._states import States
from ._steps import require_predictor
from ._strategy import strategy_of
from ._warn import warn_user
from .callbacks import Callback, CallbackList, History, ProgbarLogger
from .callbacks._callback import as_callbacks
from .callbacks._reduce_lr import learning_rate_log
from .data import ArrayAdapter, Chunk, DataAdapter, adapter_for, epoch_chunks, is_source

if TYPE_CHECKING:
    from ._model import Model

# ---------------------------------------------------------------------------- logs


class LazyLogs(Mapping[str, float]):
    """Logs of one step, left on the device until a value is read; then all of them are
    fetched at once. Callbacks that never read batch logs cause no device sync.

    `device_logs` is a mapping of names to arrays, or the `PackedLogs` of a compiled step;
    `index` picks one step out of logs stacked by a `steps_per_execution` chunk.
    """

    def __init__(self, device_logs: Mapping[str, Any] | PackedLogs, index: int | None = None):
        self._device = device_logs
        self._index = index
        self._host: dict[str, float] | None = None

    def _names(self) -> list[str]:
        logs = self._device
        if isinstance(logs, PackedLogs):
            return sorted([*logs.names, *logs.rest])
        return list(logs)

    def _values(self) -> dict[str, float]:
        if self._host is None:
            logs = self._device
            if isinstance(logs, PackedLogs):
                values, rest = jax.device_get((logs.values, logs.rest))
                host = dict(rest)
                if logs.names:
                    host.update(zip(logs.names, np.moveaxis(values, -1, 0), strict=True))
            else:
                host = jax.device_get(dict(logs))
            self._host = {
                k: _host_value(host[k] if self._index is None else host[k][self._index])
                for k in self._names()
            }
        return self._host

    def __getitem__(self, key: str) -> float:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return f"LazyLogs({self._values()})"


def _host_value(value: Any) -> Any:
    """A log value on the host: a float, or for a population (whose logs carry a leading
    member axis) a numpy array with one value per member."""
    return float(value) if np.ndim(value) == 0 else np.asarray(value)


# The overridable methods that can return logs of their own (the others return none,
# or call these): with none overridden, every log is the model's loss and metrics.
_LOGGING_STEPS = frozenset({"test_step", "grad_step", "train_step", "jit_step"})

# Logs that are a value at a moment, not a description of a batch (Keras'
# `learning_rate`: the rate the optimizer holds): never averaged, whatever step logs them.
_MOMENT_LOGS = frozenset({"learning_rate"})


class EpochLogs:
    """The logs of an epoch (or an evaluation) so far, as they describe it.

    The logs of the model's own `loss` and `metrics` are running values already (their
    states accumulate over the epoch, from the reset at its first step), so they are
    reported as the latest step left them, as is a `learning_rate` a custom step logs
    (the rate at that step). Every other log, the ones a custom step returns, describes
    its own batch: it is averaged over the steps so far, weighted by their batch sizes,
    so that an epoch's accuracy is not that of its last, maybe short, batch (for a
    per-example mean this is exactly the mean over the epoch's examples).
    A model with `epoch_logs="last"` has every log reported as the latest step left it.

    `view(i)` is what step `i` of the chunk added last reports (-1: its last step); a
    view stays on the device until read, like `LazyLogs`. Averaging keeps each chunk's
    logs on the device until a view is read; then the chunks not yet read are fetched
    in one transfer and folded into running sums on the host. When every log is a
    running value (the default steps) only the last chunk is kept, as `LazyLogs`.
    """

    def __init__(self, running: frozenset[str] | None):
        self._running = frozenset() if running is None else running
        # Whether any log is averaged: decided from the first chunk's log names, unless
        # every log is running (`running` None).
        self._averaging: bool | None = False if running is None else None
        self._last: tuple[Any, bool, int] | None = None  # the latest chunk: logs, stacked, steps
        self._pending: list[tuple[Any, bool, int, int]] = []  # (logs, stacked, steps, rows)
        self._steps: list[dict[str, float]] = []  # each step's view, once folded
        self._added = 0
        self._rows = 0
        self._sums: dict[str, Any] = {}  # a float, or one per member for a population

    @classmethod
    def of(cls, model: Model) -> EpochLogs:
        """The epoch logs of `model`'s steps: its loss and metrics, if any, are running;
        with `epoch_logs="last"`, or when the default steps make every log, every log is."""
        if model.epoch_logs == "last" or not _LOGGING_STEPS & model._overridden():
            return cls(None)
        if model.loss is None and model.metrics is None:
            return cls(_MOMENT_LOGS)
        return cls(_MOMENT_LOGS | frozenset(model._losses_and_metrics().log_names))

    def add(self, logs: Any, chunk: Chunk) -> None:
        """Record the logs of `chunk`, a compiled call's output (left on the device)."""
        self._last = (logs, chunk.stacked, chunk.steps)
        if self._averaging is None:
            self._averaging = any(name not in self._running for name in LazyLogs(logs))
        if self._averaging:
            x = jax.tree.leaves(chunk.batch[0])
            rows = int(x[0].shape[1 if chunk.stacked else 0])
            self._pending.append((logs, chunk.stacked, chunk.steps, rows))
        self._added += chunk.steps

    def view(self, index: int) -> Mapping[str, float]:
        """The logs as step `index` of the latest chunk leaves them (-1: its last step)."""
        assert self._last is not None
        logs, stacked, steps = self._last
        if not self._averaging:
            return LazyLogs(logs, index if stacked else None)
        position = self._added - steps + (index if index >= 0 else steps + index)
        return _AveragedView(self, position, list(LazyLogs(logs)))

    def result(self) -> dict[str, float]:
        """The logs of the whole epoch (or evaluation) on the host."""
        return dict(self.view(-1))

    def _step(self, position: int) -> dict[str, float]:
        if position >= len(self._steps):
            fetched = jax.device_get([logs for logs, *_ in self._pending])
            for host, (_, stacked, steps, rows) in zip(fetched, self._pending, strict=True):
                for i in range(steps):
                    values = dict(LazyLogs(host, i if stacked else None))
                    self._rows += rows
                    view = {}
                    for name, value in values.items():
                        if name in self._running:
                            view[name] = value
                        else:
                            self._sums[name] = self._sums.get(name, 0.0) + value * rows
                            view[name] = self._sums[name] / self._rows
                    self._steps.append(view)
            self._pending = []
        return self._steps[position]


class _AveragedView(Mapping[str, float]):
    """One step's view of `EpochLogs` (names known at once, values fetched when read)."""

    def __init__(self, epoch: EpochLogs, position: int, names: list[str]):
        self._epoch, self._position, self._names = epoch, position, names

    def __getitem__(self, key: str) -> float:
        return self._epoch._step(self._position)[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"EpochLogs({dict(self)})"


# ---------------------------------------------------------------------------- checks


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")


def _class_weight(class_weight: Any) -> dict[int, np.float32] | None:
    if class_weight is None:
        return None
    if not isinstance(class_weight, Mapping) or not class_weight:
        raise TypeError(
            "class_weight must be a non-empty dict mapping class ids (int) to weights, got "
            f"{type(class_weight).__name__}."
        )
    out: dict[int, np.float32] = {}
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, int | np.integer) or key < 0:
            raise ValueError(f"class_weight keys must be class ids >= 0, got {key!r}.")
        if not isinstance(value, int | float | np.number) or not math.isfinite(float(value)):
            raise ValueError(f"class_weight[{key}] must be a finite number, got {value!r}.")
        out[int(key)] = np.float32(value)
    return out


def _check_labels(y: Any, name: str = "y") -> None:
    for leaf in jax.tree.leaves(y):
        if leaf.dtype.kind in "fc" and np.isnan(leaf).any():
            index = int(np.argwhere(np.isnan(leaf))[0][0])
            raise ValueError(
                f"{name} contains NaN (first at example {index}); remove or fix those labels."
            )


# The steps that decide whether fit / evaluate need labels: with one of them overridden,
# the user's code may do without (as in Keras, where a custom step may ignore y).
_LABELLED_BY = {
    "fit": {"train_step", "grad_step", "test_step"},
    "evaluate": {"test_step"},
}


def _check_has_labels(model: Model, data: DataAdapter, method: str) -> None:
    """The default steps need labels: data without them fails here, naming what to pass,
    rather than inside the traced loss. A model whose own step needs none is fine."""
    if model._overridden() & _LABELLED_BY[method]:
        return
    if isinstance(data, ArrayAdapter):
        if data.y is None:
            raise ValueError(
                f"{method} needs labels: pass y (or a data source that yields (x, y) "
                f"batches), or override test_step{'/train_step' if method == 'fit' else ''} "
                "to run without them."
            )
    elif data.first_batch()[1] is None:
        raise ValueError(
            f"{method} needs labels, but the data source yields batches without y: yield "
            "(x, y) or (x, y, sample_weight), or override test_step."
        )


def _check_arrays(model: Model, data: ArrayAdapter, x_name: str, y_name: str) -> None:
    """Before anything compiles: the module takes a batch of `x`, and sparse labels are
    class ids of its output (see `_preflight`)."""
    y_pred = output_shapes(model, data.first_batch()[0], x_name)
    check_sparse_labels(model, y_pred, data.y, y_name)


def _check_validation(model: Model, val: DataAdapter) -> None:
    """`validation_data` checked as the training data is, before the first epoch (a
    source: its first batch's inputs only)."""
    if isinstance(val, ArrayAdapter):
        _check_labels(val.y, "validation_data y")
        _check_arrays(model, val, "validation_data x", "validation_data y")
    else:
        output_shapes(model, val.first_batch()[0], "validation_data")


def _validation_parts(data: Any, argument: str) -> tuple[Any, Any, Any]:
    """`(x, y, sample_weight)` from validation data given as arrays: `(x, y)` or
    `(x, y, sample_weight)` (a list works too, as in Keras)."""
    if isinstance(data, tuple | list) and len(data) in (2, 3):
        x, y, *rest = data
        return x, y, rest[0] if rest else None
    got = (
        f"a {type(data).__name__} of {len(data)}"
        if isinstance(data, tuple | list)
        else type(data).__name__
    )
    raise TypeError(
        f"{argument} must be a tuple (x, y) or (x, y, sample_weight) of arrays, or a data "
        f"source (a generator, iterable or Sequence of batches); got {got}."
    )


def _steps_shown(steps: int | None, data: DataAdapter) -> int | None:
    """The steps a pass will run, for the progress bar: `steps`, but no more than the
    batches of arrays or a Sequence (a pass reads them once)."""
    available = data.num_batches()
    return available if steps is None or available is None else min(steps, available)


# The most steps `steps_per_execution="auto"` runs in one compiled call. On the small MLP
# of benchmarks/bench_fit.py a call costs about 0.3 ms of host time around its steps
# (about 17 µs each); 32 steps make that about half a step's time per step, while a
# progress bar, Ctrl-C and `stop_training` still act within a few dozen steps.
AUTO_STEPS = 32

SpeArg = int | Literal["auto"]


def _steps_per_execution(model: Model, value: SpeArg | None) -> SpeArg:
    """The `steps_per_execution` a call runs with: its argument, else the model's."""
    value = model.steps_per_execution if value is None else value
    if isinstance(value, str) and value == "auto":
        return "auto"
    if isinstance(value, str):
        raise ValueError(f'steps_per_execution must be "auto" or an int >= 1, got {value!r}.')
    _check_int("steps_per_execution", value, 1, allow_none=False)
    return int(value)


def _chunk_steps(
    spe: SpeArg, data: DataAdapter, callbacks: CallbackList, hooks: str, steps: int | None
) -> int:
    """The steps per compiled call. An int is taken as it is. `"auto"` picks 1 when a
    callback wants one of the `on_{hooks}_batch_begin`/`_end` hooks at every step (it
    should see the states of that step) or when the data is not arrays in memory (a
    source whose reading ahead could cost or block); else chunks of up to `AUTO_STEPS`
    full batches, of equal sizes so that an epoch leaves few or no single steps. A step
    that must run alone (a convolution on CPU) runs its chunks one step per call anyway
    (`_jit`)."""
    if spe != "auto":
        return spe
    every_step = any(callbacks.wants(f"on_{hooks}_batch_{end}") for end in ("begin", "end"))
    if every_step or not isinstance(data, ArrayAdapter):
        return 1
    full = data.size // data.batch_size
    if steps is not None:
        full = min(full, steps)
    if full < 2:
        return 1
    return full // -(-full // AUTO_STEPS)


# ---------------------------------------------------------------------------- interrupts


class _DeferredInterrupt:
    """Hold Ctrl-C until the current compiled call has returned and its states have been
    stored on the model, so an interrupted fit keeps every completed step. A second
    Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.hit = False
        self._previous: Any = None

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def check(self) -> None:
        if self.hit:
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ---------------------------------------------------------------------------- loops


def _with_defaults(verbose: int, callbacks: Any) -> list[Callback]:
    """The user's callbacks, after the progress bar when `verbose` (unless they passed
    their own ProgbarLogger)."""
    _check_int("verbose", verbose, 0, allow_none=False)
    given = as_callbacks(callbacks)
    if not verbose or any(isinstance(cb, ProgbarLogger) for cb in given):
        return given
    return [ProgbarLogger(), *given]


def _resume_point(run: Engine, initial_epoch: int) -> tuple[int, int]:
    """The epoch and step a fit starts at: `initial_epoch`, unless a callback
    (BackupAndRestore) loaded a backup in on_train_begin and set the resume point."""
    resume, run.resume_at = run.resume_at, None
    return (initial_epoch, 0) if resume is None else resume


def _feed(
    model: Model, data: DataAdapter, epoch: int, spe: int, steps: int | None, skip: int = 0
) -> Iterator[Chunk]:
    """The chunks a loop runs (see `data.epoch_chunks`), placed by the model's strategy."""
    strategy = strategy_of(model)
    put = strategy.put_batch if strategy.places_batches else None
    return epoch_chunks(data, epoch, steps_per_execution=spe, steps=steps, skip=skip, put=put)


def _warn_ran_out(epoch: int, step: int, steps: int | None) -> None:
    if steps is None:  # a finite one-pass source, read to its end by the first epoch
        message = (
            f"The training data ran out: it gave no batch for epoch {epoch}, so fit stopped "
            f"after epoch {epoch - 1}. A generator or iterator is read once; without "
            "steps_per_epoch the first epoch reads it to the end (as in Keras). To train "
            "for more epochs, pass a source that can be read again (a list of (x, y) "
            "batches, a Sequence, a grain dataset), or a generator that yields "
            "steps_per_epoch batches for every epoch, with steps_per_epoch."
        )
    else:
        message = (
            f"The training data ran out in epoch {epoch} after {step} of {steps} steps, so "
            "fit stopped there. A generator is read once, across epochs: it must yield "
            "steps_per_epoch batches for every epoch (steps_per_epoch * epochs in all)."
        )
    warn_user(message)


def _counter(epoch: int, step: int) -> np.ndarray:
    """The `[epoch, step]` a compiled step derives its random keys from."""
    return np.array([epoch, step], np.int32)


class _Live:
    """The states a loop is running, kept as the flat list of arrays the compiled steps
    take. `push` stores them on the model as `States` (only when something may look);
    `pull` picks up states a callback put on the model."""

    def __init__(self, model: Model):
        self.model = model
        self.engine = engine(model)
        self._seen: States | None = model.states
        self.changed = False  # only a completed step gives the model new states
        self._states: States | None = None
        self._take()
        self.engine.live = self

    def _take(self) -> None:
        """Run the model's states from here on, as buffers the loop owns (it donates them)."""
        self.leaves, self.layout = self.engine.owned_flat_states()
        self.fns = self.engine.training(self.layout)
        self._states = self.model.states
        unflatten_ahead(self.layout, self.leaves)  # for the first `push`

    def update(self, leaves: list[Any]) -> None:
        self.leaves = leaves
        self._states = None
        self.changed = True

    @property
    def states(self) -> States:
        states = self._states
        if states is None:
            states = self._states = unflatten_states_on_host(self.layout, self.leaves)
        return states

    def push(self) -> None:
        # Buffers are deleted only when a step was interrupted after taking them (a second
        # Ctrl-C); the model then keeps the states it was last given.
        if not self.changed or any(
            isinstance(b, jax.Array) and b.is_deleted() for b in self.leaves
        ):
            return
        states = self.states
        self.engine.commit(states)
        self._seen = states
        self.changed = False

    def close(self) -> None:
        """Store the final states on the model, with their flat buffers (no later step
        donates them) for the evaluations that follow."""
        self.engine.live = None
        unflatten_ready(self.layout)
        if any(isinstance(b, jax.Array) and b.is_deleted() for b in self.leaves):
            return  # see `push`
        if self.changed:
            self.engine.commit(self.states, flat=(self.leaves, self.layout))
        elif self.model.states is self._seen:  # no callback replaced them since
            self.engine.commit(self.model.states, flat=(self.leaves, self.layout))

    def pull(self) -> None:
        if self.model.states is not self._seen:
            self._seen = self.model.states
            self._take()


class _Evaluating:
    """A test or prediction under way: the states' buffers, which it leaves as they are,
    and the buffers of the leaves the step changes, carried from step to step."""

    def __init__(
        self, model: Model, buffers: list[Any], layout: Layout, name: str, use_ema: bool = True
    ):
        self.model, self.buffers, self.layout, self.name = model, buffers, layout, name
        self.ema = use_ema and model.ema_decay is not None
        self.fns: Evaluation | None = None
        self.carry: Carry = []

    def __call__(self, chunk: Chunk, data: Any, *fixed: Any) -> Any:
        """Run `chunk` (whose batch, or its inputs alone, is `data`); return the outputs."""
        if self.fns is None:
            args = (_abstract(data, chunk.stacked), *fixed, _counter(0, 0))
            self.fns = engine(self.model).evaluation(
                self.layout, self.name, self.buffers, args, self.ema
            )
            self.carry = self.fns.start(self.buffers)
        fn = self.fns.chunk if chunk.stacked else self.fns.step
        out, self.carry = fn(self.buffers, self.carry, data, *fixed)
        return out


def _abstract(data: Any, stacked: bool) -> Any:
    """The shapes and dtypes of one step's batch, from a batch or a stacked chunk."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[stacked:], a.dtype), data)


def _run_test(
    model: Model,
    buffers: list[Any],
    layout: Layout,
    data: DataAdapter,
    callbacks: CallbackList,
    steps: int | None,
    spe: SpeArg,
    use_ema: bool = True,
) -> dict[str, float]:
    """The logs of the test step over `data`, from the states in `buffers` (left as they
    are), with the metrics reset first; on the EMA weights when the model keeps them,
    unless `use_ema` is False."""
    spe = _chunk_steps(spe, data, callbacks, "test", steps)
    callbacks.on_test_begin()
    batch_hooks = callbacks.wants("on_test_batch_begin") or callbacks.wants("on_test_batch_end")
    tick = callbacks.throttled("on_test_batch_end")
    logs = EpochLogs.of(model)
    step = 0
    run = _Evaluating(model, buffers, layout, "test_step", use_ema)
    for chunk in _feed(model, data, 0, spe, steps):
        if batch_hooks:
            for i in range(chunk.steps):
                callbacks.on_test_batch_begin(step + i)
        logs.add(run(chunk, chunk.batch, None), chunk)
        if batch_hooks:
            for i in range(chunk.steps):
                callbacks.on_test_batch_end(step + i, logs.view(i))
        step += chunk.steps
        if tick is not None and perf_counter() >= tick.next:
            tick(step - 1, logs.view(-1))
    if step == 0:
        raise ValueError(
            "The evaluation data produced no batches"
            + (" (its generator has run out)." if data.exhausted else ".")
        )
    if tick is not None:
        tick(step - 1, logs.view(-1))
    host = logs.result()
    callbacks.on_test_end(host)
    return host


def init_model(model: Model, x: Any, y: Any, sample_weight: Any, class_weight: Any) -> States:
    """`Model.init`: initialise the states from `x` (and `y`), then put the metrics back to
    their initial values, so that the init batch counts in no later log. A model that is
    already initialised keeps its states (Elegy's `init`): they are returned unchanged
    (`reset()` first to start over); it only learns the structure of the inputs, if it
    did not know it (for `export`).

    Arrays are the batch, traced whole as Elegy does (a source gives its first batch)."""
    if x is None:
        if model.initialized:
            return model.states
        raise ValueError("init needs x: a batch of inputs to trace the model with.")
    data = adapter_for(x, y, sample_weight)
    if isinstance(data, ArrayAdapter):  # validated above; now as one batch of every row
        data = adapter_for(x, y, sample_weight, batch_size=data.size)
    remember_inputs(model, data)
    if model.initialized:
        return model.states
    engine(model).initialize(data.first_batch(), _class_weight(class_weight))
    model.reset_metrics()
    return model.states


def _check_fit_arguments(
    epochs: Any,
    initial_epoch: Any,
    batch_size: Any,
    steps_per_epoch: Any,
    validation_split: Any,
    validation_data: Any,
    validation_steps: Any,
    validation_batch_size: Any,
    validation_freq: Any,
) -> None:
    _check_int("batch_size", batch_size, 1)
    _check_int("epochs", epochs, 0, allow_none=False)
    _check_int("initial_epoch", initial_epoch, 0, allow_none=False)
    if epochs < initial_epoch:
        raise ValueError(
            f"epochs ({epochs}) is smaller than initial_epoch ({initial_epoch}); epochs is the "
            "index of the last epoch to train, so pass epochs >= initial_epoch."
        )
    _check_int("steps_per_epoch", steps_per_epoch, 1)
    _check_int("validation_steps", validation_steps, 1)
    _check_int("validation_batch_size", validation_batch_size, 1)
    _check_int("validation_freq", validation_freq, 1, allow_none=False)
    if not isinstance(validation_split, int | float) or not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be a float in [0, 1), got {validation_split!r}.")
    if validation_split and validation_data is not None:
        raise ValueError("Pass either validation_split or validation_data, not both.")


def _training_data(model: Model, train: DataAdapter) -> None:
    """Check the training data before anything compiles: the labels the model's steps
    need (like Keras, `fit(x)` alone is fine when the user's own steps need none) and,
    for arrays, that the labels are usable and the module takes `x` (`_check_arrays`)."""
    _check_has_labels(model, train, "fit")
    if isinstance(train, ArrayAdapter):
        _check_labels(train.y)
        _check_arrays(model, train, "x", "y")


def _validation(
    train: DataAdapter,
    validation_split: float,
    validation_data: Any,
    batch_size: int | None,
    validation_batch_size: int | None,
    validation_steps: int | None,
) -> tuple[DataAdapter, DataAdapter | None]:
    """The training data (less what `validation_split` takes) and the validation data."""
    if validation_split:
        if not isinstance(train, ArrayAdapter):
            raise ValueError("validation_split works only with array data; pass validation_data.")
        return train.split(validation_split)
    if validation_data is None:
        return train, None
    if not is_source(validation_data):
        vx, vy, vsw = _validation_parts(validation_data, "validation_data")
        val = adapter_for(
            vx,
            vy,
            vsw,
            batch_size=validation_batch_size or batch_size,
            name="validation_data x",
            y_name="validation_data y",
        )
        return train, val
    val = adapter_for(
        validation_data,
        batch_size=validation_batch_size,
        steps=validation_steps,
        repeated=True,
        name="validation_data",
        batch_size_name="validation_batch_size",
        steps_name="validation_steps",
    )
    return train, val


def fit(
    model: Model,
    *,
    x: Any,
    y: Any,
    batch_size: int | None,
    epochs: int,
    verbose: int,
    callbacks: Callback | Sequence[Callback] | None,
    validation_split: float,
    validation_data: Any,
    shuffle: bool,
    class_weight: Any,
    sample_weight: Any,
    initial_epoch: int,
    steps_per_epoch: int | None,
    validation_steps: int | None,
    validation_batch_size: int | None,
    validation_freq: int,
    drop_remaining: bool,
    steps_per_execution: SpeArg | None,
) -> History:
    """`Model.fit`; every argument is checked before anything is compiled."""
    _check_fit_arguments(
        epochs,
        initial_epoch,
        batch_size,
        steps_per_epoch,
        validation_split,
        validation_data,
        validation_steps,
        validation_batch_size,
        validation_freq,
    )
    spe = _steps_per_execution(model, steps_per_execution)
    given = _with_defaults(verbose, callbacks)
    train = adapter_for(
        x,
        y,
        sample_weight,
        batch_size=batch_size,
        steps=steps_per_epoch,
        shuffle=shuffle,
        seed=model.seed,
        drop_remaining=drop_remaining,
        steps_name="steps_per_epoch",
    )
    _training_data(model, train)
    train, val = _validation(
        train,
        validation_split,
        validation_data,
        batch_size,
        validation_batch_size,
        validation_steps,
    )
    if val is not None and not validation_split:
        _check_validation(model, val)
    cw = _class_weight(class_weight)
    if "train_step" not in model._overridden():
        model.get_optimizer()

    history = History()
    steps = _steps_shown(steps_per_epoch, train)
    cbs = CallbackList(
        [history, *given],
        model,
        {"epochs": epochs, "steps": steps, "verbose": verbose},
    )
    check_callbacks(model, given, train.first_batch(), val is not None)
    run = engine(model)
    run.history = history  # `model.history`, from here on
    remember_inputs(model, train)
    if not model.initialized:
        run.initialize(train.first_batch(), cw)
    training = _Training(model, cbs, train, cw, spe, steps_per_epoch)
    training.run(initial_epoch, epochs, val, validation_steps, validation_freq)
    return history


class _Training:
    """A fit under way: its training data, callbacks and live states, and the loop over
    its epochs and steps."""

    def __init__(
        self,
        model: Model,
        callbacks: CallbackList,
        train: DataAdapter,
        class_weight: Any,
        spe: SpeArg,
        steps_per_epoch: int | None,
    ):
        self.model, self.callbacks, self.train = model, callbacks, train
        self.class_weight, self.steps_per_epoch = class_weight, steps_per_epoch
        # As given ("auto" included), for the validation data; and for the training data.
        self.spe: SpeArg = spe
        self.train_spe = _chunk_steps(spe, train, callbacks, "train", steps_per_epoch)
        self.engine = engine(model)
        self.live = _Live(model)

    def run(
        self,
        initial_epoch: int,
        epochs: int,
        val: DataAdapter | None,
        validation_steps: int | None,
        validation_freq: int,
    ) -> None:
        """Train from `initial_epoch` (or a callback's resume point) up to `epochs`,
        validating on `val` every `validation_freq` epochs."""
        cbs, live, run, train = self.callbacks, self.live, self.engine, self.train
        run.stop_training = False
        epoch_logs: dict[str, float] = {}
        try:
            with _DeferredInterrupt() as interrupt:
                cbs.on_train_begin()
                live.pull()
                first_epoch, first_step = _resume_point(run, initial_epoch)
                for epoch in range(first_epoch, epochs):
                    cbs.on_epoch_begin(epoch)
                    live.pull()
                    # The step numbered 0 resets the metrics; an epoch resumed mid-way
                    # keeps those it had accumulated.
                    start = first_step if epoch == first_epoch else 0
                    logs, step = self.epoch(epoch, start, interrupt)
                    if logs is None:  # a generator that ran out at the end of an epoch
                        _warn_ran_out(epoch, step, self.steps)
                        break
                    epoch_logs = logs
                    if val is not None and (epoch + 1) % validation_freq == 0:
                        val_logs = _run_test(
                            self.model,
                            live.leaves,
                            live.layout,
                            val,
                            cbs,
                            validation_steps,
                            self.spe,
                        )
                        epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
                    # Keras' `learning_rate`: the rate this epoch trained with, when the
                    # optimizer keeps one in its state (optax.inject_hyperparams).
                    rate = learning_rate_log(self.model.states.optimizer_states)
                    if rate is not None:
                        # An array only for a Population, whose logs all carry its members
                        # (typed as one model's, as LazyLogs' are).
                        epoch_logs["learning_rate"] = cast(float, rate)
                    cbs.on_epoch_end(epoch, epoch_logs)
                    live.pull()
                    interrupt.check()
                    if train.exhausted:
                        _warn_ran_out(epoch, step, self.steps)
                    if run.stop_training or train.exhausted:
                        break
                live.push()
                cbs.on_train_end(epoch_logs)
        finally:
            live.close()

    def epoch(
        self, epoch: int, step: int, interrupt: _DeferredInterrupt
    ) -> tuple[dict[str, float] | None, int]:
        """Run epoch `epoch` from step `step`; return its logs (None when a generator ran
        out before the epoch's first step) and the step it ended at."""
        cbs, live, run = self.callbacks, self.live, self.engine
        begin_hooks = cbs.wants("on_train_batch_begin")
        batch_hooks = begin_hooks or cbs.wants("on_train_batch_end")
        tick = cbs.throttled("on_train_batch_end")  # e.g. the progress bar: a clock read
        sync = cbs.reads_states("on_train_batch_begin") or cbs.reads_states("on_train_batch_end")
        cw = self.class_weight
        left = None if self.steps_per_epoch is None else self.steps_per_epoch - step
        logs = EpochLogs.of(self.model)
        ran = False
        for chunk in _feed(self.model, self.train, epoch, self.train_spe, left, skip=step):
            if begin_hooks:
                if sync:
                    live.push()
                for i in range(chunk.steps):
                    cbs.on_train_batch_begin(step + i)
                live.pull()
            fn = live.fns.train_chunk if chunk.stacked else live.fns.train
            out, leaves = fn(live.leaves, chunk.batch, cw, _counter(epoch, step))
            live.update(leaves)
            logs.add(out, chunk)
            ran = True
            if batch_hooks:
                if sync:
                    live.push()
                for i in range(chunk.steps):
                    cbs.on_train_batch_end(step + i, logs.view(i))
                live.pull()
            step += chunk.steps
            if tick is not None and perf_counter() >= tick.next:
                tick(step - 1, logs.view(-1))
                live.pull()
            interrupt.check()
            if run.stop_training:
                break
        if not ran:
            if self.train.exhausted:
                return None, step
            raise ValueError("The training data produced no batches.")
        if tick is not None:
            tick(step - 1, logs.view(-1))
        epoch_logs = logs.result()
        live.push()
        return epoch_logs, step

    @property
    def steps(self) -> int | None:
        """The steps of a full epoch, for messages."""
        return self.steps_per_epoch or self.train.num_batches()


def evaluate(
    model: Model,
    *,
    x: Any,
    y: Any,
    batch_size: int | None,
    verbose: int,
    sample_weight: Any,
    steps: int | None,
    callbacks: Callback | Sequence[Callback] | None,
    steps_per_execution: SpeArg | None,
    use_ema: bool = True,
) -> dict[str, float]:
    """`Model.evaluate`: the logs over the data; the model's states are not changed."""
    _check_int("batch_size", batch_size, 1)
    _check_int("steps", steps, 1)
    spe = _steps_per_execution(model, steps_per_execution)
    data = adapter_for(x, y, sample_weight, batch_size=batch_size, steps=steps)
    _check_has_labels(model, data, "evaluate")
    if isinstance(data, ArrayAdapter):
        _check_labels(data.y)
        _check_arrays(model, data, "x", "y")
    cbs = CallbackList(
        _with_defaults(verbose, callbacks),
        model,
        {"steps": _steps_shown(steps, data), "verbose": verbose},
    )
    remember_inputs(model, data)
    run = engine(model)
    if not model.initialized:
        run.initialize(data.first_batch(), None)
    return _run_test(model, *run.flat_states(), data, cbs, steps, spe, use_ema)


def predict(
    model: Model,
    *,
    x: Any,
    batch_size: int | None,
    verbose: int,
    steps: int | None,
    callbacks: Callback | Sequence[Callback] | None,
    steps_per_execution: SpeArg | None,
    use_ema: bool = True,
) -> Any:
    """`Model.predict`: the predictions for every example, concatenated on the host."""
    _check_int("batch_size", batch_size, 1)
    _check_int("steps", steps, 1)
    require_predictor(model, "predict")
    spe = _steps_per_execution(model, steps_per_execution)
    data = adapter_for(x, batch_size=batch_size, steps=steps)
    cbs = CallbackList(
        _with_defaults(verbose, callbacks),
        model,
        {"steps": _steps_shown(steps, data), "verbose": verbose},
    )
    remember_inputs(model, data)
    if not model.initialized:
        engine(model).initialize(data.first_batch(), None)
    spe = _chunk_steps(spe, data, cbs, "predict", steps)
    run = _Evaluating(model, *engine(model).flat_states(), "pred_step", use_ema)
    batch_hooks = cbs.wants("on_predict_batch_begin") or cbs.wants("on_predict_batch_end")
    tick = cbs.throttled("on_predict_batch_end")
    cbs.on_predict_begin()
    outputs: list[tuple[Any, bool]] = []
    step = 0
    for chunk in _feed(model, data, 0, spe, steps):
        if batch_hooks:
            for i in range(chunk.steps):
                cbs.on_predict_batch_begin(step + i)
        y_pred = run(chunk, chunk.batch[0])
        outputs.append((y_pred, chunk.stacked))
        if batch_hooks:
            for i in range(chunk.steps):
                cbs.on_predict_batch_end(step + i, {"outputs": y_pred})
        step += chunk.steps
        if tick is not None and perf_counter() >= tick.next:
            tick(step - 1, {"outputs": y_pred})
    if not outputs:
        raise ValueError("The prediction data produced no batches.")
    if tick is not None:
        tick(step - 1, {"outputs": outputs[-1][0]})
    host = jax.device_get([y for y, _ in outputs])
    flat = [
        jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), y) if stacked else y
        for y, (_, stacked) in zip(host, outputs, strict=True)
    ]
    result = jax.tree.map(lambda *parts: np.concatenate(parts), *flat)
    cbs.on_predict_end()
    return result
