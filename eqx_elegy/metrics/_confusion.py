"""Metrics over confusion counts: Precision, Recall, F1 and AUC."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..losses._loss import EPSILON, align, as_array, float_dtype, weight_like
from ._accuracy import has_class_axis
from ._metric import Metric, divide_no_nan, zeros

AVERAGES = ("micro", "macro", "weighted")
Counts = dict[str, Array]


def _indicators(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    sample_weight: ArrayLike | None,
    threshold: float | None,
    from_logits: bool,
    who: str,
) -> tuple[Array, Array, Array]:
    """Labels, predictions and weights as `(examples, classes)` arrays of 0.0/1.0.

    Three kinds of input, told apart by shape:
    - class ids with per-class scores (`y_pred` has a class axis `y_true` lacks);
    - one-hot or multi-label `y_true` of `y_pred`'s shape, several columns;
    - binary: one column (or none), `y_pred` a probability or score.
    `threshold=None` predicts the top-scoring class for several columns (ties
    all count, an all-zero row predicts nothing, as Keras' F1Score) and
    `score > 0.5` for one; a float predicts `score > threshold` in every column.
    `from_logits=True` applies a sigmoid to the scores first.
    """
    labels = as_array(y_true, "y_true", who)
    scores = as_array(y_pred, "y_pred", who)
    if has_class_axis(labels, scores):
        if labels.ndim == scores.ndim:
            labels = labels[..., 0]
        if labels.shape != scores.shape[:-1]:
            raise ValueError(
                f"{who}: y_true has shape {labels.shape} and y_pred has shape "
                f"{scores.shape}; class ids in y_true need shape y_pred.shape[:-1]."
            )
        scores = scores.astype(float_dtype(scores))
        truth = jax.nn.one_hot(labels.astype(jnp.int32), scores.shape[-1], dtype=scores.dtype)
    else:
        truth, scores = align(labels, scores, who)
        truth = (truth != 0).astype(scores.dtype)
    if from_logits:
        scores = jax.nn.sigmoid(scores)
    num_classes = scores.shape[-1]
    if num_classes > 1 and threshold is None:
        top = jnp.max(scores, axis=-1, keepdims=True)
        predicted = (scores >= top) & (jnp.abs(scores) > 1e-9)
    else:
        predicted = scores > (0.5 if threshold is None else threshold)
    if sample_weight is None:
        weight = jnp.ones_like(scores)
    else:
        weight = weight_like(scores, sample_weight, who)
    flat = (-1, num_classes)
    return (
        truth.reshape(flat),
        predicted.astype(scores.dtype).reshape(flat),
        weight.reshape(flat),
    )


class _ConfusionMetric(Metric):
    """Accumulates weighted true positives, false positives and false negatives.

    `average="micro"` pools the counts over classes (one scalar each);
    `"macro"` and `"weighted"` keep them per class and average the per-class
    scores, plainly or weighted by each class's support (its weighted number of
    true examples). Per-class state needs its size up front: pass `num_classes`
    for multi-class inputs (binary inputs have one class, the positive one).
    `from_logits=True` takes scores as logits (a sigmoid first).
    """

    threshold: float | None = eqx.field(static=True)
    average: str = eqx.field(static=True)
    num_classes: int | None = eqx.field(static=True)
    from_logits: bool = eqx.field(static=True)

    def __init__(
        self,
        threshold: float | None = None,
        average: str = "micro",
        num_classes: int | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        who = type(self).__name__
        if average not in AVERAGES:
            raise ValueError(
                f"{who}: average={average!r} is not one of {', '.join(map(repr, AVERAGES))}."
            )
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"{who}: num_classes={num_classes!r} must be a positive int.")
        self.threshold = None if threshold is None else float(threshold)
        self.average = average
        self.num_classes = num_classes
        self.from_logits = bool(from_logits)
        super().__init__(name=name)

    def _state_shape(self) -> tuple[int, ...]:
        return () if self.average == "micro" else (self.num_classes or 1,)

    def init(self) -> Counts:
        shape = self._state_shape()
        return {"tp": zeros(shape), "fp": zeros(shape), "fn": zeros(shape)}

    def update(
        self,
        state: Counts,
        y_true: ArrayLike,
        y_pred: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> Counts:
        truth, predicted, weight = _indicators(
            y_true, y_pred, sample_weight, self.threshold, self.from_logits, self.name
        )
        num_classes = truth.shape[-1]
        expected = self._state_shape()
        if expected and expected[0] != num_classes:
            raise ValueError(
                f"{type(self).__name__}(average={self.average!r}) keeps one count per "
                f"class and was built for {expected[0]} class(es) "
                f"(num_classes={self.num_classes}), but y_pred of shape "
                f"{as_array(y_pred, 'y_pred', self.name).shape} has {num_classes}: "
                f"pass num_classes={num_classes}."
            )
        axis = 0 if expected else None
        counts = {
            "tp": jnp.sum(weight * truth * predicted, axis=axis),
            "fp": jnp.sum(weight * (1.0 - truth) * predicted, axis=axis),
            "fn": jnp.sum(weight * truth * (1.0 - predicted), axis=axis),
        }
        return {k: state[k] + counts[k].astype(jnp.float32) for k in state}

    def _average(self, per_class: Array, state: Counts) -> Array:
        if self.average == "weighted":
            support = state["tp"] + state["fn"]
            return divide_no_nan(jnp.sum(per_class * support), jnp.sum(support))
        return jnp.mean(per_class)


class Precision(_ConfusionMetric):
    """Of the predicted positives, the (weighted) fraction that are positive: `tp / (tp + fp)`.

    Binary inputs (one column of probabilities) are thresholded at `threshold`
    (0.5 by default), as Keras' `Precision`. Multi-class inputs (class ids or
    one-hot labels with per-class scores) predict the top class unless a
    `threshold` is given, then every column is thresholded (multi-label; Keras'
    `Precision()` on such inputs is `Precision(threshold=0.5)`). See
    `_ConfusionMetric` for `average` and `num_classes`.
    """

    def __init__(
        self,
        threshold: float | None = None,
        average: str = "micro",
        num_classes: int | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__(threshold, average, num_classes, from_logits=from_logits, name=name)

    def compute(self, state: Counts) -> Array:
        return self._average(divide_no_nan(state["tp"], state["tp"] + state["fp"]), state)


class Recall(_ConfusionMetric):
    """Of the positives, the (weighted) fraction predicted positive: `tp / (tp + fn)`.

    Inputs, `threshold`, `average` and `num_classes` as for `Precision`.
    """

    def __init__(
        self,
        threshold: float | None = None,
        average: str = "micro",
        num_classes: int | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__(threshold, average, num_classes, from_logits=from_logits, name=name)

    def compute(self, state: Counts) -> Array:
        return self._average(divide_no_nan(state["tp"], state["tp"] + state["fn"]), state)


class F1(_ConfusionMetric):
    """The harmonic mean of precision and recall, Keras' `F1Score` formula.

    `2 * p * r / (p + r)`, with 1e-7 added to each denominator. Defaults to
    `average="macro"` (Keras' default, per-class scores, is not a scalar);
    multi-class inputs then need `num_classes`. Inputs and `threshold` as for
    `Precision`; Keras' `F1Score(threshold=None)` is `F1(threshold=None)` on
    one-hot inputs.
    """

    def __init__(
        self,
        threshold: float | None = None,
        average: str = "macro",
        num_classes: int | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__(threshold, average, num_classes, from_logits=from_logits, name=name)

    def compute(self, state: Counts) -> Array:
        tp, fp, fn = state["tp"], state["fp"], state["fn"]
        precision = tp / (tp + fp + EPSILON)
        recall = tp / (tp + fn + EPSILON)
        f1 = 2.0 * precision * recall / (precision + recall + EPSILON)
        if self.average == "weighted":
            support = tp + fn
            return jnp.sum(f1 * support / (jnp.sum(support) + EPSILON))
        return jnp.mean(f1)


CURVES = ("ROC", "PR")
SUMMATIONS = ("interpolation", "minoring", "majoring")


class AUC(Metric):
    """Area under the ROC or precision-recall curve, from counts at fixed thresholds.

    As Keras' `AUC` (single-label mode): every element of `y_pred` is a score in
    [0, 1] (or a logit with `from_logits=True`) for the binary label at the same
    position in `y_true`; counts are kept at `num_thresholds` evenly spaced
    thresholds, so the value is exact up to that resolution and batches merge
    exactly. `summation_method` picks the Riemann sum: `"interpolation"` (the
    trapezoid rule for ROC; Davis & Goadrich interpolation for PR),
    `"minoring"` or `"majoring"`.
    """

    num_thresholds: int = eqx.field(static=True)
    curve: str = eqx.field(static=True)
    summation_method: str = eqx.field(static=True)
    from_logits: bool = eqx.field(static=True)

    def __init__(
        self,
        num_thresholds: int = 200,
        curve: str = "ROC",
        summation_method: str = "interpolation",
        from_logits: bool = False,
        *,
        name: str | None = None,
    ):
        if not isinstance(num_thresholds, int) or num_thresholds < 2:
            raise ValueError(f"AUC: num_thresholds={num_thresholds!r} must be an int > 1.")
        if curve.upper() not in CURVES:
            raise ValueError(f"AUC: curve={curve!r} is not one of {', '.join(CURVES)}.")
        if summation_method not in SUMMATIONS:
            raise ValueError(
                f"AUC: summation_method={summation_method!r} is not one of {', '.join(SUMMATIONS)}."
            )
        self.num_thresholds = num_thresholds
        self.curve = curve.upper()
        self.summation_method = summation_method
        self.from_logits = from_logits
        super().__init__(name=name)

    def init(self) -> Counts:
        return {k: zeros((self.num_thresholds,)) for k in ("tp", "fp", "tn", "fn")}

    def update(
        self,
        state: Counts,
        y_true: ArrayLike,
        y_pred: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> Counts:
        labels = as_array(y_true, "y_true", self.name)
        scores = as_array(y_pred, "y_pred", self.name)
        hint = (
            "AUC scores binary labels; one-hot encode class ids first."
            if has_class_axis(labels, scores)
            else ""
        )
        truth, scores = align(labels, scores, self.name, hint)
        if self.from_logits:
            scores = jax.nn.sigmoid(scores)
        weight = (
            jnp.ones_like(scores)
            if sample_weight is None
            else weight_like(scores, sample_weight, self.name)
        )
        is_positive = (truth != 0).astype(weight.dtype)
        positive = (weight * is_positive).reshape(-1).astype(jnp.float32)
        negative = (weight * (1.0 - is_positive)).reshape(-1).astype(jnp.float32)
        # Thresholds are -eps, 1/(n-1), ..., (n-2)/(n-1), 1+eps. A score s exceeds
        # thresholds 0..k where k = ceil(s * (n-1)) - 1 (at least 0): count each
        # example in bucket k, then a reversed cumulative sum gives the counts of
        # scores above each threshold, in O(examples + thresholds).
        n = self.num_thresholds
        bucket = jnp.ceil(jnp.clip(scores, 0.0, 1.0) * (n - 1)) - 1.0
        bucket = jnp.maximum(bucket, 0.0).astype(jnp.int32).reshape(-1)

        def above(x: Array) -> Array:
            per_bucket = jax.ops.segment_sum(x, bucket, num_segments=n)
            return jnp.cumsum(per_bucket[::-1])[::-1]

        tp, fp = above(positive), above(negative)
        return {
            "tp": state["tp"] + tp,
            "fp": state["fp"] + fp,
            "tn": state["tn"] + (jnp.sum(negative) - fp),
            "fn": state["fn"] + (jnp.sum(positive) - tp),
        }

    def compute(self, state: Counts) -> Array:
        tp, fp, tn, fn = state["tp"], state["fp"], state["tn"], state["fn"]
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolated_pr_auc(tp, fp, fn)
        recall = divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = jnp.minimum(y[:-1], y[1:])
        else:
            heights = jnp.maximum(y[:-1], y[1:])
        return jnp.sum((x[:-1] - x[1:]) * heights)

    @staticmethod
    def _interpolated_pr_auc(tp: Array, fp: Array, fn: Array) -> Array:
        """PR-AUC with precision interpolated between thresholds (Davis & Goadrich, 2006).

        Between two thresholds, tp grows linearly in the number of predicted
        positives p, so precision tp/p is integrated in closed form per interval.
        """
        p = tp + fp
        dtp = tp[:-1] - tp[1:]
        dp = p[:-1] - p[1:]
        slope = divide_no_nan(dtp, jnp.maximum(dp, 0.0))
        intercept = tp[1:] - slope * p[1:]
        both_positive = (p[:-1] > 0) & (p[1:] > 0)
        ratio = jnp.where(
            both_positive, divide_no_nan(p[:-1], jnp.maximum(p[1:], 0.0)), jnp.ones_like(p[1:])
        )
        area = divide_no_nan(
            slope * (dtp + intercept * jnp.log(ratio)), jnp.maximum(tp[1:] + fn[1:], 0.0)
        )
        return jnp.sum(area)
