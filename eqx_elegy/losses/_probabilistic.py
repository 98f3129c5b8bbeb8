"""Crossentropies, KL divergence, Poisson and generalized crossentropy, as in Keras 3.

Each loss is a function returning the unreduced values (Keras' `keras.losses.<name>`)
and a `Loss` class that weights and reduces them.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ._loss import (
    EPSILON,
    Loss,
    align,
    as_array,
    check_axis,
    check_axis_fits,
    check_bool,
    check_float,
    class_ids,
    float_dtype,
)


def log_probabilities(y_pred: Array, from_logits: bool, axis: int = -1) -> Array:
    """Log-probabilities along `axis`.

    Without logits the rows are renormalised and clipped to [EPSILON, 1 - EPSILON]
    first, as Keras does, so probabilities of exactly 0 or 1 give a finite loss.
    """
    if from_logits:
        return jax.nn.log_softmax(y_pred, axis=axis)
    y_pred = y_pred / jnp.sum(y_pred, axis=axis, keepdims=True)
    return jnp.log(jnp.clip(y_pred, EPSILON, 1.0 - EPSILON))


def check_smoothing(label_smoothing: object, who: str) -> float:
    return check_float(label_smoothing, who, "label_smoothing", low=0.0, high=1.0)


def _sparse_crossentropy_and_mask(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    from_logits: bool,
    ignore_class: int | None,
    axis: int,
    who: str,
) -> tuple[Array, Array | None]:
    pred = as_array(y_pred, "y_pred", who)
    check_axis_fits(axis, pred.shape, who)
    pred = jnp.moveaxis(pred.astype(float_dtype(pred)), axis, -1)
    labels = as_array(y_true, "y_true", who)
    hint = (
        "y_true looks one-hot: use CategoricalCrossentropy."
        if labels.shape == pred.shape and pred.ndim >= 2 and pred.shape[-1] > 1
        else ""
    )
    ids = class_ids(labels, pred, axis, who, hint)
    mask = None if ignore_class is None else ids != ignore_class
    if mask is not None:
        ids = jnp.where(mask, ids, 0)
    one_hot = jax.nn.one_hot(ids, pred.shape[-1], dtype=pred.dtype)
    values = -jnp.sum(one_hot * log_probabilities(pred, from_logits), axis=-1)
    if mask is not None:
        values = jnp.where(mask, values, 0.0)
    return values, mask


def sparse_categorical_crossentropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    from_logits: bool = False,
    ignore_class: int | None = None,
    axis: int = -1,
) -> Array:
    """Crossentropy between integer class ids and per-class scores along `axis`.

    Values where `y_true == ignore_class` are 0 (the `SparseCategoricalCrossentropy`
    class also leaves them out of the mean).
    """
    return _sparse_crossentropy_and_mask(
        y_true, y_pred, from_logits, ignore_class, axis, "sparse_categorical_crossentropy"
    )[0]


def check_one_hot_labels(y_true: ArrayLike, y_pred: ArrayLike, who: str) -> None:
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


def categorical_crossentropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    """Crossentropy between one-hot (or soft) labels and per-class scores along `axis`.

    `label_smoothing` mixes the labels with the uniform distribution:
    `y_true * (1 - s) + s / num_classes`.
    """
    who = "categorical_crossentropy"
    check_one_hot_labels(y_true, y_pred, who)
    y_true, y_pred = align(y_true, y_pred, who)
    check_axis_fits(axis, y_pred.shape, who)
    if label_smoothing:
        num_classes = y_pred.shape[axis]
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / num_classes
    return -jnp.sum(y_true * log_probabilities(y_pred, from_logits, axis), axis=axis)


def binary_log_probabilities(y_pred: Array, from_logits: bool) -> tuple[Array, Array]:
    """`(log p, log(1 - p))`: from logits through log-sigmoid (exact for any logit),
    from probabilities clipped to [EPSILON, 1 - EPSILON] as Keras does."""
    if from_logits:
        return jax.nn.log_sigmoid(y_pred), jax.nn.log_sigmoid(-y_pred)
    p = jnp.clip(y_pred, EPSILON, 1.0 - EPSILON)
    return jnp.log(p), jnp.log(1.0 - p)


def binary_crossentropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    """Crossentropy of independent binary labels, averaged along `axis`.

    `label_smoothing` moves labels towards 0.5: `y * (1 - s) + s / 2`.
    """
    y_true, y_pred = align(y_true, y_pred, "binary_crossentropy")
    check_axis_fits(axis, y_pred.shape, "binary_crossentropy")
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    log_p, log_not_p = binary_log_probabilities(y_pred, from_logits)
    return -jnp.mean(y_true * log_p + (1.0 - y_true) * log_not_p, axis=axis)


def kl_divergence(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    """`sum(y_true * log(y_true / y_pred))` over the last axis, both clipped to [1e-7, 1]."""
    y_true, y_pred = align(y_true, y_pred, "kl_divergence")
    y_true = jnp.clip(y_true, EPSILON, 1.0)
    y_pred = jnp.clip(y_pred, EPSILON, 1.0)
    return jnp.sum(y_true * jnp.log(y_true / y_pred), axis=-1)


def poisson(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    """`mean(y_pred - y_true * log(y_pred + 1e-7))` over the last axis: the negative
    log-likelihood of counts `y_true` under Poisson rates `y_pred` (up to a constant)."""
    y_true, y_pred = align(y_true, y_pred, "poisson")
    return jnp.mean(y_pred - y_true * jnp.log(y_pred + EPSILON), axis=-1)


def categorical_generalized_cross_entropy(
    y_true: ArrayLike, y_pred: ArrayLike, q: float = 0.5
) -> Array:
    """`(1 - p ** q) / q`, `p` the predicted probability of the true class id.

    Zhang & Sabuncu (2018): between crossentropy (`q -> 0`) and mean absolute
    error (`q = 1`), more robust to noisy labels as `q` grows.
    """
    who = "categorical_generalized_cross_entropy"
    pred = as_array(y_pred, "y_pred", who)
    pred = pred.astype(float_dtype(pred))
    ids = class_ids(y_true, pred, -1, who)
    p = jnp.sum(pred * jax.nn.one_hot(ids, pred.shape[-1], dtype=pred.dtype), axis=-1)
    return (1.0 - p**q) / q


class SparseCategoricalCrossentropy(Loss):
    """Crossentropy between integer class ids and per-class predictions.

    `y_true` holds class ids, shape `y_pred`'s without the class axis `axis` (or
    with a size-1 axis there); `y_pred` holds logits (`from_logits=True`) or
    probabilities. With probabilities, each row is renormalised and clipped away
    from 0 and 1 (as in Keras), so outputs that are not probabilities give a finite
    but meaningless loss: pass `from_logits=True` when the module ends without a
    softmax. Labels equal to `ignore_class` (e.g. a "void" class in segmentation
    maps) are left out: they add nothing and are not counted in the mean.
    """

    from_logits: bool = eqx.field(static=True)
    ignore_class: int | None = eqx.field(static=True)
    axis: int = eqx.field(static=True)

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        *,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ):
        who = type(self).__name__
        self.from_logits = check_bool(from_logits, who, "from_logits")
        if ignore_class is not None and (
            isinstance(ignore_class, bool) or not isinstance(ignore_class, int)
        ):
            raise TypeError(
                f"{who}: ignore_class={ignore_class!r} must be an int class id or None."
            )
        self.ignore_class = ignore_class
        self.axis = check_axis(axis, who)
        super().__init__(reduction=reduction, name=name)

    def values_and_mask(self, y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array | None]:
        return _sparse_crossentropy_and_mask(
            y_true, y_pred, self.from_logits, self.ignore_class, self.axis, type(self).__name__
        )

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return self.values_and_mask(y_true, y_pred)[0]


class CategoricalCrossentropy(Loss):
    """Crossentropy between one-hot (or soft) labels and per-class predictions.

    `label_smoothing` mixes the labels with the uniform distribution:
    `y_true * (1 - s) + s / num_classes`. Probability handling as in
    `SparseCategoricalCrossentropy`; `axis` is the class axis.
    """

    from_logits: bool = eqx.field(static=True)
    label_smoothing: float = eqx.field(static=True)
    axis: int = eqx.field(static=True)

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        *,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ):
        who = type(self).__name__
        self.from_logits = check_bool(from_logits, who, "from_logits")
        self.label_smoothing = check_smoothing(label_smoothing, who)
        self.axis = check_axis(axis, who)
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return categorical_crossentropy(
            y_true, y_pred, self.from_logits, self.label_smoothing, self.axis
        )


class BinaryCrossentropy(Loss):
    """Crossentropy of independent binary labels, averaged along `axis` (the last).

    `y_pred` holds logits (`from_logits=True`) or probabilities; probabilities are
    clipped to [1e-7, 1 - 1e-7] as in Keras, so no NaN comes out of saturated
    outputs. `label_smoothing` moves labels towards 0.5: `y * (1 - s) + s / 2`.
    Labels of shape `(batch,)` fit predictions of shape `(batch, 1)`.
    """

    from_logits: bool = eqx.field(static=True)
    label_smoothing: float = eqx.field(static=True)
    axis: int = eqx.field(static=True)

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        *,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ):
        who = type(self).__name__
        self.from_logits = check_bool(from_logits, who, "from_logits")
        self.label_smoothing = check_smoothing(label_smoothing, who)
        self.axis = check_axis(axis, who)
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return binary_crossentropy(
            y_true, y_pred, self.from_logits, self.label_smoothing, self.axis
        )


class KLDivergence(Loss):
    """Kullback-Leibler divergence from `y_pred` to `y_true`, two distributions over
    the last axis: `sum(y_true * log(y_true / y_pred))`, both clipped to [1e-7, 1]."""

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return kl_divergence(y_true, y_pred)


class Poisson(Loss):
    """`mean(y_pred - y_true * log(y_pred + 1e-7))`: for counts `y_true` predicted as
    (positive) Poisson rates `y_pred`."""

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return poisson(y_true, y_pred)


class CategoricalGeneralizedCrossEntropy(Loss):
    """Generalized crossentropy `(1 - p ** q) / q` for integer class ids, robust to
    noisy labels (Zhang & Sabuncu, 2018).

    `y_true` holds class ids (shape `(batch,)` or `(batch, 1)`), `y_pred` class
    probabilities (after a softmax); `p` is the probability of the true class.
    `q` in (0, 1): towards 0 the loss behaves like crossentropy, towards 1 like
    mean absolute error.
    """

    q: float = eqx.field(static=True)

    def __init__(
        self,
        q: float = 0.5,
        *,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ):
        who = type(self).__name__
        self.q = check_float(q, who, "q", low=0.0, high=1.0, open_low=True, open_high=True)
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return categorical_generalized_cross_entropy(y_true, y_pred, self.q)


class AutoCrossentropy(Loss):
    """Keras' `loss="crossentropy"` (or `"ce"`): the crossentropy the shapes call for.

    Binary when `y_pred` has one column (or none), sparse when `y_true` holds
    class ids (one axis fewer than `y_pred`, or a last axis of size 1 against
    several classes), categorical otherwise; `y_pred` holds probabilities, as
    with Keras' string.
    """

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name or "crossentropy")

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        labels = as_array(y_true, "y_true", self.name)
        pred = as_array(y_pred, "y_pred", self.name)
        if pred.ndim < 2 or pred.shape[-1] == 1:
            return binary_crossentropy(labels, pred)
        if labels.ndim < pred.ndim or labels.shape[-1] == 1:
            return sparse_categorical_crossentropy(labels, pred)
        return categorical_crossentropy(labels, pred)
