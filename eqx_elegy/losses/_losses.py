"""Losses: equinox modules mapping `(y_true, y_pred, sample_weight)` to a scalar."""

from __future__ import annotations

import re

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Loss(eqx.Module):
    """Base loss: subclasses compute per-example values in `call`; `__call__` weights and
    reduces them as Keras does (`sum_over_batch_size` divides the weighted sum by the
    number of examples)."""

    reduction: str = eqx.field(default="sum_over_batch_size", static=True, kw_only=True)
    name: str | None = eqx.field(default=None, static=True, kw_only=True)

    def call(self, y_true: Array, y_pred: Array) -> Array:
        raise NotImplementedError

    @property
    def log_name(self) -> str:
        return self.name or _snake(type(self).__name__)

    def __call__(
        self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> Array:
        values = self.call(jnp.asarray(y_true), jnp.asarray(y_pred))
        if sample_weight is not None:
            weight = jnp.asarray(sample_weight, values.dtype)
            values = values * jnp.reshape(weight, weight.shape + (1,) * (values.ndim - weight.ndim))
        if self.reduction == "none":
            return values
        total = jnp.sum(values)
        if self.reduction == "sum":
            return total
        return total / jnp.asarray(values.size, values.dtype)


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy between integer labels and class scores (logits or probabilities)."""

    from_logits: bool = eqx.field(default=False, static=True, kw_only=True)

    def call(self, y_true: Array, y_pred: Array) -> Array:
        if not self.from_logits:
            y_pred = jnp.log(jnp.clip(y_pred, 1e-7, 1.0))
        log_probs = jax.nn.log_softmax(y_pred, axis=-1)
        labels = jnp.reshape(y_true, y_pred.shape[:-1])
        # A one-hot product instead of a gather: its gradient is elementwise, where the
        # gather's is a scatter, several times slower on CPU for small batches.
        one_hot = jax.nn.one_hot(labels, y_pred.shape[-1], dtype=log_probs.dtype)
        return -jnp.sum(one_hot * log_probs, axis=-1)


class MeanSquaredError(Loss):
    """Mean over the last axis of the squared difference."""

    def call(self, y_true: Array, y_pred: Array) -> Array:
        return jnp.mean(jnp.square(y_pred - y_true.astype(y_pred.dtype)), axis=-1)
