"""The shape rules every metric follows (Keras' rules), decided at trace time.

- A last axis of size 1 on `y_pred` (or no axis beyond the batch) is one binary
  score per example: `(n,)` and `(n, 1)` outputs and labels fit each other.
- `y_pred` with a last axis of C > 1 class scores and `y_true` without it (shape
  `(n,)` or `(n, 1)`) means class ids.
- `y_true` with `y_pred`'s shape and several columns means one-hot or multi-label
  rows: each column is a binary label.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..losses._loss import align, as_array, float_dtype, weight_like


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


def class_ids(y_true: Array, y_pred: Array, who: str) -> Array:
    """`y_true` as one class id per row of `y_pred`, shape `y_pred.shape[:-1]` (a
    trailing axis of size 1 is dropped); a ValueError naming both shapes otherwise."""
    if y_pred.ndim >= 1 and y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_pred.ndim < 1 or y_true.shape != y_pred.shape[:-1]:
        raise ValueError(
            f"{who}: y_true has shape {y_true.shape} and y_pred has shape {y_pred.shape}; "
            "y_true must hold one class id per row of y_pred, shape y_pred.shape[:-1]."
        )
    return y_true


def label_columns(
    y_true: ArrayLike | None,
    y_pred: ArrayLike | None,
    sample_weight: ArrayLike | None,
    who: str,
    from_logits: bool = False,
) -> tuple[Array, Array, Array]:
    """Labels, scores and weights as `(examples, columns)` float arrays.

    Class ids are one-hot encoded to `y_pred`'s classes; otherwise labels and
    scores are matched up to a trailing axis of size 1 and every nonzero label is a
    positive. Binary inputs have one column. Per-example weights are repeated over
    the columns. `from_logits=True` applies a sigmoid to the scores.
    """
    labels = as_array(y_true, "y_true", who)
    scores = as_array(y_pred, "y_pred", who)
    if has_class_axis(labels, scores):
        scores = scores.astype(float_dtype(scores))
        ids = class_ids(labels, scores, who).astype(jnp.int32)
        truth = jax.nn.one_hot(ids, scores.shape[-1], dtype=scores.dtype)
    else:
        truth, scores = align(labels, scores, who)
        truth = (truth != 0).astype(scores.dtype)
    if from_logits:
        scores = jax.nn.sigmoid(scores)
    weight = (
        jnp.ones_like(scores) if sample_weight is None else weight_like(scores, sample_weight, who)
    )
    columns = (-1, scores.shape[-1])
    return truth.reshape(columns), scores.reshape(columns), weight.reshape(columns)
