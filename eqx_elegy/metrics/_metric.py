"""The pure `Metric` interface and the weighted-mean metrics built on it."""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PyTree

from ..losses._loss import as_array, float_dtype, snake_case, weight_like


def divide_no_nan(numerator: Array, denominator: Array) -> Array:
    """`numerator / denominator`, and 0 where the denominator is 0."""
    safe = jnp.where(denominator == 0, jnp.ones_like(denominator), denominator)
    return jnp.where(denominator == 0, jnp.zeros_like(numerator), numerator / safe)


def zeros(shape: tuple[int, ...] = ()) -> Array:
    """A float32 state buffer. Explicit dtype, never a weak type, so a state
    re-initialised each epoch hits the same compiled step."""
    return jnp.zeros(shape, jnp.float32)


class Metric(eqx.Module):
    """A metric as three pure functions over an explicit state.

    `init()` returns a fresh state (a pytree of float32 arrays), `update(state,
    y_true, y_pred, sample_weight=None)` returns the state after one batch, and
    `compute(state)` the scalar value so far. The state is carried by the caller
    (a model keeps it in `states.metrics_states`), so every method can run under
    `jax.jit`.
    """

    # init=False: set by this class's __init__, which subclasses inherit or call.
    name: str = eqx.field(static=True, init=False)

    def __init__(self, *, name: str | None = None):
        self.name = snake_case(type(self).__name__) if name is None else name

    @abc.abstractmethod
    def init(self) -> PyTree[Array]:
        """A fresh state, as before the first batch."""

    @abc.abstractmethod
    def update(
        self,
        state: PyTree[Array],
        y_true: ArrayLike,
        y_pred: ArrayLike,
        sample_weight: ArrayLike | None = None,
    ) -> PyTree[Array]:
        """The state after adding one batch."""

    @abc.abstractmethod
    def compute(self, state: PyTree[Array]) -> Array:
        """The metric's scalar value for everything added to `state`."""


def weighted_total(
    values: Array, sample_weight: ArrayLike | None, mean_over_extra_axes: bool, who: str
) -> tuple[Array, Array]:
    """The weighted total of per-example values and the total weight, as Keras' `Mean`.

    Axes of `values` beyond the weight's rank (beyond the batch axis without a
    weight) are averaged (or summed for `Sum`) into one value per example first.
    """
    values = values.astype(float_dtype(values))
    reduce_fn = jnp.mean if mean_over_extra_axes else jnp.sum
    if sample_weight is None:
        if values.ndim == 0:
            return values, jnp.ones((), values.dtype)
        per_example = reduce_fn(values, axis=tuple(range(1, values.ndim)))
        return jnp.sum(per_example), jnp.asarray(values.shape[0], values.dtype)
    weight = as_array(sample_weight, "sample_weight", who).astype(values.dtype)
    if weight.ndim == values.ndim + 1 and weight.shape[-1] == 1:
        weight = weight[..., 0]
    if weight.ndim > values.ndim:
        raise ValueError(
            f"{who}: sample_weight has shape {weight.shape}, more axes than the "
            f"per-example values of shape {values.shape}."
        )
    values = reduce_fn(values, axis=tuple(range(weight.ndim, values.ndim)))
    weight = weight_like(values, weight, who)
    extra_axes = tuple(range(1, values.ndim))
    return jnp.sum(reduce_fn(values * weight, axis=extra_axes)), jnp.sum(
        reduce_fn(weight, axis=extra_axes)
    )


class Mean(Metric):
    """The weighted mean of values: `sum(w * v) / sum(w)`.

    On its own, `update(state, values, sample_weight=...)`. As a model metric it
    receives `(y_true, y_pred)` and averages `y_pred`, the model's output.
    Values with more axes than the weight are first averaged per example.
    """

    def __init__(self, *, name: str | None = None):
        super().__init__(name=name)

    def init(self) -> dict[str, Array]:
        return {"total": zeros(), "count": zeros()}

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        """The values to average: `y_pred` when given, else `y_true`."""
        return as_array(y_true if y_pred is None else y_pred, "values", self.name)

    def update(
        self,
        state: dict[str, Array],
        y_true: ArrayLike | None = None,
        y_pred: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> dict[str, Array]:
        total, count = weighted_total(self.values(y_true, y_pred), sample_weight, True, self.name)
        return {
            "total": state["total"] + total.astype(jnp.float32),
            "count": state["count"] + count.astype(jnp.float32),
        }

    def compute(self, state: dict[str, Array]) -> Array:
        return divide_no_nan(state["total"], state["count"])


class Sum(Metric):
    """The weighted sum of values, `sum(w * v)`; used like `Mean`."""

    def __init__(self, *, name: str | None = None):
        super().__init__(name=name)

    def init(self) -> dict[str, Array]:
        return {"total": zeros()}

    def update(
        self,
        state: dict[str, Array],
        y_true: ArrayLike | None = None,
        y_pred: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> dict[str, Array]:
        values = as_array(y_true if y_pred is None else y_pred, "values", self.name)
        total, _ = weighted_total(values, sample_weight, False, self.name)
        return {"total": state["total"] + total.astype(jnp.float32)}

    def compute(self, state: dict[str, Array]) -> Array:
        return state["total"]


class MeanMetricWrapper(Mean):
    """The weighted mean over examples of `fn(y_true, y_pred, **kwargs)`.

    `fn` returns one value per example (or per element; extra axes are averaged
    per example). The keyword arguments are passed to `fn` on every call, as in
    Keras. A plain function passed in `metrics=` is wrapped in this (a `Loss` becomes
    a `LossMean`, which also honours the loss's masks).
    The name defaults to `fn`'s.
    """

    fn: Callable[..., ArrayLike]
    kwargs: dict[str, Any]

    def __init__(self, fn: Callable[..., ArrayLike], *, name: str | None = None, **kwargs: Any):
        if not callable(fn):
            raise TypeError(f"MeanMetricWrapper: `fn` must be callable, got {type(fn).__name__}.")
        self.fn = fn
        self.kwargs = kwargs
        if name is None:
            name = snake_case(getattr(fn, "__name__", type(fn).__name__)).strip("<>")
        super().__init__(name=name)

    def values(self, y_true: ArrayLike | None, y_pred: ArrayLike | None) -> Array:
        y_true = as_array(y_true, "y_true", self.name)
        y_pred = as_array(y_pred, "y_pred", self.name)
        return jnp.asarray(self.fn(y_true, y_pred, **self.kwargs))
