"""Regression losses: errors between real-valued targets and predictions, as in Keras 3."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ._loss import EPSILON, Loss, align, check_axis, check_axis_fits, check_float


def mean_squared_error(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    """`mean((y_true - y_pred) ** 2)` over the last axis."""
    y_true, y_pred = align(y_true, y_pred, "mean_squared_error")
    return jnp.mean(jnp.square(y_true - y_pred), axis=-1)


def mean_absolute_error(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    """`mean(|y_true - y_pred|)` over the last axis."""
    y_true, y_pred = align(y_true, y_pred, "mean_absolute_error")
    return jnp.mean(jnp.abs(y_true - y_pred), axis=-1)


def mean_absolute_percentage_error(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    """`100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7))` over the last axis."""
    y_true, y_pred = align(y_true, y_pred, "mean_absolute_percentage_error")
    ratio = jnp.abs(y_true - y_pred) / jnp.maximum(jnp.abs(y_true), EPSILON)
    return 100.0 * jnp.mean(ratio, axis=-1)


def mean_squared_logarithmic_error(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    """`mean((log(1 + y_true) - log(1 + y_pred)) ** 2)`, inputs floored at 1e-7."""
    y_true, y_pred = align(y_true, y_pred, "mean_squared_logarithmic_error")
    log_pred = jnp.log1p(jnp.maximum(y_pred, EPSILON))
    log_true = jnp.log1p(jnp.maximum(y_true, EPSILON))
    return jnp.mean(jnp.square(log_pred - log_true), axis=-1)


def huber(y_true: ArrayLike, y_pred: ArrayLike, delta: float = 1.0) -> Array:
    """`0.5 * e**2` where `|e| <= delta`, else `delta * |e| - 0.5 * delta**2`, averaged
    over the last axis."""
    y_true, y_pred = align(y_true, y_pred, "huber")
    error = jnp.abs(y_pred - y_true)
    quadratic = 0.5 * jnp.square(error)
    linear = delta * error - 0.5 * delta**2
    return jnp.mean(jnp.where(error <= delta, quadratic, linear), axis=-1)


def log_cosh(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    """`mean(log(cosh(y_pred - y_true)))` over the last axis, computed without overflow
    as `e + softplus(-2e) - log(2)`."""
    y_true, y_pred = align(y_true, y_pred, "log_cosh")
    error = y_pred - y_true
    return jnp.mean(error + jax.nn.softplus(-2.0 * error) - math.log(2.0), axis=-1)


def cosine_similarity(y_true: ArrayLike, y_pred: ArrayLike, axis: int = -1) -> Array:
    """Minus the cosine similarity along `axis`, vectors L2-normalised with their
    squared norm floored at 1e-14 (Keras), so a zero vector gives 0 rather than NaN."""
    y_true, y_pred = align(y_true, y_pred, "cosine_similarity")
    check_axis_fits(axis, y_pred.shape, "cosine_similarity")

    def normalise(x: Array) -> Array:
        squared_norm = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
        return x * jax.lax.rsqrt(jnp.maximum(squared_norm, EPSILON**2))

    return -jnp.sum(normalise(y_true) * normalise(y_pred), axis=axis)


class MeanSquaredError(Loss):
    """`mean((y_true - y_pred) ** 2)` over the last axis."""

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return mean_squared_error(y_true, y_pred)


class MeanAbsoluteError(Loss):
    """`mean(|y_true - y_pred|)` over the last axis."""

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return mean_absolute_error(y_true, y_pred)


class MeanAbsolutePercentageError(Loss):
    """`100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7))` over the last axis."""

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return mean_absolute_percentage_error(y_true, y_pred)


class MeanSquaredLogarithmicError(Loss):
    """`mean((log(1 + y_true) - log(1 + y_pred)) ** 2)`, inputs floored at 1e-7."""

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return mean_squared_logarithmic_error(y_true, y_pred)


class Huber(Loss):
    """Quadratic for errors up to `delta`, linear beyond, averaged over the last axis.

    `0.5 * e**2` where `|e| <= delta`, else `delta * |e| - 0.5 * delta**2`: like
    the squared error near the target, but outliers pull only linearly.
    """

    delta: float = eqx.field(static=True)

    def __init__(
        self,
        delta: float = 1.0,
        *,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ):
        self.delta = check_float(delta, type(self).__name__, "delta", low=0.0, open_low=True)
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return huber(y_true, y_pred, self.delta)


class LogCosh(Loss):
    """`mean(log(cosh(y_pred - y_true)))` over the last axis: about `e**2 / 2` for small
    errors and `|e| - log(2)` for large ones, so like the squared error but less
    pulled by outliers."""

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return log_cosh(y_true, y_pred)


class CosineSimilarity(Loss):
    """Minus the cosine similarity along `axis`: -1 for parallel vectors, 0 for
    orthogonal, so minimising it aligns predictions with targets.

    Vectors are L2-normalised with their squared norm floored at 1e-14 (Keras), so
    a zero vector gives 0 rather than NaN.
    """

    axis: int = eqx.field(static=True)

    def __init__(
        self,
        axis: int = -1,
        *,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ):
        self.axis = check_axis(axis, type(self).__name__)
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return cosine_similarity(y_true, y_pred, self.axis)
