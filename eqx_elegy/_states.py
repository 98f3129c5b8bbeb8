"""`States`, the immutable pytree a model's steps thread through, and `RNGSeq`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Int, PRNGKeyArray


def is_prng_key(leaf: Any) -> bool:
    """Whether `leaf` is an array of typed PRNG keys (made by `jax.random.key`), which
    holds key data that must be unwrapped to be packed, saved or moved."""
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


DEFAULT_KEYS: tuple[str, ...] = (
    "rng",
    "net_params",
    "net_states",
    "metrics_states",
    "optimizer_states",
)


class RNGSeq(eqx.Module):
    """A pure sequence of PRNG keys: a typed key and a counter.

    `next()` returns a fresh key and the advanced sequence; the sequence itself is never
    mutated, so it can live inside `States` and pass through `jit`, `vmap` and `scan`.
    """

    key: PRNGKeyArray
    count: Int[Array, ""]

    def __init__(self, key: PRNGKeyArray | int, count: Int[Array, ""] | int = 0):
        if isinstance(key, int):
            key = jax.random.key(key)
        self.key = key
        self.count = jnp.asarray(count, dtype=jnp.uint32)

    def next(self) -> tuple[PRNGKeyArray, RNGSeq]:
        """Return `(key, rng)`: a key not returned before, and the sequence advanced by one."""
        return jax.random.fold_in(self.key, self.count), RNGSeq(self.key, self.count + 1)

    def split(self, num: int) -> tuple[PRNGKeyArray, RNGSeq]:
        """Return `num` keys stacked along a leading axis, and the advanced sequence."""
        key, rng = self.next()
        return jax.random.split(key, num), rng


# Equality is equinox's (leaf-wise `tree_equal`), which is wider than Mapping's `-> bool`.
class States(eqx.Module, Mapping[str, Any]):  # type: ignore[misc]
    """Everything a model's steps read and write, as one immutable pytree.

    Default keys (None until set): `rng`, `net_params`, `net_states`, `metrics_states`,
    `optimizer_states`. Read with `states.net_params` or `states["net_params"]`; write
    with `states.update(...)`, which returns a new `States` and leaves this one unchanged.
    """

    _data: dict[str, Any]

    def __init__(self, data: Mapping[str, Any] | None = None, /, **kwargs: Any):
        values: dict[str, Any] = dict.fromkeys(DEFAULT_KEYS)
        values.update(data or {})
        values.update(kwargs)
        self._data = values

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: fields and methods win.
        if name.startswith("__"):
            raise AttributeError(name)
        data = self.__dict__.get("_data", {})
        if name in data:
            return data[name]
        raise AttributeError(
            f"States has no key {name!r}; existing keys: {sorted(data)}. "
            f"Add it with `states.update({name}=...)`."
        )

    def update(self, **kwargs: Any) -> States:
        """Return a new `States` with `kwargs` set (new keys are added)."""
        return States(self._data, **kwargs)

    def maybe_update(self, **kwargs: Any) -> States:
        """Return a new `States` with only those of `kwargs` set whose key is missing or None."""
        missing = {k: v for k, v in kwargs.items() if self._data.get(k) is None}
        return States(self._data, **missing)

    def __repr__(self) -> str:
        def describe(value: Any) -> str:
            if value is None:
                return "None"
            leaves = jax.tree.leaves(value)
            return f"<{type(value).__name__}: {len(leaves)} leaves>"

        body = ", ".join(f"{k}={describe(v)}" for k, v in self._data.items())
        return f"States({body})"
