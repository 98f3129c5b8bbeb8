"""Generators, iterators and iterables of batches: grain datasets and loaders, PyTorch
DataLoaders, lists of batches, or any object with `__iter__`."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sized
from typing import Any

from ._adapter import Batch, DataAdapter
from ._checks import BatchChecker

#: A length above this is an infinitely repeated dataset (grain's `repeat()` reports
#: `sys.maxsize`), not a number of batches to iterate over.
INFINITE = 2**40


def is_one_pass(source: Any) -> bool:
    """Whether `source` is its own iterator (a generator, `iter(list)`, a file): it can be
    read only once, so epochs must come from one continuing stream."""
    return isinstance(source, Iterator)


def source_length(source: Any) -> int | None:
    """The number of batches of a sized, re-iterable source; None when unknown."""
    if is_one_pass(source) or not isinstance(source, Sized):
        return None
    try:
        return len(source)
    except TypeError:  # e.g. a torch DataLoader over an IterableDataset
        return None


def describe_source(source: Any) -> str:
    if inspect.isgenerator(source):
        return "a generator"
    if isinstance(source, list):
        return "a list of batches"
    kind = "an iterator" if is_one_pass(source) else "an iterable"
    return f"{kind} ({type(source).__module__}.{type(source).__qualname__})"


class IterableAdapter(DataAdapter):
    """Batches from anything iterable, each yielding `x`, `(x, y)` or
    `(x, y, sample_weight)` with pytrees anywhere.

    Epochs: without `steps`, an epoch is one full pass (`iter(source)` again each epoch).
    With `steps`, an epoch is the next `steps` batches of one continuing stream, as in
    Keras: a re-iterable source starts a new pass whenever one ends; a one-pass source
    (a generator) that runs out sets `exhausted`, and `fit` stops there.

    The first batch is read (and checked) at construction, so an empty source or a bad
    first batch fails before anything compiles; it is not lost, epoch 0 starts with it.
    Batches are read by a background thread (`prefetch_size`, default 2), so the host
    work of producing them overlaps the running step.
    """

    def __init__(
        self,
        source: Any,
        *,
        steps: int | None = None,
        name: str = "x",
        prefetch_size: int = 2,
    ):
        if not hasattr(source, "__iter__"):
            raise TypeError(f"{name} must be iterable, got {type(source).__name__}.")
        self.source = source
        self.steps = steps
        self.name = name
        self.prefetch_size = prefetch_size
        self.one_pass = is_one_pass(source)
        self.length = source_length(source)
        self._check = BatchChecker(name)
        self._stream: Iterator[Any] | None = iter(source)
        self._read = 0
        try:
            item = next(self._stream)
        except StopIteration:
            raise ValueError(
                f"{name} is empty: {describe_source(source)} that yielded no batches."
            ) from None
        self._first = self._checked(item)
        self._pending: Batch | None = self._first

    def _checked(self, item: Any) -> Batch:
        batch = self._check(item, self._read)
        self._read += 1
        return batch

    def num_batches(self) -> int | None:
        if self.steps is not None:
            return self.steps
        return self.length if self.length is not None and self.length < INFINITE else None

    def first_batch(self) -> Batch:
        return self._first

    def batches(self, epoch: int) -> Iterator[Batch]:
        count = 0
        fresh = False  # whether the stream was opened in this epoch and gave nothing yet
        while self.steps is None or count < self.steps:
            if self._pending is not None:
                batch, self._pending = self._pending, None
            else:
                stream = self._stream
                if stream is None:
                    if self.one_pass:
                        self.exhausted = True
                        return
                    stream = self._stream = iter(self.source)
                    fresh = True
                try:
                    item = next(stream)
                except StopIteration:
                    self._stream = None
                    if self.steps is None:
                        return
                    if fresh or self.one_pass:  # a new pass that is empty cannot go on
                        self.exhausted = True
                        return
                    continue
                batch, fresh = self._checked(item), False
            yield batch
            count += 1
