"""`Model`: Elegy's overridable step methods and Keras' high-level API, on equinox.

The step methods are pure: they take `States` and return new `States`. The high-level
methods (`init`, `fit`, `load`, `reset`) swap the model's `states` field for the new
pytree at well-defined points; that swap is the only mutation in the library.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PyTree

from . import _checkpoint, _loop, _summary
from ._distributed import DataParallel
from ._engine import attach, engine, fields_of, known_initialized
from ._injection import STEP_METHODS, check_step_signature, inject
from ._jit import JitSteps, build_jit_steps
from ._losses_and_metrics import LossesAndMetrics
from ._states import RNGSeq, States
from ._steps import GradStep, InitStep, PredStep, TestStep, TrainStep, check_output
from ._summary import SummaryRow, summary_rows
from .callbacks import Callback, History

if TYPE_CHECKING:
    from rich.console import Console

_ALIASES: dict[str, str] = {
    "pred_step": "PredStep",
    "test_step": "TestStep",
    "grad_step": "GradStep",
    "train_step": "TrainStep",
    "init_step": "InitStep",
}


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _is_state_index(node: Any) -> bool:
    return isinstance(node, eqx.nn.StateIndex)


def _has_state(module: Any) -> bool:
    return any(_is_state_index(leaf) for leaf in jax.tree.leaves(module, is_leaf=_is_state_index))


def _batch_size(x: Any) -> int:
    leaves = jax.tree.leaves(x)
    if not leaves or not getattr(leaves[0], "shape", ()):
        raise ValueError("x must contain arrays with a leading batch dimension.")
    return int(leaves[0].shape[0])


class Model(eqx.Module):
    """A trainable model: a pytree of its configuration and its current `states`.

    Use it directly with an equinox `module`, `loss`, `metrics` and an optax `optimizer`,
    or subclass it and override any step (`pred_step`, `test_step`, `grad_step`,
    `train_step`, `init_step`, `summary_step`, `states_step`, `jit_step`). Steps receive by
    name only the parameters they ask for, out of `x, y_true, y_pred, sample_weight,
    class_weight, states, initializing, training, rng`.
    """

    module: Any = eqx.field(default=None, kw_only=True)
    module_state: Any = eqx.field(default=None, kw_only=True)
    loss: Any = eqx.field(default=None, kw_only=True)
    metrics: Any = eqx.field(default=None, kw_only=True)
    loss_weights: Any = eqx.field(default=None, kw_only=True, static=True)
    optimizer: optax.GradientTransformation | None = eqx.field(default=None, kw_only=True)
    seed: int = eqx.field(default=42, kw_only=True, static=True)
    vmap: bool = eqx.field(default=True, kw_only=True, static=True)
    check_types: bool = eqx.field(default=True, kw_only=True, static=True)
    steps_per_execution: int = eqx.field(default=1, kw_only=True, static=True)
    strategy: Any = eqx.field(default=None, kw_only=True)
    states: States = eqx.field(default=None, kw_only=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in STEP_METHODS:
            if name in cls.__dict__:
                check_step_signature(cls.__name__, name, cls.__dict__[name])

    def __post_init__(self) -> None:
        if self.optimizer is not None and not isinstance(
            self.optimizer, optax.GradientTransformation
        ):
            raise TypeError(
                f"optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), "
                f"got {type(self.optimizer).__name__}."
            )
        if self.module is not None and _has_state(self.module):
            if self.module_state is None:
                self.module_state = eqx.nn.State(self.module)
            self.module = eqx.nn.delete_init_state(self.module)
        if self.states is None:
            self.states = self.states_step()

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "stop_training":  # the one settable attribute: its property's setter
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle and copy a model as its fields (`copy.copy`, `copy.deepcopy` and pickle
        all go through here): its engine, with the compiled steps and other caches, stays
        behind, and the copy builds its own on first use. Only whether the model was
        initialised travels. Rebuilding bypasses `eqx.Module.__new__`, which would
        register each copy in equinox's set of modules under construction for good."""
        return _rebuild, (type(self), fields_of(self), known_initialized(self))

    @property
    def stop_training(self) -> bool:
        """Set it to True (e.g. in a callback) to end `fit` after the current step."""
        return engine(self).stop_training

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        engine(self).stop_training = value

    @property
    def history(self) -> History | None:
        """The History of the latest `fit` (Keras' convention), also when it was
        interrupted; None before the first."""
        return engine(self).history

    # ------------------------------------------------------------------ helpers

    def _losses_and_metrics(self) -> LossesAndMetrics:
        return LossesAndMetrics.build(self.loss, self.metrics, self.loss_weights)

    def _run(self, name: str, **available: Any) -> Any:
        """Call step `name` by injection and check its output against its alias."""
        out = inject(self, name, **available)
        if self.check_types and name in _ALIASES:
            net_params = None
            if name == "grad_step" and isinstance(out, tuple) and len(out) == 4:
                net_params = available["states"].net_params
            batch = _batch_size(available["x"]) if name == "pred_step" and self.vmap else None
            check_output(
                type(self).__name__,
                name,
                _ALIASES[name],
                out,
                net_params=net_params,
                batch_size=batch,
            )
        return out

    def _call_default(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run the default implementation of step `name`: positional arguments bind in its
        parameter order, injectable names it does not use are ignored, and those not given
        are None (`initializing` and `training`: False). More positional arguments than
        it has parameters, or one given twice, is a TypeError (as for any Python call)."""
        default = getattr(self, f"_default_{name}")
        params = inspect.signature(default).parameters
        owner = f"{type(self).__name__}.{name}"
        if len(args) > len(params):
            raise TypeError(
                f"{owner} takes at most {len(params)} positional arguments "
                f"({', '.join(params)}) but {len(args)} were given; pass the others by name."
            )
        for k in list(params)[: len(args)]:
            if k in kwargs:
                raise TypeError(f"{owner} got multiple values for {k!r}: by position and by name.")
        bound: dict[str, Any] = {
            k: False if k in ("initializing", "training") else None for k in params
        }
        bound.update(zip(params, args, strict=False))
        bound.update((k, v) for k, v in kwargs.items() if k in params)
        return default(**bound)

    def _optimizer_or_raise(self) -> optax.GradientTransformation:
        if self.optimizer is None:
            raise TypeError(
                f"{type(self).__name__}: the default train_step needs an optimizer; pass "
                "optimizer=optax.adam(1e-3) (any optax GradientTransformation), or override "
                "train_step."
            )
        return self.optimizer

    # ------------------------------------------------------------------ steps

    def states_step(self) -> States:
        """The `States` a fresh model starts from: the seed's RNG and, with a `module`, its
        parameters, its `eqx.nn.State`, the metrics' states and the optimizer's state."""
        states = States(rng=RNGSeq(self.seed))
        if self.module is not None:
            params = eqx.filter(self.module, eqx.is_inexact_array)
            states = states.update(net_params=params, net_states=self.module_state)
            if isinstance(self.optimizer, optax.GradientTransformation):
                with jax.numpy_dtype_promotion("standard"):
                    states = states.update(optimizer_states=self.optimizer.init(params))
        if self.loss is not None or self.metrics is not None:
            states = states.update(metrics_states=self._losses_and_metrics().init())
        return states

    def pred_step(self, *args: Any, **kwargs: Any) -> PredStep:
        """Predictions for batch `x`: the `module` applied per example (vmapped over the
        batch with `axis_name="batch"`), or to the whole batch when `vmap=False`."""
        return self._call_default("pred_step", args, kwargs)

    def _default_pred_step(
        self, x: Any, states: States, initializing: bool, training: bool
    ) -> PredStep:
        del initializing
        if self.module is None:
            raise TypeError(
                f"{type(self).__name__} has no module to predict with: pass "
                f"Model(module=...) or override pred_step (test_step alone does not define "
                f"predictions)."
            )
        module = eqx.nn.inference_mode(
            eqx.combine(states.net_params, self.module), value=not training
        )
        call = type(module).__call__
        use_key = _accepts(call, "key")
        net_states = states.net_states
        use_state = net_states is not None and _accepts(call, "state")
        key = None
        if use_key:
            key, rng = states.rng.next()
            states = states.update(rng=rng)

        def apply(xi: Any, ki: Any, si: Any) -> tuple[Any, Any]:
            kwargs: dict[str, Any] = {}
            if use_key:
                kwargs["key"] = ki
            if use_state:
                return module(xi, state=si, **kwargs)
            return module(xi, **kwargs), si

        if not self.vmap:
            y_pred, net_states = apply(x, key, net_states)
        else:
            keys = None if key is None else jax.random.split(key, _batch_size(x))
            batched = jax.vmap(apply, in_axes=(0, 0, None), out_axes=(0, None), axis_name="batch")
            y_pred, net_states = batched(x, keys, net_states)
        return y_pred, states.update(net_states=net_states)

    def test_step(self, *args: Any, **kwargs: Any) -> TestStep:
        """Loss and logs for a batch: `pred_step`, then the model's losses and metrics."""
        return self._call_default("test_step", args, kwargs)

    def _default_test_step(
        self,
        x: Any,
        y_true: Any,
        sample_weight: Any,
        class_weight: Any,
        states: States,
        initializing: bool,
        training: bool,
        rng: Any = None,
    ) -> TestStep:
        lm = self._losses_and_metrics()
        if not lm.has_loss:
            raise TypeError(
                f"{type(self).__name__} has no loss: pass Model(loss=...) (e.g. "
                "elegy.losses.SparseCategoricalCrossentropy(from_logits=True)) or override "
                "test_step."
            )
        y_pred, states = self._run(
            "pred_step", x=x, states=states, initializing=initializing, training=training, rng=rng
        )
        metrics_states = states.metrics_states
        if metrics_states is None:
            metrics_states = lm.init()
        loss, logs, metrics_states = lm(
            metrics_states,
            y_true,
            y_pred,
            sample_weight,
            class_weight,
            states.net_params,
            batch_size=_batch_size(x),
        )
        return loss, logs, states.update(metrics_states=metrics_states)

    def grad_step(self, *args: Any, **kwargs: Any) -> GradStep:
        """Loss, logs, states and the gradient of the loss w.r.t. `states.net_params`."""
        return self._call_default("grad_step", args, kwargs)

    def _default_grad_step(
        self,
        x: Any,
        y_true: Any,
        sample_weight: Any,
        class_weight: Any,
        states: States,
        initializing: bool,
        training: bool,
        rng: Any = None,
    ) -> GradStep:
        available = dict(
            rng=rng,
            x=x,
            y_true=y_true,
            sample_weight=sample_weight,
            class_weight=class_weight,
            initializing=initializing,
            training=training,
        )
        if initializing:
            loss, logs, states = self._run("test_step", states=states, **available)
            return loss, logs, states, jax.tree.map(jnp.zeros_like, states.net_params)

        def loss_fn(params: PyTree, states: States) -> tuple[Any, tuple[Any, States]]:
            loss, logs, states = self._run(
                "test_step", states=states.update(net_params=params), **available
            )
            return loss, (logs, states)

        (loss, (logs, states)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            states.net_params, states
        )
        return loss, logs, states, grads

    def train_step(self, *args: Any, **kwargs: Any) -> TrainStep:
        """One optimisation step: `grad_step`, then the optimizer's update. When
        initializing, it initialises the optimizer's state instead."""
        return self._call_default("train_step", args, kwargs)

    def _default_train_step(
        self,
        x: Any,
        y_true: Any,
        sample_weight: Any,
        class_weight: Any,
        states: States,
        initializing: bool,
        training: bool,
        rng: Any = None,
    ) -> TrainStep:
        optimizer = self._optimizer_or_raise()
        _, logs, states, grads = self._run(
            "grad_step",
            rng=rng,
            x=x,
            y_true=y_true,
            sample_weight=sample_weight,
            class_weight=class_weight,
            states=states,
            initializing=initializing,
            training=training,
        )
        # optax mixes Python floats with integer step counts, which strict dtype promotion
        # rejects; the user's own code keeps whatever promotion mode they chose.
        with jax.numpy_dtype_promotion("standard"):
            if initializing:
                opt_states = optimizer.init(states.net_params)
                return logs, states.maybe_update(optimizer_states=opt_states)
            updates, optimizer_states = optimizer.update(
                grads, states.optimizer_states, states.net_params
            )
            params = optax.apply_updates(states.net_params, updates)
        return logs, states.update(net_params=params, optimizer_states=optimizer_states)

    def init_step(self, *args: Any, **kwargs: Any) -> InitStep:
        """Initial states from one batch: one trace of the deepest step the model can run
        (`train_step`, else `test_step`, else `pred_step`) with `initializing=True`."""
        return self._call_default("init_step", args, kwargs)

    def _default_init_step(
        self,
        x: Any,
        y_true: Any,
        sample_weight: Any,
        class_weight: Any,
        states: States,
        rng: Any = None,
    ) -> InitStep:
        available = dict(
            rng=rng,
            x=x,
            y_true=y_true,
            sample_weight=sample_weight,
            class_weight=class_weight,
            states=states,
            initializing=True,
            training=True,
        )
        overrides = self._overridden()
        if y_true is not None or "train_step" in overrides or "test_step" in overrides:
            if self.optimizer is not None or "train_step" in overrides:
                return self._run("train_step", **available)[1]
            if self.loss is not None or "test_step" in overrides:
                return self._run("test_step", **available)[2]
        return self._run("pred_step", **available)[1]

    def summary_step(self, *args: Any, **kwargs: Any) -> list[SummaryRow]:
        """The rows of `summary` for a batch `x`: one per submodule, found by tracing
        `pred_step` with `jax.eval_shape` (nothing runs on real data)."""
        return self._call_default("summary_step", args, kwargs)

    def _default_summary_step(self, x: Any, states: States) -> list[SummaryRow]:
        return summary_rows(self, x, states)

    def jit_step(self) -> JitSteps:
        """Build the compiled callables that fit/evaluate/predict run (see `JitSteps`)."""
        return build_jit_steps(self)

    # ------------------------------------------------------------------ high level

    @classmethod
    def _overridden(cls) -> frozenset[str]:
        return frozenset(
            name
            for name in (*STEP_METHODS, "states_step", "jit_step")
            if getattr(cls, name) is not getattr(Model, name)
        )

    @property
    def initialized(self) -> bool:
        """Whether the states are complete enough to run every step without an init batch."""
        known = known_initialized(self)
        if known is not None:
            return known
        if "init_step" in self._overridden():
            return False
        states = self.states
        if states is None or states.net_params is None:
            return False
        return self.optimizer is None or states.optimizer_states is not None

    def init(
        self,
        x: Any = None,
        y: Any = None,
        sample_weight: Any = None,
        class_weight: dict[int, float] | None = None,
    ) -> States:
        """Initialise the states from a batch of data; updates `self.states` and returns it.
        On a model that is already initialised (by `init`, `fit`, `load`, ...) it changes
        nothing and returns the current states, as Elegy's `init` does; `reset()` first to
        start over."""
        return _loop.init_model(self, x, y, sample_weight, class_weight)

    def reset(self) -> None:
        """Start over: the model gets the states of a fresh model (`states_step`) and is
        no longer initialised, so the next `init`/`fit` initialises it again."""
        engine(self).commit(self.states_step(), initialized=False)

    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int = 1,
        callbacks: Callback | Sequence[Callback] | None = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool = True,
        class_weight: dict[int, float] | None = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
        drop_remaining: bool = False,
        steps_per_execution: int | None = None,
    ) -> History:
        """Train for `epochs` epochs (Keras' contract); returns the `History`.

        The model's `states` are replaced after each compiled step, so an interrupted fit
        leaves the model at its last completed step.
        """
        return _loop.fit(
            self,
            x=x,
            y=y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
            validation_split=validation_split,
            validation_data=validation_data,
            shuffle=shuffle,
            class_weight=class_weight,
            sample_weight=sample_weight,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            validation_batch_size=validation_batch_size,
            validation_freq=validation_freq,
            drop_remaining=drop_remaining,
            steps_per_execution=steps_per_execution,
        )

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int = 1,
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: Callback | Sequence[Callback] | None = None,
        steps_per_execution: int | None = None,
    ) -> dict[str, float]:
        """Loss and metrics over the data with the current states (not changed)."""
        return _loop.evaluate(
            self,
            x=x,
            y=y,
            batch_size=batch_size,
            verbose=verbose,
            sample_weight=sample_weight,
            steps=steps,
            callbacks=callbacks,
            steps_per_execution=steps_per_execution,
        )

    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int = 0,
        steps: int | None = None,
        callbacks: Callback | Sequence[Callback] | None = None,
        steps_per_execution: int | None = None,
    ) -> np.ndarray:
        """Predictions for every example of `x`, concatenated along the batch axis: a numpy
        array, or, when the module returns a pytree (a dict or tuple of outputs), that
        pytree with numpy arrays at its leaves."""
        return _loop.predict(
            self,
            x=x,
            batch_size=batch_size,
            verbose=verbose,
            steps=steps,
            callbacks=callbacks,
            steps_per_execution=steps_per_execution,
        )

    # ------------------------------------------------------------------ summary, save, load

    @overload
    def summary(
        self,
        x: Any,
        depth: int = 2,
        *,
        print_fn: Callable[[str], Any] | None = None,
        return_string: Literal[False] = False,
        console: Console | None = None,
    ) -> None: ...

    @overload
    def summary(
        self,
        x: Any,
        depth: int = 2,
        *,
        print_fn: Callable[[str], Any] | None = None,
        return_string: Literal[True],
        console: Console | None = None,
    ) -> str: ...

    def summary(
        self,
        x: Any,
        depth: int = 2,
        *,
        print_fn: Callable[[str], Any] | None = None,
        return_string: bool = False,
        console: Console | None = None,
    ) -> str | None:
        """Print a table of the model for inputs `x` (e.g. `x_train[:1]`): a row per
        submodule down to `depth` (path, type, output shape and dtype, trainable and
        non-trainable parameters), then totals including the optimizer state.

        The rows come from `summary_step`; output shapes are traced with `jax.eval_shape`
        (nothing runs on real data). The table goes to `console` (a rich Console; default:
        the terminal), or as plain text to `print_fn` (e.g. `logging.info`); with
        `return_string=True` the text is returned instead of printed.
        """
        return _summary.summary(self, x, depth, print_fn, return_string, console)

    def save(self, path: str | os.PathLike[str], *, weights_only: bool = False) -> None:
        """Save `states` into directory `path` (leaves with `eqx.tree_serialise_leaves`,
        plus a JSON manifest). The new directory replaces an old one atomically: a crash
        mid-save leaves the previous save loadable. `weights_only` saves only `net_params`
        and `net_states`. In a multi-process run, call it on every process: it gathers
        states sharded across processes, and process 0 writes."""
        _checkpoint.save(self, path, weights_only=weights_only)

    def load(self, path: str | os.PathLike[str], *, weights_only: bool = False) -> None:
        """Load a save of a model built the same way: its `states` give the structure,
        which must match the file's (paths, shapes, dtypes) or nothing changes and a
        `CheckpointError` lists the differences. No code from the file is ever run.
        `weights_only` loads only `net_params` and `net_states`."""
        _checkpoint.load(self, path, weights_only=weights_only)

    # ------------------------------------------------------------------ distribution

    def distributed(self, strategy: DataParallel) -> Model:
        """A copy of this model that trains, evaluates and predicts with `strategy` (e.g.
        `eqx_elegy.DataParallel()` or `eqx_elegy.FSDP()`), its states laid out on the
        strategy's devices. This model is left as it was."""
        if not isinstance(strategy, DataParallel):
            raise TypeError(
                "distributed(strategy) takes a distribution strategy such as "
                f"eqx_elegy.DataParallel() or eqx_elegy.FSDP(), got {type(strategy).__name__}."
            )
        model = eqx.tree_at(lambda m: m.strategy, self, strategy, is_leaf=lambda x: x is None)
        engine(model).commit(strategy.put_states(self.states), initialized=known_initialized(self))
        return model


def _rebuild(cls: type[Model], fields: dict[str, Any], initialized: bool | None) -> Model:
    """A model of class `cls` with the given fields (see `Model.__reduce__`)."""
    model = object.__new__(cls)
    vars(model).update(fields)
    if initialized is not None:
        attach(model, initialized)
    return model
