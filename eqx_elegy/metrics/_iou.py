"""Intersection over union, from a confusion matrix summed over batches (Keras' IoU family)."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ..losses._loss import EPSILON, as_array, weight_like
from ._metric import Metric, zeros
from ._shapes import class_ids, has_class_axis


def _check_int(value: object, argument: str, who: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{who}: {argument}={value!r} must be an int >= {low}.")
    return int(value)


class IoU(Metric):
    """Intersection over union, `tp / (tp + fp + fn)`, averaged over `target_class_ids`.

    As Keras' `IoU`: a `(num_classes, num_classes)` confusion matrix of weighted
    (label, prediction) pairs is summed over batches; each target class's IoU is
    computed from it, and classes that never occur (as label or prediction) are
    left out of the average. `y_true` holds class ids (`sparse_y_true=True`) or
    one-hot rows along `axis`; `y_pred` holds class ids (`sparse_y_pred=True`) or
    scores along `axis`. Class scores with a class axis that `y_true` lacks are
    read as scores even when `sparse_y_pred=True` (Keras would fail on them).
    Pairs with ids outside `[0, num_classes)`, or with label `ignore_class`, are
    skipped. Unlike Keras (whose default integer matrix truncates fractional
    weights) the matrix is float32, so every `sample_weight` counts as given.
    """

    num_classes: int = eqx.field(static=True)
    target_class_ids: tuple[int, ...] = eqx.field(static=True)
    ignore_class: int | None = eqx.field(static=True)
    sparse_y_true: bool = eqx.field(static=True)
    sparse_y_pred: bool = eqx.field(static=True)
    axis: int = eqx.field(static=True)

    def __init__(
        self,
        num_classes: int,
        target_class_ids: Sequence[int],
        *,
        ignore_class: int | None = None,
        sparse_y_true: bool = True,
        sparse_y_pred: bool = True,
        axis: int = -1,
        name: str | None = None,
    ):
        who = type(self).__name__
        self.num_classes = _check_int(num_classes, "num_classes", who, 1)
        if isinstance(target_class_ids, int | np.integer) or not isinstance(
            target_class_ids, Sequence | np.ndarray
        ):
            raise ValueError(
                f"{who}: target_class_ids={target_class_ids!r} must be a list of class ids."
            )
        ids = tuple(_check_int(i, "target_class_ids", who, 0) for i in target_class_ids)
        if not ids or max(ids) >= self.num_classes:
            raise ValueError(
                f"{who}: target_class_ids={list(ids)} must be non-empty and within "
                f"[0, {self.num_classes})."
            )
        self.target_class_ids = ids
        self.ignore_class = (
            None
            if ignore_class is None
            else _check_int(ignore_class, "ignore_class", who, -(2**31))
        )
        self.sparse_y_true = bool(sparse_y_true)
        self.sparse_y_pred = bool(sparse_y_pred)
        self.axis = int(axis)
        super().__init__(name=name)

    def init(self) -> dict[str, Array]:
        return {"confusion": zeros((self.num_classes, self.num_classes))}

    def _ids(self, y_true: Array, y_pred: Array) -> tuple[Array, Array]:
        """Labels and predictions as class ids of one shape."""
        if not self.sparse_y_true:
            y_true = jnp.argmax(y_true, axis=self.axis)
        scores_on_class_axis = (
            has_class_axis(y_true, y_pred)
            and y_pred.shape[-1] == self.num_classes
            and jnp.issubdtype(y_pred.dtype, jnp.inexact)
        )
        if not self.sparse_y_pred:
            y_pred = jnp.argmax(y_pred, axis=self.axis)
        elif scores_on_class_axis:
            y_pred = jnp.argmax(y_pred, axis=-1)
        return y_true, y_pred

    def update(
        self,
        state: dict[str, Array],
        y_true: ArrayLike,
        y_pred: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> dict[str, Array]:
        labels, predicted = self._ids(
            as_array(y_true, "y_true", self.name), as_array(y_pred, "y_pred", self.name)
        )
        if labels.size != predicted.size:
            raise ValueError(
                f"{self.name}: y_true has {labels.size} class ids (shape {labels.shape}) and "
                f"y_pred {predicted.size} (shape {predicted.shape}); they must match "
                "one to one."
            )
        weight = (
            jnp.ones(labels.shape, jnp.float32)
            if sample_weight is None
            else weight_like(labels.astype(jnp.float32), sample_weight, self.name)
        )
        labels = labels.reshape(-1).astype(jnp.int32)
        predicted = predicted.reshape(-1).astype(jnp.int32)
        weight = weight.reshape(-1).astype(jnp.float32)
        valid = (labels >= 0) & (labels < self.num_classes)
        valid &= (predicted >= 0) & (predicted < self.num_classes)
        if self.ignore_class is not None:
            valid &= labels != self.ignore_class
        weight = jnp.where(valid, weight, 0.0)
        pairs = jnp.where(valid, labels, 0), jnp.where(valid, predicted, 0)
        confusion = jnp.zeros_like(state["confusion"]).at[pairs].add(weight)
        return {"confusion": state["confusion"] + confusion}

    def compute(self, state: dict[str, Array]) -> Array:
        confusion = state["confusion"]
        true_positives = jnp.diag(confusion)
        denominator = jnp.sum(confusion, axis=0) + jnp.sum(confusion, axis=1) - true_positives
        targets = jnp.asarray(self.target_class_ids)
        true_positives, denominator = true_positives[targets], denominator[targets]
        valid = denominator > 1e-9
        iou = jnp.where(valid, true_positives / (denominator + EPSILON), 0.0)
        return jnp.sum(iou) / (jnp.sum(valid.astype(iou.dtype)) + EPSILON)


class MeanIoU(IoU):
    """The mean IoU over all `num_classes` classes (Keras' `MeanIoU`); see `IoU`."""

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_class: int | None = None,
        sparse_y_true: bool = True,
        sparse_y_pred: bool = True,
        axis: int = -1,
        name: str | None = None,
    ):
        super().__init__(
            num_classes,
            list(range(_check_int(num_classes, "num_classes", type(self).__name__, 1))),
            ignore_class=ignore_class,
            sparse_y_true=sparse_y_true,
            sparse_y_pred=sparse_y_pred,
            axis=axis,
            name=name,
        )


class OneHotIoU(IoU):
    """`IoU` with one-hot labels and class scores (Keras' `OneHotIoU`)."""

    def __init__(
        self,
        num_classes: int,
        target_class_ids: Sequence[int],
        *,
        ignore_class: int | None = None,
        sparse_y_pred: bool = False,
        axis: int = -1,
        name: str | None = None,
    ):
        super().__init__(
            num_classes,
            target_class_ids,
            ignore_class=ignore_class,
            sparse_y_true=False,
            sparse_y_pred=sparse_y_pred,
            axis=axis,
            name=name,
        )


class OneHotMeanIoU(MeanIoU):
    """`MeanIoU` with one-hot labels and class scores (Keras' `OneHotMeanIoU`)."""

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_class: int | None = None,
        sparse_y_pred: bool = False,
        axis: int = -1,
        name: str | None = None,
    ):
        super().__init__(
            num_classes,
            ignore_class=ignore_class,
            sparse_y_true=False,
            sparse_y_pred=sparse_y_pred,
            axis=axis,
            name=name,
        )


class BinaryIoU(IoU):
    """IoU of binary labels against `y_pred >= threshold` (Keras' `BinaryIoU`).

    `target_class_ids` chooses the classes averaged: `(0, 1)` both, `(1,)` the
    positive one. Binary shapes fit each other as everywhere (`(n,)` labels with
    `(n, 1)` scores); multi-label scores count element by element, and class ids
    with class scores are one-hot encoded first.
    `from_logits=True` applies a sigmoid first.
    """

    threshold: float = eqx.field(static=True)
    from_logits: bool = eqx.field(static=True)

    def __init__(
        self,
        target_class_ids: Sequence[int] = (0, 1),
        threshold: float = 0.5,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ValueError(f"BinaryIoU: threshold={threshold!r} must be a number.")
        self.threshold = float(threshold)
        self.from_logits = bool(from_logits)
        super().__init__(2, target_class_ids, name=name)

    def _ids(self, y_true: Array, y_pred: Array) -> tuple[Array, Array]:
        scores = y_pred.astype(jnp.float32)
        if has_class_axis(y_true, scores):  # class ids: each class column a binary label
            y_true = jax.nn.one_hot(class_ids(y_true, scores, self.name), scores.shape[-1])
        if self.from_logits:
            scores = jax.nn.sigmoid(scores)
        return y_true, scores >= self.threshold
