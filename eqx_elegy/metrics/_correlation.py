"""Pearson and concordance correlation between targets and predictions.

Keras correlates along `axis` (the last) inside each example and averages the
per-example values. That is kept when examples have several values along `axis`.
When each example is one value (outputs `(batch,)` or `(batch, 1)`), the only
correlation there is runs across examples: Keras then gives NaN for `(batch, 1)`
and a mean of per-batch correlations for `(batch,)`, which depends on the batch
size; here the state keeps weighted sums of `x, y, x², y², xy` instead, so the
value is the (weighted) correlation of everything seen, exact across batches and
devices.
"""

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..losses._loss import EPSILON, align, check_axis, check_axis_fits, weight_like
from ._metric import Metric, divide_no_nan, weighted_total, zeros

Moments = dict[str, Array]
_MOMENTS = ("weight", "x", "y", "xx", "yy", "xy")


class _Correlation(Metric):
    axis: int = eqx.field(static=True)

    def __init__(self, axis: int = -1, *, name: str | None = None):
        self.axis = check_axis(axis, type(self).__name__)
        super().__init__(name=name)

    @abc.abstractmethod
    def per_example(self, y_true: Array, y_pred: Array, axis: int) -> Array:
        """Keras' value: the correlation along `axis` within each example."""

    @abc.abstractmethod
    def from_moments(self, mx: Array, my: Array, vx: Array, vy: Array, cov: Array) -> Array:
        """The correlation of a whole sample, from its (weighted) moments."""

    def init(self) -> dict[str, Array]:
        return {k: zeros() for k in ("total", "count", *_MOMENTS)}

    def update(
        self,
        state: dict[str, Array],
        y_true: ArrayLike,
        y_pred: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> dict[str, Array]:
        y_true, y_pred = align(y_true, y_pred, self.name)
        check_axis_fits(self.axis, y_pred.shape, self.name)
        axis = self.axis % y_pred.ndim
        if y_pred.shape[1:] == (1,):
            return self._add_moments(state, y_true[:, 0], y_pred[:, 0], sample_weight)
        if axis == 0 or y_pred.shape[axis] == 1:
            raise ValueError(
                f"{self.name}: axis={self.axis} on inputs of shape {y_pred.shape} "
                + (
                    "is the batch axis; a correlation across examples needs one value per "
                    "example, shape (batch,) or (batch, 1)."
                    if axis == 0
                    else "has length 1; there is nothing to correlate along it."
                )
            )
        values = self.per_example(y_true, y_pred, axis)
        total, count = weighted_total(values, sample_weight, True, self.name)
        return {
            **state,
            "total": state["total"] + total.astype(jnp.float32),
            "count": state["count"] + count.astype(jnp.float32),
        }

    def _add_moments(
        self, state: dict[str, Array], x: Array, y: Array, sample_weight: ArrayLike | None
    ) -> dict[str, Array]:
        w = jnp.ones_like(x) if sample_weight is None else weight_like(x, sample_weight, self.name)
        sums = {
            "weight": jnp.sum(w),
            "x": jnp.sum(w * x),
            "y": jnp.sum(w * y),
            "xx": jnp.sum(w * x * x),
            "yy": jnp.sum(w * y * y),
            "xy": jnp.sum(w * x * y),
        }
        return {**state, **{k: state[k] + sums[k].astype(jnp.float32) for k in _MOMENTS}}

    def compute(self, state: dict[str, Array]) -> Array:
        count = state["weight"]
        safe = jnp.where(count == 0, 1.0, count)
        mx, my = state["x"] / safe, state["y"] / safe
        vx = jnp.maximum(state["xx"] / safe - mx * mx, 0.0)
        vy = jnp.maximum(state["yy"] / safe - my * my, 0.0)
        cov = state["xy"] / safe - mx * my
        pooled = jnp.where(count == 0, 0.0, self.from_moments(mx, my, vx, vy, cov))
        per_example = divide_no_nan(state["total"], state["count"])
        return jnp.where(state["count"] > 0, per_example, pooled)


class PearsonCorrelation(_Correlation):
    """Pearson's correlation coefficient between `y_true` and `y_pred`: 1 for a perfect
    increasing linear relation, 0 for none.

    With several values per example along `axis`, Keras' value: the correlation
    within each example, averaged over examples (weighted by `sample_weight`). With
    one value per example, the weighted correlation across all examples seen (see
    the module docstring). A constant input has no defined correlation (NaN).
    """

    def __init__(self, axis: int = -1, *, name: str | None = None):
        super().__init__(axis, name=name)

    def per_example(self, y_true: Array, y_pred: Array, axis: int) -> Array:
        t = y_true - jnp.mean(y_true, axis=axis, keepdims=True)
        p = y_pred - jnp.mean(y_pred, axis=axis, keepdims=True)
        t = t / jnp.std(t, axis=axis, keepdims=True)
        p = p / jnp.std(p, axis=axis, keepdims=True)
        return jnp.mean(t * p, axis=axis)

    def from_moments(self, mx: Array, my: Array, vx: Array, vy: Array, cov: Array) -> Array:
        return cov / jnp.sqrt(vx * vy)


class ConcordanceCorrelation(_Correlation):
    """Lin's concordance correlation coefficient, `2 cov / (var_t + var_p + (mean_t -
    mean_p)²)`: like Pearson's, but 1 only when predictions equal the targets (not
    merely a linear function of them).

    Examples and `axis` as in `PearsonCorrelation`; Keras adds 1e-7 to the
    denominator, so a constant input gives 0.
    """

    def __init__(self, axis: int = -1, *, name: str | None = None):
        super().__init__(axis, name=name)

    def per_example(self, y_true: Array, y_pred: Array, axis: int) -> Array:
        mean_t = jnp.mean(y_true, axis=axis, keepdims=True)
        mean_p = jnp.mean(y_pred, axis=axis, keepdims=True)
        var_t = jnp.var(y_true - mean_t, axis=axis, keepdims=True)
        var_p = jnp.var(y_pred - mean_p, axis=axis, keepdims=True)
        covariance = (y_true - mean_p) * (y_pred - mean_p)
        norm = var_t + var_p + jnp.square(mean_t - mean_p)
        return jnp.mean(2.0 * covariance / (norm + EPSILON), axis=axis)

    def from_moments(self, mx: Array, my: Array, vx: Array, vy: Array, cov: Array) -> Array:
        return 2.0 * cov / (vx + vy + jnp.square(mx - my) + EPSILON)
