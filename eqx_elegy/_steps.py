"""The typed outputs of the step methods, and their run-time check.

The aliases are plain tuple types, so a step annotated `-> TestStep` may `return loss,
logs, states` and pass pyright and mypy. At run time (at trace time, so it costs nothing
per step) `check_output` verifies each output with jaxtyping and raises a `TypeError`
that names the model class, the method, the alias and what came back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import jax
import numpy as np
from beartype.door import is_bearable
from jaxtyping import Array, ArrayLike, Float, PyTree, Shaped

from ._states import States

Logs: TypeAlias = Mapping[str, ArrayLike]
PredStep: TypeAlias = tuple[PyTree, States]
TestStep: TypeAlias = tuple[Float[Array, ""], Logs, States]
GradStep: TypeAlias = tuple[Float[Array, ""], Logs, States, PyTree]
TrainStep: TypeAlias = tuple[Logs, States]
InitStep: TypeAlias = States

_LAYOUTS: dict[str, tuple[str, ...]] = {
    "PredStep": ("y_pred", "states"),
    "TestStep": ("loss", "logs", "states"),
    "GradStep": ("loss", "logs", "states", "grads"),
    "TrainStep": ("logs", "states"),
}


def describe(value: Any) -> str:
    """A short description of a value: arrays by dtype and shape, containers by type."""
    if isinstance(value, jax.Array | np.ndarray | np.generic):
        return f"{type(value).__name__}[{value.dtype}{list(value.shape)}]"
    if isinstance(value, tuple | list) and not isinstance(value, States):
        inner = ", ".join(describe(v) for v in value[:6])
        return f"{type(value).__name__}({inner}{', ...' if len(value) > 6 else ''})"
    if isinstance(value, States):
        return "States"
    if isinstance(value, Mapping):
        return f"{type(value).__name__} with keys {list(value)[:8]}"
    return type(value).__name__


class StepOutputError(TypeError):
    """A step returned something that does not match its declared output alias."""


def _fail(owner: str, method: str, alias: str, problem: str, value: Any) -> StepOutputError:
    layout = ", ".join(_LAYOUTS.get(alias, ("states",)))
    return StepOutputError(
        f"{owner}.{method} must return elegy.{alias} ({layout}), but {problem}. "
        f"Got: {describe(value)}."
    )


def _check_states(owner: str, method: str, alias: str, value: Any, whole: Any) -> None:
    if not isinstance(value, States):
        raise _fail(owner, method, alias, f"its states element is a {type(value).__name__}", whole)


def _check_loss(owner: str, method: str, alias: str, loss: Any, whole: Any) -> None:
    if not is_bearable(loss, Float[Array, ""]):
        raise _fail(
            owner,
            method,
            alias,
            f"its loss is {describe(loss)}, not a scalar float array (Float[Array, '']); "
            "reduce it with jnp.mean/jnp.sum and make sure it is a float",
            whole,
        )


def _is_scalar(value: Any) -> bool:
    if isinstance(value, bool | int | float | np.number):
        return True
    return is_bearable(value, Shaped[Array, ""] | Shaped[np.ndarray, ""])


def _check_logs(owner: str, method: str, alias: str, logs: Any, whole: Any) -> None:
    if not isinstance(logs, Mapping):
        raise _fail(
            owner, method, alias, f"its logs are a {type(logs).__name__}, not a dict", whole
        )
    for name, value in logs.items():
        if not isinstance(name, str):
            raise _fail(owner, method, alias, f"its logs have a non-string key {name!r}", whole)
        if not _is_scalar(value):
            raise _fail(
                owner,
                method,
                alias,
                f"its log {name!r} is {describe(value)}, not a scalar; logs hold one number each",
                whole,
            )


def _check_grads(
    owner: str, method: str, grads: Any, net_params: Any, whole: Any, alias: str
) -> None:
    expected = jax.tree.structure(net_params)
    got = jax.tree.structure(grads)
    if expected != got:
        raise _fail(
            owner,
            method,
            alias,
            f"its grads do not have the structure of states.net_params "
            f"(expected {expected}, got {got})",
            whole,
        )
    paths = jax.tree_util.tree_leaves_with_path(net_params)
    for (path, param), grad in zip(paths, jax.tree.leaves(grads), strict=True):
        if getattr(param, "shape", None) != getattr(grad, "shape", None) or getattr(
            param, "dtype", None
        ) != getattr(grad, "dtype", None):
            raise _fail(
                owner,
                method,
                alias,
                f"grads{jax.tree_util.keystr(path)} is {describe(grad)} while the parameter "
                f"is {describe(param)}",
                whole,
            )


def check_output(
    owner: str,
    method: str,
    alias: str,
    value: Any,
    *,
    net_params: Any = None,
    batch_size: int | None = None,
) -> None:
    """Raise `StepOutputError` unless `value` matches the step output alias `alias`.

    `net_params` (for GradStep) lets the grads be compared leaf by leaf; `batch_size` (for
    PredStep) checks that every prediction leaf keeps the batch dimension of `x`.
    """
    if alias == "InitStep":
        _check_states(owner, method, alias, value, value)
        return
    size = len(_LAYOUTS[alias])
    if not isinstance(value, tuple) or len(value) != size:
        what = f"a tuple of {len(value)}" if isinstance(value, tuple) else "not a tuple"
        raise _fail(owner, method, alias, f"it returned {what}, not a tuple of {size}", value)
    parts = dict(zip(_LAYOUTS[alias], value, strict=True))
    _check_states(owner, method, alias, parts["states"], value)
    if "loss" in parts:
        _check_loss(owner, method, alias, parts["loss"], value)
    if "logs" in parts:
        _check_logs(owner, method, alias, parts["logs"], value)
    if "grads" in parts and net_params is not None:
        _check_grads(owner, method, parts["grads"], net_params, value, alias)
    if "y_pred" in parts and batch_size is not None:
        for path, leaf in jax.tree_util.tree_leaves_with_path(parts["y_pred"]):
            shape = getattr(leaf, "shape", ())
            if len(shape) == 0 or shape[0] != batch_size:
                raise _fail(
                    owner,
                    method,
                    alias,
                    f"y_pred{jax.tree_util.keystr(path)} has shape {tuple(shape)}, "
                    f"without the batch dimension {batch_size} of x in front",
                    value,
                )
