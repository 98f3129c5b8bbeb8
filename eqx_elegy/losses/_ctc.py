"""Connectionist temporal classification (Graves et al., 2006), through `optax.ctc_loss`."""

import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike

from ._loss import Loss, as_array, float_dtype


def ctc(y_true: ArrayLike, y_pred: ArrayLike) -> Array:
    """The CTC loss of each sequence, Keras' convention.

    `y_true`: integer labels `(batch, max_label_length)`, right-padded with 0; class
    0 is the blank, so real labels are 1 and up, and a row's label length is its
    number of non-zero entries. `y_pred`: logits `(batch, time, num_classes)`
    (no softmax), every time step used.
    """
    who = "ctc"
    labels = as_array(y_true, "y_true", who)
    logits = as_array(y_pred, "y_pred", who)
    if labels.ndim != 2:
        raise ValueError(
            f"{who}: y_true has shape {labels.shape}; it must hold integer labels of shape "
            "(batch, max_label_length), right-padded with 0 (the blank)."
        )
    if logits.ndim != 3 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{who}: y_pred has shape {logits.shape}; it must hold logits of shape "
            f"(batch, time, num_classes) with batch = {labels.shape[0]} as in y_true."
        )
    logits = logits.astype(float_dtype(logits))
    labels = labels.astype(jnp.int32)
    label_lengths = jnp.sum(labels != 0, axis=-1)
    positions = jnp.arange(labels.shape[1])
    label_paddings = (positions[None, :] >= label_lengths[:, None]).astype(logits.dtype)
    logit_paddings = jnp.zeros(logits.shape[:2], logits.dtype)
    return optax.ctc_loss(logits, logit_paddings, labels, label_paddings, blank_id=0)


class CTC(Loss):
    """Connectionist temporal classification loss for unaligned sequence labelling
    (speech, handwriting), computed by `optax.ctc_loss`.

    As in Keras: `y_true` holds integer labels `(batch, max_label_length)`,
    right-padded with 0, which is also the blank class (so labels are 1 and up);
    `y_pred` holds logits `(batch, time, num_classes)`. One value per sequence.
    """

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return ctc(y_true, y_pred)
