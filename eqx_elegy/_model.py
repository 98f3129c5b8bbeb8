"""`Model`: Elegy's overridable step methods and Keras' high-level API, on equinox.

The step methods are pure: they take `States` and return new `States`. The high-level
methods (`init`, `fit`, `load`, `reset`) swap the model's `states` field for the new
pytree at well-defined points; that swap is the only mutation in the library.
"""

from __future__ import annotations

import functools
import inspect
import os
import types
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PyTree

from . import _batch, _checkpoint, _export, _loop, _summary
from ._engine import engine, fields_of, known_initialized, rebuild
from ._injection import check_step_signature, default_step, register_unchecked
from ._jit import JitSteps, build_jit_steps
from ._losses_and_metrics import LossesAndMetrics
from ._precision import LossScale, all_finite, cast_floating, cast_like, compute_dtype, where_finite
from ._remat import rematerialised
from ._states import RNGSeq, States
from ._steps import (
    KINDS,
    GradStep,
    InitStep,
    PredStep,
    TestStep,
    TrainStep,
    batch_size_of,
    checked_step,
    run_step,
)
from ._strategy import Strategy
from ._summary import SummaryRow, is_state_index, summary_rows
from ._traceback import user_facing
from ._trainable import check_trainable, split_trainable
from .callbacks import Callback, History
from .data import ArrayAdapter

if TYPE_CHECKING:
    from rich.console import Console

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _has_state(module: Any) -> bool:
    return any(is_state_index(leaf) for leaf in jax.tree.leaves(module, is_leaf=is_state_index))


def _instance_only(method: _Method) -> _Method:
    """Mark a method that loads into an existing model (`load`): looked up on the class
    and called without a model, it raises an error that says how to call it, instead of
    Python's bare "missing 1 required positional argument"."""
    return cast(_Method, _InstanceOnly(method))


class _InstanceOnly:
    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method

    def __get__(self, instance: Any, owner: type) -> Callable[..., Any]:
        if instance is not None:
            return types.MethodType(self.method, instance)
        method = self.method

        @functools.wraps(method)
        def on_class(*args: Any, **kwargs: Any) -> Any:
            if args and isinstance(args[0], owner):  # `Model.load(model, path)`
                return method(*args, **kwargs)
            name = f"{owner.__name__}.{method.__name__}"
            raise TypeError(
                f"{name}(path) is called on the class, but it loads into a model: build the "
                "model as it was built before it was saved (same class, module, loss, "
                f"metrics and optimizer), then call model.{method.__name__}(path). A save "
                "holds the states only, never code, so it cannot rebuild the model itself."
            )

        return on_class


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
    optimizer: optax.GradientTransformation | optax.MultiSteps | None = eqx.field(
        default=None, kw_only=True
    )
    seed: int = eqx.field(default=42, kw_only=True, static=True)
    vmap: bool = eqx.field(default=True, kw_only=True, static=True)
    check_types: bool = eqx.field(default=True, kw_only=True, static=True)
    steps_per_execution: int | Literal["auto"] = eqx.field(
        default="auto", kw_only=True, static=True
    )
    epoch_logs: Literal["mean", "last"] = eqx.field(default="mean", kw_only=True, static=True)
    strategy: Strategy | None = eqx.field(default=None, kw_only=True)
    trainable: Any = eqx.field(default=None, kw_only=True)
    ema_decay: float | None = eqx.field(default=None, kw_only=True, static=True)
    remat: bool = eqx.field(default=False, kw_only=True, static=True)
    dtype_policy: str = eqx.field(default="float32", kw_only=True, static=True)
    states: States = eqx.field(default=None, kw_only=True)
    # The structure of `x` the model was built with (`_export.InputSpec`), for `export`.
    _input_spec: Any = eqx.field(default=None, init=False, static=True, repr=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check each step the class defines (its parameters must be injectable names) and
        wrap it so that a direct call checks its output (`checked_step`); the loops call
        the step as written and check it themselves."""
        super().__init_subclass__(**kwargs)
        for name in KINDS:
            if name in cls.__dict__:
                step = cls.__dict__[name]
                check_step_signature(cls.__name__, name, step)
                checked = checked_step(cls, name, step)
                if checked is not None:
                    register_unchecked(cls, name, step)
                    setattr(cls, name, checked)

    def __post_init__(self) -> None:
        if self.epoch_logs not in ("mean", "last"):
            raise ValueError(
                f"epoch_logs must be 'mean' (a custom step's logs averaged over the epoch) or "
                f"'last' (as the last step returned them), got {self.epoch_logs!r}."
            )
        if isinstance(self.optimizer, optax.MultiSteps):
            # Gradient accumulation: MultiSteps is an object with init/update of its own;
            # its transformation form runs anywhere a GradientTransformation does.
            self.optimizer = self.optimizer.gradient_transformation()
        if self.optimizer is not None and not isinstance(
            self.optimizer, optax.GradientTransformation
        ):
            raise TypeError(
                f"optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-3)) "
                f"or an optax.MultiSteps, got {type(self.optimizer).__name__}."
            )
        if self.module is not None and _has_state(self.module):
            if self.module_state is None:
                self.module_state = eqx.nn.State(self.module)
            self.module = eqx.nn.delete_init_state(self.module)
        compute_dtype(self.dtype_policy)  # the name is checked here, before anything runs
        if self.ema_decay is not None:
            decay = self.ema_decay
            if isinstance(decay, bool) or not isinstance(decay, int | float | np.floating):
                raise TypeError(
                    f"ema_decay must be None or a float in (0, 1), e.g. 0.999; got "
                    f"{type(decay).__name__} {decay!r}."
                )
            if not 0.0 < float(decay) < 1.0:
                raise ValueError(
                    f"ema_decay must be in (0, 1) (the weight of the old average at each "
                    f"step, e.g. 0.999); got {decay!r}."
                )
        if self.trainable is not None and self.module is not None:
            check_trainable(self.trainable, eqx.filter(self.module, eqx.is_inexact_array))
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
        return rebuild, (type(self), fields_of(self), known_initialized(self))

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

    def _split_trainable(self, params: PyTree) -> tuple[PyTree, PyTree]:
        """`(trainable, frozen)`: `params` split by the `trainable` filter (`eqx.partition`;
        each part has None where the other has a leaf). Without a filter every parameter
        is trainable and `frozen` is None."""
        if self.trainable is None:
            return params, None
        return split_trainable(self.trainable, params)

    def _merge_trainable(self, trainable: PyTree, frozen: PyTree) -> PyTree:
        return trainable if frozen is None else eqx.combine(trainable, frozen)

    def get_optimizer(self) -> optax.GradientTransformation:
        """The model's optimizer, for a `train_step` override that applies it (its state
        is `states.optimizer_states`). Unlike the `optimizer` field, which may be None for
        a model that trains without one, this is typed as never None: a model built
        without an optimizer raises a TypeError that says to pass one."""
        # (An optax.MultiSteps was turned into its transformation by __post_init__.)
        if not isinstance(self.optimizer, optax.GradientTransformation):
            raise TypeError(
                f"{type(self).__name__} has no optimizer, and its train_step needs one: "
                "build it with optimizer=optax.adam(1e-3) (any optax GradientTransformation), "
                "or override train_step to update the parameters without one."
            )
        return self.optimizer

    # ------------------------------------------------------------------ steps
    #
    # Each default step is declared with `default_step`: type checkers see it as
    # `(*args, **kwargs) -> Alias`, so that overrides may take any subset of the
    # injectable names; at run time it has the signature written here.

    def states_step(self) -> States:
        """The `States` a fresh model starts from: the seed's RNG and, with a `module`, its
        parameters, its `eqx.nn.State`, the metrics' states and the optimizer's state."""
        states = States(rng=RNGSeq(self.seed))
        if self.dtype_policy == "mixed_float16":
            states = states.update(loss_scale=LossScale.initial())
        if self.module is not None:
            params = eqx.filter(self.module, eqx.is_inexact_array)
            states = states.update(net_params=params, net_states=self.module_state)
            if self.ema_decay is not None:
                states = states.update(ema_params=jax.tree.map(jnp.copy, params))
            if isinstance(self.optimizer, optax.GradientTransformation):
                with jax.numpy_dtype_promotion("standard"):
                    opt_states = self.optimizer.init(self._split_trainable(params)[0])
                states = states.update(optimizer_states=opt_states)
        if self.loss is not None or self.metrics is not None:
            states = states.update(metrics_states=self._losses_and_metrics().init())
        return states

    @default_step
    def pred_step(self, x: Any, states: States, initializing: bool, training: bool) -> PredStep:
        """Predictions for batch `x`: the `module` applied per example (vmapped over the
        batch with `axis_name="batch"`), or to the whole batch when `vmap=False`. With
        `remat=True`, training runs the module's blocks under `jax.checkpoint`."""
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
        if self.remat and training and not initializing:
            module = rematerialised(module)
        dtype = compute_dtype(self.dtype_policy)
        if dtype is not None:  # mixed precision: compute in `dtype`, predict float32
            module = cast_floating(module, dtype)
            x = cast_floating(x, dtype)
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

        kept = net_states
        if dtype is not None:
            net_states = cast_floating(net_states, dtype)
        if not self.vmap:
            y_pred, net_states = apply(x, key, net_states)
        else:
            keys = None if key is None else jax.random.split(key, batch_size_of(x))
            batched = jax.vmap(apply, in_axes=(0, 0, None), out_axes=(0, None), axis_name="batch")
            y_pred, net_states = batched(x, keys, net_states)
        if dtype is not None:
            y_pred = cast_floating(y_pred, jnp.float32)
            net_states = cast_like(net_states, kept)
        return y_pred, states.update(net_states=net_states)

    @default_step
    def test_step(
        self,
        x: Any,
        y_true: Any,
        sample_weight: Any,
        class_weight: Any,
        states: States,
        initializing: bool,
        training: bool,
        rng: Any,
    ) -> TestStep:
        """Loss and logs for a batch: `pred_step`, then the model's losses and metrics."""
        lm = self._losses_and_metrics()
        if not lm.has_loss:
            raise TypeError(
                f"{type(self).__name__} has no loss: pass Model(loss=...) (e.g. "
                "elegy.losses.SparseCategoricalCrossentropy(from_logits=True)) or override "
                "test_step."
            )
        y_pred, states = run_step(
            self,
            "pred_step",
            x=x,
            states=states,
            initializing=initializing,
            training=training,
            rng=rng,
        )
        metrics_states = states.metrics_states
        if metrics_states is None:
            metrics_states = lm.init()
        params = states.net_params
        loss, logs, metrics_states = lm(
            metrics_states,
            y_true,
            y_pred,
            sample_weight,
            class_weight,
            params if params is None else self._split_trainable(params)[0],
            batch_size=batch_size_of(x),
            all_params=params,
        )
        return loss, logs, states.update(metrics_states=metrics_states)

    @default_step
    def grad_step(
        self,
        x: Any,
        y_true: Any,
        sample_weight: Any,
        class_weight: Any,
        states: States,
        initializing: bool,
        training: bool,
        rng: Any,
    ) -> GradStep:
        """Loss, logs, states and the gradient of the loss w.r.t. `states.net_params`. Only
        the trainable parameters (the `trainable` filter) are differentiated; the gradient
        of a frozen one is zeros."""
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
            loss, logs, states = run_step(self, "test_step", states=states, **available)
            return loss, logs, states, jax.tree.map(jnp.zeros_like, states.net_params)

        trainable, frozen = self._split_trainable(states.net_params)
        # mixed_float16: the loss is differentiated scaled up, the gradients scaled down.
        loss_scale: LossScale | None = states.get("loss_scale")

        def loss_fn(trainable: PyTree, states: States) -> tuple[Any, tuple[Any, Any, States]]:
            params = self._merge_trainable(trainable, frozen)
            loss, logs, states = run_step(
                self, "test_step", states=states.update(net_params=params), **available
            )
            scaled = loss if loss_scale is None else loss_scale.scaled(loss)
            return scaled, (loss, logs, states)

        (_, (loss, logs, states)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, states
        )
        if loss_scale is not None:
            grads = loss_scale.unscaled(grads)
        if frozen is not None:
            grads = eqx.combine(grads, jax.tree.map(jnp.zeros_like, frozen))
        return loss, logs, states, grads

    @default_step
    def train_step(
        self,
        x: Any,
        y_true: Any,
        sample_weight: Any,
        class_weight: Any,
        states: States,
        initializing: bool,
        training: bool,
        rng: Any,
    ) -> TrainStep:
        """One optimisation step: `grad_step`, then the optimizer's update of the trainable
        parameters (frozen ones are passed through as they are). When initializing, it
        initialises the optimizer's state instead."""
        optimizer = self.get_optimizer()
        _, logs, states, grads = run_step(
            self,
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
        trainable, frozen = self._split_trainable(states.net_params)
        with jax.numpy_dtype_promotion("standard"):
            if initializing:
                opt_states = optimizer.init(trainable)
                states = states.maybe_update(optimizer_states=opt_states)
                if self.ema_decay is not None:
                    states = states.maybe_update(
                        ema_params=jax.tree.map(jnp.copy, states.net_params)
                    )
                return logs, states
            updates, optimizer_states = optimizer.update(
                self._split_trainable(grads)[0], states.optimizer_states, trainable
            )
            trainable = optax.apply_updates(trainable, updates)
        params = self._merge_trainable(trainable, frozen)
        loss_scale: LossScale | None = states.get("loss_scale")
        if loss_scale is not None:  # a step with overflowing gradients is skipped
            finite = all_finite(grads)
            params = where_finite(finite, params, states.net_params)
            optimizer_states = where_finite(finite, optimizer_states, states.optimizer_states)
            states = states.update(loss_scale=loss_scale.adjust(finite))
        states = states.update(net_params=params, optimizer_states=optimizer_states)
        if self.ema_decay is not None:
            trained = self._split_trainable(params)[0]
            states = states.update(ema_params=self._ema_update(states.ema_params, trained))
        return logs, states

    def _ema_update(self, ema_params: PyTree, trainable: PyTree) -> PyTree:
        """`decay * ema + (1 - decay) * params` (Keras' formula) for the trainable
        parameters; a frozen one's average stays what it is (its parameter's value)."""
        decay = float(self.ema_decay or 0.0)
        ema_trainable, ema_frozen = self._split_trainable(ema_params)
        average = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_trainable, trainable)
        return self._merge_trainable(average, ema_frozen)

    @default_step
    def init_step(
        self,
        x: Any,
        y_true: Any,
        sample_weight: Any,
        class_weight: Any,
        states: States,
        rng: Any,
    ) -> InitStep:
        """Initial states from one batch: one trace of the deepest step the model can run
        (`train_step`, else `test_step`, else `pred_step`) with `initializing=True`."""
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
                return run_step(self, "train_step", **available)[1]
            if self.loss is not None or "test_step" in overrides:
                return run_step(self, "test_step", **available)[2]
        return run_step(self, "pred_step", **available)[1]

    @default_step
    def summary_step(self, x: Any, states: States) -> list[SummaryRow]:
        """The rows of `summary` for a batch `x`: one per submodule, found by tracing
        `pred_step` with `jax.eval_shape` (nothing runs on real data)."""
        return summary_rows(self, x, states)

    def jit_step(self) -> JitSteps:
        """Build the compiled callables that fit/evaluate/predict run (see `JitSteps`)."""
        return build_jit_steps(self)

    # ------------------------------------------------------------------ high level

    @classmethod
    def _overridden(cls) -> frozenset[str]:
        return frozenset(
            name
            for name in (*KINDS, "states_step", "jit_step")
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

    @user_facing
    def init(
        self,
        x: Any = None,
        y: Any = None,
        sample_weight: Any = None,
        class_weight: dict[int, float] | None = None,
    ) -> States:
        """Initialise the states from a batch of data; updates `self.states` and returns it.

        Arrays are traced whole, as one batch (so pass a batch, e.g. `x[:64]`, not a
        whole data set); a generator or other source gives its first batch. The metrics
        are left at their initial values (see `reset_metrics`). On a model that is
        already initialised (by `init`, `fit`, `load`, ...) it changes nothing and returns
        the current states, as Elegy's `init` does; `reset()` first to start over."""
        return _loop.init_model(self, x, y, sample_weight, class_weight)

    def reset_metrics(self) -> None:
        """Put `states.metrics_states` back to the initial values of the model's `loss`
        and `metrics` (Keras' `reset_metrics`), as `fit` does at each epoch's start and
        `evaluate` at its start: for steps run by hand. A model without `loss` or
        `metrics` has no metric states of the library's to reset; this changes nothing."""
        if self.loss is None and self.metrics is None:
            return
        metrics_states = self._losses_and_metrics().init()
        engine(self).commit(self.states.update(metrics_states=metrics_states))

    def reset(self) -> None:
        """Start over: the model gets the states of a fresh model (`states_step`) and is
        no longer initialised, so the next `init`/`fit` initialises it again."""
        run = engine(self)
        run.commit(self.states_step(), initialized=False)
        run.batch_epoch = 0

    @user_facing
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
        steps_per_execution: int | Literal["auto"] | None = None,
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

    @overload
    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int = 1,
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: Callback | Sequence[Callback] | None = None,
        steps_per_execution: int | Literal["auto"] | None = None,
        return_dict: Literal[True] = True,
        use_ema: bool = True,
    ) -> dict[str, float]: ...

    @overload
    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int = 1,
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: Callback | Sequence[Callback] | None = None,
        steps_per_execution: int | Literal["auto"] | None = None,
        *,
        return_dict: Literal[False],
        use_ema: bool = True,
    ) -> float | list[float]: ...

    @overload
    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int = 1,
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: Sequence[Callback] | None = None,
        steps_per_execution: int | Literal["auto"] | None = None,
        return_dict: bool = True,
        use_ema: bool = True,
    ) -> dict[str, float] | float | list[float]: ...

    @user_facing
    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int = 1,
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: Callback | Sequence[Callback] | None = None,
        steps_per_execution: int | Literal["auto"] | None = None,
        return_dict: bool = True,
        use_ema: bool = True,
    ) -> dict[str, float] | float | list[float]:
        """Loss and metrics over the data with the current states (not changed): a dict of
        logs, or with `return_dict=False` Keras' list (the loss first; a single value
        alone). A model with `ema_decay` is evaluated with its EMA weights unless
        `use_ema=False`."""
        logs = _loop.evaluate(
            self,
            x=x,
            y=y,
            batch_size=batch_size,
            verbose=verbose,
            sample_weight=sample_weight,
            steps=steps,
            callbacks=callbacks,
            steps_per_execution=steps_per_execution,
            use_ema=use_ema,
        )
        return logs if return_dict else _batch.as_keras_list(logs)

    @user_facing
    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int = 0,
        steps: int | None = None,
        callbacks: Callback | Sequence[Callback] | None = None,
        steps_per_execution: int | Literal["auto"] | None = None,
        use_ema: bool = True,
    ) -> np.ndarray:
        """Predictions for every example of `x`, concatenated along the batch axis: a numpy
        array, or, when the module returns a pytree (a dict or tuple of outputs), that
        pytree with numpy arrays at its leaves. A model with `ema_decay` predicts with its
        EMA weights unless `use_ema=False`."""
        return _loop.predict(
            self,
            x=x,
            batch_size=batch_size,
            verbose=verbose,
            steps=steps,
            callbacks=callbacks,
            steps_per_execution=steps_per_execution,
            use_ema=use_ema,
        )

    # ------------------------------------------------------------------ batch API, weights

    @overload
    def train_on_batch(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        class_weight: dict[int, float] | None = None,
        return_dict: Literal[True] = True,
    ) -> dict[str, float]: ...

    @overload
    def train_on_batch(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        class_weight: dict[int, float] | None = None,
        *,
        return_dict: Literal[False],
    ) -> float | list[float]: ...

    @overload
    def train_on_batch(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        class_weight: dict[int, float] | None = None,
        return_dict: bool = True,
    ) -> dict[str, float] | float | list[float]: ...

    @user_facing
    def train_on_batch(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        class_weight: dict[int, float] | None = None,
        return_dict: bool = True,
    ) -> dict[str, float] | float | list[float]:
        """One training step on the batch `(x, y)`, exactly as `fit` runs it; returns that
        step's logs (a dict, or with `return_dict=False` Keras' list, loss first). The
        n-th call runs as the only step of epoch n, with fresh metrics (Keras 3)."""
        return _batch.train_on_batch(self, x, y, sample_weight, class_weight, return_dict)

    @overload
    def test_on_batch(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        return_dict: Literal[True] = True,
    ) -> dict[str, float]: ...

    @overload
    def test_on_batch(
        self, x: Any, y: Any = None, sample_weight: Any = None, *, return_dict: Literal[False]
    ) -> float | list[float]: ...

    @overload
    def test_on_batch(
        self, x: Any, y: Any = None, sample_weight: Any = None, return_dict: bool = True
    ) -> dict[str, float] | float | list[float]: ...

    @user_facing
    def test_on_batch(
        self, x: Any, y: Any = None, sample_weight: Any = None, return_dict: bool = True
    ) -> dict[str, float] | float | list[float]:
        """The loss and metrics on one batch, from fresh metrics (as `evaluate` on it)."""
        return _batch.test_on_batch(self, x, y, sample_weight, return_dict)

    @user_facing
    def predict_on_batch(self, x: Any) -> Any:
        """The predictions for one batch `x` (as `predict` on it, in one step)."""
        return self.predict(x, batch_size=ArrayAdapter(x).size, verbose=0)

    def get_weights(self) -> list[np.ndarray]:
        """The weights as Keras gives them: the leaves of `states.net_params` in tree order,
        as numpy arrays."""
        return _batch.get_weights(self)

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace the weights with `weights` (a list like `get_weights` returns: same
        count, shapes and dtypes, else nothing changes and the error says which)."""
        _batch.set_weights(self, weights)

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

    @user_facing
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

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        weights_only: bool = False,
        metadata: Mapping[str, Any] | None = None,
        backend: str = "native",
        asynchronous: bool = False,
    ) -> None:
        """Save `states` into directory `path` (leaves with `eqx.tree_serialise_leaves`,
        plus a JSON manifest). The new directory replaces an old one atomically: a crash
        mid-save leaves the previous save loadable. `weights_only` saves only `net_params`
        and `net_states`. `metadata` (JSON-serialisable, e.g. `{"epoch": 3}`) is stored in
        the manifest as it is. In a multi-process run, call it on every process: it
        gathers states sharded across processes, and process 0 writes.

        `backend="orbax"` writes through orbax-checkpoint (`pip install
        'eqx_elegy[orbax]'`): nothing is gathered, each process writes its own shards.
        With it, `asynchronous=True` returns as soon as the arrays are copied off the
        devices; the next save or load, `elegy.wait_for_saves()` and the process's exit
        wait for the write, and raise its error if it failed (docs/saving.md)."""
        _checkpoint.save(
            self,
            path,
            weights_only=weights_only,
            metadata=metadata,
            backend=backend,
            asynchronous=asynchronous,
        )

    @_instance_only
    def load(self, path: str | os.PathLike[str], *, weights_only: bool = False) -> None:
        """Load a save of a model built the same way: its `states` give the structure,
        which must match the file's (paths, shapes, dtypes) or nothing changes and a
        `CheckpointError` lists the differences. No code from the file is ever run.
        `weights_only` loads only `net_params` and `net_states`. Either backend's saves
        load; an orbax save's arrays are put onto the model's current layout (another
        mesh or device count than the one that saved it)."""
        _checkpoint.load(self, path, weights_only=weights_only)

    @user_facing
    def export(
        self, path: str | os.PathLike[str], *, platforms: Sequence[str] | str | None = None
    ) -> None:
        """Write the model's prediction to directory `path` so that it runs without the
        model's code: `pred_step` in inference mode, as `predict` runs it, serialised with
        `jax.export` with a symbolic batch dimension, plus its weights (stored beside the
        function, not inside it) and a JSON manifest. Load it with
        `eqx_elegy.load_exported(path)`, which needs only jax and numpy.

        The model must have seen inputs (`init`, `fit`, `evaluate` or `predict`): the
        structure it was built with is the one exported. `platforms` defaults to the one
        jax runs on; e.g. `("cpu", "cuda")` lowers one artifact for both. `path` must be
        new, empty or an earlier export; anything else is refused.
        """
        _export.export(self, path, platforms)

    # ------------------------------------------------------------------ distribution

    def distributed(self, strategy: Strategy) -> Model:
        """A copy of this model that trains, evaluates and predicts with `strategy` (any
        `eqx_elegy.Strategy`, e.g. `eqx_elegy.DataParallel()` or `eqx_elegy.FSDP()`), its
        states laid out on the strategy's devices. This model is left as it was."""
        if not isinstance(strategy, Strategy):
            raise TypeError(
                "distributed(strategy) takes a distribution strategy such as "
                "eqx_elegy.DataParallel() or eqx_elegy.FSDP() (any eqx_elegy.Strategy), got "
                f"{type(strategy).__name__}."
            )
        model = eqx.tree_at(lambda m: m.strategy, self, strategy, is_leaf=lambda x: x is None)
        engine(model).commit(strategy.put_states(self.states), initialized=known_initialized(self))
        return model
