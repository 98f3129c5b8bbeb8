"""Choosing the adapter for whatever the user passed as data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from .._warn import warn_user
from ._adapter import DataAdapter
from ._arrays import ArrayAdapter
from ._iterable import INFINITE, IterableAdapter, describe_source, is_one_pass, source_length
from ._sequence import Sequence, SequenceAdapter


def _is_arrays(x: Any) -> bool:
    """Arrays and pytrees of them (containers, or anything without `__iter__`, which the
    array adapter then checks leaf by leaf)."""
    return (
        x is None
        or isinstance(x, np.ndarray | jax.Array | str | bytes | list | tuple | Mapping)
        or hasattr(x, "__array__")
        or not (hasattr(x, "__iter__") or _is_indexed(x))
    )


def _is_indexed(x: Any) -> bool:
    """A `Sequence`, or a duck-typed one: `__len__` and `__getitem__` but no `__iter__`
    of its own (a grain MapDataset iterates itself, so it goes through `__iter__`)."""
    return isinstance(x, Sequence) or (
        hasattr(x, "__len__") and hasattr(x, "__getitem__") and not hasattr(x, "__iter__")
    )


def is_batch_list(x: Any) -> bool:
    """A Python list of batches: every item a tuple `(x, y)` or `(x, y, sample_weight)`.
    (A list of arrays is a pytree of inputs.)"""
    return (
        isinstance(x, list)
        and bool(x)
        and all(type(item) is tuple and len(item) in (2, 3) for item in x)
    )


def is_source(x: Any, y: Any = None, sample_weight: Any = None) -> bool:
    """Whether `x` yields its own batches (a `DataAdapter`, a generator, an iterable, a
    `Sequence`, a list of `(x, y)` batches), as opposed to arrays that `batch_size` cuts
    into batches. A list of tuples given with `y` or `sample_weight` is a pytree of
    inputs."""
    if is_batch_list(x):
        return y is None and sample_weight is None
    return isinstance(x, DataAdapter) or not _is_arrays(x)


def adapter_for(
    x: Any,
    y: Any = None,
    sample_weight: Any = None,
    *,
    batch_size: int | None = None,
    steps: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    drop_remaining: bool = False,
    repeated: bool = False,
    name: str = "x",
    y_name: str = "y",
    batch_size_name: str = "batch_size",
    steps_name: str = "steps",
) -> DataAdapter:
    """The adapter for the user's data, validated here, before anything compiles.

    - arrays and pytrees of arrays (with `y`, `sample_weight`): `ArrayAdapter`, batched
      by `batch_size`, shuffled per epoch when `shuffle`;
    - a `Sequence` or any object with `__len__`/`__getitem__` and no `__iter__`:
      `SequenceAdapter` (`shuffle` permutes the batch order);
    - generators, iterators and other iterables (grain datasets and loaders, torch
      DataLoaders, a list of `(x, y)` batches, `iter(list_of_batches)`): `IterableAdapter`;
    - a `DataAdapter`: used as it is.

    A source other than arrays yields whole batches, so `y`, `sample_weight`,
    `batch_size` and `drop_remaining` must not be given with it. `repeated` says that
    each of several passes must be complete (fit's validation data): then a one-pass
    iterator needs `steps`, since it cannot be restarted. (Fit's training data may be a
    finite one-pass iterator without steps: its first epoch reads it to the end, as in
    Keras.) A source known to be infinite (a repeated grain dataset) needs `steps` in
    any case. `steps` beyond the batches of arrays or a `Sequence` get a warning: an
    epoch reads them once. The `*_name` arguments name the caller's arguments in error
    messages.
    """
    if not is_source(x, y, sample_weight):
        arrays = ArrayAdapter(
            x,
            y,
            sample_weight,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_remaining=drop_remaining,
            x_name=name,
            y_name=y_name,
        )
        what = f"{arrays.size} examples in batches of {arrays.batch_size}"
        _warn_past_the_end(steps, arrays.num_batches(), what, steps_name, name)
        return arrays
    what = "a DataAdapter" if isinstance(x, DataAdapter) else describe_source(x)
    for value, argument in (
        (y, y_name),
        (sample_weight, "sample_weight"),
        (batch_size, batch_size_name),
        (drop_remaining or None, "drop_remaining"),
    ):
        if value is not None:
            raise ValueError(
                f"{argument} must not be given when {name} is {what}: the source yields "
                "whole batches, x or (x, y) or (x, y, sample_weight). Batch and weight the "
                "data in the source."
            )
    if isinstance(x, DataAdapter):
        return x
    if _is_indexed(x):
        sequence = SequenceAdapter(x, shuffle=shuffle, seed=seed, steps=steps, name=name)
        what = f"len({name}) is {sequence.length}"
        _warn_past_the_end(steps, sequence.length, what, steps_name, name)
        return sequence
    if steps is None:
        length = source_length(x)
        if length is not None and length >= INFINITE:
            raise ValueError(
                f"{name} is infinite ({what} of length {length}); pass {steps_name} to say "
                "how many batches to read."
            )
        if repeated and is_one_pass(x):
            raise ValueError(
                f"{name} is {what}, which can be read only once and may be infinite: pass "
                f"{steps_name}, the number of batches per pass (it must then yield "
                f"{steps_name} batches for every pass), or pass a source that can be "
                "iterated again (a list of (x, y) batches, a Sequence, a grain dataset "
                "or loader)."
            )
    return IterableAdapter(x, steps=steps, name=name)


def _warn_past_the_end(
    steps: int | None, available: int, what: str, steps_name: str, name: str
) -> None:
    """Warn when `steps` asks for more batches than arrays or a `Sequence` hold: an epoch
    reads them once, so it ends after `available` steps (as in Keras)."""
    if steps is not None and steps > available:
        warn_user(
            f"{steps_name}={steps} is more than the {available} batches of {name} ({what}). "
            f"An epoch reads {name} once, so it runs {available} steps, as in Keras. Pass "
            f"{steps_name}={available} or less, or leave it None; to read more batches per "
            "epoch, pass a generator or a repeated dataset."
        )
