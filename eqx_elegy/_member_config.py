"""Whether a `Population`'s members are one program: the stacked model runs member 0's
configuration (its module's structure, losses, metrics, optimizer and settings) with every
member's states, so members built by a factory must not differ anywhere else, or the
others would silently train as member 0."""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import numpy as np

from ._engine import fields_of
from ._trainable import split_trainable

if TYPE_CHECKING:
    from ._model import Model

# Fields that may differ: they are what the members' states and seeds are made of.
_PER_MEMBER = frozenset({"states", "seed", "module_state"})


def check_same_configuration(members: list[Model]) -> None:
    """Raise a ValueError naming the first member and field whose configuration differs
    from member 0's."""
    first = members[0]
    for index, member in enumerate(members[1:], start=1):
        field = _first_difference(first, member)
        if field is not None:
            raise ValueError(
                f"Population: member {index} differs from member 0 in {field}, but a population "
                "trains every member with member 0's configuration (only the states differ: "
                "weights, optimizer state, random keys). Build the members alike; to sweep an "
                "optimizer setting, wrap the optimizer in optax.inject_hyperparams and pass "
                "hyperparams={'learning_rate': [...]} (or build it with the member's value: an "
                "injected hyperparameter lives in the states)."
            )


def _first_difference(first: Model, other: Model) -> str | None:
    if type(other) is not type(first):
        return f"its class ({type(other).__name__}, not {type(first).__name__})"
    mine, theirs = fields_of(first), fields_of(other)
    for name in sorted(mine.keys() | theirs.keys()):
        if name in _PER_MEMBER:
            continue
        if name not in mine or name not in theirs:
            return f"`{name}`"
        if name == "optimizer":
            if not _same_optimizer(first, other):
                return "`optimizer` (its update computes something else)"
        elif not _same(_static(mine[name]), _static(theirs[name]), set()):
            return f"`{name}`"
    return None


def _static(value: Any) -> Any:
    """`value` without its arrays (the weights a module is built with are states)."""
    return eqx.partition(value, eqx.is_array)[1]


def _same(a: Any, b: Any, seen: set[tuple[int, int]]) -> bool:
    """Equal configuration values: equal, or functions with the same code, defaults and
    closed-over values (a lambda built per member is the same function)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if (id(a), id(b)) in seen:  # a cycle through closures
        return True
    seen.add((id(a), id(b)))
    if isinstance(a, types.FunctionType):
        return (
            a.__code__ == b.__code__
            and _same(a.__defaults__, b.__defaults__, seen)
            and _same(_cells(a), _cells(b), seen)
        )
    if dataclasses.is_dataclass(a):  # equinox modules, losses, metrics
        names = [field.name for field in dataclasses.fields(a)]
        return _same(
            [getattr(a, n, None) for n in names], [getattr(b, n, None) for n in names], seen
        )
    if isinstance(a, functools.partial):
        return _same((a.func, a.args, a.keywords), (b.func, b.args, b.keywords), seen)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y, seen) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], seen) for k in a)
    if isinstance(a, np.ndarray | jax.Array):
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values that cannot be compared count as different
        return False


def _cells(function: types.FunctionType) -> tuple[Any, ...]:
    values = []
    for cell in function.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell
            values.append(None)
    return tuple(values)


def _same_optimizer(first: Model, other: Model) -> bool:
    """Whether the two members' optimizers compute the same update: the same program with
    the same constants, traced on abstract parameters (an injected hyperparameter is read
    from the state, so members built with different injected values are the same)."""
    if first.optimizer is None or other.optimizer is None:
        return first.optimizer is other.optimizer
    return _update_program(first) == _update_program(other)


def _update_program(member: Model) -> tuple[str, list[Any]]:
    optimizer = member.optimizer
    assert optimizer is not None
    params = member.states.net_params
    if member.trainable is not None:
        params = split_trainable(member.trainable, params)[0]
    params = jax.eval_shape(lambda: params)
    with jax.numpy_dtype_promotion("standard"):  # as the train step runs optax
        state = jax.eval_shape(optimizer.init, params)
        closed = jax.make_jaxpr(optimizer.update)(params, state, params)
    return str(closed.jaxpr), [np.asarray(c).tolist() for c in closed.consts]
