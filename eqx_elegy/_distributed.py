"""Training one model on many devices and many hosts with `jax.sharding`.

A strategy lays out three things on an explicit `jax.sharding.Mesh`: the batches (split
along their batch axis), the model's states (replicated, or sharded for FSDP), and the
outputs of each compiled step. The compiled steps are the ordinary single-device ones:
XLA's sharding propagation turns them into SPMD programs and inserts the collectives
(the gradient all-reduce, the all-gathers of sharded parameters, the cross-device batch
statistics of `BatchNorm(axis_name="batch")`), so nothing here communicates by hand.

The mesh axes are `AxisType.Auto`: the sharding of every intermediate value is left to
the compiler. With `Explicit` axes (jax 0.10's default for `jax.make_mesh`) shardings
become part of each array's type and many ordinary operations in a user's step (a
reshape of the batch axis, an `argmax` over it, indexing) would need sharding
annotations or raise errors; a Keras-style `fit` must run the user's unmodified steps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._states import States, is_prng_key
from ._strategy import Strategy

_DATA = "data"
_MODEL = "model"


def _devices(devices: Sequence[Any] | None, owner: str) -> list[Any]:
    if devices is None:
        return list(jax.devices())
    if isinstance(devices, str | bytes) or not isinstance(devices, Sequence):
        raise TypeError(
            f"{owner}(devices=...) must be a sequence of jax devices (e.g. jax.devices()[:4]), "
            f"got {type(devices).__name__}."
        )
    devices = list(devices)
    if not devices:
        raise ValueError(f"{owner}(devices=...) is empty; pass at least one device, or None.")
    for device in devices:
        if not isinstance(device, jax.Device):
            raise TypeError(
                f"{owner}(devices=...) must hold jax devices (from jax.devices()), got an "
                f"element of type {type(device).__name__}."
            )
    if len({d.id for d in devices}) != len(devices):
        raise ValueError(f"{owner}(devices=...) lists a device more than once: {devices}.")
    if len({d.platform for d in devices}) > 1:
        raise ValueError(
            f"{owner}(devices=...) mixes platforms {sorted({d.platform for d in devices})}; "
            "use devices of one kind."
        )
    return devices


def _is_array(leaf: Any) -> bool:
    # Tracers are jax.Arrays too, so this also selects the leaves inside a compiled step.
    return isinstance(leaf, jax.Array | np.ndarray)


def _put_global(leaf: Any, sharding: NamedSharding) -> jax.Array:
    """`leaf`, the same value on every process, as one array spanning several processes.
    Each process transfers only the shards its own devices hold; nothing is communicated."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        if leaf.sharding == sharding:
            return leaf
        return jax.jit(lambda a: a, out_shardings=sharding)(leaf)
    if is_prng_key(leaf):
        impl = jax.random.key_impl(leaf)
        data = _put_global(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=impl)
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


class DataParallel(Strategy):
    """Data parallelism: every batch is split along its batch axis over `devices` (a 1-D
    mesh with axis `"data"`), the model's states are replicated on each device, and XLA
    all-reduces the gradients. Results equal single-device training on the same global
    batches, up to floating-point summation order.

    Use it through `model = model.distributed(DataParallel())`; `fit`, `evaluate` and
    `predict` then run unchanged, with `batch_size` the global batch size.

    **Arguments:**

    - `devices`: the devices to use, by default `jax.devices()` (every device of every
      process when `jax.distributed` is initialised).
    - `process_local`: with several processes, whether each process passes its own share
      of the data (e.g. a loader sharded by process) rather than the same global data. By
      default every process passes the same arrays and transfers only the rows its
      devices hold; with `process_local=True` a global batch is the processes' batches
      concatenated in process order, so they must all have the same size.

    A batch whose size is not divisible by the number of devices (the last one of an
    epoch, typically) is replicated instead of split: every device computes it whole.
    """

    def __init__(self, devices: Sequence[Any] | None = None, *, process_local: bool = False):
        self._init(devices, process_local, (len(_devices(devices, "DataParallel")),))

    def _init(
        self, devices: Sequence[Any] | None, process_local: bool, shape: tuple[int, ...]
    ) -> None:
        owner = type(self).__name__
        if not isinstance(process_local, bool):
            raise TypeError(
                f"{owner}(process_local=...) must be a bool, got {type(process_local).__name__}."
            )
        self.devices = _devices(devices, owner)
        self.process_local = process_local
        names = (_DATA, _MODEL)[: len(shape)]
        self.mesh = Mesh(
            np.array(self.devices, dtype=object).reshape(shape),
            names,
            axis_types=(AxisType.Auto,) * len(shape),
        )
        self._replicated = NamedSharding(self.mesh, P())
        self._split = NamedSharding(self.mesh, P(_DATA))
        self._split_stacked = NamedSharding(self.mesh, P(None, _DATA))
        self._multiprocess = not self._replicated.is_fully_addressable

    def __repr__(self) -> str:
        return f"{type(self).__name__}(devices={len(self.devices)}, mesh={dict(self.mesh.shape)})"

    @property
    def data_size(self) -> int:
        """The number of devices each batch is split over."""
        return int(self.mesh.shape[_DATA])

    # ---------------------------------------------------------------- states

    def param_spec(self, path: str, shape: tuple[int, ...]) -> P:
        """The `PartitionSpec` of the array at `path` of the states (e.g.
        `"net_params.layers[0].weight"`, `"optimizer_states[0].mu.layers[0].weight"`):
        replicated, for data parallelism."""
        del path, shape
        return P()

    def _map_states(self, states: States, place: Callable[[Any, NamedSharding], Any]) -> States:
        """`place(leaf, sharding)` applied to every array of `states`: parameters and
        optimizer states as `param_spec` says, everything else replicated."""
        if not isinstance(states, States):
            raise TypeError(f"{type(self).__name__} lays out States, got {type(states).__name__}.")

        def placer(key: str) -> Callable[[Any, Any], Any]:
            def leaf_placed(path: Any, leaf: Any) -> Any:
                if not _is_array(leaf):
                    return leaf
                if key not in ("net_params", "optimizer_states"):
                    return place(leaf, self._replicated)
                spec = self.param_spec(key + jax.tree_util.keystr(path), tuple(leaf.shape))
                return place(leaf, NamedSharding(self.mesh, spec))

            return leaf_placed

        return states.update(
            **{
                key: jax.tree_util.tree_map_with_path(placer(key), value)
                for key, value in states.items()
            }
        )

    def put_states(self, states: States) -> States:
        """The states laid out on the mesh (a copy; `states` itself is left as it was).
        Every process must pass the same values."""
        if self._multiprocess:
            return self._map_states(states, _put_global)
        return self._map_states(states, jax.device_put)

    def constrain_states(self, states: States) -> States:
        """Inside a compiled step: pin the states to the layout of `put_states`, so that
        the states a step returns are laid out as those it received and the next call
        reuses the compiled program (and the donated buffers)."""
        return self._map_states(states, jax.lax.with_sharding_constraint)

    def constrain_outputs(self, outputs: Any) -> Any:
        """Inside a compiled step: logs and predictions, replicated when the mesh spans
        several processes so that every process can read them."""
        if not self._multiprocess:
            return outputs
        return jax.tree.map(
            lambda a: jax.lax.with_sharding_constraint(a, self._replicated) if _is_array(a) else a,
            outputs,
        )

    # ---------------------------------------------------------------- batches

    def _batch_sharding(self, size: int, stacked: bool) -> NamedSharding:
        if size % self.data_size:
            return self._replicated
        return self._split_stacked if stacked else self._split

    def put_batch(self, batch: Any, stacked: bool = False) -> Any:
        """A batch pytree on the mesh, split along its batch axis: axis 0, or axis 1 when
        `stacked` (a chunk of `steps_per_execution` batches of shape `(k, B, ...)`)."""
        leaves, treedef = jax.tree.flatten(batch)
        if not leaves:
            return batch
        axis = 1 if stacked else 0
        sizes = {np.shape(leaf)[axis] for leaf in leaves}
        if len(sizes) != 1:
            raise ValueError(
                f"The arrays of a batch have different batch sizes {sorted(sizes)}; every leaf "
                "needs the same number of examples."
            )
        size = sizes.pop()
        if not self._multiprocess:
            sharding = self._batch_sharding(size, stacked)
            return jax.tree.unflatten(treedef, jax.device_put(leaves, [sharding] * len(leaves)))
        if not self.process_local:
            sharding = self._batch_sharding(size, stacked)
            return jax.tree.unflatten(treedef, [_put_global(leaf, sharding) for leaf in leaves])
        processes = jax.process_count()
        if (size * processes) % self.data_size:
            raise ValueError(
                f"With process_local=True the global batch is this process's {size} examples "
                f"times {processes} processes, which does not split over {self.data_size} "
                "devices. Use a per-process batch size that makes it divisible (and "
                "drop_remaining=True for a partial last batch)."
            )
        sharding = self._split_stacked if stacked else self._split

        def global_array(leaf: Any) -> jax.Array:
            shape = list(np.shape(leaf))
            shape[axis] *= processes
            return jax.make_array_from_process_local_data(sharding, np.asarray(leaf), tuple(shape))

        return jax.tree.unflatten(treedef, [global_array(leaf) for leaf in leaves])


Rules = Mapping[str, P] | Sequence[tuple[str, P]]


class FSDP(DataParallel):
    """Fully sharded data parallelism: batches split as in `DataParallel`, and the
    parameters and optimizer states sharded too, each array along its largest axis that
    divides evenly over the `"data"` mesh axis. Each device stores a slice; XLA gathers
    the parameters where a step needs them whole and reduce-scatters the gradients.

    **Arguments:**

    - `devices`: as in `DataParallel`.
    - `min_size`: arrays with fewer elements stay replicated (the collectives for small
      arrays cost more than the memory they would save). Default `2**14`.
    - `rules`: `{pattern: PartitionSpec}` (or pairs), tried in order before the automatic
      choice. A pattern is a regular expression searched in the array's path in the
      states, such as `"net_params.layers[0].weight"` or
      `"optimizer_states[0].mu.layers[0].weight"`; so `r"layers\\[0\\]\\.weight$"`
      matches a parameter and its optimizer moments. Specs name the mesh axes `"data"`
      and `"model"`.
    - `model_parallel`: the size of the `"model"` mesh axis, for tensor (model)
      parallelism through `rules` on a 2-D `(data, model)` mesh; batches are split over
      `"data"` only. Default 1.
    - `process_local`: as in `DataParallel`.
    """

    def __init__(
        self,
        devices: Sequence[Any] | None = None,
        *,
        min_size: int = 2**14,
        rules: Rules | None = None,
        model_parallel: int = 1,
        process_local: bool = False,
    ):
        for name, value, least in (
            ("min_size", min_size, 0),
            ("model_parallel", model_parallel, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"FSDP({name}=...) must be an int, got {type(value).__name__}.")
            if value < least:
                raise ValueError(f"FSDP({name}=...) must be >= {least}, got {value}.")
        count = len(_devices(devices, "FSDP"))
        if count % model_parallel:
            raise ValueError(
                f"FSDP(model_parallel={model_parallel}) must divide the number of devices "
                f"({count})."
            )
        shape = (count // model_parallel, model_parallel)
        self._init(devices, process_local, shape)
        self.min_size = min_size
        self.rules = self._checked_rules(rules)

    def __repr__(self) -> str:
        return (
            f"FSDP(devices={len(self.devices)}, mesh={dict(self.mesh.shape)}, "
            f"min_size={self.min_size}, rules={len(self.rules)})"
        )

    def _checked_rules(self, rules: Rules | None) -> list[tuple[re.Pattern[str], P]]:
        if rules is None:
            return []
        items = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
        checked: list[tuple[re.Pattern[str], P]] = []
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise TypeError(
                    "FSDP(rules=...) must map regex strings to PartitionSpecs (a dict, or "
                    f"(pattern, spec) pairs), got the entry {item!r}."
                )
            pattern, spec = item
            if not isinstance(spec, P):
                raise TypeError(
                    f"FSDP(rules=...): the rule for {pattern!r} must be a "
                    f"jax.sharding.PartitionSpec, got {type(spec).__name__}."
                )
            try:
                compiled = re.compile(pattern)
            except re.error as error:
                raise ValueError(
                    f"FSDP(rules=...): {pattern!r} is not a valid regular expression ({error})."
                ) from error
            for axis in _spec_axes(spec):
                if axis not in self.mesh.shape:
                    raise ValueError(
                        f"FSDP(rules=...): the rule for {pattern!r} names mesh axis {axis!r}; "
                        f"the mesh has axes {list(self.mesh.shape)}."
                    )
            checked.append((compiled, spec))
        return checked

    def param_spec(self, path: str, shape: tuple[int, ...]) -> P:
        """The first rule whose pattern matches `path`, else the largest axis of `shape`
        that divides evenly over `"data"` (when the array has at least `min_size`
        elements), else replicated."""
        for pattern, spec in self.rules:
            if pattern.search(path):
                self._check_spec(path, shape, spec)
                return spec
        size = self.data_size
        if size == 1 or int(np.prod(shape, dtype=np.int64)) < self.min_size:
            return P()
        candidates = [(dim, -i) for i, dim in enumerate(shape) if dim % size == 0]
        if not candidates:
            return P()
        axis = -max(candidates)[1]
        return P(*([None] * axis), _DATA)

    def _check_spec(self, path: str, shape: tuple[int, ...], spec: P) -> None:
        if len(spec) > len(shape):
            raise ValueError(
                f"FSDP(rules=...): {spec} has {len(spec)} entries but {path} has shape {shape}."
            )
        for dim, entry in zip(shape, spec, strict=False):
            names = (entry,) if isinstance(entry, str) else tuple(entry or ())
            parts = int(np.prod([self.mesh.shape[n] for n in names], dtype=np.int64))
            if dim % parts:
                raise ValueError(
                    f"FSDP(rules=...): {spec} splits an axis of size {dim} of {path} (shape "
                    f"{shape}) into {parts} parts; the size must be divisible by {parts}."
                )


def _spec_axes(spec: P) -> list[str]:
    axes: list[str] = []
    for entry in spec:
        if isinstance(entry, str):
            axes.append(entry)
        elif entry is not None:
            axes.extend(entry)
    return axes


# ---------------------------------------------------------------------------- processes


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Start `jax.distributed` for a multi-process run, unless it is already started or
    the run has one process; returns whether there are several processes.

    Call it first, before any JAX computation. The coordinator's `host:port`, the number
    of processes and this process's index come from the arguments, else from the
    environment variables `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and
    `JAX_PROCESS_ID`, else from JAX's detection of SLURM and Open MPI jobs. With none of
    these, it does nothing: a single process.
    """
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    environ = os.environ
    address = coordinator_address or environ.get("JAX_COORDINATOR_ADDRESS")
    count = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    index = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    cluster = _env_int("SLURM_NTASKS") or _env_int("OMPI_COMM_WORLD_SIZE") or 0
    if address is None and count is None and index is None and cluster < 2:
        return False
    jax.distributed.initialize(address, count, index)
    return jax.process_count() > 1


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"The environment variable {name} must be an integer, got {value!r}."
        ) from None


def gather_to_host(tree: Any) -> Any:
    """A host copy of `tree`: numpy arrays holding each array's full value, assembled
    from every process's shards (PRNG keys stay key arrays). With several processes it is
    a collective: every process must call it, with the same structure."""

    def fetch(leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array):
            return leaf
        if is_prng_key(leaf):
            data = fetch(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        if leaf.is_fully_addressable or leaf.is_fully_replicated:
            return np.asarray(leaf)
        return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))

    return jax.tree.map(fetch, tree)
