"""The step functions the loop runs, and their compiled form on flat states.

`Model.jit_step` returns `JitSteps`: the model's steps as pure functions of `States`,
one per step kind the loops run (`_steps.KINDS`), each built by `_step_function`. The
engine compiles them once per model and per structure of the states, taking the states
as the flat buffers of `_flat` (`compile_training`, `compile_evaluation`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import jaxpr_as_fun

from ._flat import (
    Layout,
    checked_buffers,
    flatten_states,
    unflatten_states,
    unpack_leaves,
)
from ._states import RNGSeq, States
from ._steps import KINDS, StepKind, run_step
from ._strategy import Strategy, strategy_of

if TYPE_CHECKING:
    from ._model import Model


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


def _step_rngs(rng: Any, seed: int, stream: int, epoch: Any, step: Any) -> tuple[RNGSeq, RNGSeq]:
    """The RNGs of one step: for `states.rng` and for the injected `rng`. They depend only
    on the model's seed, the kind's random stream, the epoch and the step."""
    base = rng.key if isinstance(rng, RNGSeq) else jax.random.key(seed)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(base, stream), epoch), step)
    return RNGSeq(jax.random.fold_in(key, 0)), RNGSeq(jax.random.fold_in(key, 1))


def _laid_out(strategy: Strategy, out: Any, new: States, old: States) -> tuple[Any, States]:
    """A step's outputs and new states pinned to the layout of the model's strategy, so
    that the states a step returns are placed as those it got: no
    recompiles, and donation still applies. Leaves the step passed through untouched keep
    their identity, so that an evaluation carries (and copies) only the leaves it
    changes."""
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


def _step_function(static: Model, kind: StepKind) -> Callable[..., Any]:
    """Step `kind` of the model as the pure function `JitSteps` holds for it: it takes the
    states and then `kind.arguments`, gives the step its RNGs (from the seed, the kind's
    stream, the epoch and the step), runs it by injection with the kind's flags, and
    returns the element `kind.returns` with the new states (or the new states alone),
    laid out by the model's strategy. `static` is the model without its states."""
    seed, strategy, names = static.seed, strategy_of(static), kind.arguments

    def run(states: States, *args: Any) -> Any:
        given = dict(zip(names, args, strict=True))
        rng = states.rng
        if kind.initializing and not isinstance(rng, RNGSeq):
            rng = RNGSeq(seed)
        srng, irng = _step_rngs(rng, seed, kind.stream, given.get("epoch", 0), given.get("step", 0))
        available: dict[str, Any] = {
            "states": states.update(rng=srng),
            "initializing": kind.initializing,
            "training": kind.training,
            "rng": irng,
        }
        if "batch" in given:
            x, y, sample_weight = given["batch"]
            available.update(
                x=x, y_true=y, sample_weight=sample_weight, class_weight=given["class_weight"]
            )
        else:
            available["x"] = given["x"]
        out = run_step(static, kind.name, **available)
        parts = dict(zip(kind.outputs, (out,) if len(kind.outputs) == 1 else out, strict=True))
        new = parts["states"].update(rng=rng)
        if kind.returns is None:
            return _laid_out(strategy, None, new, states)[1]
        result = parts[kind.returns]
        if kind.returns == "logs":
            result = {name: jnp.asarray(value) for name, value in result.items()}
        return _laid_out(strategy, result, new, states)

    return run


def build_jit_steps(model: Model) -> JitSteps:
    """The default `jit_step`: the model's steps, with per-step RNGs, as pure functions
    closing over the model's configuration (not its states)."""
    static = _stripped(model)
    return JitSteps(
        **{
            kind.compiled: _step_function(static, kind)
            for kind in KINDS.values()
            if kind.compiled is not None
        }
    )


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


def evaluation_function(steps: JitSteps, kind: StepKind, ema: bool) -> Callable[..., Any]:
    """The function of `steps` that evaluation kind `kind` compiles: with `ema`, it runs on
    the EMA of the weights (`states.ema_params` in place of `net_params`) and gives back
    the states with the raw weights, as they were."""
    fn: Callable[..., Any] = getattr(steps, str(kind.compiled))
    if not ema:
        return fn

    def on_ema(states: States, *args: Any) -> Any:
        swapped = states.update(net_params=states.ema_params)
        out, new = fn(swapped, *args)
        # The step left the weights as it got them: give back the raw ones, untouched.
        got: Any = jax.tree.structure(new.net_params)  # jax's PyTreeDef, which mypy
        given: Any = jax.tree.structure(swapped.net_params)  # cannot compare
        if got == given and all(
            a is b
            for a, b in zip(
                jax.tree.leaves(new.net_params), jax.tree.leaves(swapped.net_params), strict=True
            )
        ):
            new = new.update(net_params=states.net_params)
        return out, new

    return on_ema


def _counter_args(kind: StepKind, counter: Any) -> tuple[Any, ...]:
    """The `epoch` and `step` arguments of step `kind` from `counter`, `[epoch, step]` in
    one int32 array (one argument crossing into the compiled call instead of two)."""
    return (counter[0], counter[1]) if "epoch" in kind.arguments else (counter[1],)


def _metrics_reset(model: Model) -> Callable[[States], States] | None:
    """`states -> states` with the metrics at their initial values, or None when the
    model has no `loss`/`metrics` of its own to reset."""
    if model.loss is None and model.metrics is None:
        return None
    metrics = model._losses_and_metrics()
    return lambda states: states.update(metrics_states=metrics.init())


def _per_member(fn: Callable[..., Any], members: bool) -> Callable[..., Any]:
    """`fn` mapped over the leading member axis of a population's states (and of the logs
    they produce), or `fn` itself for one model."""
    return jax.vmap(fn) if members else fn


def _training(
    fn: Callable[..., tuple[Any, States]],
    layout: Layout,
    owner: str,
    reset: Callable[[States], States] | None,
    members: bool = False,
) -> tuple[Callable[..., tuple[Any, list[Any]]], Callable[..., tuple[Any, list[Any]]]]:
    """The train step `fn` on the flat buffers of `layout`, checking that it returns
    states of the same layout: for one batch, and for a stacked chunk of batches through
    `lax.scan`. The chunk unpacks the states once, runs its steps on them as they are,
    and packs them once at the end. With `reset`, an epoch's first step (`step` 0)
    starts from fresh metrics: inside the compiled step, so an epoch's start costs no
    extra call or compile. With `members`, the states (and logs) of a population carry a
    leading member axis, over which `fn` is already mapped."""
    kind = KINDS["train_step"]
    packed = _per_member(pack_logs, members)
    if reset is not None:
        reset = _per_member(reset, members)

    def checked(states: States, batch: Any, class_weight: Any, counter: Any) -> Any:
        if reset is not None:
            fresh = reset(states).metrics_states
            metrics = jax.tree.map(
                lambda new, old: jnp.where(counter[1] == 0, new, old),
                fresh,
                states.metrics_states,
            )
            states = states.update(metrics_states=metrics)
        logs, new = fn(states, batch, class_weight, *_counter_args(kind, counter))
        return packed(logs), new, checked_buffers(new, layout, owner, kind.name)

    def one(buffers: list[Any], batch: Any, class_weight: Any, counter: Any) -> Any:
        logs, _, new_buffers = checked(
            unflatten_states(layout, buffers), batch, class_weight, counter
        )
        return logs, new_buffers

    def chunk(buffers: list[Any], batches: Any, class_weight: Any, counter: Any) -> Any:
        def body(states: States, inputs: tuple[Any, Any]) -> tuple[States, Any]:
            batch, i = inputs
            logs, new, _ = checked(states, batch, class_weight, counter.at[1].add(i))
            return new, logs

        indices = jnp.arange(jax.tree.leaves(batches)[0].shape[0], dtype=jnp.int32)
        states, logs = jax.lax.scan(body, unflatten_states(layout, buffers), (batches, indices))
        return logs, flatten_states(states, pack=layout.packed)[0]

    return one, chunk


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


def compile_training(
    model: Model, steps: JitSteps, layout: Layout, *, members: bool = False
) -> Compiled:
    """The compiled training steps of `model` (from its `steps`) for states of the given
    layout. They close over the model's configuration, not over the model. `members`: the
    states are a population's, and `steps` are mapped over its members."""
    one, chunk = _training(
        steps.train, layout, type(model).__name__, _metrics_reset(model), members
    )
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


def carried_leaves(
    steps: JitSteps,
    name: str,
    layout: Layout,
    buffers: list[Any],
    args: tuple[Any, ...],
    ema: bool = False,
) -> _Carried:
    """The leaves of the states that the evaluation step `name` (`test_step` or
    `pred_step`) changes, for states of `layout`: found by tracing it once, abstractly,
    and checking which leaves it passes through untouched. `args` are one step's
    arguments after the states, the counter last (only their shapes and dtypes are
    used). `ema`: the step runs on the EMA weights (see `evaluation_function`).

    That trace is kept: the returned `step(states, *args)` replays it for arguments of
    the same shapes and dtypes (and runs the step for others), so that compiling the
    evaluation does not run the step's Python code a second time (once per compilation,
    DESIGN §9)."""
    kind = KINDS[name]
    fn = evaluation_function(steps, kind, ema)
    found: list[tuple[tuple[int, ...], Layout]] = []

    def run(states: States, *args: Any) -> tuple[Any, States]:
        *fixed, counter = args
        return fn(states, *fixed, *_counter_args(kind, counter))

    def traced(leaves: list[Any], *args: Any) -> Any:
        out, new = run(jax.tree.unflatten(layout.treedef, leaves), *args)
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

    leaves = jax.eval_shape(functools.partial(unpack_leaves, layout), buffers)
    closed, shapes = jax.make_jaxpr(traced, return_shape=True)(leaves, *args)
    in_tree: Any = jax.tree.structure((leaves, *args))  # jax's PyTreeDef: mypy cannot compare
    out_tree = jax.tree.structure(shapes)
    types = [(a.shape, a.dtype) for a in closed.in_avals]
    replay = jaxpr_as_fun(closed)

    def step(states: States, *args: Any) -> tuple[Any, States]:
        flat, tree = jax.tree.flatten((jax.tree.leaves(states), *args))
        if tree != in_tree or [_type(a) for a in flat] != types:
            return run(states, *args)
        return jax.tree.unflatten(out_tree, replay(*flat))

    return _Carried(*found[0], step)


def _type(value: Any) -> tuple[tuple[int, ...], Any]:
    aval = jax.typeof(value)
    return aval.shape, aval.dtype


def compile_evaluation(
    model: Model,
    steps: JitSteps,
    name: str,
    layout: Layout,
    carried: _Carried,
    *,
    members: bool = False,
) -> Evaluation:
    """The compiled `test_step` or `pred_step` (`name`) of `model` for states of the given
    layout: `carried.step` (on the EMA of the weights when `carried` was found with
    `ema`), carrying the leaves `carried` names (see `Evaluation`). `members`: as in
    `compile_training`."""
    kind = KINDS[name]
    fn = carried.step
    jit = steps.jit
    owner = type(model).__name__
    reset = _metrics_reset(model) if kind.packed_logs else None
    if reset is not None:
        reset = _per_member(reset, members)
    packed = _per_member(pack_logs, members)
    strategy = strategy_of(model)
    indices = carried.indices

    def carried_of(leaves: list[Any], counter: Any) -> list[Any]:
        return flatten_states([counter, *(leaves[i] for i in indices)], pack=layout.packed)[0]

    def start(buffers: list[Any]) -> Carry:
        states = unflatten_states(layout, buffers)
        if reset is not None:
            states = reset(states)
        states = strategy.constrain_states(states)  # laid out as the step will return them
        return carried_of(jax.tree.leaves(states), jnp.zeros(2, jnp.int32))

    def step(buffers: list[Any], carry: Carry, data: Any, *fixed: Any) -> tuple[Any, Carry]:
        counter, *changed = unpack_leaves(carried.layout, carry)
        leaves = unpack_leaves(layout, buffers)
        for i, leaf in zip(indices, changed, strict=True):
            leaves[i] = leaf
        states = jax.tree.unflatten(layout.treedef, leaves)
        out, new = fn(states, data, *fixed, counter)
        checked_buffers(new, layout, owner, name)
        new_leaves = jax.tree.leaves(new)
        if any(new_leaves[i] is not leaves[i] for i in set(range(len(leaves))) - set(indices)):
            raise TypeError(
                f"{owner}.{name} changes different entries of the states for different batch "
                "shapes; an evaluation step must change the same entries for every batch."
            )
        out = packed(out) if kind.packed_logs else out
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
