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
A user's own steps are also wrapped when their class is created (`checked_step`), so
that calling one directly checks its output too; the loops call them unwrapped, so each
call is checked once. A message ends with where the output came from (`location`: the
step's `return` line, or its `def`).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import equinox as eqx
import jax
import numpy as np
from beartype.door import is_bearable
from jaxtyping import Array, ArrayLike, Float, PyTree, Shaped

from ._injection import call_plan
from ._states import States
from ._traceback import trim

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


def _user_function(cls: type, method: str) -> types.FunctionType | None:
    """The function a user's class defines for step `method`, as written (behind
    decorators such as `eqx.filter_jit` and the output check of `checked_step`); None
    for the library's own steps."""
    fn: Any = inspect.getattr_static(cls, method, None)
    while not isinstance(fn, types.FunctionType) and hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    fn = inspect.unwrap(fn) if isinstance(fn, types.FunctionType) else None
    if fn is None or fn.__module__.split(".")[0] == __name__.split(".")[0]:
        return None
    return fn


def defined_at(cls: type, method: str) -> str | None:
    """`file:line` of the definition of step `method` that `cls` runs, when a user's
    class defines it (through decorators such as `eqx.filter_jit`); None for the
    library's own steps."""
    fn = _user_function(cls, method)
    if fn is None:
        return None
    return f"{fn.__code__.co_filename}:{fn.__code__.co_firstlineno}"


def _return_lines(fn: types.FunctionType) -> list[int]:
    """The line numbers of the `return` statements of `fn` itself (not of functions
    defined inside it), read from its source; empty when the source cannot be read."""
    try:
        lines, first = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return []
    found: list[int] = []
    pending: list[ast.AST] = list(ast.iter_child_nodes(tree.body[0])) if tree.body else []
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Return):
            found.append(first + node.lineno - 1)
        elif not isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
        ):
            pending.extend(ast.iter_child_nodes(node))
    return sorted(found)


def location(cls: type, method: str) -> str | None:
    """Where a user's step `method` of `cls` gives its output, for the end of a message:
    `"returned it at file:line"` when the function has one `return` statement (the
    output came from that line), else `"is defined at file:line"` (its `def`); None for
    the library's own steps. It reads the source, so it is called only for a message."""
    fn = _user_function(cls, method)
    if fn is None:
        return None
    returns = _return_lines(fn)
    if len(returns) == 1:
        return f"returned it at {fn.__code__.co_filename}:{returns[0]}"
    return f"is defined at {fn.__code__.co_filename}:{fn.__code__.co_firstlineno}"


def _fail(
    owner: str,
    method: str,
    alias: str,
    problem: str,
    value: Any,
    where: Callable[[], str | None] | None,
) -> StepOutputError:
    layout = ", ".join(_LAYOUTS[alias])
    place = where() if where is not None else None
    return StepOutputError(
        f"{owner}.{method} must return elegy.{alias} ({layout}), but {problem}. "
        f"It returned: {describe(value)}.{f' {owner}.{method} {place}.' if place else ''}"
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
    where: Callable[[], str | None] | None = None,
) -> None:
    """Raise `StepOutputError` unless `value` matches the step output alias `alias`.

    `owner` and `method` name the model class and step for the message. `net_params`
    (for GradStep) lets the grads be compared with the parameters leaf by leaf, by path,
    shape and dtype; `batch_size` (for PredStep) checks that every prediction leaf keeps
    the batch dimension of `x`. `where` (called only on a mismatch; see `location`) says
    where the user's step gave the output, e.g. `"returned it at file:line"`, and ends
    the message, so that it leads to the user's code.
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
            where=functools.partial(location, type(model), name),
        )
    return out


# The type of the wrappers `eqx.filter_jit` makes.
_FILTER_JIT: Any = type(eqx.filter_jit(describe))


def checked_step(cls: type, name: str, step: Any) -> Any:
    """`step`, a user's override of step `name` as class `cls` defines it (the value in
    its `__dict__`), wrapped so that calling it directly (`model.test_step(...)`, eagerly
    or under `jax.jit` or `eqx.filter_jit`) checks its output as the loops do; None when
    it is left as it is: a step without an output alias, or one behind a decorator other
    than `eqx.filter_jit` (the loops still check those).

    A plain function gets a wrapper made with `functools.wraps`, so its signature, name
    and `__wrapped__` stay the user's. A step decorated with `eqx.filter_jit` keeps its
    compiled wrapper, with its options, around the checking function, so the check runs
    when it is traced, not at each call. The check inspects shapes and dtypes only, so
    under a jit it costs nothing once compiled; an eager call pays it each time. The
    loops call the user's function without this wrapper (`register_unchecked`) and check
    its output themselves: once per trace, never twice.
    """
    if KINDS[name].alias is None:
        return None
    if isinstance(step, types.FunctionType):
        return _checking(cls, name, step)
    inner = getattr(step, "__wrapped__", None)
    if type(step) is _FILTER_JIT and isinstance(inner, types.FunctionType):
        fresh: Any = eqx.filter_jit(_checking(cls, name, inner))
        # The user's wrapper, with its donation and jit options, around the new function.
        rejitted = dataclasses.replace(
            step, _dynamic_fun=fresh._dynamic_fun, _static_fun=fresh._static_fun
        )
        return eqx.module_update_wrapper(rejitted)
    return None


def _checking(cls: type, name: str, step: types.FunctionType) -> Callable[..., Any]:
    """`step` with its output checked against the alias of step `name` (unless the model
    has `check_types=False`), and the traceback of an error trimmed to the user's frames;
    the messages name `cls`, the class that defines it."""
    alias: str = KINDS[name].alias or ""
    signature = inspect.signature(step, follow_wrapped=False)

    @functools.wraps(step)
    def checked(self: Model, *args: Any, **kwargs: Any) -> Any:
        try:
            out = step(self, *args, **kwargs)
            if self.check_types:
                given = _arguments(signature, self, args, kwargs)
                states, x = given.get("states"), given.get("x")
                check_output(
                    cls.__name__,
                    name,
                    alias,
                    out,
                    net_params=states.net_params
                    if name == "grad_step" and isinstance(states, States)
                    else None,
                    batch_size=batch_size_of(x)
                    if name == "pred_step" and self.vmap and _has_batch(x)
                    else None,
                    where=functools.partial(location, cls, name),
                )
        except Exception as error:
            trim(error)
            raise
        return out

    return checked


def _arguments(
    signature: inspect.Signature, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The arguments of a call of a step, by parameter name (and the keywords its
    `**kwargs` took)."""
    return {**kwargs, **signature.bind(self, *args, **kwargs).arguments}


def _has_batch(x: Any) -> bool:
    leaves = jax.tree.leaves(x)
    return bool(leaves) and bool(getattr(leaves[0], "shape", ()))


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
