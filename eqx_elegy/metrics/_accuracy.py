"""Accuracy metrics: weighted means of per-example matches."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..losses._loss import align, as_array, float_dtype
from ._metric import Mean


def has_class_axis(y_true: Array, y_pred: Array) -> bool:
    """Whether `y_true` holds class ids for the class scores on `y_pred`'s last axis.

    Keras' rule: `y_pred` has one more axis than `y_true`, or both have the same rank
    and `y_true`'s last axis has size 1. A last axis of size 1 on `y_pred` is one
    binary score, never a single class, so `(n, 1)` outputs with `(n,)` labels are
    binary.
    """
    if y_pred.ndim == 0 or y_pred.shape[-1] < 2:
        return False
    return y_pred.ndim == y_true.ndim + 1 or (y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1)


def is_binary_output(y_pred: Array) -> bool:
    """One score per example (or per position): shape `(n,)` or a last axis of size 1."""
    return y_pred.ndim <= 1 or y_pred.shape[-1] == 1


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
    """How often predictions match labels, resolved from the shapes as Keras' `"accuracy"`.

    - `y_pred` has a class axis that `y_true` lacks (`(n, C)` scores with `(n,)` or
      `(n, 1)` class ids): sparse categorical accuracy, `argmax(y_pred) == y_true`;
    - integer or boolean `y_pred` (predicted labels): exact equality, as Keras'
      `Accuracy` class;
    - one score per example (`(n,)` or `(n, 1)` probabilities): binary accuracy at
      0.5 (with logits use `BinaryAccuracy(threshold=0.0)`, or let a model resolve it
      from a `BinaryCrossentropy(from_logits=True)` loss);
    - scores with the labels' shape and several columns: categorical accuracy,
      `argmax(y_pred) == argmax(y_true)` (for multi-label outputs use
      `BinaryAccuracy`, which a model picks when the output's loss is a binary
      crossentropy).
    """

    def __init__(self, *, name: str | None = None):
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        y_true = as_array(y_true, "y_true", self.name)
        y_pred = as_array(y_pred, "y_pred", self.name)
        if has_class_axis(y_true, y_pred):
            return sparse_matches(y_true, y_pred, self.name)
        if not jnp.issubdtype(y_pred.dtype, jnp.inexact):
            y_true, y_pred = align(y_true, y_pred, self.name)
            return (y_true == y_pred).astype(jnp.float32)
        if is_binary_output(y_pred):
            return binary_matches(y_true, y_pred, 0.5, self.name)
        return categorical_matches(y_true, y_pred, self.name)


class SparseCategoricalAccuracy(Mean):
    """How often `argmax(y_pred)` equals the integer class id in `y_true`."""

    def __init__(self, *, name: str | None = None):
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        return sparse_matches(y_true, y_pred, self.name)


def categorical_matches(y_true: ArrayLike | None, y_pred: ArrayLike | None, who: str) -> Array:
    """1.0 where `argmax(y_pred)` equals `argmax(y_true)` (one-hot labels), else 0.0."""
    labels = as_array(y_true, "y_true", who)
    pred = as_array(y_pred, "y_pred", who)
    hint = (
        "y_true looks like class ids: use SparseCategoricalAccuracy."
        if has_class_axis(labels, pred)
        else ""
    )
    labels, pred = align(labels, pred, who, hint)
    return (jnp.argmax(labels, axis=-1) == jnp.argmax(pred, axis=-1)).astype(jnp.float32)


def binary_matches(
    y_true: ArrayLike | None,
    y_pred: ArrayLike | None,
    threshold: float,
    who: str,
    from_logits: bool = False,
) -> Array:
    """1.0 where `y_pred > threshold` equals the 0/1 label, per element, else 0.0."""
    labels, pred = align(y_true, y_pred, who)
    if from_logits:
        pred = jax.nn.sigmoid(pred)
    predicted = (pred > threshold).astype(labels.dtype)
    return (predicted == labels).astype(jnp.float32)


class CategoricalAccuracy(Mean):
    """How often `argmax(y_pred)` equals `argmax(y_true)` for one-hot labels."""

    def __init__(self, *, name: str | None = None):
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        return categorical_matches(y_true, y_pred, self.name)


class BinaryAccuracy(Mean):
    """How often `y_pred > threshold` equals the 0/1 label, per element.

    `(n,)` and `(n, 1)` outputs and labels fit each other; several columns are
    several binary labels (multi-label), each counted. With logits, pass
    `from_logits=True` (a sigmoid first) or `threshold=0.0`.
    """

    threshold: float = eqx.field(static=True)
    from_logits: bool = eqx.field(static=True)

    def __init__(
        self, threshold: float = 0.5, *, from_logits: bool = False, name: str | None = None
    ):
        self.threshold = float(threshold)
        self.from_logits = bool(from_logits)
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        return binary_matches(y_true, y_pred, self.threshold, self.name, self.from_logits)
