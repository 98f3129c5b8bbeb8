"""Focal crossentropies (Lin et al., 2018): crossentropy scaled down on examples the
model already gets right, so training focuses on the hard ones."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ._loss import EPSILON, Loss, align, check_axis, check_axis_fits, check_bool, check_float
from ._probabilistic import binary_log_probabilities, check_one_hot_labels, check_smoothing


def binary_focal_crossentropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    apply_class_balancing: bool = False,
    alpha: float = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    """Binary crossentropy times `(1 - p_t) ** gamma`, averaged along `axis`.

    `p_t` is the predicted probability of the true label. With
    `apply_class_balancing`, positives are also weighted by `alpha` and negatives
    by `1 - alpha`.
    """
    y_true, y_pred = align(y_true, y_pred, "binary_focal_crossentropy")
    check_axis_fits(axis, y_pred.shape, "binary_focal_crossentropy")
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    log_p, log_not_p = binary_log_probabilities(y_pred, from_logits)
    if from_logits:
        p, not_p = jax.nn.sigmoid(y_pred), jax.nn.sigmoid(-y_pred)
    else:
        p, not_p = y_pred, 1.0 - y_pred
    bce = -(y_true * log_p + (1.0 - y_true) * log_not_p)
    one_minus_p_t = y_true * not_p + (1.0 - y_true) * p
    focal = one_minus_p_t**gamma * bce
    if apply_class_balancing:
        focal = (y_true * alpha + (1.0 - y_true) * (1.0 - alpha)) * focal
    return jnp.mean(focal, axis=axis)


def categorical_focal_crossentropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    alpha: float | Sequence[float] = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    """`sum(alpha * (1 - p) ** gamma * -y_true * log(p))` along the class axis `axis`.

    `alpha` is one weight for every class or a sequence of one weight per class
    (e.g. inverse class frequencies). Probabilities are renormalised and clipped
    to [1e-7, 1 - 1e-7] as in Keras; logits go through `log_softmax`.
    """
    who = "categorical_focal_crossentropy"
    check_one_hot_labels(y_true, y_pred, who)
    y_true, y_pred = align(y_true, y_pred, who)
    check_axis_fits(axis, y_pred.shape, who)
    num_classes = y_pred.shape[axis]
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / num_classes
    if from_logits:
        log_p = jax.nn.log_softmax(y_pred, axis=axis)
        p = jnp.exp(log_p)
    else:
        p = y_pred / jnp.sum(y_pred, axis=axis, keepdims=True)
        p = jnp.clip(p, EPSILON, 1.0 - EPSILON)
        log_p = jnp.log(p)
    weight = _class_weights(alpha, num_classes, y_pred.ndim, axis, who).astype(p.dtype)
    return jnp.sum(weight * (1.0 - p) ** gamma * -y_true * log_p, axis=axis)


def _class_weights(
    alpha: float | Sequence[float], num_classes: int, ndim: int, axis: int, who: str
) -> Array:
    """`alpha` shaped to broadcast along the class axis."""
    if isinstance(alpha, int | float):
        return jnp.asarray(alpha)
    if len(alpha) != num_classes:
        raise ValueError(
            f"{who}: alpha has {len(alpha)} per-class weights, but y_pred has "
            f"{num_classes} classes along axis {axis}."
        )
    shape = [1] * ndim
    shape[axis] = num_classes
    return jnp.asarray(alpha).reshape(shape)


def _check_alpha(alpha: object, who: str) -> float | tuple[float, ...]:
    if isinstance(alpha, Sequence) and not isinstance(alpha, str):
        return tuple(check_float(a, who, f"alpha[{i}]", low=0.0) for i, a in enumerate(alpha))
    return check_float(alpha, who, "alpha", low=0.0)


class BinaryFocalCrossentropy(Loss):
    """Focal crossentropy of independent binary labels.

    `binary crossentropy * (1 - p_t) ** gamma`, `p_t` the predicted probability of
    the true label: `gamma = 0` is plain binary crossentropy, a larger `gamma`
    down-weights confidently correct examples. With `apply_class_balancing`,
    positives also weigh `alpha` and negatives `1 - alpha`. `from_logits` and
    `label_smoothing` as in `BinaryCrossentropy`.
    """

    apply_class_balancing: bool = eqx.field(static=True)
    alpha: float = eqx.field(static=True)
    gamma: float = eqx.field(static=True)
    from_logits: bool = eqx.field(static=True)
    label_smoothing: float = eqx.field(static=True)
    axis: int = eqx.field(static=True)

    def __init__(
        self,
        apply_class_balancing: bool = False,
        alpha: float = 0.25,
        gamma: float = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        *,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ):
        who = type(self).__name__
        self.apply_class_balancing = check_bool(apply_class_balancing, who, "apply_class_balancing")
        self.alpha = check_float(alpha, who, "alpha", low=0.0, high=1.0)
        self.gamma = check_float(gamma, who, "gamma", low=0.0)
        self.from_logits = check_bool(from_logits, who, "from_logits")
        self.label_smoothing = check_smoothing(label_smoothing, who)
        self.axis = check_axis(axis, who)
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return binary_focal_crossentropy(
            y_true,
            y_pred,
            self.apply_class_balancing,
            self.alpha,
            self.gamma,
            self.from_logits,
            self.label_smoothing,
            self.axis,
        )


class CategoricalFocalCrossentropy(Loss):
    """Focal crossentropy between one-hot labels and per-class predictions.

    `alpha * (1 - p) ** gamma * crossentropy`, summed over the classes: `gamma = 0`
    is crossentropy scaled by `alpha`. `alpha` is one float, or one weight per
    class. `from_logits`, `label_smoothing` and `axis` as in
    `CategoricalCrossentropy`.
    """

    alpha: float | tuple[float, ...] = eqx.field(static=True)
    gamma: float = eqx.field(static=True)
    from_logits: bool = eqx.field(static=True)
    label_smoothing: float = eqx.field(static=True)
    axis: int = eqx.field(static=True)

    def __init__(
        self,
        alpha: float | Sequence[float] = 0.25,
        gamma: float = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        *,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ):
        who = type(self).__name__
        self.alpha = _check_alpha(alpha, who)
        self.gamma = check_float(gamma, who, "gamma", low=0.0)
        self.from_logits = check_bool(from_logits, who, "from_logits")
        self.label_smoothing = check_smoothing(label_smoothing, who)
        self.axis = check_axis(axis, who)
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return categorical_focal_crossentropy(
            y_true,
            y_pred,
            self.alpha,
            self.gamma,
            self.from_logits,
            self.label_smoothing,
            self.axis,
        )
