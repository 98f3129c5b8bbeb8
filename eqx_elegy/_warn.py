"""Warnings that point at the user's code: the line that called `fit` (or `evaluate`,
...), however many frames of eqx_elegy and equinox lie between it and the warning."""

from __future__ import annotations

import sys
import warnings
from types import FrameType

# Packages whose frames a warning skips: ours, and equinox, whose method wrappers add a
# frame to every call of a Model method.
_INTERNAL = ("eqx_elegy", "equinox")


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """`warnings.warn(message, category)`, attributed to the first frame outside
    eqx_elegy and equinox, so that the warning names the user's file and line (and
    the default filter shows it once per such line)."""
    level = 2  # for `warnings.warn`, 1 is this function
    frame: FrameType | None = sys._getframe(1)  # the function that warns
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in _INTERNAL:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
