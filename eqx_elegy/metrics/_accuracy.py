"""Accuracy metrics: weighted means of per-example matches."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..losses._loss import align, as_array, float_dtype
from ._metric import Mean


def has_class_axis(y_true: Array, y_pred: Array) -> bool:
    """Whether `y_true` holds class ids for a `y_pred` with a class axis (Keras' rule)."""
    return y_pred.ndim == y_true.ndim + 1 or (
        y_true.ndim == y_pred.ndim >= 1 and y_true.shape[-1] == 1 and y_pred.shape[-1] > 1
    )


def sparse_matches(y_true: ArrayLike | None, y_pred: ArrayLike | None, who: str) -> Array:
    """1.0 where `argmax(y_pred)` equals the class id in `y_true`, else 0.0."""
    y_pred = as_array(y_pred, "y_pred", who)
    labels = as_array(y_true, "y_true", who)
    if labels.ndim == y_pred.ndim and labels.ndim > 0 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if y_pred.ndim < 1 or labels.shape != y_pred.shape[:-1]:
        raise ValueError(
            f"{who}: y_true has shape {labels.shape} and y_pred has shape {y_pred.shape}; "
            "y_true must hold one class id per row of y_pred, shape y_pred.shape[:-1]."
        )
    dtype = float_dtype(y_pred)
    predicted = jnp.argmax(y_pred, axis=-1).astype(dtype)
    return (predicted == labels.astype(dtype)).astype(jnp.float32)


class Accuracy(Mean):
    """How often predictions match labels, with the class axis resolved as Keras' `"accuracy"`.

    When `y_pred` has a class axis that `y_true` lacks (one more dimension, or
    `y_true`'s last axis has size 1 while `y_pred`'s is larger), `y_true` holds class
    ids and the prediction is `argmax(y_pred)`: integer labels with logits or
    probabilities give classification accuracy. Otherwise values are compared for
    exact equality, as Keras' `Accuracy` class does (use `BinaryAccuracy` or
    `CategoricalAccuracy` for thresholded or one-hot predictions).
    """

    def __init__(self, *, name: str | None = None):
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        y_true = as_array(y_true, "y_true", self.name)
        y_pred = as_array(y_pred, "y_pred", self.name)
        if has_class_axis(y_true, y_pred):
            return sparse_matches(y_true, y_pred, self.name)
        y_true, y_pred = align(y_true, y_pred, self.name)
        return (y_true == y_pred).astype(jnp.float32)


class SparseCategoricalAccuracy(Mean):
    """How often `argmax(y_pred)` equals the integer class id in `y_true`."""

    def __init__(self, *, name: str | None = None):
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        return sparse_matches(y_true, y_pred, self.name)


class CategoricalAccuracy(Mean):
    """How often `argmax(y_pred)` equals `argmax(y_true)` for one-hot labels."""

    def __init__(self, *, name: str | None = None):
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        labels = as_array(y_true, "y_true", self.name)
        pred = as_array(y_pred, "y_pred", self.name)
        hint = (
            "y_true looks like class ids: use SparseCategoricalAccuracy."
            if has_class_axis(labels, pred)
            else ""
        )
        labels, pred = align(labels, pred, self.name, hint)
        return (jnp.argmax(labels, axis=-1) == jnp.argmax(pred, axis=-1)).astype(jnp.float32)


class BinaryAccuracy(Mean):
    """How often `y_pred > threshold` equals the 0/1 label.

    With logits, pass `threshold=0.0`.
    """

    threshold: float = eqx.field(static=True)

    def __init__(self, threshold: float = 0.5, *, name: str | None = None):
        self.threshold = float(threshold)
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        labels, pred = align(y_true, y_pred, self.name)
        predicted = (pred > self.threshold).astype(labels.dtype)
        return (predicted == labels).astype(jnp.float32)
