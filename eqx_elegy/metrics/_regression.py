"""Regression metrics that are not a plain mean of a loss: RMSE, cosine similarity, R²."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..losses._loss import align, check_axis, weight_like
from ..losses._regression import cosine_similarity
from ._metric import Mean, Metric, divide_no_nan, zeros


class RootMeanSquaredError(Mean):
    """`sqrt` of the weighted mean squared error over everything seen.

    The state holds the weighted sum of squared errors and the total weight, so
    the root is taken once at the end (not a mean of per-batch roots).
    """

    def __init__(self, *, name: str | None = None):
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        y_true, y_pred = align(y_true, y_pred, self.name)
        return jnp.square(y_pred - y_true)

    def compute(self, state: dict[str, Array]) -> Array:
        return jnp.sqrt(super().compute(state))


class CosineSimilarity(Mean):
    """The weighted mean over examples of the cosine similarity along `axis`: 1 for
    parallel vectors, 0 for orthogonal, -1 for opposite (the loss of the same name
    is its negative)."""

    axis: int = eqx.field(static=True)

    def __init__(self, axis: int = -1, *, name: str | None = None):
        self.axis = check_axis(axis, type(self).__name__)
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        y_true, y_pred = align(y_true, y_pred, self.name)
        return -cosine_similarity(y_true, y_pred, self.axis)


AGGREGATIONS = ("uniform_average", "variance_weighted_average")


class R2Score(Metric):
    """The coefficient of determination, `1 - residual sum of squares / total sum of
    squares`, over everything seen.

    Inputs are `(batch, num_outputs)` (or `(batch,)` for one output); each output
    gets its own score, combined by `class_aggregation`: `"uniform_average"` (the
    mean) or `"variance_weighted_average"` (weighted by each output's variance).
    The state keeps per-output weighted sums, so it needs `num_outputs` up front.
    `num_regressors > 0` gives the adjusted R² for that many independent variables
    (the plain R² when there are too few samples for it, where Keras warns).
    """

    class_aggregation: str = eqx.field(static=True)
    num_regressors: int = eqx.field(static=True)
    num_outputs: int = eqx.field(static=True)

    def __init__(
        self,
        class_aggregation: str = "uniform_average",
        num_regressors: int = 0,
        num_outputs: int = 1,
        *,
        name: str | None = None,
    ):
        who = type(self).__name__
        if class_aggregation not in AGGREGATIONS:
            raise ValueError(
                f"{who}: class_aggregation={class_aggregation!r} is not one of "
                f"{', '.join(map(repr, AGGREGATIONS))} (Keras' None, one score per "
                "output, is not a scalar to log: use one R2Score per output instead)."
            )
        for arg, value, low in [
            ("num_regressors", num_regressors, 0),
            ("num_outputs", num_outputs, 1),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{who}: {arg}={value!r} must be an int >= {low}.")
        self.class_aggregation = class_aggregation
        self.num_regressors = num_regressors
        self.num_outputs = num_outputs
        super().__init__(name=name)

    def init(self) -> dict[str, Array]:
        shape = (self.num_outputs,)
        return {
            "sum": zeros(shape),
            "squared_sum": zeros(shape),
            "residual": zeros(shape),
            "count": zeros(shape),
            "num_samples": zeros(),
        }

    def update(
        self,
        state: dict[str, Array],
        y_true: ArrayLike,
        y_pred: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> dict[str, Array]:
        y_true, y_pred = align(y_true, y_pred, self.name)
        if y_pred.ndim != 2 or y_pred.shape[1] != self.num_outputs:
            raise ValueError(
                f"{self.name}: y_pred has shape {y_pred.shape} (after reading (batch,) as "
                f"(batch, 1)); R2Score expects (batch, num_outputs) with num_outputs="
                f"{self.num_outputs}"
                + (
                    f": pass num_outputs={y_pred.shape[1]}."
                    if y_pred.ndim == 2
                    else "; flatten the outputs first."
                )
            )
        weight = (
            jnp.ones_like(y_true)
            if sample_weight is None
            else weight_like(y_true, sample_weight, self.name)
        )
        weighted_true = weight * y_true
        sums = {
            "sum": jnp.sum(weighted_true, axis=0),
            "squared_sum": jnp.sum(y_true * weighted_true, axis=0),
            "residual": jnp.sum(weight * jnp.square(y_true - y_pred), axis=0),
            "count": jnp.sum(weight, axis=0),
            "num_samples": jnp.asarray(y_true.size, y_true.dtype),
        }
        return {k: state[k] + sums[k].astype(jnp.float32) for k in state}

    def compute(self, state: dict[str, Array]) -> Array:
        mean = divide_no_nan(state["sum"], state["count"])
        total = state["squared_sum"] - state["sum"] * mean
        raw = 1.0 - state["residual"] / total
        raw = jnp.where(jnp.isinf(raw), 0.0, raw)
        if self.class_aggregation == "uniform_average":
            score = jnp.mean(raw)
        else:
            score = jnp.sum(total * raw) / jnp.sum(total)
        if self.num_regressors:
            n, p = state["num_samples"], self.num_regressors
            adjusted = 1.0 - (1.0 - score) * (n - 1.0) / jnp.where(
                n - p - 1.0 > 0, n - p - 1.0, 1.0
            )
            score = jnp.where(n - p - 1.0 > 0, adjusted, score)
        return jnp.where(jnp.sum(state["count"]) == 0, 0.0, score)
