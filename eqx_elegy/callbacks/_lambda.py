"""`LambdaCallback`: a callback made of plain functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._callback import HOOKS, Callback


class LambdaCallback(Callback):
    """A callback whose hooks are the functions passed by hook name, e.g.
    `LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))`.

    Each function takes the hook's arguments: `(logs)` for the begin/end of train, test
    and predict; `(epoch, logs)` for epochs; `(batch, logs)` for batches. Hooks not given
    do nothing and cost nothing.
    """

    def __init__(self, **hooks: Callable[..., Any]):
        super().__init__()
        for name, function in hooks.items():
            if name not in HOOKS:
                raise TypeError(
                    f"LambdaCallback got an unknown hook {name!r}; hooks are: {', '.join(HOOKS)}."
                )
            if not callable(function):
                raise TypeError(
                    f"LambdaCallback: {name} must be a function, got {type(function).__name__}."
                )
            setattr(self, name, _with_logs(function, takes_index=name not in _NO_INDEX))


# Hooks called with logs only; the others get an epoch or batch index first.
_NO_INDEX = frozenset(
    name
    for name in HOOKS
    if name.endswith(("_begin", "_end")) and "batch" not in name and "epoch" not in name
)


def _with_logs(function: Callable[..., Any], takes_index: bool) -> Callable[..., None]:
    """`function` called with its logs always passed (None when the loop gives none), as
    Keras' LambdaCallback does."""
    if takes_index:
        return lambda index, logs=None: function(index, logs)
    return lambda logs=None: function(logs)
