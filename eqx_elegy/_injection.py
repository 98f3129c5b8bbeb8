"""Dependency injection by parameter name for the step methods.

A step receives only the parameters it names. The names a step may ask for are fixed;
an unknown one is reported when the class is defined, not when `fit` first runs.
"""

from __future__ import annotations

import functools
import inspect
import types
import weakref
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

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

# Parameters that default to False rather than None when a caller leaves them out.
_FLAGS = ("initializing", "training")

_Self = TypeVar("_Self")
_Params = ParamSpec("_Params")
_Out = TypeVar("_Out")

# The function behind each `default_step` wrapper, which injection calls directly: it
# passes every parameter by name already, so the wrapper's binding is not needed there.
_IMPLEMENTATIONS: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any]] = (
    weakref.WeakKeyDictionary()
)


def default_step(
    fn: Callable[Concatenate[_Self, _Params], _Out],
) -> Callable[Concatenate[_Self, ...], _Out]:
    """Declare one of `Model`'s default step methods.

    Type checkers see the method as `(self, *args: Any, **kwargs: Any) -> Out`, so that a
    user's override may take any subset of the injectable names and still pass pyright's
    and mypy's override checks, while its return type is still checked. At run time
    `inspect.signature` shows the real parameters, and a call (`super().test_step(x,
    states=states)`, say) binds positional arguments in parameter order, ignores
    injectable names the step does not use (so a caller can pass all it has), and leaves
    those not given as None (`initializing`, `training`: False). More positional
    arguments than parameters, a name twice, or a name that is not injectable is a
    TypeError.
    """
    params = tuple(inspect.signature(fn).parameters)[1:]

    @functools.wraps(fn)
    def step(self: _Self, *args: Any, **kwargs: Any) -> _Out:
        owner = f"{type(self).__name__}.{fn.__name__}"
        if len(args) > len(params):
            raise TypeError(
                f"{owner} takes {len(params)} positional arguments ({', '.join(params)}) but "
                f"{len(args)} were given."
            )
        bound: dict[str, Any] = {name: name in _FLAGS and False or None for name in params}
        bound.update(zip(params, args, strict=False))
        for name, value in kwargs.items():
            if name in params[: len(args)]:
                raise TypeError(f"{owner} got multiple values for argument {name!r}.")
            if name in params:
                bound[name] = value
            elif name not in INJECTABLE:
                raise TypeError(
                    f"{owner} got an unexpected keyword argument {name!r}; steps take "
                    f"{', '.join(INJECTABLE)}."
                )
        return fn(self, **bound)  # type: ignore[call-arg]

    _IMPLEMENTATIONS[step] = fn
    return step


def _signature(fn: Any) -> inspect.Signature:
    return inspect.signature(inspect.unwrap(fn))


def _wanted(method: Any) -> tuple[str, ...] | None:
    """The injectable names `method` takes, or None if it takes `**kwargs` (all)."""
    names: list[str] = []
    for param in list(_signature(method).parameters.values())[1:]:
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


Plan = tuple[Callable[..., Any], tuple[str, ...] | None]
_PLANS: weakref.WeakKeyDictionary[type, dict[str, Plan]] = weakref.WeakKeyDictionary()

# The step each class defined, as written, where the class holds a wrapper that checks
# its output (`_steps.checked_step`) instead: injection calls this one.
_UNCHECKED: weakref.WeakKeyDictionary[type, dict[str, Any]] = weakref.WeakKeyDictionary()


def register_unchecked(cls: type, method_name: str, step: Any) -> None:
    """Record that `cls` defines step `method_name` as `step` (a value of its class dict)
    but holds a checking wrapper of it: `call_plan` calls `step`, as `run_step` checks the
    output itself, so that no step is checked twice."""
    _UNCHECKED.setdefault(cls, {})[method_name] = step


def _unchecked(cls: type, method_name: str) -> Any:
    """The step `method_name` of `cls` as its class wrote it (see `register_unchecked`),
    or None if that class holds it unwrapped."""
    owner = next(klass for klass in cls.__mro__ if method_name in vars(klass))
    return _UNCHECKED.get(owner, {}).get(method_name)


def call_plan(cls: type, method_name: str) -> Plan:
    """How to call step `method_name` of instances of `cls` by injection: a function
    taking the instance and keyword arguments, and the names to pass it (None: all).

    A plain function is called through the class, with the instance as its first
    argument: equinox makes a new bound-method object at each attribute access on an
    instance, and a frame at each call of one. A default step is called without its
    argument-binding wrapper, and a user's step without the wrapper that checks its
    output (`register_unchecked`). Anything else (e.g. a step decorated with
    `eqx.filter_jit`) is bound to the instance as usual."""
    plans = _PLANS.setdefault(cls, {})
    plan = plans.get(method_name)
    if plan is None:
        unchecked = _unchecked(cls, method_name)
        method = getattr(cls, method_name) if unchecked is None else unchecked
        call: Callable[..., Any]
        if isinstance(method, types.FunctionType):
            call = _IMPLEMENTATIONS.get(method, method)
        elif unchecked is not None:
            call = functools.partial(_call_bound, unchecked)
        else:
            call = functools.partial(_call_on_instance, method_name)
        plan = plans[method_name] = (call, _wanted(method))
    return plan


def _call_bound(step: Any, obj: Any, **kwargs: Any) -> Any:
    return step.__get__(obj, type(obj))(**kwargs)


def _call_on_instance(method_name: str, obj: Any, **kwargs: Any) -> Any:
    return getattr(obj, method_name)(**kwargs)
