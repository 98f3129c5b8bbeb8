"""The step kinds: one table of what each step method is, its typed output, and the
run-time check of that output.

`KINDS` is the one place a step kind is described: its output alias and elements, and,
for the four the loops compile, the arguments of its compiled function, its random
stream, whether it trains or initialises, and how the compiled call treats the states.
The class-creation check (`Model.__init_subclass__`), `run_step` (injection and output
check) and the compiler (`_jit`) all read it; a new step kind is a new row here, its
default method on `Model`, and (if the loops run it) its use in `_loop`.

The aliases are plain tuple types, so a step annotated `-> TestStep` may `return loss,
logs, states` and pass pyright and mypy. At run time `check_output` verifies each output
with jaxtyping and beartype and raises a `TypeError` that names the model class, the
method, the alias and the offending element with its shape and dtype.

The check runs while a step is traced (`run_step` is called inside `jax.jit`), so it
costs nothing once the step is compiled; `Model(check_types=False)` skips it entirely.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import jax
import numpy as np
from beartype.door import is_bearable
from jaxtyping import Array, ArrayLike, Float, PyTree, Shaped

from ._injection import call_plan
from ._states import States

if TYPE_CHECKING:
    from ._model import Model

Logs: TypeAlias = Mapping[str, ArrayLike]
PredStep: TypeAlias = tuple[PyTree, States]
TestStep: TypeAlias = tuple[Float[Array, ""], Logs, States]
GradStep: TypeAlias = tuple[Float[Array, ""], Logs, States, PyTree]
TrainStep: TypeAlias = tuple[Logs, States]
InitStep: TypeAlias = States

# The run-time forms of the element types. They are values here (hints passed to
# beartype), which static checkers do not model, hence `Any`.
_SCALAR_FLOAT: Any = Float[Array, ""]
_SCALAR: Any = Shaped[Array, ""] | Shaped[np.ndarray, ""] | bool | int | float | np.number


@dataclasses.dataclass(frozen=True)
class StepKind:
    """One step method and how the library runs it.

    - `name`: the method, e.g. `"train_step"`.
    - `alias`: its output alias (`"TrainStep"`), None when the output is not checked;
      `outputs`: the alias's elements, in order.
    - `compiled`: the `JitSteps` field holding its compiled-form function (None when the
      loops do not run it directly), which takes the states and then `arguments`.
    - `stream`: the random stream its compiled calls derive keys from, so that training,
      evaluation, prediction and initialisation never reuse a key.
    - `training`, `initializing`: the flags the loops pass it.
    - `states`: how its compiled call treats the states: `"donated"` (training: the
      buffers are consumed and new ones returned), `"carried"` (evaluation: the states
      are read in place and only the leaves the step changes are carried from call to
      call), `"built"` (initialisation: new states from old).
    - `returns`: the output element its compiled function returns beside the states
      (None: the states alone); `packed_logs`: whether that element is logs, packed into
      one array as they leave the compiled call.
    """

    name: str
    alias: str | None
    outputs: tuple[str, ...] = ()
    compiled: str | None = None
    arguments: tuple[str, ...] = ()
    stream: int = -1
    training: bool = False
    initializing: bool = False
    states: Literal["donated", "carried", "built", None] = None
    returns: str | None = None
    packed_logs: bool = False


_BATCH = ("batch", "class_weight")

KINDS: dict[str, StepKind] = {
    kind.name: kind
    for kind in (
        StepKind(
            "pred_step",
            "PredStep",
            ("y_pred", "states"),
            compiled="pred",
            arguments=("x", "step"),
            stream=2,
            states="carried",
            returns="y_pred",
        ),
        StepKind(
            "test_step",
            "TestStep",
            ("loss", "logs", "states"),
            compiled="test",
            arguments=(*_BATCH, "step"),
            stream=1,
            states="carried",
            returns="logs",
            packed_logs=True,
        ),
        StepKind("grad_step", "GradStep", ("loss", "logs", "states", "grads")),
        StepKind(
            "train_step",
            "TrainStep",
            ("logs", "states"),
            compiled="train",
            arguments=(*_BATCH, "epoch", "step"),
            stream=0,
            training=True,
            states="donated",
            returns="logs",
            packed_logs=True,
        ),
        StepKind(
            "init_step",
            "InitStep",
            ("states",),
            compiled="init",
            arguments=_BATCH,
            stream=3,
            training=True,
            initializing=True,
            states="built",
        ),
        StepKind("summary_step", None),
    )
}

# The element names of each alias, for messages.
_LAYOUTS: dict[str, tuple[str, ...]] = {
    kind.alias: kind.outputs for kind in KINDS.values() if kind.alias is not None
}


def describe(value: Any) -> str:
    """A short description of a value: arrays (and tracers) as `dtype[shape]`, e.g.
    `float32[8]` or `int32[]`, containers by type and length or keys."""
    if isinstance(value, jax.Array):
        return f"{value.dtype}{list(value.shape)}"
    if isinstance(value, np.ndarray | np.generic):
        return f"numpy {value.dtype}{list(value.shape)}"
    if isinstance(value, States):
        return "States"
    if isinstance(value, tuple | list):
        inner = ", ".join(describe(v) for v in value[:6])
        return f"{type(value).__name__}({inner}{', ...' if len(value) > 6 else ''})"
    if isinstance(value, Mapping):
        return f"{type(value).__name__} with keys {list(value)[:8]}"
    if isinstance(value, bool | int | float):
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__


class StepOutputError(TypeError):
    """A step returned something that does not match its declared output alias."""


# Tracebacks name an exception by its class's module: show the public name,
# `eqx_elegy.StepOutputError`, which is where users import it from.
StepOutputError.__module__ = "eqx_elegy"


def defined_at(cls: type, method: str) -> str | None:
    """`file:line` of the definition of step `method` that `cls` runs, when a user's
    class defines it (through decorators such as `eqx.filter_jit`); None for the
    library's own steps."""
    fn: Any = inspect.getattr_static(cls, method, None)
    while not isinstance(fn, types.FunctionType) and hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    fn = inspect.unwrap(fn) if isinstance(fn, types.FunctionType) else None
    if fn is None or fn.__module__.split(".")[0] == __name__.split(".")[0]:
        return None
    return f"{fn.__code__.co_filename}:{fn.__code__.co_firstlineno}"


def _fail(
    owner: str, method: str, alias: str, problem: str, value: Any, where: str | None
) -> StepOutputError:
    layout = ", ".join(_LAYOUTS[alias])
    location = f" {owner}.{method} is defined at {where}." if where else ""
    return StepOutputError(
        f"{owner}.{method} must return elegy.{alias} ({layout}), but {problem}. "
        f"It returned: {describe(value)}.{location}"
    )


def _check_loss(loss: Any) -> str | None:
    if is_bearable(loss, _SCALAR_FLOAT):
        return None
    return (
        f"its loss is {describe(loss)}, not a scalar float array (Float[Array, '']): "
        "reduce it with jnp.mean or jnp.sum, and compute it in a float dtype"
    )


def _check_logs(logs: Any) -> str | None:
    if not isinstance(logs, Mapping):
        return f"its logs are a {type(logs).__name__}, not a mapping from names to scalars"
    for name, value in logs.items():
        if not isinstance(name, str):
            return f"its logs have the non-string key {name!r}"
        if not is_bearable(value, _SCALAR):
            return (
                f"its log {name!r} is {describe(value)}, not a scalar: each log holds one "
                "number (reduce it, e.g. with jnp.mean)"
            )
    return None


def _paths(tree: Any) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


def _check_grads(grads: Any, net_params: Any) -> str | None:
    # jaxlib ships no stubs for PyTreeDef, so mypy cannot type its comparison.
    expected_def: Any = jax.tree.structure(net_params)
    got_def: Any = jax.tree.structure(grads)
    if expected_def != got_def:
        expected, got = _paths(net_params), _paths(grads)
        missing = [f"grads{p}" for p in expected if p not in got]
        extra = [f"grads{p}" for p in got if p not in expected]
        found = "; ".join(
            f"{what} {', '.join(paths[:5])}"
            for what, paths in (("missing", missing), ("unexpected", extra))
            if paths
        )
        return (
            f"its grads do not have the leaves of states.net_params "
            f"({found or f'expected {expected_def}, got {got_def}'}); "
            "return one gradient per parameter, e.g. from jax.grad w.r.t. states.net_params"
        )
    pairs = zip(jax.tree.leaves(net_params), jax.tree.leaves(grads), strict=True)
    for index, (param, grad) in enumerate(pairs):
        if getattr(param, "shape", None) != getattr(grad, "shape", None) or getattr(
            param, "dtype", None
        ) != getattr(grad, "dtype", None):
            path = _paths(net_params)[index]
            return (
                f"grads{path} is {describe(grad)} while "
                f"states.net_params{path} is {describe(param)}"
            )
    return None


def _check_y_pred(y_pred: Any, batch_size: int) -> str | None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(y_pred):
        shape: tuple[int, ...] = tuple(getattr(leaf, "shape", ()))
        if not shape or shape[0] != batch_size:
            return (
                f"y_pred{jax.tree_util.keystr(path)} is {describe(leaf)}, without the batch "
                f"dimension {batch_size} of x in front"
            )
    return None


def check_output(
    owner: str,
    method: str,
    alias: str,
    value: Any,
    *,
    net_params: Any = None,
    batch_size: int | None = None,
    where: str | None = None,
) -> None:
    """Raise `StepOutputError` unless `value` matches the step output alias `alias`.

    `owner` and `method` name the model class and step for the message. `net_params`
    (for GradStep) lets the grads be compared with the parameters leaf by leaf, by path,
    shape and dtype; `batch_size` (for PredStep) checks that every prediction leaf keeps
    the batch dimension of `x`. `where` (`file:line`, see `defined_at`) ends the
    message, so that it leads to the user's step.
    """
    layout = _LAYOUTS[alias]
    if alias == "InitStep":
        parts = {"states": value}
    elif isinstance(value, tuple) and len(value) == len(layout):
        parts = dict(zip(layout, value, strict=True))
    else:
        what = f"a tuple of {len(value)}" if isinstance(value, tuple) else "not a tuple"
        length = f"it returned {what}, not a tuple of {len(layout)}"
        raise _fail(owner, method, alias, length, value, where)
    problem: str | None = None
    if not isinstance(parts["states"], States):
        problem = f"its states element is {describe(parts['states'])}, not elegy.States"
    if problem is None and "loss" in parts:
        problem = _check_loss(parts["loss"])
    if problem is None and "logs" in parts:
        problem = _check_logs(parts["logs"])
    if problem is None and "grads" in parts and net_params is not None:
        problem = _check_grads(parts["grads"], net_params)
    if problem is None and "y_pred" in parts and batch_size is not None:
        problem = _check_y_pred(parts["y_pred"], batch_size)
    if problem is not None:
        raise _fail(owner, method, alias, problem, value, where)


def run_step(model: Model, name: str, **available: Any) -> Any:
    """Call step `name` of `model` with those of the injectable values `available` that
    it names, and check its output against the step's alias (unless the model has
    `check_types=False`). This is how every step is called: by the compiled functions,
    by the default steps calling each other, and by `summary`."""
    call, wanted = call_plan(type(model), name)
    if wanted is None:
        out = call(model, **available)
    else:
        out = call(model, **{key: available[key] for key in wanted if key in available})
    alias = KINDS[name].alias
    if model.check_types and alias is not None:
        check_output(
            type(model).__name__,
            name,
            alias,
            out,
            net_params=available["states"].net_params if name == "grad_step" else None,
            batch_size=batch_size_of(available["x"])
            if name == "pred_step" and model.vmap
            else None,
            where=defined_at(type(model), name),
        )
    return out


def batch_size_of(x: Any) -> int:
    """The leading (batch) dimension of the arrays of `x`: a Python int, or a symbolic
    dimension when `x` is traced for `Model.export` (so never `int()` it)."""
    leaves = jax.tree.leaves(x)
    if not leaves or not getattr(leaves[0], "shape", ()):
        raise ValueError("x must contain arrays with a leading batch dimension.")
    return leaves[0].shape[0]


def require_predictor(model: Model, method: str) -> None:
    """Raise the error that says what to do when `model` cannot predict: it has no
    module and does not override pred_step."""
    if model.module is None and "pred_step" not in model._overridden():
        raise TypeError(
            f"{type(model).__name__}.{method} needs predictions, but the model has no module "
            "and does not override pred_step: pass Model(module=...) or override pred_step."
        )
