"""Overlap losses for segmentation masks: Dice and its generalisation, Tversky."""

from typing import TypeAlias

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ._loss import EPSILON, Loss, align, check_axis, check_axis_fits, check_float

Axis: TypeAlias = int | tuple[int, ...] | None


def _aligned(y_true: ArrayLike, y_pred: ArrayLike, axis: Axis, who: str) -> tuple[Array, Array]:
    """`align`ed inputs, after checking that `axis` exists in them."""
    y_true, y_pred = align(y_true, y_pred, who)
    check_axis_fits(axis, y_pred.shape, who)
    return y_true, y_pred


def dice(y_true: ArrayLike, y_pred: ArrayLike, axis: Axis = None) -> Array:
    """`1 - 2 * sum(y_true * y_pred) / (sum(y_true) + sum(y_pred) + 1e-7)` over `axis`
    (every axis by default: one value for the whole batch)."""
    y_true, y_pred = _aligned(y_true, y_pred, axis, "dice")
    intersection = jnp.sum(y_true * y_pred, axis=axis)
    total = jnp.sum(y_true, axis=axis) + jnp.sum(y_pred, axis=axis)
    return 1.0 - 2.0 * intersection / (total + EPSILON)


def tversky(
    y_true: ArrayLike, y_pred: ArrayLike, alpha: float = 0.5, beta: float = 0.5, axis: Axis = None
) -> Array:
    """`1 - tp / (tp + alpha * fp + beta * fn + 1e-7)` with soft counts over `axis`
    (every axis by default). Keras' naming: `fp = sum((1 - y_pred) * y_true)` and
    `fn = sum(y_pred * (1 - y_true))`."""
    y_true, y_pred = _aligned(y_true, y_pred, axis, "tversky")
    tp = jnp.sum(y_true * y_pred, axis=axis)
    fp = jnp.sum((1.0 - y_pred) * y_true, axis=axis)
    fn = jnp.sum(y_pred * (1.0 - y_true), axis=axis)
    return 1.0 - tp / (tp + alpha * fp + beta * fn + EPSILON)


class Dice(Loss):
    """Dice loss, `1 - 2|A ∩ B| / (|A| + |B|)` with soft masks.

    Sums run over `axis`: None (default) gives one value for the whole batch, as
    Keras does (a `sample_weight` then scales it by the mean weight); pass e.g.
    `axis=(1, 2, 3)` for one value per image, weighted per example.
    """

    axis: Axis = eqx.field(static=True)

    def __init__(
        self,
        *,
        axis: Axis = None,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ):
        self.axis = check_axis(axis, type(self).__name__, allow_tuple=True)
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return dice(y_true, y_pred, self.axis)


class Tversky(Loss):
    """Tversky loss (Salehi et al., 2017), `1 - tp / (tp + alpha * fp + beta * fn)`.

    `alpha` weighs Keras' `fp = sum((1 - y_pred) * y_true)` (missed foreground) and
    `beta` its `fn = sum(y_pred * (1 - y_true))` (predicted foreground that is
    background); `alpha = beta = 0.5` is the Dice loss. `axis` as in `Dice`.
    """

    alpha: float = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    axis: Axis = eqx.field(static=True)

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        *,
        axis: Axis = None,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ):
        who = type(self).__name__
        self.alpha = check_float(alpha, who, "alpha", low=0.0)
        self.beta = check_float(beta, who, "beta", low=0.0)
        self.axis = check_axis(axis, who, allow_tuple=True)
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return tversky(y_true, y_pred, self.alpha, self.beta, self.axis)
