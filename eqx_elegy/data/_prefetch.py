"""Reading (and moving to the device) the next chunks of batches while a step runs.

Policy: a source whose batches cost host work (a generator, a loader, a `Sequence`) is
read by one background thread into a bounded queue, so that its time overlaps the
compiled step and the steady time per step is about max(host, device) rather than
their sum. In-memory arrays on CPU are read in the loop's own thread: slicing them takes
microseconds, less than handing a batch between threads. On an accelerator the thread
also `device_put`s each batch, so the transfer overlaps the step too.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax

from ._adapter import Chunk

_END = object()


def prefetch(
    chunks: Iterator[Chunk],
    put: Callable[[Any, bool], Any] | None = None,
    size: int | None = None,
) -> Iterator[Chunk]:
    """Yield `chunks` with their batches passed through `put(batch, stacked)` (a model
    strategy's `put_batch`, e.g. a sharded `jax.device_put`; `stacked` says the batch has a
    leading steps axis).

    `size` chunks are read ahead by a background thread; 0 reads them here, on demand;
    None picks 0 on CPU and 2 on an accelerator. On an accelerator without `put`, the
    batches are `jax.device_put` to the default device; on CPU numpy batches go straight
    to the compiled step, which is cheaper than an explicit transfer.
    """
    accelerator = jax.default_backend() != "cpu"
    if size is None:
        size = 2 if accelerator else 0
    if put is None and accelerator:
        put = _device_put
    if size <= 0:
        return (
            chunks if put is None else (c._replace(batch=put(c.batch, c.stacked)) for c in chunks)
        )
    return Prefetcher(chunks, put, size)


def _device_put(batch: Any, stacked: bool) -> Any:
    return jax.device_put(batch)


def _offer(items: queue.Queue[Any], stop: threading.Event, item: Any) -> bool:
    """Put `item` in the queue, waiting for room unless asked to stop."""
    while not stop.is_set():
        try:
            items.put(item, timeout=0.05)
            return True
        except queue.Full:
            pass
    return False


def _produce(
    chunks: Iterator[Chunk],
    put: Callable[[Any, bool], Any] | None,
    items: queue.Queue[Any],
    stop: threading.Event,
) -> None:
    """The thread's work. It holds no reference to the `Prefetcher`, so dropping that
    runs its `__del__`, which stops this."""
    try:
        for chunk in chunks:
            if put is not None:
                chunk = chunk._replace(batch=put(chunk.batch, chunk.stacked))
            if not _offer(items, stop, chunk):
                return
        _offer(items, stop, _END)
    except BaseException as error:  # handed to the consumer, which re-raises it
        _offer(items, stop, error)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


class Prefetcher(Iterator[Chunk]):
    """An iterator over `chunks` that a daemon thread fills, at most `size` ahead.

    An exception raised while reading (by the user's generator, say) is re-raised here,
    in the consuming thread, with its original traceback. `close()` (also run when the
    iterator is dropped, e.g. when the loop breaks or raises) stops the thread, closes
    the source iterator and waits for the thread to end.
    """

    def __init__(self, chunks: Iterator[Chunk], put: Callable[[Any, bool], Any] | None, size: int):
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_produce,
            args=(chunks, put, self._queue, self._stop),
            name="eqx_elegy-prefetch",
            daemon=True,
        )
        self._thread.start()

    def __next__(self) -> Chunk:
        if self._stop.is_set():
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, Chunk):
            return item
        self.close()
        if isinstance(item, BaseException):
            raise item
        raise StopIteration  # _END

    def close(self) -> None:
        """Stop reading and wait for the thread to end (idempotent)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __del__(self) -> None:
        if not hasattr(self, "_thread"):
            return
        try:
            self.close()
        except KeyboardInterrupt:  # a second Ctrl-C while waiting: the thread is already
            pass  # told to stop, and ends after the batch it is reading
