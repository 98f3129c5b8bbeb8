"""Metrics over confusion counts at thresholds, as Keras computes them.

The true/false positive/negative counters, `Precision`, `Recall`, the
`...AtRecall`/`...AtSpecificity` family and `AUC` all keep weighted counts of
`score > threshold` per threshold. Counts are sums, so batches (and devices, and
`steps_per_execution` chunks) combine exactly. Inputs follow the shape rules of
`_shapes.py`: every element of `y_pred` is scored against the binary label at the
same position, class ids being one-hot encoded first.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ..losses._loss import EPSILON
from ._metric import Metric, divide_no_nan, zeros
from ._shapes import label_columns

# Keras' stand-in for minus infinity: with `top_k`, the scores outside the top k.
NEG_INF = -1e10
AVERAGES = ("micro", "macro", "weighted")
Counts = dict[str, Array]


def parse_thresholds(
    thresholds: float | Sequence[float] | None, default: float, who: str
) -> tuple[float, ...]:
    """`thresholds` as a tuple of floats in [0, 1] (Keras' rule), or `(default,)`."""
    if thresholds is None:
        return (default,)
    values = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{who}: thresholds={thresholds!r} must be a float or a list of floats.")
    bad = [float(t) for t in values if not 0.0 <= t <= 1.0]
    if bad:
        raise ValueError(f"{who}: thresholds must lie in [0, 1]; got {bad}.")
    return tuple(float(t) for t in values)


def evenly_spaced(thresholds: Sequence[float]) -> bool:
    """Whether `thresholds` are `0, 1/(n-1), ..., 1` (n >= 3): Keras counts those by
    bucketing the scores, in O(scores + thresholds), instead of comparing each pair."""
    n = len(thresholds)
    return n >= 3 and bool(
        np.allclose(thresholds, np.arange(n, dtype=np.float32) / (n - 1), atol=EPSILON)
    )


def filter_top_k(scores: Array, k: int) -> Array:
    """The scores outside each row's top `k` set to `NEG_INF` (Keras' `_filter_top_k`)."""
    _, indices = jax.lax.top_k(scores, k)
    mask = jnp.sum(jax.nn.one_hot(indices, scores.shape[-1], dtype=scores.dtype), axis=-2)
    return scores * mask + NEG_INF * (1 - mask)


def _reverse_cumsum(x: Array) -> Array:
    return jnp.cumsum(x[::-1], axis=0)[::-1]


def count_above(
    truth: Array,
    scores: Array,
    weight: Array,
    thresholds: tuple[float, ...],
    *,
    per_column: bool,
    bucketed: bool,
    clip_ends: bool = False,
) -> Counts:
    """Weighted `tp, fp, tn, fn` of `score > threshold` for each threshold.

    `truth`, `scores`, `weight`: `(examples, columns)`. Shape of each count:
    `(thresholds, columns)` with `per_column`, else `(thresholds,)` over every
    element. `bucketed` (for evenly spaced thresholds) counts each score in the
    bucket below it and sums the buckets from the top, as Keras does; `clip_ends`
    says the first and last thresholds are -eps and 1+eps (AUC), so every score
    in [0, 1] lies above the first.
    """
    positive = truth * weight
    negative = (1 - truth) * weight
    if not per_column:
        positive, negative, scores = (a.reshape(-1, 1) for a in (positive, negative, scores))
    n = len(thresholds)
    if bucketed:
        bucket = jnp.ceil(jnp.clip(scores, 0.0, 1.0) * (n - 1)) - 1
        if clip_ends:
            bucket = jnp.maximum(bucket, 0)
        bucket = bucket.astype(jnp.int32)

        def column(pos: Array, neg: Array, ids: Array) -> tuple[Array, Array]:
            tp = jax.ops.segment_sum(pos, ids, num_segments=n)
            fp = jax.ops.segment_sum(neg, ids, num_segments=n)
            return _reverse_cumsum(tp), _reverse_cumsum(fp)

        tp, fp = jax.vmap(column, in_axes=1, out_axes=1)(positive, negative, bucket)
    else:
        cut = jnp.asarray(thresholds, scores.dtype)[:, None, None]
        above = scores[None] > cut  # (thresholds, examples, columns)
        tp = jnp.sum(jnp.where(above, positive[None], 0), axis=1)
        fp = jnp.sum(jnp.where(above, negative[None], 0), axis=1)
    counts = {
        "tp": tp,
        "fp": fp,
        "tn": jnp.sum(negative, axis=0) - fp,
        "fn": jnp.sum(positive, axis=0) - tp,
    }
    return {k: v if per_column else v[:, 0] for k, v in counts.items()}


class _ThresholdMetric(Metric):
    """Keeps the weighted counts named in `kept` at `thresholds`, summed over batches.

    `columns`: None pools every element into one count per threshold; an int keeps
    one count per label column (that many columns), for per-class averages and
    multi-label AUC.
    """

    thresholds: tuple[float, ...] = eqx.field(static=True)
    top_k: int | None = eqx.field(static=True)
    class_id: int | None = eqx.field(static=True)
    from_logits: bool = eqx.field(static=True)
    columns: int | None = eqx.field(static=True)
    kept: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        thresholds: tuple[float, ...],
        kept: tuple[str, ...],
        *,
        top_k: int | None = None,
        class_id: int | None = None,
        from_logits: bool = False,
        columns: int | None = None,
        name: str | None,
    ):
        who = type(self).__name__
        for arg, value in [("top_k", top_k), ("class_id", class_id)]:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0
            ):
                raise ValueError(f"{who}: {arg}={value!r} must be a non-negative int or None.")
        if top_k == 0:
            raise ValueError(f"{who}: top_k=0 keeps no prediction; pass a positive int or None.")
        self.thresholds = thresholds
        self.kept = kept
        self.top_k = None if top_k is None else int(top_k)
        self.class_id = None if class_id is None else int(class_id)
        self.from_logits = bool(from_logits)
        self.columns = columns
        super().__init__(name=name)

    def _bucketed(self) -> bool:
        return evenly_spaced(self.thresholds)

    def init(self) -> Counts:
        shape = (len(self.thresholds),) + (() if self.columns is None else (self.columns,))
        return {k: zeros(shape) for k in self.kept}

    def _inputs(
        self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None
    ) -> tuple[Array, Array, Array]:
        truth, scores, weight = label_columns(
            y_true, y_pred, sample_weight, self.name, self.from_logits
        )
        if self.top_k is not None:
            scores = filter_top_k(scores, min(self.top_k, scores.shape[-1]))
        if self.class_id is not None:
            if self.class_id >= scores.shape[-1]:
                raise ValueError(
                    f"{self.name}: class_id={self.class_id}, but y_pred has "
                    f"{scores.shape[-1]} class column(s)."
                )
            column = slice(self.class_id, self.class_id + 1)
            truth, scores, weight = truth[:, column], scores[:, column], weight[:, column]
        if self.columns is not None and scores.shape[-1] != self.columns:
            raise ValueError(
                f"{self.name} keeps one count per class and was built for {self.columns} "
                f"class(es), but y_pred of shape {jnp.shape(y_pred)} has "
                f"{scores.shape[-1]}: pass {self._columns_argument()}={scores.shape[-1]}."
            )
        return truth, scores, weight

    def _columns_argument(self) -> str:
        return "num_classes"

    def _count(self, truth: Array, scores: Array, weight: Array) -> Counts:
        return count_above(
            truth,
            scores,
            weight,
            self.thresholds,
            per_column=self.columns is not None,
            bucketed=self._bucketed(),
        )

    def update(
        self,
        state: Counts,
        y_true: ArrayLike,
        y_pred: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> Counts:
        counts = self._count(*self._inputs(y_true, y_pred, sample_weight))
        return {k: state[k] + counts[k].astype(jnp.float32) for k in self.kept}

    def _per_threshold(self, values: Array) -> Array:
        """A scalar for one threshold, else one value per threshold (as Keras)."""
        return values[0] if len(self.thresholds) == 1 else values


class _Counter(_ThresholdMetric):
    """The weighted number of elements in one cell of the confusion matrix."""

    def __init__(
        self,
        kept: str,
        thresholds: float | Sequence[float] | None,
        *,
        from_logits: bool,
        name: str | None,
    ):
        who = type(self).__name__
        super().__init__(
            parse_thresholds(thresholds, 0.5, who), (kept,), from_logits=from_logits, name=name
        )

    def compute(self, state: Counts) -> Array:
        return self._per_threshold(state[self.kept[0]])


class TruePositives(_Counter):
    """The weighted number of positive labels scored above `thresholds` (0.5).

    With a list of thresholds, one count per threshold. `from_logits=True` takes
    the scores as logits (a sigmoid first).
    """

    def __init__(
        self,
        thresholds: float | Sequence[float] | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__("tp", thresholds, from_logits=from_logits, name=name)


class FalsePositives(_Counter):
    """The weighted number of negative labels scored above `thresholds` (0.5)."""

    def __init__(
        self,
        thresholds: float | Sequence[float] | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__("fp", thresholds, from_logits=from_logits, name=name)


class TrueNegatives(_Counter):
    """The weighted number of negative labels scored at or below `thresholds` (0.5)."""

    def __init__(
        self,
        thresholds: float | Sequence[float] | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__("tn", thresholds, from_logits=from_logits, name=name)


class FalseNegatives(_Counter):
    """The weighted number of positive labels scored at or below `thresholds` (0.5)."""

    def __init__(
        self,
        thresholds: float | Sequence[float] | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__("fn", thresholds, from_logits=from_logits, name=name)


class _PrecisionRecall(_ThresholdMetric):
    """Precision and Recall: Keras' arguments, plus per-class averages.

    `average="micro"` (Keras) pools the counts of every label column;
    `"macro"` and `"weighted"` average the per-class values, plainly or weighted
    by each class's support (its weighted number of positive labels), as
    scikit-learn's `average=`. Per-class counts need the number of classes up
    front: pass `num_classes`.
    """

    average: str = eqx.field(static=True)

    def __init__(
        self,
        thresholds: float | Sequence[float] | None,
        top_k: int | None,
        class_id: int | None,
        *,
        from_logits: bool,
        average: str,
        num_classes: int | None,
        name: str | None,
    ):
        who = type(self).__name__
        if average not in AVERAGES:
            raise ValueError(
                f"{who}: average={average!r} is not one of {', '.join(map(repr, AVERAGES))}."
            )
        if average != "micro" and class_id is not None:
            raise ValueError(
                f"{who}: class_id={class_id} scores one class; average={average!r} "
                "averages over classes. Pass one of them."
            )
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
        ):
            raise ValueError(f"{who}: num_classes={num_classes!r} must be a positive int.")
        self.average = average
        super().__init__(
            parse_thresholds(thresholds, 0.5 if top_k is None else NEG_INF, who),
            ("tp", "fp", "fn"),
            top_k=top_k,
            class_id=class_id,
            from_logits=from_logits,
            columns=None if average == "micro" else (num_classes or 1),
            name=name,
        )

    def _averaged(self, per_class: Array, state: Counts) -> Array:
        if self.average == "macro":
            per_class = jnp.mean(per_class, axis=-1)
        elif self.average == "weighted":
            support = state["tp"] + state["fn"]
            per_class = divide_no_nan(
                jnp.sum(per_class * support, axis=-1), jnp.sum(support, axis=-1)
            )
        return self._per_threshold(per_class)


class Precision(_PrecisionRecall):
    """Of the elements predicted positive, the weighted fraction that are: `tp / (tp + fp)`.

    As Keras' `Precision`: an element is predicted positive when its score is above
    `thresholds` (0.5; a list gives one value per threshold); `top_k` keeps only
    each row's k highest scores (then any score counts, unless `thresholds` is
    given); `class_id` scores one class column alone. Every label column counts
    (one-hot and multi-label rows alike); class ids are one-hot encoded.
    Extensions: `from_logits=True` (a sigmoid first), and `average`/`num_classes`
    (see `_PrecisionRecall`).
    """

    def __init__(
        self,
        thresholds: float | Sequence[float] | None = None,
        top_k: int | None = None,
        class_id: int | None = None,
        *,
        from_logits: bool = False,
        average: str = "micro",
        num_classes: int | None = None,
        name: str | None = None,
    ):
        super().__init__(
            thresholds,
            top_k,
            class_id,
            from_logits=from_logits,
            average=average,
            num_classes=num_classes,
            name=name,
        )

    def compute(self, state: Counts) -> Array:
        return self._averaged(divide_no_nan(state["tp"], state["tp"] + state["fp"]), state)


class Recall(_PrecisionRecall):
    """Of the positive elements, the weighted fraction predicted positive: `tp / (tp + fn)`.

    Arguments as for `Precision`.
    """

    def __init__(
        self,
        thresholds: float | Sequence[float] | None = None,
        top_k: int | None = None,
        class_id: int | None = None,
        *,
        from_logits: bool = False,
        average: str = "micro",
        num_classes: int | None = None,
        name: str | None = None,
    ):
        super().__init__(
            thresholds,
            top_k,
            class_id,
            from_logits=from_logits,
            average=average,
            num_classes=num_classes,
            name=name,
        )

    def compute(self, state: Counts) -> Array:
        return self._averaged(divide_no_nan(state["tp"], state["tp"] + state["fn"]), state)


class _AtConstraint(_ThresholdMetric):
    """The best value of one rate where another reaches `value`, over `num_thresholds`
    evenly spaced thresholds in [0, 1] (Keras' `SensitivitySpecificityBase`)."""

    value: float = eqx.field(static=True)

    def __init__(
        self,
        value: float,
        argument: str,
        num_thresholds: int,
        class_id: int | None,
        *,
        from_logits: bool,
        name: str | None,
    ):
        who = type(self).__name__
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{who}: {argument}={value!r} must be a number in [0, 1].")
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int):
            raise ValueError(f"{who}: num_thresholds={num_thresholds!r} must be an int > 0.")
        if num_thresholds <= 0:
            raise ValueError(f"{who}: num_thresholds={num_thresholds!r} must be an int > 0.")
        if num_thresholds == 1:
            thresholds: tuple[float, ...] = (0.5,)
        else:
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            thresholds = (0.0, *inner, 1.0)
        self.value = float(value)
        super().__init__(
            thresholds,
            ("tp", "fp", "tn", "fn"),
            class_id=class_id,
            from_logits=from_logits,
            name=name,
        )

    def _bucketed(self) -> bool:
        return len(self.thresholds) > 1

    def _best(self, constrained: Array, dependent: Array) -> Array:
        """The largest `dependent` where `constrained >= value`, 0 where none is."""
        return jnp.max(jnp.where(constrained >= self.value, dependent, 0.0), initial=0.0)


def _rates(state: Counts) -> dict[str, Array]:
    tp, fp, tn, fn = state["tp"], state["fp"], state["tn"], state["fn"]
    return {
        "recall": divide_no_nan(tp, tp + fn),
        "precision": divide_no_nan(tp, tp + fp),
        "specificity": divide_no_nan(tn, tn + fp),
    }


class SensitivityAtSpecificity(_AtConstraint):
    """The best sensitivity (recall) at a threshold whose specificity is >= `specificity`."""

    def __init__(
        self,
        specificity: float,
        num_thresholds: int = 200,
        class_id: int | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__(
            specificity,
            "specificity",
            num_thresholds,
            class_id,
            from_logits=from_logits,
            name=name,
        )

    def compute(self, state: Counts) -> Array:
        rates = _rates(state)
        return self._best(rates["specificity"], rates["recall"])


class SpecificityAtSensitivity(_AtConstraint):
    """The best specificity at a threshold whose sensitivity (recall) is >= `sensitivity`."""

    def __init__(
        self,
        sensitivity: float,
        num_thresholds: int = 200,
        class_id: int | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__(
            sensitivity,
            "sensitivity",
            num_thresholds,
            class_id,
            from_logits=from_logits,
            name=name,
        )

    def compute(self, state: Counts) -> Array:
        rates = _rates(state)
        return self._best(rates["recall"], rates["specificity"])


class PrecisionAtRecall(_AtConstraint):
    """The best precision at a threshold whose recall is >= `recall`."""

    def __init__(
        self,
        recall: float,
        num_thresholds: int = 200,
        class_id: int | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__(
            recall, "recall", num_thresholds, class_id, from_logits=from_logits, name=name
        )

    def compute(self, state: Counts) -> Array:
        rates = _rates(state)
        return self._best(rates["recall"], rates["precision"])


class RecallAtPrecision(_AtConstraint):
    """The best recall at a threshold whose precision is >= `precision`."""

    def __init__(
        self,
        precision: float,
        num_thresholds: int = 200,
        class_id: int | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__(
            precision, "precision", num_thresholds, class_id, from_logits=from_logits, name=name
        )

    def compute(self, state: Counts) -> Array:
        rates = _rates(state)
        return self._best(rates["precision"], rates["recall"])


CURVES = ("ROC", "PR", "PRGAIN")
SUMMATIONS = ("interpolation", "minoring", "majoring")


class AUC(_ThresholdMetric):
    """Area under the ROC, precision-recall or PR-gain curve, from counts at thresholds.

    As Keras' `AUC`: counts are kept at `num_thresholds` thresholds -eps,
    1/(n-1), ..., 1+eps (or at `thresholds`, plus those two ends), so the value is
    exact up to that resolution and batches merge exactly. `summation_method`
    picks the Riemann sum: `"interpolation"` (the trapezoid rule; for PR, Davis &
    Goadrich's interpolation), `"minoring"` or `"majoring"`. Every element of
    `y_pred` is a score in [0, 1] (a logit with `from_logits=True`) for the label
    at the same position; class ids are one-hot encoded. `multi_label=True` keeps
    one curve per label column and averages their areas (weighted by
    `label_weights` when given); it needs `num_labels`, the number of columns, to
    size its state. Without it, `label_weights` weigh the columns' elements.
    """

    curve: str = eqx.field(static=True)
    summation_method: str = eqx.field(static=True)
    multi_label: bool = eqx.field(static=True)
    label_weights: tuple[float, ...] | None = eqx.field(static=True)
    bucketed: bool = eqx.field(static=True)

    def __init__(
        self,
        num_thresholds: int = 200,
        curve: str = "ROC",
        summation_method: str = "interpolation",
        *,
        thresholds: Sequence[float] | None = None,
        multi_label: bool = False,
        num_labels: int | None = None,
        label_weights: Sequence[float] | None = None,
        from_logits: bool = False,
        name: str | None = None,
    ):
        if not isinstance(curve, str) or curve.upper() not in CURVES:
            raise ValueError(f"AUC: curve={curve!r} is not one of {', '.join(CURVES)}.")
        if not isinstance(summation_method, str) or summation_method.lower() not in SUMMATIONS:
            raise ValueError(
                f"AUC: summation_method={summation_method!r} is not one of {', '.join(SUMMATIONS)}."
            )
        if thresholds is not None:
            inner = sorted(parse_thresholds(thresholds, 0.5, "AUC"))
            self.bucketed = evenly_spaced([0.0, *inner, 1.0])
        else:
            if (
                isinstance(num_thresholds, bool)
                or not isinstance(num_thresholds, int)
                or num_thresholds < 2
            ):
                raise ValueError(f"AUC: num_thresholds={num_thresholds!r} must be an int > 1.")
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self.bucketed = True
        if multi_label:
            if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
                raise ValueError(
                    f"AUC(multi_label=True) keeps one curve per label column and needs their "
                    f"number up front: pass num_labels (a positive int), got {num_labels!r}."
                )
        elif num_labels is not None:
            raise ValueError("AUC: num_labels is needed only when multi_label=True.")
        if label_weights is not None:
            weights = np.asarray(label_weights, dtype=np.float64).reshape(-1)
            if (weights < 0).any():
                raise ValueError(f"AUC: label_weights must be non-negative, got {label_weights!r}.")
            if multi_label and weights.size != num_labels:
                raise ValueError(
                    f"AUC: label_weights has {weights.size} entries for num_labels={num_labels}."
                )
            self.label_weights = tuple(float(w) for w in weights)
        else:
            self.label_weights = None
        self.curve = curve.upper()
        self.summation_method = summation_method.lower()
        self.multi_label = bool(multi_label)
        super().__init__(
            (-EPSILON, *inner, 1.0 + EPSILON),
            ("tp", "fp", "tn", "fn"),
            from_logits=from_logits,
            columns=num_labels if multi_label else None,
            name=name,
        )

    def _columns_argument(self) -> str:
        return "num_labels"

    def _count(self, truth: Array, scores: Array, weight: Array) -> Counts:
        if self.label_weights is not None and not self.multi_label:
            if len(self.label_weights) != scores.shape[-1]:
                raise ValueError(
                    f"{self.name}: label_weights has {len(self.label_weights)} entries, but "
                    f"y_pred has {scores.shape[-1]} label column(s)."
                )
            weight = weight * jnp.asarray(self.label_weights, weight.dtype)
        return count_above(
            truth,
            scores,
            weight,
            self.thresholds,
            per_column=self.multi_label,
            bucketed=self.bucketed,
            clip_ends=True,
        )

    def compute(self, state: Counts) -> Array:
        tp, fp, tn, fn = state["tp"], state["fp"], state["tn"], state["fn"]
        if self.curve == "PR" and self.summation_method == "interpolation":
            area = _interpolated_pr_auc(tp, fp, fn)
        else:
            x, y = _curve(self.curve, tp, fp, tn, fn)
            if self.summation_method == "interpolation":
                heights = (y[:-1] + y[1:]) / 2.0
            elif self.summation_method == "minoring":
                heights = jnp.minimum(y[:-1], y[1:])
            else:
                heights = jnp.maximum(y[:-1], y[1:])
            area = jnp.sum((x[:-1] - x[1:]) * heights, axis=0)
        if not self.multi_label:
            return area
        if self.label_weights is None:
            return jnp.mean(area)
        weights = jnp.asarray(self.label_weights, area.dtype)
        return divide_no_nan(jnp.sum(area * weights), jnp.sum(weights))


def _curve(curve: str, tp: Array, fp: Array, tn: Array, fn: Array) -> tuple[Array, Array]:
    """The curve's `(x, y)` points, one per threshold."""
    recall = divide_no_nan(tp, tp + fn)
    if curve == "ROC":
        return divide_no_nan(fp, fp + tn), recall
    if curve == "PR":
        return recall, divide_no_nan(tp, tp + fp)
    # PR-gain (Flach & Kull, 2015), as Keras computes it.
    scale = divide_no_nan(tp + fn, tn + fp)
    recall_gain = jnp.where(tp == 0, 0.0, 1.0 - scale * divide_no_nan(fn, tp))
    precision_gain = jnp.where(tp == 0, 1.0, 1.0 - scale * divide_no_nan(fp, tp))
    return jnp.maximum(recall_gain, 0.0), precision_gain


def _interpolated_pr_auc(tp: Array, fp: Array, fn: Array) -> Array:
    """PR-AUC with precision interpolated between thresholds (Davis & Goadrich, 2006).

    Between two thresholds, tp grows linearly in the number of predicted positives
    p, so precision tp/p integrates in closed form per interval.
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
    return jnp.sum(area, axis=0)
