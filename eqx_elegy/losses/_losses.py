"""The losses, each computing the same numbers as its Keras 3 namesake."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ._loss import EPSILON, Loss, align, as_array, float_dtype


def _log_probabilities(y_pred: Array, from_logits: bool) -> Array:
    """Log-probabilities over the last axis.

    Without logits the rows are renormalised and clipped to [EPSILON, 1 - EPSILON]
    first, as Keras does, so probabilities of exactly 0 or 1 give a finite loss.
    """
    if from_logits:
        return jax.nn.log_softmax(y_pred, axis=-1)
    y_pred = y_pred / jnp.sum(y_pred, axis=-1, keepdims=True)
    return jnp.log(jnp.clip(y_pred, EPSILON, 1.0 - EPSILON))


def _check_probability_options(who: str, label_smoothing: float) -> float:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{who}: label_smoothing={label_smoothing} must be in [0, 1].")
    return float(label_smoothing)


class SparseCategoricalCrossentropy(Loss):
    """Crossentropy between integer class ids and per-class predictions.

    `y_true` holds class ids, shape `y_pred.shape[:-1]` (or with a trailing axis of
    size 1); `y_pred` holds logits (`from_logits=True`) or probabilities. With
    probabilities, each row is renormalised and clipped away from 0 and 1 (as in
    Keras), so outputs that are not probabilities give a finite but meaningless
    loss: pass `from_logits=True` when the module ends without a softmax.
    """

    from_logits: bool = eqx.field(static=True)

    def __init__(
        self,
        from_logits: bool = False,
        *,
        reduction: str = "sum_over_batch_size",
        name: str | None = None,
    ):
        self.from_logits = from_logits
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        who = type(self).__name__
        y_pred = as_array(y_pred, "y_pred", who)
        labels = as_array(y_true, "y_true", who)
        y_pred = y_pred.astype(float_dtype(y_pred))
        if labels.ndim == y_pred.ndim and labels.ndim > 0 and labels.shape[-1] == 1:
            labels = labels[..., 0]
        if y_pred.ndim < 2 or labels.shape != y_pred.shape[:-1]:
            hint = (
                " y_true looks one-hot: use CategoricalCrossentropy."
                if labels.shape == y_pred.shape
                else ""
            )
            raise ValueError(
                f"{who}: y_true has shape {labels.shape} and y_pred has shape "
                f"{y_pred.shape}; y_true must hold one class id per row of y_pred, "
                f"shape y_pred.shape[:-1] (y_pred needs a class axis).{hint}"
            )
        one_hot = jax.nn.one_hot(labels.astype(jnp.int32), y_pred.shape[-1], dtype=y_pred.dtype)
        return -jnp.sum(one_hot * _log_probabilities(y_pred, self.from_logits), axis=-1)


class CategoricalCrossentropy(Loss):
    """Crossentropy between one-hot (or soft) labels and per-class predictions.

    `label_smoothing` mixes the labels with the uniform distribution:
    `y_true * (1 - s) + s / num_classes`. Probability handling as in
    `SparseCategoricalCrossentropy`.
    """

    from_logits: bool = eqx.field(static=True)
    label_smoothing: float = eqx.field(static=True)

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        *,
        reduction: str = "sum_over_batch_size",
        name: str | None = None,
    ):
        self.from_logits = from_logits
        self.label_smoothing = _check_probability_options(type(self).__name__, label_smoothing)
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        who = type(self).__name__
        labels = as_array(y_true, "y_true", who)
        pred = as_array(y_pred, "y_pred", who)
        if labels.ndim + 1 == pred.ndim or (
            labels.ndim == pred.ndim and labels.shape[-1:] == (1,) and pred.shape[-1:] != (1,)
        ):
            raise ValueError(
                f"{who}: y_true has shape {labels.shape} and y_pred has shape {pred.shape}; "
                "y_true looks like integer class ids: use SparseCategoricalCrossentropy, "
                "or one-hot encode y_true."
            )
        y_true, y_pred = align(labels, pred, who)
        if self.label_smoothing:
            num_classes = y_pred.shape[-1]
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        return -jnp.sum(y_true * _log_probabilities(y_pred, self.from_logits), axis=-1)


class BinaryCrossentropy(Loss):
    """Crossentropy of independent binary labels, averaged over the last axis.

    `y_pred` holds logits (`from_logits=True`) or probabilities; probabilities are
    clipped to [1e-7, 1 - 1e-7] as in Keras, so no NaN comes out of saturated
    outputs. `label_smoothing` moves labels towards 0.5: `y * (1 - s) + s / 2`.
    """

    from_logits: bool = eqx.field(static=True)
    label_smoothing: float = eqx.field(static=True)

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        *,
        reduction: str = "sum_over_batch_size",
        name: str | None = None,
    ):
        self.from_logits = from_logits
        self.label_smoothing = _check_probability_options(type(self).__name__, label_smoothing)
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = align(y_true, y_pred, type(self).__name__)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            log_p = jax.nn.log_sigmoid(y_pred)
            log_not_p = jax.nn.log_sigmoid(-y_pred)
        else:
            p = jnp.clip(y_pred, EPSILON, 1.0 - EPSILON)
            log_p, log_not_p = jnp.log(p), jnp.log(1.0 - p)
        return -jnp.mean(y_true * log_p + (1.0 - y_true) * log_not_p, axis=-1)


class MeanSquaredError(Loss):
    """`mean((y_true - y_pred) ** 2)` over the last axis."""

    def __init__(self, *, reduction: str = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = align(y_true, y_pred, type(self).__name__)
        return jnp.mean(jnp.square(y_true - y_pred), axis=-1)


class MeanAbsoluteError(Loss):
    """`mean(|y_true - y_pred|)` over the last axis."""

    def __init__(self, *, reduction: str = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = align(y_true, y_pred, type(self).__name__)
        return jnp.mean(jnp.abs(y_true - y_pred), axis=-1)


class MeanAbsolutePercentageError(Loss):
    """`100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7))` over the last axis."""

    def __init__(self, *, reduction: str = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = align(y_true, y_pred, type(self).__name__)
        ratio = jnp.abs(y_true - y_pred) / jnp.maximum(jnp.abs(y_true), EPSILON)
        return 100.0 * jnp.mean(ratio, axis=-1)


class MeanSquaredLogarithmicError(Loss):
    """`mean((log(1 + y_true) - log(1 + y_pred)) ** 2)`, inputs floored at 1e-7."""

    def __init__(self, *, reduction: str = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = align(y_true, y_pred, type(self).__name__)
        log_pred = jnp.log1p(jnp.maximum(y_pred, EPSILON))
        log_true = jnp.log1p(jnp.maximum(y_true, EPSILON))
        return jnp.mean(jnp.square(log_pred - log_true), axis=-1)


class Huber(Loss):
    """Quadratic for errors up to `delta`, linear beyond, averaged over the last axis.

    `0.5 * e**2` where `|e| <= delta`, else `delta * |e| - 0.5 * delta**2`.
    """

    delta: float = eqx.field(static=True)

    def __init__(
        self,
        delta: float = 1.0,
        *,
        reduction: str = "sum_over_batch_size",
        name: str | None = None,
    ):
        if not delta > 0:
            raise ValueError(f"Huber: delta={delta} must be > 0.")
        self.delta = float(delta)
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = align(y_true, y_pred, type(self).__name__)
        error = jnp.abs(y_pred - y_true)
        quadratic = 0.5 * jnp.square(error)
        linear = self.delta * error - 0.5 * self.delta**2
        return jnp.mean(jnp.where(error <= self.delta, quadratic, linear), axis=-1)


class CosineSimilarity(Loss):
    """Minus the cosine similarity along `axis`: -1 for parallel vectors, 0 for orthogonal.

    Vectors are L2-normalised with their squared norm floored at 1e-14 (Keras), so
    a zero vector gives 0 rather than NaN.
    """

    axis: int = eqx.field(static=True)

    def __init__(
        self,
        axis: int = -1,
        *,
        reduction: str = "sum_over_batch_size",
        name: str | None = None,
    ):
        self.axis = axis
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        y_true, y_pred = align(y_true, y_pred, type(self).__name__)

        def normalise(x: Array) -> Array:
            squared_norm = jnp.sum(jnp.square(x), axis=self.axis, keepdims=True)
            return x * jax.lax.rsqrt(jnp.maximum(squared_norm, EPSILON**2))

        return -jnp.sum(normalise(y_true) * normalise(y_pred), axis=self.axis)
