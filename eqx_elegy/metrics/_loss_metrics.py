"""Metrics that average a loss's per-example values over everything seen, as Keras'
`MeanMetricWrapper` does around its loss functions: regression errors, the
crossentropies, KL divergence, Poisson and the hinge losses."""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from .. import losses
from ..losses._loss import weight_like
from ._metric import Mean, weighted_total


class LossMean(Mean):
    """The weighted mean over examples of `loss`'s unreduced values.

    Values a loss leaves out (`ignore_class`, `Circle`'s unpaired examples) weigh 0.
    The state is a weighted sum and a total weight, so batches and devices combine
    exactly. A `Loss` passed in `metrics=` becomes one of these, named after it.
    """

    loss: losses.Loss

    def __init__(self, loss: losses.Loss, *, name: str | None = None):
        if not isinstance(loss, losses.Loss):
            raise TypeError(f"LossMean: `loss` must be a Loss, got {type(loss).__name__}.")
        self.loss = loss
        super().__init__(name=loss.name if name is None else name)

    def update(
        self,
        state: dict[str, Array],
        y_true: ArrayLike | None = None,
        y_pred: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> dict[str, Array]:
        values, mask = self.loss.values_and_mask(
            _required(y_true, "y_true", self.name), _required(y_pred, "y_pred", self.name)
        )
        if mask is not None:
            mask = mask.astype(values.dtype)
            sample_weight = (
                mask
                if sample_weight is None
                else weight_like(values, sample_weight, self.name) * mask
            )
        total, count = weighted_total(values, sample_weight, True, self.name)
        return {
            "total": state["total"] + total.astype(jnp.float32),
            "count": state["count"] + count.astype(jnp.float32),
        }


def _required(x: ArrayLike | None, what: str, who: str) -> ArrayLike:
    if x is None:
        raise TypeError(f"{who}: `{what}` is None; it needs an array.")
    return x


class MeanSquaredError(LossMean):
    """The weighted mean over examples of `mean((y_true - y_pred) ** 2)` over the last axis."""

    def __init__(self, *, name: str | None = None):
        super().__init__(losses.MeanSquaredError(), name=name)


class MeanAbsoluteError(LossMean):
    """The weighted mean over examples of `mean(|y_true - y_pred|)` over the last axis."""

    def __init__(self, *, name: str | None = None):
        super().__init__(losses.MeanAbsoluteError(), name=name)


class MeanAbsolutePercentageError(LossMean):
    """The weighted mean of `100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7))`."""

    def __init__(self, *, name: str | None = None):
        super().__init__(losses.MeanAbsolutePercentageError(), name=name)


class MeanSquaredLogarithmicError(LossMean):
    """The weighted mean of `mean((log(1 + y_true) - log(1 + y_pred)) ** 2)`."""

    def __init__(self, *, name: str | None = None):
        super().__init__(losses.MeanSquaredLogarithmicError(), name=name)


class LogCoshError(LossMean):
    """The weighted mean of `mean(log(cosh(y_pred - y_true)))`; named `logcosh` as in Keras."""

    def __init__(self, *, name: str | None = None):
        super().__init__(losses.LogCosh(), name="logcosh" if name is None else name)


class KLDivergence(LossMean):
    """The weighted mean of the Kullback-Leibler divergence `sum(y_true * log(y_true /
    y_pred))`, both clipped to [1e-7, 1]."""

    def __init__(self, *, name: str | None = None):
        super().__init__(losses.KLDivergence(), name=name)


class Poisson(LossMean):
    """The weighted mean of `mean(y_pred - y_true * log(y_pred + 1e-7))`."""

    def __init__(self, *, name: str | None = None):
        super().__init__(losses.Poisson(), name=name)


class BinaryCrossentropy(LossMean):
    """The weighted mean of the binary crossentropy, as the loss of the same name computes it."""

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        *,
        name: str | None = None,
    ):
        loss = losses.BinaryCrossentropy(from_logits, label_smoothing)
        super().__init__(loss, name=name)


class CategoricalCrossentropy(LossMean):
    """The weighted mean of the crossentropy of one-hot labels, as the loss of the same name."""

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        *,
        name: str | None = None,
    ):
        loss = losses.CategoricalCrossentropy(from_logits, label_smoothing, axis)
        super().__init__(loss, name=name)


class SparseCategoricalCrossentropy(LossMean):
    """The weighted mean of the crossentropy of integer class ids, as the loss of the
    same name; values whose label is `ignore_class` are left out."""

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        axis: int = -1,
        *,
        name: str | None = None,
    ):
        loss = losses.SparseCategoricalCrossentropy(from_logits, ignore_class, axis=axis)
        super().__init__(loss, name=name)


class Hinge(LossMean):
    """The weighted mean of `mean(max(1 - y_true * y_pred, 0))`, labels -1/+1 (or 0/1)."""

    def __init__(self, *, name: str | None = None):
        super().__init__(losses.Hinge(), name=name)


class SquaredHinge(LossMean):
    """The weighted mean of `mean(max(1 - y_true * y_pred, 0) ** 2)`, labels as `Hinge`."""

    def __init__(self, *, name: str | None = None):
        super().__init__(losses.SquaredHinge(), name=name)


class CategoricalHinge(LossMean):
    """The weighted mean of `max(neg - pos + 1, 0)` for one-hot labels."""

    def __init__(self, *, name: str | None = None):
        super().__init__(losses.CategoricalHinge(), name=name)
