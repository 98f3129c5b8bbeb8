"""Tracebacks that lead to the user's code, not through the library's.

An error raised while `fit` (or `evaluate`, `predict`, ...) runs has unwound through
dozens of frames of eqx_elegy, equinox and jax before the user sees it: the loop, the
compiled step functions, injection, jax's tracing machinery. `user_facing` marks the
public entry points: an exception leaving one has those frames removed from its
traceback, so it shows the user's call and, when the error comes from code of theirs
that ran inside (a step, a callback, a data generator), the lines of that code, and
nothing between. JAX's note that it removed its own frames goes too (none are left).

This is JAX's own policy for its frames (`jax._src.traceback_util`), extended to the
libraries it runs under here, and it obeys JAX's switch: with
`JAX_TRACEBACK_FILTERING=off` (or `jax.config.update("jax_traceback_filtering", "off")`)
every frame is kept, for debugging the library itself.

Frames above an entry point cannot be removed from inside it: `model.fit(...)` goes
through equinox's bound-method wrapper, whose one frame (marked `__tracebackhide__`, so
pytest and IPython hide it) stays between the user's line and the error.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import jax

# The packages whose frames a user-facing traceback drops.
_INTERNAL = ("eqx_elegy", "equinox", "jax", "jaxlib")
# The start of the note JAX adds to an exception whose frames it filtered
# (`jax._src.traceback_util._simplified_tb_msg`).
_JAX_NOTE = "For simplicity, JAX has removed its internal frames"

_Params = ParamSpec("_Params")
_Out = TypeVar("_Out")


def _internal(frame: types.FrameType) -> bool:
    return frame.f_globals.get("__name__", "").split(".")[0] in _INTERNAL


def trim(error: BaseException) -> None:
    """Remove the frames of eqx_elegy, equinox and jax from `error`'s traceback, and JAX's
    note that it removed its own, unless JAX's traceback filtering is off. Re-raise
    `error` with a bare `raise` afterwards: `raise error` would add the current frame."""
    if jax.config.values["jax_traceback_filtering"] == "off":
        return
    kept: list[types.TracebackType] = []
    tb = error.__traceback__
    while tb is not None:
        if not _internal(tb.tb_frame):
            kept.append(tb)
        tb = tb.tb_next
    trimmed: types.TracebackType | None = None
    for entry in reversed(kept):
        trimmed = types.TracebackType(trimmed, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    error.with_traceback(trimmed)
    notes: list[str] | None = getattr(error, "__notes__", None)
    if notes is not None:
        notes[:] = [note for note in notes if _JAX_NOTE not in note]
        if not notes:
            del error.__notes__


def user_facing(method: Callable[_Params, _Out]) -> Callable[_Params, _Out]:
    """Mark a public entry point (`Model.fit`, ...): an exception leaving it is `trim`med,
    so that its traceback shows the user's frames only."""

    @functools.wraps(method)
    def entry(*args: _Params.args, **kwargs: _Params.kwargs) -> _Out:
        try:
            return method(*args, **kwargs)
        except Exception as error:
            trim(error)
            raise

    return entry
