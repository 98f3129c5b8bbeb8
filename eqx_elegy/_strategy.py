"""`Strategy`: where a model's arrays live and how each compiled step lays them out.

The engine asks a model's strategy five things and nothing else: where the states go
(`put_states`), where each batch goes (`put_batch`), how a compiled step pins the states
and outputs it returns (`constrain_states`, `constrain_outputs`), whether the states may
be packed into a few shared buffers (`packs_states`), and whether this process is the
one that writes files and progress (`is_main_process`). A model without a strategy of its
own runs with `DefaultStrategy`; `DataParallel` and `FSDP` (in `_distributed`) spread it
over a mesh of devices. A new strategy subclasses `Strategy` and answers the same five.
"""

from __future__ import annotations

import abc
from typing import Any

import jax

from ._states import States


def is_main_process() -> bool:
    """Whether this is process 0, the one that writes checkpoints, logs and progress
    output in a multi-process run (always True with one process)."""
    return jax.process_index() == 0


class Strategy(abc.ABC):
    """How a model's states, batches and step outputs are laid out on devices.

    Pass one to `model.distributed(strategy)`. The compiled steps are the model's own:
    a strategy only places their inputs and pins their outputs, and XLA's sharding
    propagation does the rest.
    """

    #: Whether the loop places each batch with `put_batch`. False leaves batches to the
    #: loop's default (`data.prefetch`): as they are on CPU, where numpy batches cross
    #: into the compiled call as cheaply as device arrays, and `jax.device_put` to the
    #: default device on an accelerator.
    places_batches: bool = True
    #: Whether the engine may pack the states' small leaves into a few shared buffers
    #: (bit-cast, one per bit width) to pass fewer arguments per compiled call. Only for
    #: states on one device: a packed buffer cannot keep per-leaf shardings.
    packs_states: bool = False

    @abc.abstractmethod
    def put_states(self, states: States) -> States:
        """The states placed as the strategy lays them out (a copy; `states` itself is
        left as it was). Every process passes the same values."""

    @abc.abstractmethod
    def put_batch(self, batch: Any, stacked: bool = False) -> Any:
        """A batch pytree placed for the next compiled call; `stacked` says it has a
        leading steps axis (a chunk of `steps_per_execution` batches)."""

    @abc.abstractmethod
    def constrain_states(self, states: States) -> States:
        """Inside a compiled step: the states pinned to the layout of `put_states`, so that
        a step returns states laid out as those it received and the next call reuses the
        compiled program and the donated buffers."""

    @abc.abstractmethod
    def constrain_outputs(self, outputs: Any) -> Any:
        """Inside a compiled step: the logs or predictions it returns, laid out so that
        this process can read them."""

    def is_main_process(self) -> bool:
        """Whether this process writes the files and progress output of a run."""
        return is_main_process()


class DefaultStrategy(Strategy):
    """One device, JAX's default: states stay where they are (packed into a few buffers
    for the compiled calls), numpy batches go straight to the compiled call on CPU and are
    `jax.device_put` to the default device on an accelerator, and nothing is
    constrained. Used by every model that has no strategy of its own."""

    packs_states = True
    places_batches = False

    def put_states(self, states: States) -> States:
        return states

    def put_batch(self, batch: Any, stacked: bool = False) -> Any:
        # What the loop does itself (see `places_batches`), for callers outside it.
        return batch if jax.default_backend() == "cpu" else jax.device_put(batch)

    def constrain_states(self, states: States) -> States:
        return states

    def constrain_outputs(self, outputs: Any) -> Any:
        return outputs

    def __repr__(self) -> str:
        return "DefaultStrategy()"


DEFAULT = DefaultStrategy()


def strategy_of(model: Any) -> Strategy:
    """The strategy `model` runs with: its own, or `DefaultStrategy`."""
    strategy: Strategy | None = model.strategy
    return DEFAULT if strategy is None else strategy
