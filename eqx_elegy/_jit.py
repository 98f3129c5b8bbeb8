"""The step functions the loop runs, and their compiled, flat-state form.

`Model.jit_step` returns `JitSteps`: pure functions of `States`. The loop compiles each
once per model and per structure of the states, with the states passed as a flat list of
arrays: flattening equinox modules in Python on every call would cost more than a small
model's whole step, while a list of arrays crosses into the compiled call in C++.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import jaxpr_as_fun

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
    come from `states.net_params`), so that the step functions close over no weights.
    Built with `eqx.tree_at`, which makes a new instance from the fields alone: the copy
    has no engine, and holds no reference to the model."""
    module = model.module
    if module is not None:
        module = eqx.filter(module, eqx.is_inexact_array, inverse=True)
    return eqx.tree_at(
        lambda m: (m.states, m.module), model, (None, module), is_leaf=lambda x: x is None
    )


def _step_rngs(rng: Any, seed: int, kind: int, epoch: Any, step: Any) -> tuple[RNGSeq, RNGSeq]:
    """The RNGs of one step: for `states.rng` and for the injected `rng`. They depend only
    on the model's seed, the kind of call, the epoch and the step."""
    base = rng.key if isinstance(rng, RNGSeq) else jax.random.key(seed)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(base, kind), epoch), step)
    return RNGSeq(jax.random.fold_in(key, 0)), RNGSeq(jax.random.fold_in(key, 1))


def _as_logs(logs: Mapping[str, Any]) -> dict[str, jax.Array]:
    return {name: jnp.asarray(value) for name, value in logs.items()}


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["values", "rest"], meta_fields=["names"]
)
@dataclasses.dataclass(frozen=True)
class PackedLogs:
    """A step's logs as they leave the compiled call: the floating-point scalars stacked
    into `values` (one output buffer, in the order of `names`, instead of one per log:
    each output costs the call a few microseconds), the other logs in `rest`. Under
    `lax.scan` every leaf gains a leading steps axis."""

    names: tuple[str, ...]
    values: Any
    rest: dict[str, Any]


def pack_logs(logs: Mapping[str, Any]) -> PackedLogs:
    """Pack the logs a step returned (inside the compiled call)."""
    logs = {name: jnp.asarray(value) for name, value in logs.items()}
    names = tuple(
        sorted(k for k, v in logs.items() if v.shape == () and jnp.issubdtype(v.dtype, jnp.inexact))
    )
    rest = {k: v for k, v in logs.items() if k not in names}
    if not names:
        return PackedLogs((), None, rest)
    with jax.numpy_dtype_promotion("standard"):
        dtype = jnp.result_type(*(logs[k] for k in names))
    return PackedLogs(names, jnp.stack([logs[k].astype(dtype) for k in names]), rest)


def build_jit_steps(model: Model) -> JitSteps:
    """The default `jit_step`: the model's steps, with per-step RNGs, as pure functions
    closing over the model's configuration (not its states)."""
    static = _stripped(model)
    seed = model.seed
    strategy = model.strategy

    def laid_out(out: Any, new: States, old: States) -> tuple[Any, States]:
        # A distribution strategy pins each step's outputs to its layout, so the states a
        # step returns are placed as those it got: no recompiles, donation still applies.
        # Leaves the step passed through untouched keep their identity, so that an
        # evaluation carries (and copies) only the leaves it changes.
        if strategy is None:
            return out, new
        treedef: Any  # jax's PyTreeDef, which mypy cannot compare
        new_leaves, treedef = jax.tree.flatten(new)
        old_leaves, old_treedef = jax.tree.flatten(old)
        placed = strategy.constrain_states(new)
        if treedef != old_treedef:
            return strategy.constrain_outputs(out), placed
        kept = [
            leaf if leaf is before else constrained
            for leaf, before, constrained in zip(
                new_leaves, old_leaves, jax.tree.leaves(placed), strict=True
            )
        ]
        return strategy.constrain_outputs(out), jax.tree.unflatten(treedef, kept)

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
        return laid_out(_as_logs(logs), new.update(rng=states.rng), states)

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
        return laid_out(_as_logs(logs), new.update(rng=states.rng), states)

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
        return laid_out(y_pred, new.update(rng=states.rng), states)

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
        return laid_out(None, new.update(rng=rng), states)[1]

    return JitSteps(init=init, train=train, test=test, pred=pred)


class Compiled(NamedTuple):
    """The compiled training steps for one structure of the states, taking and returning
    the states as a flat list of arrays (donated). `train_chunk` runs a stacked chunk of
    batches. The first step of an epoch resets the metrics."""

    train: Callable[..., tuple[Any, list[Any]]]
    train_chunk: Callable[..., tuple[Any, list[Any]]]


# What an evaluation step carries to the next: the `[epoch, step]` counter, kept on the
# device, and the leaves of the states the step changes, packed as `flatten_states` does.
Carry = list[Any]


class Evaluation(NamedTuple):
    """The compiled test or pred steps for one structure of the states.

    `step(buffers, carry, batch, *fixed) -> (outputs, carry)` takes the states' buffers,
    which it leaves as they are, and a `Carry` holding the few leaves the step changes
    (for the default test step, the metrics), which it donates and returns. So an
    evaluation step copies only what it changes, not the parameters and optimizer state,
    and takes no argument from the host but the batch. `start(buffers)` gives the first
    carry, with the metrics reset for a test; `chunk` runs a stacked chunk of batches.
    """

    start: Callable[[list[Any]], Carry]
    step: Callable[..., tuple[Any, Carry]]
    chunk: Callable[..., tuple[Any, Carry]]


# Leaves up to this many elements are packed into shared buffers (see `Layout`).
PACK_LIMIT = 16384


class Layout(NamedTuple):
    """How the flat buffers a compiled step takes map back to `States`.

    Every call of a compiled function pays per argument and per result (a few
    microseconds each on CPU), and a small model's states are dozens of scalars and small
    arrays (metric counters, biases, optimizer counts). So leaves of up to `PACK_LIMIT`
    elements travel packed, bit for bit, into one unsigned-integer buffer per bit width
    (float32, int32 and PRNG key data share one uint32 buffer); larger leaves travel as
    themselves. Typed PRNG keys travel as their raw key data. `slots[i]` is
    `(buffer, offset, shape, dtype)` for leaf `i`, offset -1 meaning the buffer is the
    leaf itself; `buffers` gives each packed buffer's dtype.
    """

    treedef: Any
    keys: tuple[tuple[int, Any], ...]
    slots: tuple[tuple[int, int, tuple[int, ...], Any], ...]
    buffers: tuple[Any, ...]
    packed: bool


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _carrier(dtype: Any) -> Any:
    """The dtype a packed leaf of `dtype` travels as: the unsigned integer of its width
    for numbers (a free bitcast), else its own."""
    if jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating):
        return jnp.dtype(f"uint{8 * jnp.dtype(dtype).itemsize}")
    return jnp.dtype(dtype)


def _raw_leaves(states: Any) -> tuple[list[Any], Any, tuple[tuple[int, Any], ...]]:
    """The leaves of `states` with typed PRNG keys replaced by their key data."""
    leaves, treedef = jax.tree.flatten(states)
    keys = tuple((i, jax.random.key_impl(leaf)) for i, leaf in enumerate(leaves) if _is_key(leaf))
    for i, _ in keys:
        leaves[i] = jax.random.key_data(leaves[i])
    return leaves, treedef, keys


def _layout(leaves: list[Any], treedef: Any, keys: Any, pack: bool) -> Layout:
    slots: list[Any] = []
    unpacked = 0
    groups: dict[Any, list[int]] = {}
    for i, leaf in enumerate(leaves):
        shape, dtype = tuple(getattr(leaf, "shape", ())), getattr(leaf, "dtype", None)
        if pack and dtype is not None and math.prod(shape) <= PACK_LIMIT:
            groups.setdefault(_carrier(dtype), []).append(i)
            slots.append((-1, 0, shape, dtype))  # filled in below
        else:
            slots.append((unpacked, -1, shape, dtype))
            unpacked += 1
    carriers: list[Any] = [None] * unpacked
    for carrier, indices in groups.items():
        offset = 0
        for i in indices:
            _, _, shape, dtype = slots[i]
            slots[i] = (len(carriers), offset, shape, dtype)
            offset += math.prod(shape)
        carriers.append(carrier)
    return Layout(treedef, keys, tuple(slots), tuple(carriers), pack)


def _pack(layout: Layout, leaves: list[Any]) -> list[Any]:
    buffers: list[Any] = [None] * len(layout.buffers)
    parts: dict[int, list[Any]] = {}
    for leaf, (index, offset, _, _) in zip(leaves, layout.slots, strict=True):
        if offset < 0:
            buffers[index] = leaf
        else:
            bits = jax.lax.bitcast_convert_type(leaf, layout.buffers[index])
            parts.setdefault(index, []).append(jnp.ravel(bits))
    for index, ravelled in parts.items():
        buffers[index] = jnp.concatenate(ravelled)
    return buffers


def flatten_states(states: Any, *, pack: bool = True) -> tuple[list[Any], Layout]:
    """The states as a short list of arrays, and the layout to rebuild them. Works on
    concrete arrays and, inside a compiled step, on tracers."""
    leaves, treedef, keys = _raw_leaves(states)
    layout = _layout(leaves, treedef, keys, pack)
    return _pack(layout, leaves), layout


@functools.cache
def _host_pack(layout: Layout) -> Callable[[list[Any]], list[Any]]:
    return jax.jit(functools.partial(_pack, layout))


def flatten_states_on_host(states: Any, *, pack: bool = True) -> tuple[list[Any], Layout]:
    """`flatten_states` for concrete arrays: one compiled call instead of an eager op per
    leaf."""
    leaves, treedef, keys = _raw_leaves(states)
    layout = _layout(leaves, treedef, keys, pack)
    if not pack:
        return leaves, layout
    return _host_pack(layout)(leaves), layout


def _unpack(layout: Layout, buffers: list[Any]) -> list[Any]:
    leaves = []
    for index, offset, shape, dtype in layout.slots:
        leaf = buffers[index]
        if offset >= 0:
            bits = jnp.reshape(leaf[offset : offset + math.prod(shape)], shape)
            leaf = jax.lax.bitcast_convert_type(bits, dtype)
        leaves.append(leaf)
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
    if not layout.packed and not layout.keys:
        return jax.tree.unflatten(layout.treedef, list(buffers))
    return jax.tree.unflatten(layout.treedef, _host_unpack(layout)(list(buffers)))


def _checked(new: Any, layout: Layout, owner: str, name: str) -> list[Any]:
    """The flat buffers of the states `new` a step returned, checked to have the layout
    of the states it received."""
    new_buffers, new_layout = flatten_states(new, pack=layout.packed)
    if new_layout != layout:
        raise TypeError(
            f"{owner}.{name} changed the structure, shapes or dtypes of the states after "
            f"initialisation: {_difference(layout, new_layout, new)}.\nCreate every entry, "
            "with its final shape and dtype, when `initializing` is True (or in "
            "init_step/states_step) so that each step returns states like the ones it received."
        )
    return new_buffers


def _difference(layout: Layout, new_layout: Layout, new: Any) -> str:
    """The first difference between two layouts, for an error message."""
    if new_layout.treedef != layout.treedef:
        return f"\nBefore: {layout.treedef}\nAfter:  {new_layout.treedef}"
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(new)]
    paths = [re.sub(r"^\._data\['([^']*)'\]", r".\1", path) for path in paths]  # States' entries
    for path, (*_, shape, dtype), (*_, new_shape, new_dtype) in zip(
        paths, layout.slots, new_layout.slots, strict=True
    ):
        if (shape, dtype) != (new_shape, new_dtype):
            return (
                f"states{path} was {_aval(shape, dtype)} and became {_aval(new_shape, new_dtype)}"
            )
    return "its PRNG keys changed implementation"


def _aval(shape: tuple[int, ...], dtype: Any) -> str:
    return f"{jnp.dtype(dtype).name}{list(shape)}"


def _counted(fn: Callable[..., tuple[Any, States]], name: str) -> Callable[..., tuple[Any, States]]:
    """`fn` taking `counter`, `[epoch, step]` in one int32 array (one argument crossing
    into the compiled call instead of two), as its last argument."""

    def wrapped(states: States, data: Any, *rest: Any) -> tuple[Any, States]:
        *fixed, counter = rest
        if name == "train_step":
            return fn(states, data, *fixed, counter[0], counter[1])
        return fn(states, data, *fixed, counter[1])

    return wrapped


def _training(
    fn: Callable[..., tuple[Any, States]], layout: Layout, owner: str
) -> tuple[Callable[..., tuple[Any, list[Any]]], Callable[..., tuple[Any, list[Any]]]]:
    """The train step `fn` on the flat buffers of `layout`, checking that it returns
    states of the same layout: for one batch, and for a stacked chunk of batches through
    `lax.scan`. The chunk unpacks the states once, runs its steps on them as they are,
    and packs them once at the end."""
    step = _counted(fn, "train_step")

    def checked(states: States, batch: Any, *rest: Any) -> tuple[Any, States, list[Any]]:
        logs, new = step(states, batch, *rest)
        return pack_logs(logs), new, _checked(new, layout, owner, "train_step")

    def one(buffers: list[Any], batch: Any, *rest: Any) -> tuple[Any, list[Any]]:
        logs, _, new_buffers = checked(unflatten_states(layout, buffers), batch, *rest)
        return logs, new_buffers

    def chunk(buffers: list[Any], batches: Any, *rest: Any) -> tuple[Any, list[Any]]:
        *fixed, counter = rest

        def body(states: States, inputs: tuple[Any, Any]) -> tuple[States, Any]:
            batch, i = inputs
            logs, new, _ = checked(states, batch, *fixed, counter.at[1].add(i))
            return new, logs

        indices = jnp.arange(jax.tree.leaves(batches)[0].shape[0], dtype=jnp.int32)
        states, logs = jax.lax.scan(body, unflatten_states(layout, buffers), (batches, indices))
        return logs, flatten_states(states, pack=layout.packed)[0]

    return one, chunk


def _metrics_reset(model: Model) -> Callable[[States], States] | None:
    """`states -> states` with the metrics at their initial values, or None when the
    model has no `loss`/`metrics` of its own to reset."""
    if model.loss is None and model.metrics is None:
        return None
    metrics = model._losses_and_metrics()
    return lambda states: states.update(metrics_states=metrics.init())


def _fresh_epochs(
    fn: Callable[..., tuple[Any, States]], reset: Callable[[States], States] | None
) -> Callable[..., tuple[Any, States]]:
    """The train step `fn`, resetting the metrics first when `step` is an epoch's first:
    inside the compiled step, so an epoch's start costs no extra call or compile."""
    if reset is None:
        return fn

    def train(states: States, batch: Any, class_weight: Any, epoch: Any, step: Any) -> Any:
        fresh = reset(states).metrics_states
        metrics = jax.tree.map(
            lambda new, old: jnp.where(step == 0, new, old), fresh, states.metrics_states
        )
        return fn(states.update(metrics_states=metrics), batch, class_weight, epoch, step)

    return train


def _scan_or_steps(scanned: Callable[..., Any], stepwise: Callable[..., Any]) -> Callable[..., Any]:
    """A chunk function: `scanned` (one `lax.scan`), unless the step convolves and runs on
    CPU, where XLA runs a convolution inside a loop body many times slower than the same
    convolution outside one (jax-ml/jax#12868: about 10x for a small CNN, forward and
    backward). There the chunk's steps run as one compiled call each (`stepwise`),
    dispatched without waiting, which gives the same results at the speed of
    `steps_per_execution=1`. Decided once, from the chunk's trace, which the scanned
    version reuses."""
    slow: list[bool] = []

    def chunk(*args: Any) -> Any:
        if not slow:
            slow.append(_loops_are_slow(scanned, args))
        return (stepwise if slow[0] else scanned)(*args)

    return chunk


def _loops_are_slow(fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    trace = getattr(fn, "trace", None)  # a user's `jit_step` compiler may have none
    if jax.default_backend() != "cpu" or trace is None:
        return False
    return _convolves(trace(*args).jaxpr.jaxpr)


def _convolves(jaxpr: Any) -> bool:
    """Whether `jaxpr`, or a jaxpr nested in it, has a convolution."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            return True
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns") and _convolves(inner):
                    return True
    return False


def _step(batches: Any, i: int) -> Any:
    return jax.tree.map(lambda a: a[i], batches)


def _stacked(outputs: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outputs)


def _train_steps(one: Callable[..., tuple[Any, list[Any]]]) -> Callable[..., Any]:
    """The train chunk as one call of `one` per step."""

    def chunk(buffers: list[Any], batches: Any, class_weight: Any, counter: Any) -> Any:
        logs = []
        for i in range(jax.tree.leaves(batches)[0].shape[0]):
            step_counter = counter + np.array([0, i], np.int32)
            out, buffers = one(buffers, _step(batches, i), class_weight, step_counter)
            logs.append(out)
        return _stacked(logs), buffers

    return chunk


def _eval_steps(one: Callable[..., tuple[Any, Carry]]) -> Callable[..., Any]:
    """An evaluation chunk as one call of `one` per step."""

    def chunk(buffers: list[Any], carry: Carry, batches: Any, *fixed: Any) -> Any:
        outs = []
        for i in range(jax.tree.leaves(batches)[0].shape[0]):
            out, carry = one(buffers, carry, _step(batches, i), *fixed)
            outs.append(out)
        return _stacked(outs), carry

    return chunk


def compile_training(model: Model, steps: JitSteps, layout: Layout) -> Compiled:
    """The compiled training steps of `model` (from its `steps`) for states of the given
    layout. They close over the model's configuration, not over the model."""
    step = _fresh_epochs(steps.train, _metrics_reset(model))
    one, chunk = _training(step, layout, type(model).__name__)
    train = steps.jit(one, donate_argnums=0)
    return Compiled(
        train=train,
        train_chunk=_scan_or_steps(steps.jit(chunk, donate_argnums=0), _train_steps(train)),
    )


class _Carried(NamedTuple):
    """Which leaves of the states an evaluation step changes, the layout of the `Carry`
    that holds them (after the counter), and `step`: the step as traced to find them."""

    indices: tuple[int, ...]
    layout: Layout
    step: Callable[..., tuple[Any, States]]


def _carried(
    fn: Callable[..., tuple[Any, States]], layout: Layout, buffers: list[Any], args: tuple[Any, ...]
) -> _Carried:
    """The leaves of the states that `fn(states, *args)` changes: found by tracing it
    once, abstractly, and checking which leaves it passes through untouched.

    That trace is kept: the returned `step` replays it for arguments of the same shapes
    and dtypes (and calls `fn` for others), so that compiling the evaluation does not run
    the step's Python code a second time (once per compilation, DESIGN §9)."""
    found: list[tuple[tuple[int, ...], Layout]] = []

    def traced(leaves: list[Any], *args: Any) -> Any:
        out, new = fn(jax.tree.unflatten(layout.treedef, leaves), *args)
        new_leaves, treedef = jax.tree.flatten(new)
        if treedef != layout.treedef:  # the step's own trace raises the clear error
            new_leaves = [None] * len(leaves)
        indices = tuple(
            i for i, (a, b) in enumerate(zip(leaves, new_leaves, strict=True)) if a is not b
        )
        counter = args[-1]
        carried = flatten_states([counter, *(leaves[i] for i in indices)], pack=layout.packed)[1]
        found.append((indices, carried))
        return out, new

    leaves = jax.eval_shape(functools.partial(_unpack, layout), buffers)
    closed, shapes = jax.make_jaxpr(traced, return_shape=True)(leaves, *args)
    in_tree = jax.tree.structure((leaves, *args))
    out_tree = jax.tree.structure(shapes)
    types = [(a.shape, a.dtype) for a in closed.in_avals]
    replay = jaxpr_as_fun(closed)

    def step(states: States, *args: Any) -> tuple[Any, States]:
        flat, tree = jax.tree.flatten((jax.tree.leaves(states), *args))
        if tree != in_tree or [_type(a) for a in flat] != types:
            return fn(states, *args)
        return jax.tree.unflatten(out_tree, replay(*flat))

    return _Carried(*found[0], step)


def _type(value: Any) -> tuple[tuple[int, ...], Any]:
    aval = jax.typeof(value)
    return aval.shape, aval.dtype


def carried_leaves(
    steps: JitSteps, name: str, layout: Layout, buffers: list[Any], args: tuple[Any, ...]
) -> _Carried:
    """The leaves of the states that the evaluation step `name` (`test_step` or
    `pred_step`) changes, for states of `layout`; `args` are one step's arguments after
    the states (their shapes and dtypes are all that is used)."""
    fn = _counted(steps.test if name == "test_step" else steps.pred, name)
    return _carried(fn, layout, buffers, args)


def compile_evaluation(
    model: Model, steps: JitSteps, name: str, layout: Layout, carried: _Carried
) -> Evaluation:
    """The compiled `test_step` or `pred_step` (`name`) of `model` for states of the given
    layout, carrying the leaves `carried` names."""
    return _evaluation(model, steps.jit, carried.step, layout, name, carried)


def _evaluation(
    model: Model,
    jit: Callable[..., Any],
    fn: Callable[..., tuple[Any, States]],
    layout: Layout,
    name: str,
    carried: _Carried,
) -> Evaluation:
    owner = type(model).__name__
    reset = _metrics_reset(model) if name == "test_step" else None
    strategy = model.strategy
    indices = carried.indices

    def carried_of(leaves: list[Any], counter: Any) -> list[Any]:
        return flatten_states([counter, *(leaves[i] for i in indices)], pack=layout.packed)[0]

    def start(buffers: list[Any]) -> Carry:
        states = unflatten_states(layout, buffers)
        if reset is not None:
            states = reset(states)
        if strategy is not None:  # laid out as the step will return them
            states = strategy.constrain_states(states)
        return carried_of(jax.tree.leaves(states), jnp.zeros(2, jnp.int32))

    def step(buffers: list[Any], carry: Carry, data: Any, *fixed: Any) -> tuple[Any, Carry]:
        counter, *changed = _unpack(carried.layout, carry)
        leaves = _unpack(layout, buffers)
        for i, leaf in zip(indices, changed, strict=True):
            leaves[i] = leaf
        out, new = fn(jax.tree.unflatten(layout.treedef, leaves), data, *fixed, counter)
        _checked(new, layout, owner, name)
        new_leaves = jax.tree.leaves(new)
        if any(new_leaves[i] is not leaves[i] for i in set(range(len(leaves))) - set(indices)):
            raise TypeError(
                f"{owner}.{name} changes different entries of the states for different batch "
                "shapes; an evaluation step must change the same entries for every batch."
            )
        out = pack_logs(out) if name == "test_step" else out
        return out, carried_of(new_leaves, counter.at[1].add(1))

    def chunk(buffers: list[Any], carry: Carry, batches: Any, *fixed: Any) -> tuple[Any, Carry]:
        def body(carry: Carry, batch: Any) -> tuple[Carry, Any]:
            out, carry = step(buffers, carry, batch, *fixed)
            return carry, out

        carry, outs = jax.lax.scan(body, carry, batches)
        return outs, carry

    one = jit(step, donate_argnums=1)
    scanned = jit(chunk, donate_argnums=1)
    return Evaluation(start=jit(start), step=one, chunk=_scan_or_steps(scanned, _eval_steps(one)))
