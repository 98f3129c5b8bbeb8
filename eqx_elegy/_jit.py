"""The step functions the loop runs, and their compiled, flat-state form.

`Model.jit_step` returns `JitSteps`: pure functions of `States`. The loop compiles each
once per model and per structure of the states, with the states passed as a flat list of
arrays: flattening equinox modules in Python on every call would cost more than a small
model's whole step, while a list of arrays crosses into the compiled call in C++.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ._states import RNGSeq, States

if TYPE_CHECKING:
    from ._model import Model

# Separate random streams per kind of call, so that training, evaluation, prediction and
# initialisation never reuse a key.
_TRAIN, _TEST, _PRED, _INIT = 0, 1, 2, 3


class JitSteps(NamedTuple):
    """What `Model.jit_step` returns: the functions the loop compiles, and how.

    - `init(states, batch, class_weight) -> States`
    - `train(states, batch, class_weight, epoch, step) -> (logs, states)`
    - `test(states, batch, class_weight, step) -> (logs, states)`
    - `pred(states, x, step) -> (y_pred, states)`
    - `jit`: the compiler applied to each (default `jax.jit`); training donates the states.

    A `batch` is `(x, y, sample_weight)`. The loop also derives `lax.scan` versions that run
    `steps_per_execution` steps per call.
    """

    init: Callable[..., States]
    train: Callable[..., tuple[Any, States]]
    test: Callable[..., tuple[Any, States]]
    pred: Callable[..., tuple[Any, States]]
    jit: Callable[..., Any] = jax.jit


def _stripped(model: Model) -> Model:
    """A copy of `model` without its states and without the module's parameters (they
    come from `states.net_params`), so that the step functions close over no weights."""
    stripped = copy.copy(model)
    vars(stripped).pop("_jit_steps", None)
    vars(stripped).pop("_compiled", None)
    object.__setattr__(stripped, "states", None)
    if model.module is not None:
        object.__setattr__(
            stripped, "module", eqx.filter(model.module, eqx.is_inexact_array, inverse=True)
        )
    return stripped


def _step_rngs(rng: Any, seed: int, kind: int, epoch: Any, step: Any) -> tuple[RNGSeq, RNGSeq]:
    """The RNGs of one step: for `states.rng` and for the injected `rng`. They depend only
    on the model's seed, the kind of call, the epoch and the step."""
    base = rng.key if isinstance(rng, RNGSeq) else jax.random.key(seed)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(base, kind), epoch), step)
    return RNGSeq(jax.random.fold_in(key, 0)), RNGSeq(jax.random.fold_in(key, 1))


def _as_logs(logs: Mapping[str, Any]) -> dict[str, jax.Array]:
    return {name: jnp.asarray(value) for name, value in logs.items()}


def build_jit_steps(model: Model) -> JitSteps:
    """The default `jit_step`: the model's steps, with per-step RNGs, as pure functions
    closing over the model's configuration (not its states)."""
    static = _stripped(model)
    seed = model.seed

    def train(states: States, batch: Any, class_weight: Any, epoch: Any, step: Any) -> Any:
        x, y, sample_weight = batch
        srng, irng = _step_rngs(states.rng, seed, _TRAIN, epoch, step)
        logs, new = static._run(
            "train_step",
            x=x,
            y_true=y,
            sample_weight=sample_weight,
            class_weight=class_weight,
            states=states.update(rng=srng),
            initializing=False,
            training=True,
            rng=irng,
        )
        return _as_logs(logs), new.update(rng=states.rng)

    def test(states: States, batch: Any, class_weight: Any, step: Any) -> Any:
        x, y, sample_weight = batch
        srng, irng = _step_rngs(states.rng, seed, _TEST, 0, step)
        _, logs, new = static._run(
            "test_step",
            x=x,
            y_true=y,
            sample_weight=sample_weight,
            class_weight=class_weight,
            states=states.update(rng=srng),
            initializing=False,
            training=False,
            rng=irng,
        )
        return _as_logs(logs), new.update(rng=states.rng)

    def pred(states: States, x: Any, step: Any) -> Any:
        srng, irng = _step_rngs(states.rng, seed, _PRED, 0, step)
        y_pred, new = static._run(
            "pred_step",
            x=x,
            states=states.update(rng=srng),
            initializing=False,
            training=False,
            rng=irng,
        )
        return y_pred, new.update(rng=states.rng)

    def init(states: States, batch: Any, class_weight: Any) -> States:
        x, y, sample_weight = batch
        rng = states.rng if isinstance(states.rng, RNGSeq) else RNGSeq(seed)
        srng, irng = _step_rngs(rng, seed, _INIT, 0, 0)
        new = static._run(
            "init_step",
            x=x,
            y_true=y,
            sample_weight=sample_weight,
            class_weight=class_weight,
            states=states.update(rng=srng),
            initializing=True,
            training=True,
            rng=irng,
        )
        return new.update(rng=rng)

    return JitSteps(init=init, train=train, test=test, pred=pred)


def jit_steps(model: Model) -> JitSteps:
    """`model.jit_step()`, built once per model instance."""
    cached = vars(model).get("_jit_steps")
    if cached is None:
        cached = model.jit_step()
        object.__setattr__(model, "_jit_steps", cached)
    return cached


class Compiled(NamedTuple):
    """The compiled steps for one structure of the states, taking and returning the
    states as a flat list of arrays. `*_chunk` run a stacked chunk of batches."""

    train: Callable[..., tuple[Any, list[Any]]]
    train_chunk: Callable[..., tuple[Any, list[Any]]]
    test: Callable[..., tuple[Any, list[Any]]]
    test_chunk: Callable[..., tuple[Any, list[Any]]]
    pred: Callable[..., tuple[Any, list[Any]]]
    pred_chunk: Callable[..., tuple[Any, list[Any]]]


def _flat(
    fn: Callable[..., tuple[Any, States]], treedef: Any, owner: str, name: str
) -> Callable[..., tuple[Any, list[Any]]]:
    """`fn` on a flat list of state arrays, checking the structure stays the same."""

    def wrapped(leaves: list[Any], *rest: Any) -> tuple[Any, list[Any]]:
        out, new = fn(jax.tree.unflatten(treedef, leaves), *rest)
        new_leaves, new_def = jax.tree.flatten(new)
        if new_def != treedef:
            raise TypeError(
                f"{owner}.{name} changed the structure of the states (keys, or None/array "
                f"entries) after initialisation.\nBefore: {treedef}\nAfter:  {new_def}\n"
                "Create every entry when `initializing` is True (or in init_step/states_step) "
                "so that each step returns states of the same structure."
            )
        return out, new_leaves

    return wrapped


def _scan(one: Callable[..., tuple[Any, list[Any]]]) -> Callable[..., tuple[Any, list[Any]]]:
    """A one-step function `(leaves, batch, *fixed, step)` turned into one that runs a
    stacked chunk of batches with `lax.scan`, returning per-step outputs stacked."""

    def chunk(leaves: list[Any], batches: Any, *rest: Any) -> tuple[Any, list[Any]]:
        *fixed, step = rest
        steps = jax.tree.leaves(batches)[0].shape[0]

        def body(leaves: list[Any], inputs: tuple[Any, Any]) -> tuple[list[Any], Any]:
            batch, i = inputs
            out, leaves = one(leaves, batch, *fixed, step + i)
            return leaves, out

        indices = jnp.arange(steps, dtype=jnp.int32)
        leaves, outs = jax.lax.scan(body, leaves, (batches, indices))
        return outs, leaves

    return chunk


def compiled(model: Model, treedef: Any) -> Compiled:
    """The compiled steps of `model` for states of structure `treedef`, cached on the
    model so that later fits and evaluations compile nothing."""
    cache: dict[Any, Compiled] = vars(model).setdefault("_compiled", {})
    if treedef not in cache:
        steps = jit_steps(model)
        owner = type(model).__name__
        train = _flat(steps.train, treedef, owner, "train_step")
        test = _flat(steps.test, treedef, owner, "test_step")
        pred = _flat(steps.pred, treedef, owner, "pred_step")
        cache[treedef] = Compiled(
            train=steps.jit(train, donate_argnums=0),
            train_chunk=steps.jit(_scan(train), donate_argnums=0),
            test=steps.jit(test),
            test_chunk=steps.jit(_scan(test)),
            pred=steps.jit(pred),
            pred_chunk=steps.jit(_scan(pred)),
        )
    return cache[treedef]


def initialize(model: Model, batch: Any, class_weight: Any) -> States:
    """Run the model's init step on `batch` and store the result on the model."""
    steps = jit_steps(model)
    states = steps.jit(steps.init)(model.states, batch, class_weight)
    model._set_states(states, initialized=True)
    return states
