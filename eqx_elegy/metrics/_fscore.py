"""F-scores: Keras' `FBetaScore` and `F1Score`, and `F1` (a scalar F1 by default)."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..losses._loss import EPSILON
from ._metric import Metric, zeros
from ._shapes import label_columns

AVERAGES = (None, "micro", "macro", "weighted")
Counts = dict[str, Array]


class FBetaScore(Metric):
    """The F-beta score, `(1 + beta²) p r / (beta² p + r)`, as Keras' `FBetaScore`.

    Predictions: with `threshold=None`, each row's top-scoring class (ties all
    count; an all-zero row predicts nothing); with a float, every score above it.
    A single column (binary output) is thresholded at 0.5 when `threshold` is None
    (Keras' top-score rule would predict every nonzero score positive there).
    Labels are one-hot or multi-label rows, or class ids (one-hot encoded).

    `average`: None gives one score per class (an array: for a standalone metric;
    a model logs scalars); `"micro"` pools the counts of all classes; `"macro"`
    averages the per-class scores; `"weighted"` weighs them by each class's
    support. Per-class counts need the number of classes up front, `num_classes`
    (binary inputs have one). `from_logits=True` applies a sigmoid first.
    """

    average: str | None = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    threshold: float | None = eqx.field(static=True)
    num_classes: int | None = eqx.field(static=True)
    from_logits: bool = eqx.field(static=True)

    def __init__(
        self,
        average: str | None = None,
        beta: float = 1.0,
        threshold: float | None = None,
        *,
        num_classes: int | None = None,
        from_logits: bool = False,
        name: str | None = None,
    ):
        who = type(self).__name__
        if average not in AVERAGES:
            raise ValueError(
                f"{who}: average={average!r} is not one of {', '.join(map(repr, AVERAGES))}."
            )
        if isinstance(beta, bool) or not isinstance(beta, int | float) or beta <= 0:
            raise ValueError(f"{who}: beta={beta!r} must be a number > 0.")
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0 < threshold <= 1
        ):
            raise ValueError(f"{who}: threshold={threshold!r} must be None or in (0, 1].")
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
        ):
            raise ValueError(f"{who}: num_classes={num_classes!r} must be a positive int.")
        self.average = average
        self.beta = float(beta)
        self.threshold = None if threshold is None else float(threshold)
        self.num_classes = num_classes
        self.from_logits = bool(from_logits)
        if name is None and type(self) is FBetaScore:
            name = "fbeta_score"  # Keras' name; snake_case would give f_beta_score
        super().__init__(name=name)

    def _shape(self) -> tuple[int, ...]:
        return () if self.average == "micro" else (self.num_classes or 1,)

    def init(self) -> Counts:
        return {k: zeros(self._shape()) for k in ("tp", "fp", "fn")}

    def update(
        self,
        state: Counts,
        y_true: ArrayLike,
        y_pred: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> Counts:
        truth, scores, weight = label_columns(
            y_true, y_pred, sample_weight, self.name, self.from_logits
        )
        num_classes = scores.shape[-1]
        expected = self._shape()
        if expected and expected[0] != num_classes:
            raise ValueError(
                f"{type(self).__name__}(average={self.average!r}) keeps one count per "
                f"class and was built for {expected[0]} class(es) "
                f"(num_classes={self.num_classes}), but y_pred of shape "
                f"{jnp.shape(y_pred)} has {num_classes}: pass num_classes={num_classes}."
            )
        if num_classes > 1 and self.threshold is None:
            top = jnp.max(scores, axis=-1, keepdims=True)
            predicted = (scores >= top) & (jnp.abs(scores) > 1e-9)
        else:
            predicted = scores > (0.5 if self.threshold is None else self.threshold)
        predicted = predicted.astype(scores.dtype)
        axis = 0 if expected else None
        counts = {
            "tp": jnp.sum(weight * truth * predicted, axis=axis),
            "fp": jnp.sum(weight * (1 - truth) * predicted, axis=axis),
            "fn": jnp.sum(weight * truth * (1 - predicted), axis=axis),
        }
        return {k: state[k] + counts[k].astype(jnp.float32) for k in state}

    def compute(self, state: Counts) -> Array:
        tp, fp, fn = state["tp"], state["fp"], state["fn"]
        precision = tp / (tp + fp + EPSILON)
        recall = tp / (tp + fn + EPSILON)
        beta2 = self.beta**2
        score = (1 + beta2) * precision * recall / (beta2 * precision + recall + EPSILON)
        if self.average == "weighted":
            support = tp + fn
            return jnp.sum(score * support / (jnp.sum(support) + EPSILON))
        if self.average is None:
            return score
        return jnp.mean(score)


class F1Score(FBetaScore):
    """The F1 score (`FBetaScore` with beta = 1), as Keras' `F1Score`.

    Keras' default `average=None` gives one score per class; as a model metric
    pass `average="macro"`, `"micro"` or `"weighted"` (or use `F1`).
    """

    def __init__(
        self,
        average: str | None = None,
        threshold: float | None = None,
        *,
        num_classes: int | None = None,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__(
            average,
            1.0,
            threshold,
            num_classes=num_classes,
            from_logits=from_logits,
            name=name,
        )


class F1(F1Score):
    """`F1Score` with a scalar default, `average="macro"`, logged as `f1`.

    Multi-class inputs then need `num_classes`; binary inputs do not.
    """

    def __init__(
        self,
        threshold: float | None = None,
        average: str | None = "macro",
        num_classes: int | None = None,
        *,
        from_logits: bool = False,
        name: str | None = None,
    ):
        super().__init__(
            average,
            threshold,
            num_classes=num_classes,
            from_logits=from_logits,
            name=name,
        )
