"""Choosing the adapter for whatever the user passed as data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

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


def is_source(x: Any) -> bool:
    """Whether `x` yields its own batches (a `DataAdapter`, a generator, an iterable, a
    `Sequence`), as opposed to arrays that `batch_size` cuts into batches."""
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
      DataLoaders, `iter(list_of_batches)`): `IterableAdapter`;
    - a `DataAdapter`: used as it is.

    A source other than arrays yields whole batches, so `y`, `sample_weight`,
    `batch_size` and `drop_remaining` must not be given with it. `repeated` says the
    source is read for more than one pass (fit's training and validation data): then a
    one-pass iterator needs `steps`, since each epoch must end somewhere and the
    iterator cannot be restarted. A source known to be infinite (a repeated grain
    dataset) needs `steps` in any case. The `*_name` arguments name the caller's
    arguments in error messages.
    """
    if not is_source(x):
        return ArrayAdapter(
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
        return SequenceAdapter(x, shuffle=shuffle, seed=seed, steps=steps, name=name)
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
                f"{steps_name}, the number of batches per epoch (it must then yield "
                f"{steps_name} batches for every epoch), or pass a source that can be "
                "iterated again each epoch (a list of batches, a Sequence, a grain dataset "
                "or loader)."
            )
    return IterableAdapter(x, steps=steps, name=name)
