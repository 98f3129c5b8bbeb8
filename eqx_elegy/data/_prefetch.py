"""Moving chunks of batches towards the device ahead of the step that uses them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ._adapter import Chunk


def prefetch(
    chunks: Iterator[Chunk], put: Callable[[Any], Any] | None = None, size: int = 2
) -> Iterator[Chunk]:
    """Yield `chunks` with their batches passed through `put` (e.g. a sharded
    `jax.device_put`); without `put`, numpy batches go straight to the compiled step,
    which on CPU is cheaper than an explicit transfer."""
    del size
    for chunk in chunks:
        yield chunk if put is None else chunk._replace(batch=put(chunk.batch))
