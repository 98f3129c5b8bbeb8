"""The step functions the loop runs, and their compiled, flat-state form.

`Model.jit_step` returns `JitSteps`: pure functions of `States`. The loop compiles each
once per model and per structure of the states, with the states passed as a flat list of
arrays: flattening equinox modules in Python on every call would cost more than a small
model's whole step, while a list of arrays crosses into the compiled call in C++.
"""

from __future__ import annotations

import copy
import functools
import math
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
    strategy = model.strategy

    def laid_out(out: Any, states: States) -> tuple[Any, States]:
        # A distribution strategy pins each step's outputs to its layout, so the states a
        # step returns are placed as those it got: no recompiles, donation still applies.
        if strategy is None:
            return out, states
        return strategy.constrain_outputs(out), strategy.constrain_states(states)

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
        return laid_out(_as_logs(logs), new.update(rng=states.rng))

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
        return laid_out(_as_logs(logs), new.update(rng=states.rng))

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
        return laid_out(y_pred, new.update(rng=states.rng))

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
        return laid_out(None, new.update(rng=rng))[1]

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


# Leaves up to this many elements are packed into one buffer per dtype (see `Layout`).
PACK_LIMIT = 16384


class Layout(NamedTuple):
    """How the flat buffers a compiled step takes map back to `States`.

    Every call of a compiled function pays per argument and per result, and a small
    model's states are dozens of scalars and small arrays (metric counters, biases,
    optimizer counts). So leaves of up to `PACK_LIMIT` elements travel packed into one
    buffer per dtype; larger leaves travel as themselves. Typed PRNG keys travel as their
    raw key data. `slots[i]` is `(buffer, offset, shape)` for leaf `i`, offset -1 meaning
    the buffer is the leaf itself; `buffers` gives each packed buffer's dtype.
    """

    treedef: Any
    keys: tuple[tuple[int, Any], ...]
    slots: tuple[tuple[int, int, tuple[int, ...]], ...]
    buffers: tuple[Any, ...]
    packed: bool


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def flatten_states(states: Any, *, pack: bool = True) -> tuple[list[Any], Layout]:
    """The states as a short list of arrays, and the layout to rebuild them. Works on
    concrete arrays and, inside a compiled step, on tracers."""
    leaves, treedef = jax.tree.flatten(states)
    keys = tuple((i, jax.random.key_impl(leaf)) for i, leaf in enumerate(leaves) if _is_key(leaf))
    for i, _ in keys:
        leaves[i] = jax.random.key_data(leaves[i])
    buffers: list[Any] = []
    slots: list[tuple[int, int, tuple[int, ...]]] = []
    groups: dict[Any, list[int]] = {}
    for i, leaf in enumerate(leaves):
        shape = tuple(getattr(leaf, "shape", ()))
        if pack and hasattr(leaf, "dtype") and math.prod(shape) <= PACK_LIMIT:
            groups.setdefault(jnp.dtype(leaf.dtype), []).append(i)
            slots.append((-1, 0, shape))  # filled in below
        else:
            slots.append((len(buffers), -1, shape))
            buffers.append(leaf)
    dtypes: list[Any] = [None] * len(buffers)
    for dtype, indices in groups.items():
        offset = 0
        for i in indices:
            slots[i] = (len(buffers), offset, slots[i][2])
            offset += math.prod(slots[i][2])
        buffers.append(jnp.concatenate([jnp.ravel(leaves[i]) for i in indices]))
        dtypes.append(dtype)
    return buffers, Layout(treedef, keys, tuple(slots), tuple(dtypes), pack)


def _unpack(layout: Layout, buffers: list[Any]) -> list[Any]:
    leaves = []
    for index, offset, shape in layout.slots:
        buffer = buffers[index]
        if offset >= 0:
            buffer = jnp.reshape(buffer[offset : offset + math.prod(shape)], shape)
        leaves.append(buffer)
    for i, impl in layout.keys:
        leaves[i] = jax.random.wrap_key_data(leaves[i], impl=impl)
    return leaves


def unflatten_states(layout: Layout, buffers: list[Any]) -> Any:
    """Inverse of `flatten_states`."""
    return jax.tree.unflatten(layout.treedef, _unpack(layout, buffers))


@functools.cache
def _host_unpack(layout: Layout) -> Callable[[list[Any]], list[Any]]:
    return jax.jit(functools.partial(_unpack, layout))


def unflatten_states_on_host(layout: Layout, buffers: list[Any]) -> Any:
    """`unflatten_states` for concrete buffers: one compiled call instead of an eager
    slice per leaf."""
    if all(offset < 0 for _, offset, _ in layout.slots) and not layout.keys:
        return jax.tree.unflatten(layout.treedef, list(buffers))
    return jax.tree.unflatten(layout.treedef, _host_unpack(layout)(list(buffers)))


def _flat(
    fn: Callable[..., tuple[Any, States]], layout: Layout, owner: str, name: str
) -> Callable[..., tuple[Any, list[Any]]]:
    """`fn(states, data, *rest)` on the flat buffers of `layout`, checking that the step
    returns states of the same layout. `counter` is `[epoch, step]` in one int32 array (one
    argument crossing into the compiled call instead of two)."""

    def wrapped(buffers: list[Any], data: Any, *rest: Any) -> tuple[Any, list[Any]]:
        *fixed, counter = rest
        args = (*fixed, counter[0], counter[1]) if name == "train_step" else (*fixed, counter[1])
        out, new = fn(unflatten_states(layout, buffers), data, *args)
        new_buffers, new_layout = flatten_states(new, pack=layout.packed)
        if new_layout != layout:
            raise TypeError(
                f"{owner}.{name} changed the structure, shapes or dtypes of the states after "
                f"initialisation.\nBefore: {_describe_layout(layout)}\n"
                f"After:  {_describe_layout(new_layout)}\nCreate every entry, with its final "
                "shape and dtype, when `initializing` is True (or in init_step/states_step) so "
                "that each step returns states like the ones it received."
            )
        return out, new_buffers

    return wrapped


def _describe_layout(layout: Layout) -> str:
    shapes = [shape for _, _, shape in layout.slots]
    return f"{layout.treedef} with leaf shapes {shapes}"


def _scan(one: Callable[..., tuple[Any, list[Any]]]) -> Callable[..., tuple[Any, list[Any]]]:
    """A one-step function `(buffers, batch, *fixed, counter)` turned into one that runs
    a stacked chunk of batches with `lax.scan`, returning per-step outputs stacked."""

    def chunk(buffers: list[Any], batches: Any, *rest: Any) -> tuple[Any, list[Any]]:
        *fixed, counter = rest
        steps = jax.tree.leaves(batches)[0].shape[0]

        def body(buffers: list[Any], inputs: tuple[Any, Any]) -> tuple[list[Any], Any]:
            batch, i = inputs
            out, buffers = one(buffers, batch, *fixed, counter.at[1].add(i))
            return buffers, out

        indices = jnp.arange(steps, dtype=jnp.int32)
        buffers, outs = jax.lax.scan(body, buffers, (batches, indices))
        return outs, buffers

    return chunk


def compiled(model: Model, layout: Layout) -> Compiled:
    """The compiled steps of `model` for states of the given layout, cached on the model
    so that later fits and evaluations compile nothing."""
    cache: dict[Any, Compiled] = vars(model).setdefault("_compiled", {})
    if layout not in cache:
        steps = jit_steps(model)
        owner = type(model).__name__
        train = _flat(steps.train, layout, owner, "train_step")
        test = _flat(steps.test, layout, owner, "test_step")
        pred = _flat(steps.pred, layout, owner, "pred_step")
        cache[layout] = Compiled(
            train=steps.jit(train, donate_argnums=0),
            train_chunk=steps.jit(_scan(train), donate_argnums=0),
            test=steps.jit(test),
            test_chunk=steps.jit(_scan(test)),
            pred=steps.jit(pred),
            pred_chunk=steps.jit(_scan(pred)),
        )
    return cache[layout]


def initialize(model: Model, batch: Any, class_weight: Any) -> States:
    """Run the model's init step on `batch` and store the result on the model."""
    steps = jit_steps(model)
    states = model.states
    if model.strategy is not None:
        states = model.strategy.put_states(states)
        batch = model.strategy.put_batch(batch, False)
    states = steps.jit(steps.init)(states, batch, class_weight)
    model._set_states(states, initialized=True)
    return states
