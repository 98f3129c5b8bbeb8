"""Metrics whose state is a pytree of arrays, so it can live in `States`."""

from __future__ import annotations

import re
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PyTree


class Metric(eqx.Module):
    """A pure metric: `update` folds a batch into the state, `compute` reads the value."""

    name: str | None = eqx.field(default=None, static=True, kw_only=True)

    @property
    def log_name(self) -> str:
        return self.name or re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()

    def init(self) -> PyTree:
        return {"total": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.float32)}

    def values(self, y_true: Array, y_pred: Array) -> Array:
        raise NotImplementedError

    def update(
        self, state: PyTree, y_true: Any, y_pred: Any, sample_weight: ArrayLike | None = None
    ) -> PyTree:
        values = self.values(jnp.asarray(y_true), jnp.asarray(y_pred)).astype(jnp.float32)
        weight = (
            jnp.ones_like(values)
            if sample_weight is None
            else jnp.broadcast_to(jnp.asarray(sample_weight, jnp.float32), values.shape)
        )
        return {
            "total": state["total"] + jnp.sum(values * weight),
            "count": state["count"] + jnp.sum(weight),
        }

    def compute(self, state: PyTree) -> Array:
        return state["total"] / jnp.maximum(state["count"], 1e-12)


class Mean(Metric):
    """The (weighted) mean of the values passed as `y_pred`."""

    def values(self, y_true: Array, y_pred: Array) -> Array:
        return y_pred


class Accuracy(Metric):
    """Classification accuracy: argmax of scores against integer labels, or exact equality
    when `y_pred` has no class axis."""

    def values(self, y_true: Array, y_pred: Array) -> Array:
        if y_pred.ndim == y_true.ndim + 1 or (
            y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1 < y_pred.shape[-1]
        ):
            y_pred = jnp.argmax(y_pred, axis=-1)
            y_true = jnp.reshape(y_true, y_pred.shape)
        return (y_true.astype(jnp.int32) == y_pred.astype(jnp.int32)).astype(jnp.float32)
