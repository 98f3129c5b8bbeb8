"""Watching one log value: which way is better, and a warning when the log is missing."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Literal

Mode = Literal["auto", "min", "max"]

# Name fragments that say which way a log should move, used by mode="auto".
_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "mape", "msle", "hinge", "crossentropy")
_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1")


class Monitor:
    """The log `name` that a callback watches, and what counts as an improvement.

    `mode="auto"` minimises names that look like losses or errors and maximises names that
    look like accuracies, AUC, precision, recall or F1; other names need an explicit mode.
    """

    def __init__(self, owner: str, name: str, mode: str, min_delta: float = 0.0):
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"{owner}: monitor must be a log name such as 'val_loss', got {name!r}."
            )
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}.")
        if not isinstance(min_delta, int | float) or not math.isfinite(min_delta):
            raise ValueError(f"{owner}: min_delta must be a finite number, got {min_delta!r}.")
        if mode == "auto":
            mode = _direction(owner, name)
        self.owner = owner
        self.name = name
        self.mode = mode
        self.min_delta = abs(float(min_delta))
        self._warned = False

    def value(self, logs: Mapping[str, Any] | None, consequence: str) -> float | None:
        """The watched value in `logs`, or None (with a warning, the first time) when the
        logs do not have it."""
        if logs is not None and self.name in logs:
            return float(logs[self.name])
        if not self._warned:
            self._warned = True
            available = ", ".join(sorted(logs or {})) or "none"
            warnings.warn(
                f"{self.owner}: monitor={self.name!r} is not in the logs (available: "
                f"{available}); {consequence}",
                UserWarning,
                stacklevel=3,
            )
        return None

    def improved(self, current: float, reference: float | None) -> bool:
        """Whether `current` beats `reference` by more than `min_delta` (anything beats None;
        NaN never improves)."""
        if math.isnan(current):
            return False
        if reference is None:
            return True
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta


def direction(name: str) -> Literal["min", "max"] | None:
    """Which way log `name` should move, from its name ("min" for losses and errors, "max"
    for accuracies and the like), or None when the name does not say."""
    bare = name.removeprefix("val_").lower()
    if any(part in bare for part in _LOWER_IS_BETTER):
        return "min"
    if any(part in bare for part in _HIGHER_IS_BETTER):
        return "max"
    return None


def _direction(owner: str, name: str) -> Literal["min", "max"]:
    found = direction(name)
    if found is not None:
        return found
    raise ValueError(
        f"{owner}: mode='auto' cannot tell whether monitor={name!r} should go down or up; "
        "pass mode='min' or mode='max'."
    )
