"""Dependency injection by parameter name for the step methods.

A step receives only the parameters it names. The names a step may ask for are fixed;
an unknown one is reported when the class is defined, not when `fit` first runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

INJECTABLE: tuple[str, ...] = (
    "x",
    "y_true",
    "y_pred",
    "sample_weight",
    "class_weight",
    "states",
    "initializing",
    "training",
    "rng",
)

STEP_METHODS: tuple[str, ...] = (
    "pred_step",
    "test_step",
    "grad_step",
    "train_step",
    "init_step",
    "summary_step",
)


def _signature(fn: Any) -> inspect.Signature:
    return inspect.signature(inspect.unwrap(fn))


@functools.cache
def _wanted(cls: type, method_name: str) -> tuple[str, ...] | None:
    """The injectable names `cls.method_name` takes, or None if it takes `**kwargs` (all)."""
    names: list[str] = []
    for param in list(_signature(getattr(cls, method_name)).parameters.values())[1:]:
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if param.kind is not inspect.Parameter.VAR_POSITIONAL:
            names.append(param.name)
    return tuple(names)


def check_step_signature(cls_name: str, method_name: str, fn: Any) -> None:
    """Raise TypeError if the step `fn`, defined on class `cls_name`, names a parameter that
    cannot be injected or takes one positional-only."""
    for param in list(_signature(fn).parameters.values())[1:]:
        if param.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            continue
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(
                f"{cls_name}.{method_name}: parameter {param.name!r} is positional-only; "
                "step parameters are injected by name, so remove the '/'."
            )
        if param.name not in INJECTABLE:
            raise TypeError(
                f"{cls_name}.{method_name} asks for parameter {param.name!r}, which cannot be "
                f"injected. Valid names: {', '.join(INJECTABLE)}."
            )


def inject(obj: Any, method_name: str, **available: Any) -> Any:
    """Call `obj.method_name` with those of `available` that the method names."""
    cls: type = type(obj)
    wanted = _wanted(cls, method_name)
    method: Callable[..., Any] = getattr(obj, method_name)
    if wanted is None:
        return method(**available)
    return method(**{name: available[name] for name in wanted if name in available})
