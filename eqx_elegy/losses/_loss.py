"""The `Loss` base class and the array plumbing shared by losses and metrics.

Everything here runs at trace time on static shapes, so a shape problem is
reported as a plain `ValueError` naming both shapes, never as a JAX tracer error.
"""

import abc
import re
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none")
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


def check_bool(value: object, who: str, arg: str) -> bool:
    """`value` if it is a bool, else a TypeError naming `arg`."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{who}: {arg}={value!r} must be True or False.")
    return bool(value)


def check_float(
    value: object,
    who: str,
    arg: str,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """`value` as a float in `[low, high]` (ends excluded where `open_*`), else an
    error naming `arg` and the range."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{who}: {arg}={value!r} must be a number.")
    number = float(value)
    too_low = low is not None and (number <= low if open_low else number < low)
    too_high = high is not None and (number >= high if open_high else number > high)
    if too_low or too_high or number != number:
        left = "(" if open_low else "["
        right = ")" if open_high else "]"
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{who}: {arg}={value!r} must be in {bounds}.")
    return number


def check_axis(value: object, who: str, *, allow_tuple: bool = False) -> Any:
    """An int axis (or, with `allow_tuple`, a tuple of ints or None), else a TypeError."""
    if allow_tuple and value is None:
        return None
    if allow_tuple and isinstance(value, tuple | list):
        if all(isinstance(a, int | np.integer) and not isinstance(a, bool) for a in value):
            return tuple(int(a) for a in value)
    elif isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    expected = "an int, a tuple of ints or None" if allow_tuple else "an int"
    raise TypeError(f"{who}: axis={value!r} must be {expected}.")


def check_axis_fits(axis: int | tuple[int, ...] | None, shape: tuple[int, ...], who: str) -> None:
    """A ValueError naming `axis` and `shape` when an axis does not exist in `shape`."""
    for a in () if axis is None else (axis,) if isinstance(axis, int) else axis:
        if not -len(shape) <= a < len(shape):
            raise ValueError(f"{who}: axis={axis!r} is out of range for inputs of shape {shape}.")


def class_ids(
    y_true: ArrayLike | None, y_pred: Array, axis: int, who: str, hint: str = ""
) -> Array:
    """Integer class ids for a `y_pred` whose class axis is `axis` (moved last by the caller).

    `y_true` must have `y_pred`'s shape without the class axis, possibly with a
    size-1 axis in its place (Keras' rule).
    """
    labels = as_array(y_true, "y_true", who)
    shape = y_pred.shape[:-1]
    if y_pred.ndim >= 1 and labels.ndim == y_pred.ndim and labels.shape[axis] == 1:
        labels = jnp.squeeze(labels, axis)
    if y_pred.ndim < 2 or labels.shape != shape:
        raise ValueError(
            f"{who}: y_true has shape {labels.shape} and y_pred has shape {y_pred.shape} "
            f"(class axis last); y_true must hold one class id per row of y_pred, shape "
            f"{shape} (y_pred needs a class axis)." + (f" {hint}" if hint else "")
        )
    return labels.astype(jnp.int32)


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


def reduce(
    values: Array,
    sample_weight: ArrayLike | None,
    reduction: str,
    who: str,
    mask: Array | None = None,
) -> Array:
    """Weights values and reduces them as Keras' `reduce_weighted_values` does.

    `mask` (from a loss that leaves some values out, e.g. `ignore_class`) zeroes
    the values it marks False and removes them from the count. Reductions:
    `"sum_over_batch_size"` and `"mean"` divide the weighted sum by the number of
    (unmasked) values, not by the sum of the weights; `"mean_with_sample_weight"`
    divides by the sum of the weights; `"sum"` returns the weighted sum, `"none"`
    the weighted values. A scalar value (a loss over the whole batch, such as
    `Dice()`) is repeated once per weight first, as Keras does.
    """
    weight = None
    if sample_weight is not None:
        weight = as_array(sample_weight, "sample_weight", who).astype(values.dtype)
        if values.ndim == 0:
            values = jnp.broadcast_to(values, weight.shape)
        weight = weight_like(values, weight, who)
    if mask is not None:
        mask = mask.astype(values.dtype)
        weight = mask if weight is None else weight * mask
    if weight is not None:
        values = values * weight
    if reduction == "none":
        return values
    total = jnp.sum(values)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and weight is not None:
        count = jnp.sum(weight)
    elif mask is not None:
        count = jnp.sum(mask)
    else:
        count = jnp.asarray(values.size, values.dtype)
    return jnp.where(count == 0, 0.0, total / jnp.where(count == 0, 1.0, count))


def check_reduction(reduction: str | None, who: str) -> str:
    """Keras' reductions; None means `"none"`."""
    if reduction is None:
        return "none"
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{who}: reduction={reduction!r} is not one of {', '.join(map(repr, REDUCTIONS))} "
            "(or None)."
        )
    return reduction


class Loss(eqx.Module):
    """Base class of losses: `loss(y_true, y_pred, sample_weight=None) -> Array`.

    A subclass implements `call(y_true, y_pred)`, the unweighted loss of each
    example (the class axis, or last axis, reduced away). `__call__` then applies
    `sample_weight` and the reduction (Keras' names):

    - `"sum_over_batch_size"` (default) or `"mean"`: weighted sum / number of
      values, a scalar;
    - `"mean_with_sample_weight"`: weighted sum / sum of the weights;
    - `"sum"`: the weighted sum, a scalar;
    - `"none"` (or None): the weighted per-example values.

    A loss that leaves some values out (`ignore_class`, or `Circle`'s examples
    without a positive pair) overrides `values_and_mask` instead; the masked
    values count neither in the sum nor in the number of values.

    `name` defaults to the snake_case class name (`MeanSquaredError` ->
    `mean_squared_error`); a model logs the term as `<name>_loss`.
    """

    # init=False: set by this class's __init__, which subclasses inherit or call.
    reduction: str = eqx.field(static=True, init=False)
    name: str = eqx.field(static=True, init=False)

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        who = type(self).__name__
        self.reduction = check_reduction(reduction, who)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{who}: name={name!r} must be a str (or None for the default).")
        self.name = snake_case(who) if name is None else name

    @abc.abstractmethod
    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        """The unweighted loss of each example, shape `y_pred.shape[:-1]` (at least `(batch,)`)."""

    def values_and_mask(self, y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array | None]:
        """`call`'s values, and which of them count (None: all of them)."""
        return self.call(y_true, y_pred), None

    def __call__(
        self, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
    ) -> Array:
        values, mask = self.values_and_mask(y_true, y_pred)
        return reduce(values, sample_weight, self.reduction, self.name, mask)


class LossFunction(Loss):
    """Wraps a plain function `fn(y_true, y_pred) -> values` as a `Loss`.

    `values` may be per example (then weighted and reduced like any loss) or
    already a scalar (then it is repeated once per example before weighting, as
    Keras does: with the default reduction, the mean weight scales it). This is how `loss=` and `metrics=` accept plain callables.
    """

    fn: Callable[[Array, Array], ArrayLike]

    def __init__(
        self,
        fn: Callable[[Array, Array], ArrayLike],
        *,
        reduction: str | None = "sum_over_batch_size",
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
