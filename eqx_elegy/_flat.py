"""States as the short list of flat buffers the compiled steps take.

Every call of a compiled function pays per argument and per result (a few microseconds
each on CPU), and flattening equinox modules in Python on every call would cost more
than a small model's whole step, while a list of arrays crosses into the compiled call
in C++. So the engine flattens the states once (`flatten_states_on_host`), passes the
buffers from call to call, and rebuilds `States` only when something looks at them.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._states import is_prng_key

# Leaves up to this many elements are packed into shared buffers (see `Layout`).
PACK_LIMIT = 16384


class Layout(NamedTuple):
    """How the flat buffers a compiled step takes map back to `States`.

    Every call of a compiled function pays per argument and per result (a few
    microseconds each on CPU), and a small model's states are dozens of scalars and small
    arrays (metric counters, biases, optimizer counts). So leaves of up to `PACK_LIMIT`
    elements travel packed, bit for bit, into one unsigned-integer buffer per bit width
    (float32, int32 and PRNG key data share one uint32 buffer); larger leaves travel as
    themselves. Typed PRNG keys travel as their raw key data. `slots[i]` is
    `(buffer, offset, shape, dtype)` for leaf `i`, offset -1 meaning the buffer is the
    leaf itself; `buffers` gives each packed buffer's dtype.
    """

    treedef: Any
    keys: tuple[tuple[int, Any], ...]
    slots: tuple[tuple[int, int, tuple[int, ...], Any], ...]
    buffers: tuple[Any, ...]
    packed: bool


def _carrier(dtype: Any) -> Any:
    """The dtype a packed leaf of `dtype` travels as: the unsigned integer of its width
    for numbers (a free bitcast), else its own."""
    if jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating):
        return jnp.dtype(f"uint{8 * jnp.dtype(dtype).itemsize}")
    return jnp.dtype(dtype)


def _raw_leaves(states: Any) -> tuple[list[Any], Any, tuple[tuple[int, Any], ...]]:
    """The leaves of `states` with typed PRNG keys replaced by their key data."""
    leaves, treedef = jax.tree.flatten(states)
    keys = tuple(
        (i, jax.random.key_impl(leaf)) for i, leaf in enumerate(leaves) if is_prng_key(leaf)
    )
    for i, _ in keys:
        leaves[i] = jax.random.key_data(leaves[i])
    return leaves, treedef, keys


def _layout(leaves: list[Any], treedef: Any, keys: Any, pack: bool) -> Layout:
    slots: list[Any] = []
    unpacked = 0
    groups: dict[Any, list[int]] = {}
    for i, leaf in enumerate(leaves):
        shape, dtype = tuple(getattr(leaf, "shape", ())), getattr(leaf, "dtype", None)
        if pack and dtype is not None and math.prod(shape) <= PACK_LIMIT:
            groups.setdefault(_carrier(dtype), []).append(i)
            slots.append((-1, 0, shape, dtype))  # filled in below
        else:
            slots.append((unpacked, -1, shape, dtype))
            unpacked += 1
    carriers: list[Any] = [None] * unpacked
    for carrier, indices in groups.items():
        offset = 0
        for i in indices:
            _, _, shape, dtype = slots[i]
            slots[i] = (len(carriers), offset, shape, dtype)
            offset += math.prod(shape)
        carriers.append(carrier)
    return Layout(treedef, keys, tuple(slots), tuple(carriers), pack)


def _pack(layout: Layout, leaves: list[Any], copy: bool = False) -> list[Any]:
    buffers: list[Any] = [None] * len(layout.buffers)
    parts: dict[int, list[Any]] = {}
    for leaf, (index, offset, _, _) in zip(leaves, layout.slots, strict=True):
        if offset < 0:
            buffers[index] = jnp.copy(leaf) if copy else leaf
        else:
            bits = jax.lax.bitcast_convert_type(leaf, layout.buffers[index])
            parts.setdefault(index, []).append(jnp.ravel(bits))
    for index, ravelled in parts.items():
        buffers[index] = jnp.concatenate(ravelled)
    return buffers


def flatten_states(states: Any, *, pack: bool = True) -> tuple[list[Any], Layout]:
    """The states as a short list of arrays, and the layout to rebuild them. Works on
    concrete arrays and, inside a compiled step, on tracers."""
    leaves, treedef, keys = _raw_leaves(states)
    layout = _layout(leaves, treedef, keys, pack)
    return _pack(layout, leaves), layout


# XLA options for the host's packing and unpacking, which only move bits: on CPU its
# optimisation passes made their compile about 1.5x as long, and their run no faster.
_MOVE_ONLY = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _host_jit(fn: Callable[..., Any]) -> Any:
    cpu = jax.default_backend() == "cpu"
    return jax.jit(fn, compiler_options=_MOVE_ONLY if cpu else None)


@functools.lru_cache(maxsize=64)  # one per structure of states met lately
def _host_pack(layout: Layout) -> Callable[[list[Any]], list[Any]]:
    # The leaves that travel unpacked are copied explicitly: XLA gives a compiled call's
    # outputs buffers of their own anyway, and this keeps that so whatever jax forwards.
    return _host_jit(functools.partial(_pack, layout, copy=True))


def flatten_states_on_host(states: Any, *, pack: bool = True) -> tuple[list[Any], Layout]:
    """`flatten_states` for concrete arrays: one compiled call instead of an eager op per
    leaf. Packed, the buffers are new arrays (that call makes them), none shared with
    `states`: a compiled step may donate them while the caller's `states` stay valid.
    Unpacked, they are the leaves of `states` themselves."""
    leaves, treedef, keys = _raw_leaves(states)
    layout = _layout(leaves, treedef, keys, pack)
    if not pack:
        return leaves, layout
    return _host_pack(layout)(leaves), layout


def unpack_leaves(layout: Layout, buffers: list[Any]) -> list[Any]:
    """The leaves of the states held in `buffers` (the inverse of packing them)."""
    leaves = []
    for index, offset, shape, dtype in layout.slots:
        leaf = buffers[index]
        if offset >= 0:
            bits = jnp.reshape(leaf[offset : offset + math.prod(shape)], shape)
            leaf = jax.lax.bitcast_convert_type(bits, dtype)
        leaves.append(leaf)
    for i, impl in layout.keys:
        leaves[i] = jax.random.wrap_key_data(leaves[i], impl=impl)
    return leaves


def unflatten_states(layout: Layout, buffers: list[Any]) -> Any:
    """Inverse of `flatten_states`."""
    return jax.tree.unflatten(layout.treedef, unpack_leaves(layout, buffers))


class _HostUnpack:
    """The compiled call that unpacks buffers of one layout on the host.

    It has one output per leaf, and XLA compiles each output's slice as a kernel of its
    own: for a small model's dozen leaves on CPU, that compile takes about as long as
    the model's whole train step's. `ahead` starts it in a thread, so that it runs
    while the train step compiles rather than after it, at the first epoch's end."""

    def __init__(self, layout: Layout):
        self._fn = _host_jit(functools.partial(unpack_leaves, layout))
        self._lock = threading.Lock()
        self._ahead: threading.Thread | None = None

    def ahead(self, buffers: list[Any]) -> None:
        """Start compiling for `buffers` in a thread (once)."""
        with self._lock:
            if self._ahead is not None:
                return
            # Shapes and dtypes only: a call with the buffers of a compiled step (on the
            # default device, uncommitted) then finds the compiled program in jit's cache.
            specs = [jax.ShapeDtypeStruct(b.shape, b.dtype) for b in buffers]
            self._ahead = threading.Thread(
                target=self._compile, args=(specs,), name="eqx_elegy-unpack-compile"
            )
            self._ahead.start()

    def _compile(self, specs: list[Any]) -> None:
        try:
            self._fn.lower(specs).compile()
        except Exception:  # noqa: BLE001 - the call compiles again and raises it there
            pass

    def ready(self) -> None:
        """Wait for the compile `ahead` started, if any (at once once it has ended)."""
        ahead = self._ahead
        if ahead is not None:
            ahead.join()

    def __call__(self, buffers: list[Any]) -> list[Any]:
        self.ready()  # rather than compile the same program a second time here
        return self._fn(buffers)


@functools.lru_cache(maxsize=64)  # one per structure of states met lately
def _host_unpack(layout: Layout) -> _HostUnpack:
    return _HostUnpack(layout)


def _unpacks_on_host(layout: Layout) -> bool:
    return layout.packed or bool(layout.keys)


def unflatten_states_on_host(layout: Layout, buffers: list[Any]) -> Any:
    """`unflatten_states` for concrete buffers: one compiled call instead of an eager
    slice per leaf."""
    if not _unpacks_on_host(layout):
        return jax.tree.unflatten(layout.treedef, list(buffers))
    return jax.tree.unflatten(layout.treedef, _host_unpack(layout)(list(buffers)))


def unflatten_ahead(layout: Layout, buffers: list[Any]) -> None:
    """Start compiling, in a background thread, what `unflatten_states_on_host` will run
    for these buffers (packed, on one device), so that it overlaps the compile of the
    step that runs first; `unflatten_states_on_host` waits for it."""
    if layout.packed:
        _host_unpack(layout).ahead(buffers)


def unflatten_ready(layout: Layout) -> None:
    """Wait for a compile that `unflatten_ahead` started for `layout`, so that none is
    left running when the loop that started it ends (e.g. on an error)."""
    if _unpacks_on_host(layout):
        _host_unpack(layout).ready()


def checked_buffers(new: Any, layout: Layout, owner: str, name: str) -> list[Any]:
    """The flat buffers of the states `new` a step returned, checked to have the layout
    of the states it received."""
    new_buffers, new_layout = flatten_states(new, pack=layout.packed)
    if new_layout != layout:
        raise TypeError(
            f"{owner}.{name} changed the structure, shapes or dtypes of the states after "
            f"initialisation: {_difference(layout, new_layout, new)}.\nCreate every entry, "
            "with its final shape and dtype, when `initializing` is True (or in "
            "init_step/states_step) so that each step returns states like the ones it received."
        )
    return new_buffers


def _difference(layout: Layout, new_layout: Layout, new: Any) -> str:
    """The first difference between two layouts, for an error message."""
    if new_layout.treedef != layout.treedef:
        return f"\nBefore: {layout.treedef}\nAfter:  {new_layout.treedef}"
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(new)]
    paths = [re.sub(r"^\._data\['([^']*)'\]", r".\1", path) for path in paths]  # States' entries
    for path, (*_, shape, dtype), (*_, new_shape, new_dtype) in zip(
        paths, layout.slots, new_layout.slots, strict=True
    ):
        if (shape, dtype) != (new_shape, new_dtype):
            return (
                f"states{path} was {_aval(shape, dtype)} and became {_aval(new_shape, new_dtype)}"
            )
    return "its PRNG keys changed implementation"


def _aval(shape: tuple[int, ...], dtype: Any) -> str:
    return f"{jnp.dtype(dtype).name}{list(shape)}"
