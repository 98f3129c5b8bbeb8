"""Accuracy metrics: weighted means of per-example matches."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..losses._loss import align, as_array, float_dtype
from ._metric import Mean
from ._shapes import class_ids, has_class_axis, is_binary_output


def sparse_matches(y_true: ArrayLike | None, y_pred: ArrayLike | None, who: str) -> Array:
    """1.0 where `argmax(y_pred)` equals the class id in `y_true`, else 0.0."""
    y_pred = as_array(y_pred, "y_pred", who)
    labels = class_ids(as_array(y_true, "y_true", who), y_pred, who)
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


def in_top_k(ids: Array, scores: Array, k: int) -> Array:
    """1.0 where class `ids` scores among the top `k` of its row (ties count), as Keras."""
    at_label = jnp.take_along_axis(scores, ids[..., None], axis=-1)
    at_label = jnp.where(jnp.isnan(at_label), -jnp.inf, at_label)
    rank = 1 + jnp.sum(scores > at_label, axis=-1)
    return (rank <= k).astype(jnp.float32)


def _check_k(k: object, who: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{who}: k={k!r} must be a positive int.")
    return k


class TopKCategoricalAccuracy(Mean):
    """How often the one-hot label's class is among the `k` highest scores (ties count)."""

    k: int = eqx.field(static=True)

    def __init__(self, k: int = 5, *, name: str | None = None):
        self.k = _check_k(k, "TopKCategoricalAccuracy")
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        labels = as_array(y_true, "y_true", self.name)
        scores = as_array(y_pred, "y_pred", self.name)
        hint = (
            "y_true looks like class ids: use SparseTopKCategoricalAccuracy."
            if has_class_axis(labels, scores)
            else ""
        )
        labels, scores = align(labels, scores, self.name, hint)
        return in_top_k(jnp.argmax(labels, axis=-1), scores, self.k)


class SparseTopKCategoricalAccuracy(Mean):
    """How often the class id in `y_true` is among the `k` highest scores (ties count).

    With `from_sorted_ids=True`, `y_pred` holds each row's class ids sorted by score
    (best first), as from `jax.lax.top_k`, and the label must be among the first `k`.
    """

    k: int = eqx.field(static=True)
    from_sorted_ids: bool = eqx.field(static=True)

    def __init__(self, k: int = 5, *, from_sorted_ids: bool = False, name: str | None = None):
        self.k = _check_k(k, "SparseTopKCategoricalAccuracy")
        self.from_sorted_ids = bool(from_sorted_ids)
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        scores = as_array(y_pred, "y_pred", self.name)
        labels = as_array(y_true, "y_true", self.name)
        ids = class_ids(labels, scores, self.name).astype(jnp.int32)
        if self.from_sorted_ids:
            top = scores[..., : self.k].astype(jnp.int32)
            return jnp.any(top == ids[..., None], axis=-1).astype(jnp.float32)
        return in_top_k(ids, scores, self.k)
