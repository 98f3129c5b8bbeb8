"""Datasets indexed by batch (`__len__` and `__getitem__`), Keras' PyDataset idea."""

from __future__ import annotations

import abc
import collections
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ._adapter import Batch, DataAdapter
from ._checks import BatchChecker


class Sequence(abc.ABC):
    """Base class for a dataset of batches: `len(dataset)` batches, `dataset[i]` returns
    batch `i` as `x`, `(x, y)` or `(x, y, sample_weight)`.

    `workers` threads call `__getitem__` in parallel (keeping the order); 0 or 1 reads in
    the loop's single background thread. Threads suit loaders that release the GIL
    (file reads, decoding, numpy). `on_epoch_end` runs after each epoch, e.g. to
    reshuffle. Subclasses that define `__init__` should call `super().__init__(...)`
    (without it, `workers` is 0).
    """

    workers: int = 0

    def __init__(self, workers: int = 0):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0, got {workers!r}.")
        self.workers = workers

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of batches."""

    @abc.abstractmethod
    def __getitem__(self, index: int) -> Any:
        """Batch `index`."""

    def on_epoch_end(self) -> None:  # noqa: B027 (a hook, empty unless overridden)
        """Called after each epoch; does nothing by default."""


class SequenceAdapter(DataAdapter):
    """Batches `sequence[i]` of anything with `__len__` and `__getitem__` (a `Sequence` or
    a duck-typed equivalent), in order, or in an order shuffled per epoch from
    `(seed, epoch)` when `shuffle` (the batches themselves are the sequence's).

    An epoch is the whole sequence, or its first `steps` batches; `on_epoch_end()` is
    called after it when the sequence has one. Batch 0 is read at construction to check
    it before anything compiles.
    """

    def __init__(
        self,
        sequence: Any,
        *,
        shuffle: bool = False,
        seed: int = 0,
        steps: int | None = None,
        workers: int | None = None,
        name: str = "x",
        prefetch_size: int = 2,
    ):
        length = len(sequence)
        if isinstance(length, bool) or not isinstance(length, int):
            raise TypeError(f"len({name}) must be an int, got {length!r}.")
        if length == 0:
            raise ValueError(f"{name} is empty: len({name}) is 0.")
        self.sequence = sequence
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.steps = steps
        self.workers = getattr(sequence, "workers", 0) if workers is None else workers
        self.name = name
        self.prefetch_size = prefetch_size
        self._check = BatchChecker(name)
        self._first = self._check(sequence[0], 0)

    def num_batches(self) -> int:
        return self.length if self.steps is None else min(self.steps, self.length)

    def first_batch(self) -> Batch:
        return self._first

    def _order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_batches()))
        order = np.random.default_rng([self.seed, epoch]).permutation(self.length)
        return [int(i) for i in order[: self.num_batches()]]

    def batches(self, epoch: int) -> Iterator[Batch]:
        order = self._order(epoch)
        if self.workers <= 1:
            for i in order:
                yield self._check(self.sequence[i], i)
        else:
            yield from self._parallel(order)
        on_epoch_end = getattr(self.sequence, "on_epoch_end", None)
        if callable(on_epoch_end):
            on_epoch_end()

    def _parallel(self, order: list[int]) -> Iterator[Batch]:
        """`sequence[i]` for `i` in `order`, computed by `workers` threads at most
        `2 * workers` batches ahead, yielded in order; pending work is cancelled and the
        threads joined when the consumer stops early."""
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="eqx_elegy-sequence")
        pending: collections.deque[tuple[int, Future[Any]]] = collections.deque()
        upcoming = iter(order)
        try:
            for i in upcoming:
                pending.append((i, pool.submit(self.sequence.__getitem__, i)))
                if len(pending) >= 2 * self.workers:
                    break
            while pending:
                i, future = pending.popleft()
                for j in upcoming:
                    pending.append((j, pool.submit(self.sequence.__getitem__, j)))
                    break
                yield self._check(future.result(), i)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
