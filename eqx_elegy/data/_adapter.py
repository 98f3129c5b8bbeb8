"""The interface between data sources and the compiled loop.

An adapter yields batches `(x, y, sample_weight)` of host arrays (pytrees allowed; `y`
and `sample_weight` may be None), grouped into `Chunk`s: either one batch, or `steps`
batches of equal shape stacked along a new leading axis, which the loop runs in a
single compiled call with `lax.scan` (`steps_per_execution`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

Batch = tuple[Any, Any, Any]


class Chunk(NamedTuple):
    """`steps` batches to run in one compiled call; stacked on a leading axis if `stacked`."""

    batch: Batch
    steps: int
    stacked: bool


def _shapes(batch: Batch) -> Any:
    return jax.tree.map(lambda a: (a.shape, a.dtype), batch)


def stack_chunks(batches: Iterator[Batch], steps_per_execution: int) -> Iterator[Chunk]:
    """Group consecutive batches of the same shapes into stacked chunks of
    `steps_per_execution`; any leftover batches come out one by one."""
    if steps_per_execution == 1:
        for batch in batches:
            yield Chunk(batch, 1, False)
        return
    pending: list[Batch] = []
    for batch in batches:
        if pending and _shapes(batch) != _shapes(pending[0]):
            yield from (Chunk(b, 1, False) for b in pending)
            pending = []
        pending.append(batch)
        if len(pending) == steps_per_execution:
            yield Chunk(jax.tree.map(lambda *xs: np.stack(xs), *pending), len(pending), True)
            pending = []
    yield from (Chunk(b, 1, False) for b in pending)


class DataAdapter(abc.ABC):
    """A source of batches for one fit/evaluate/predict call.

    Two attributes tell the loop how to read it:

    - `prefetch_size`: how many chunks a background thread reads ahead of the running
      step (see `prefetch`). None picks by platform: 0 on CPU, where reading in the
      loop's own thread is cheapest, and 2 on an accelerator, where the thread also
      moves the batches to the device. Sources whose batches cost host work (generators,
      loaders, `Sequence`s) default to 2 everywhere; 0 turns the thread off.
    - `exhausted`: set once a one-pass source (a generator) has run out, so that `fit`
      stops instead of asking it for more.
    """

    prefetch_size: int | None = None
    exhausted: bool = False

    @abc.abstractmethod
    def num_batches(self) -> int | None:
        """Batches per epoch, or None when unknown (an unsized iterable)."""

    @abc.abstractmethod
    def batches(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch `epoch`, in order."""

    def chunks(self, epoch: int, steps_per_execution: int) -> Iterator[Chunk]:
        """The batches of `epoch` grouped for `steps_per_execution` steps per call."""
        return stack_chunks(self.batches(epoch), steps_per_execution)

    def first_batch(self) -> Batch:
        """A batch to initialise a model from (the first batch of epoch 0)."""
        return next(iter(self.batches(0)))
