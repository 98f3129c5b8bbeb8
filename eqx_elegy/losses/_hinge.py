"""Hinge losses, for classifiers that output scores rather than probabilities
(e.g. a linear SVM): zero once the score is on the right side of a margin of 1."""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ._loss import Loss, align


def _signs(y_true: Array) -> Array:
    """Labels as -1/+1: 0/1 labels are mapped to -1/+1 when every label in the batch is
    0 or 1 (Keras' rule); other labels are used as they are."""
    is_binary = jnp.all((y_true == 0) | (y_true == 1))
    return jnp.where(is_binary, 2.0 * y_true - 1.0, y_true)


def hinge(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    """`mean(max(1 - y_true * y_pred, 0))` over the last axis, labels -1/+1 (or 0/1)."""
    y_true, y_pred = align(y_true, y_pred, "hinge")
    return jnp.mean(jnp.maximum(1.0 - _signs(y_true) * y_pred, 0.0), axis=-1)


def squared_hinge(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    """`mean(max(1 - y_true * y_pred, 0) ** 2)` over the last axis, labels -1/+1 (or 0/1)."""
    y_true, y_pred = align(y_true, y_pred, "squared_hinge")
    return jnp.mean(jnp.square(jnp.maximum(1.0 - _signs(y_true) * y_pred, 0.0)), axis=-1)


def categorical_hinge(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    """`max(neg - pos + 1, 0)` for one-hot labels: `pos` is the true class's score,
    `neg` the highest score of the other classes."""
    y_true, y_pred = align(y_true, y_pred, "categorical_hinge")
    pos = jnp.sum(y_true * y_pred, axis=-1)
    neg = jnp.max((1.0 - y_true) * y_pred, axis=-1)
    return jnp.maximum(neg - pos + 1.0, 0.0)


class Hinge(Loss):
    """`mean(max(1 - y_true * y_pred, 0))` over the last axis.

    Labels are -1/+1; 0/1 labels are converted when every label in the batch is 0
    or 1, as in Keras. `y_pred` holds raw scores.
    """

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return hinge(y_true, y_pred)


class SquaredHinge(Loss):
    """`mean(max(1 - y_true * y_pred, 0) ** 2)` over the last axis; labels as in `Hinge`."""

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return squared_hinge(y_true, y_pred)


class CategoricalHinge(Loss):
    """Multi-class hinge for one-hot labels: `max(neg - pos + 1, 0)`, where `pos` is
    the true class's score and `neg` the best other score."""

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return categorical_hinge(y_true, y_pred)
