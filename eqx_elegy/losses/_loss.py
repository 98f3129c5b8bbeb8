"""The `Loss` base class and the array plumbing shared by losses and metrics.

Everything here runs at trace time on static shapes, so a shape problem is
reported as a plain `ValueError` naming both shapes, never as a JAX tracer error.
"""

import abc
import re
from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

REDUCTIONS = ("sum_over_batch_size", "sum", "none")
# Keras' `backend.epsilon()`: clips probabilities away from 0 and 1.
EPSILON = 1e-7


def snake_case(name: str) -> str:
    """Keras' `to_snake_case`: `SparseCategoricalCrossentropy` -> `sparse_categorical_crossentropy`,
    `KLDivergence` -> `kl_divergence`, `AUC` -> `auc`."""
    return re.sub(r"(?<=[^_])(?=[A-Z][a-z])|(?<=[a-z])(?=[A-Z])", "_", name).lower()


def float_dtype(x: Array) -> jnp.dtype:
    """The dtype losses and metrics compute in: float64 for float64 inputs, else float32."""
    return jnp.dtype(jnp.float64 if x.dtype == jnp.float64 else jnp.float32)


def as_array(x: ArrayLike | None, what: str, who: str) -> Array:
    """`x` as a JAX array, or a TypeError saying which argument of `who` was missing."""
    if x is None:
        raise TypeError(f"{who}: `{what}` is None; it needs an array.")
    try:
        return jnp.asarray(x)
    except TypeError as e:
        raise TypeError(f"{who}: `{what}` must be an array, got {type(x).__name__}: {e}") from None


def align(
    y_true: ArrayLike | None, y_pred: ArrayLike | None, who: str, hint: str = ""
) -> tuple[Array, Array]:
    """Casts both to a float dtype and gives them the same shape.

    A trailing axis of size 1 on either side is dropped to match the other (Keras'
    rule, so labels of shape `(batch,)` fit predictions of shape `(batch, 1)`).
    Inputs of rank 0 or 1 are then read as one value per example, shape
    `(batch, 1)`: that is what Keras computes when a model outputs `(batch, 1)`,
    and it keeps sample weights per example.
    """
    y_pred = as_array(y_pred, "y_pred", who)
    y_true = as_array(y_true, "y_true", who)
    dtype = float_dtype(y_pred)
    y_pred = y_pred.astype(dtype)
    y_true = y_true.astype(dtype)
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_pred = y_pred[..., 0]
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{who}: y_true has shape {y_true.shape} and y_pred has shape "
            f"{y_pred.shape}; they must be equal (up to a trailing axis of size 1)."
            + (f" {hint}" if hint else "")
        )
    if y_pred.ndim < 2:
        y_pred = y_pred.reshape(-1, 1)
        y_true = y_true.reshape(-1, 1)
    return y_true, y_pred


def weight_like(values: Array, sample_weight: ArrayLike, who: str) -> Array:
    """`sample_weight` cast to `values`' dtype and broadcast to `values`' shape.

    The weight's axes line up with the leading axes of `values` (a `(batch,)`
    weight scales every element of a `(batch, time)` loss); a trailing axis of
    size 1 on the weight is ignored.
    """
    weight = as_array(sample_weight, "sample_weight", who).astype(values.dtype)
    if weight.ndim == values.ndim + 1 and weight.shape[-1] == 1:
        weight = weight[..., 0]
    expanded = weight.reshape(weight.shape + (1,) * (values.ndim - weight.ndim))
    try:
        if weight.ndim > values.ndim:
            raise ValueError
        return jnp.broadcast_to(expanded, values.shape)
    except ValueError:
        raise ValueError(
            f"{who}: sample_weight has shape {weight.shape}, which does not fit the "
            f"per-example values of shape {values.shape}; pass one weight per "
            f"example, shape ({values.shape[0] if values.ndim else ''},)."
        ) from None


def reduce(values: Array, sample_weight: ArrayLike | None, reduction: str, who: str) -> Array:
    """Weights per-example values and reduces them as Keras does.

    `"sum_over_batch_size"` divides the weighted sum by the number of values (not
    by the sum of the weights), `"sum"` returns the weighted sum, `"none"` the
    weighted values.
    """
    if sample_weight is not None and values.ndim == 0:
        # A scalar loss (from a plain function) has no examples to weigh.
        weight = as_array(sample_weight, "sample_weight", who).astype(values.dtype)
        values = values * jnp.mean(weight)
    elif sample_weight is not None:
        values = values * weight_like(values, sample_weight, who)
    if reduction == "none":
        return values
    total = jnp.sum(values)
    if reduction == "sum":
        return total
    return total / max(values.size, 1)


def check_reduction(reduction: str, who: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{who}: reduction={reduction!r} is not one of {', '.join(map(repr, REDUCTIONS))}."
        )
    return reduction


class Loss(eqx.Module):
    """Base class of losses: `loss(y_true, y_pred, sample_weight=None) -> Array`.

    A subclass implements `call(y_true, y_pred)`, the unweighted loss of each
    example (the class axis, or last axis, reduced away). `__call__` then applies
    `sample_weight` and the reduction:

    - `"sum_over_batch_size"` (default): weighted sum / number of values, a scalar;
    - `"sum"`: the weighted sum, a scalar;
    - `"none"`: the weighted per-example values.

    `name` defaults to the snake_case class name (`MeanSquaredError` ->
    `mean_squared_error`); a model logs the term as `<name>_loss`.
    """

    # init=False: set by this class's __init__, which subclasses inherit or call.
    reduction: str = eqx.field(static=True, init=False)
    name: str = eqx.field(static=True, init=False)

    def __init__(self, *, reduction: str = "sum_over_batch_size", name: str | None = None):
        self.reduction = check_reduction(reduction, type(self).__name__)
        self.name = snake_case(type(self).__name__) if name is None else name

    @abc.abstractmethod
    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        """The unweighted loss of each example, shape `y_pred.shape[:-1]` (at least `(batch,)`)."""

    def __call__(
        self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> Array:
        return reduce(self.call(y_true, y_pred), sample_weight, self.reduction, self.name)


class LossFunction(Loss):
    """Wraps a plain function `fn(y_true, y_pred) -> values` as a `Loss`.

    `values` may be per example (then weighted and reduced like any loss) or
    already a scalar (then a `sample_weight` scales it by the mean weight, as Keras
    does). This is how `loss=` and `metrics=` accept plain callables.
    """

    fn: Callable[[Array, Array], ArrayLike]

    def __init__(
        self,
        fn: Callable[[Array, Array], ArrayLike],
        *,
        reduction: str = "sum_over_batch_size",
        name: str | None = None,
    ):
        if not callable(fn):
            raise TypeError(f"LossFunction: `fn` must be callable, got {type(fn).__name__}.")
        self.fn = fn
        if name is None:
            name = re.sub(r"\W", "", snake_case(getattr(fn, "__name__", type(fn).__name__)))
        super().__init__(reduction=reduction, name=name or "loss_function")

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        values = jnp.asarray(self.fn(jnp.asarray(y_true), jnp.asarray(y_pred)))
        return values.astype(float_dtype(values))
