"""Mixed precision: `Model(dtype_policy=...)` and dynamic loss scaling.

A policy names the dtype the module computes in; parameters stay float32 (the optimizer
updates float32 master weights), and the loss and metrics are computed in float32 from
predictions cast back to it (Keras' `mixed_bfloat16` and `mixed_float16`):

- `"float32"` (default): nothing is cast;
- `"mixed_bfloat16"`: the module runs in bfloat16 (its parameters, inputs and state are
  cast for the call, its predictions cast back to float32);
- `"mixed_float16"`: the same in float16, whose narrow range makes small gradients
  underflow, so the loss is scaled up before differentiation and the gradients scaled
  back down: `LossScale` in `states.loss_scale`, dynamic as jmp's `DynamicLossScale` and
  Keras' `LossScaleOptimizer` are (start at 2**15; a step whose gradients are not finite
  is skipped and halves the scale; 2000 finite steps in a row double it).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PyTree

POLICIES: dict[str, Any] = {
    "float32": None,
    "mixed_bfloat16": jnp.bfloat16,
    "mixed_float16": jnp.float16,
}


def compute_dtype(policy: str) -> Any:
    """The dtype the module computes in under `policy` (None: as it is), after checking
    the name (a ValueError naming `dtype_policy` and the known names otherwise)."""
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ValueError(
            f"dtype_policy must be one of {', '.join(repr(p) for p in POLICIES)}; got {policy!r}."
        )
    return POLICIES[policy]


def cast_floating(tree: PyTree, dtype: Any) -> PyTree:
    """`tree` with its floating-point array leaves cast to `dtype`."""

    def cast(leaf: Any) -> Any:
        if eqx.is_array(leaf) and jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.astype(dtype)
        return leaf

    return jax.tree.map(cast, tree)


def cast_like(tree: PyTree, like: PyTree) -> PyTree:
    """`tree` with each floating-point array leaf cast to the dtype of the same leaf of
    `like` (the module's state back in the dtypes it is kept in)."""

    def cast(leaf: Any, reference: Any) -> Any:
        if eqx.is_array(leaf) and eqx.is_array(reference) and leaf.dtype != reference.dtype:
            return leaf.astype(reference.dtype)
        return leaf

    return jax.tree.map(cast, tree, like)


class LossScale(eqx.Module):
    """Dynamic loss scaling state (jmp's `DynamicLossScale`, Keras' `LossScaleOptimizer`):
    the current `scale` and the number of finite steps since it last changed."""

    scale: Float[Array, ""]
    counter: Int[Array, ""]
    period: int = eqx.field(static=True, default=2000)
    factor: float = eqx.field(static=True, default=2.0)

    @classmethod
    def initial(cls, scale: float = 2.0**15) -> LossScale:
        return cls(jnp.asarray(scale, jnp.float32), jnp.asarray(0, jnp.int32))

    def scaled(self, loss: Array) -> Array:
        return loss * self.scale

    def unscaled(self, grads: PyTree) -> PyTree:
        return jax.tree.map(lambda g: (g / self.scale).astype(g.dtype), grads)

    def adjust(self, finite: Bool[Array, ""]) -> LossScale:
        """The state after a step whose gradients were `finite` (or not)."""
        grow = finite & (self.counter + 1 >= self.period)
        scale = jnp.where(
            finite,
            jnp.where(grow, self.scale * self.factor, self.scale),
            jnp.maximum(self.scale / self.factor, 1.0),
        )
        counter = jnp.where(finite & ~grow, self.counter + 1, 0).astype(jnp.int32)
        return LossScale(scale, counter, self.period, self.factor)


def all_finite(tree: PyTree) -> Bool[Array, ""]:
    """Whether every element of the array leaves of `tree` is finite."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.stack(leaves).all() if leaves else jnp.asarray(True)


def where_finite(finite: Bool[Array, ""], new: PyTree, old: PyTree) -> PyTree:
    """`new` where the step's gradients were finite, else `old` (the step is skipped)."""
    return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
