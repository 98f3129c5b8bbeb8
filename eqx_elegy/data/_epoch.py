"""One epoch of a data source as the compiled loop runs it.

`epoch_chunks` is the one place where an epoch is cut: the adapter's batches grouped
into chunks of `steps_per_execution` steps (stacked along a new leading axis, which the
loop runs in one compiled call), the steps already run skipped (an epoch resumed
mid-way), the steps cut at `steps`, each chunk placed on the devices by the model's
strategy, and all of it read ahead of the running step when the source asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax

from ._adapter import Chunk, DataAdapter
from ._prefetch import prefetch


def epoch_chunks(
    data: DataAdapter,
    epoch: int,
    *,
    steps_per_execution: int = 1,
    steps: int | None = None,
    skip: int = 0,
    put: Callable[[Any, bool], Any] | None = None,
) -> Iterator[Chunk]:
    """The chunks of epoch `epoch` of `data`: its batches grouped by the adapter for
    `steps_per_execution` steps per call, without the first `skip` steps, at most `steps`
    steps in all, each batch passed through `put(batch, stacked)` (None: as it is) and
    read ahead as `data.prefetch_size` says (see `prefetch`).

    A stacked chunk that straddles `skip` or `steps` is split into single steps, so an
    epoch cut or resumed anywhere runs exactly the steps an uninterrupted one would."""
    chunks = data.chunks(epoch, steps_per_execution)
    if skip:
        chunks = _after(chunks, skip)
    if steps is not None:
        chunks = _first(chunks, steps)
    return prefetch(chunks, put=put, size=data.prefetch_size)


def _single_steps(chunk: Chunk, start: int, stop: int) -> Iterator[Chunk]:
    """Steps `start` to `stop` of a stacked chunk, as one-step chunks."""
    for i in range(start, stop):
        yield Chunk(jax.tree.map(lambda a, i=i: a[i], chunk.batch), 1, False)


def _after(chunks: Iterator[Chunk], skip: int) -> Iterator[Chunk]:
    """The chunks after the first `skip` steps."""
    for chunk in chunks:
        if skip >= chunk.steps:
            skip -= chunk.steps
        elif skip:
            yield from _single_steps(chunk, skip, chunk.steps)
            skip = 0
        else:
            yield chunk


def _first(chunks: Iterator[Chunk], steps: int) -> Iterator[Chunk]:
    """The chunks of the first `steps` steps."""
    done = 0
    for chunk in chunks:
        if done + chunk.steps > steps:
            if chunk.stacked:
                yield from _single_steps(chunk, 0, steps - done)
            return
        yield chunk
        done += chunk.steps
        if done >= steps:
            return
