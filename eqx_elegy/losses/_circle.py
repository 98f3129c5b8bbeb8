"""Circle loss (Sun et al., 2020) for metric learning on L2-normalised embeddings."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ._loss import Loss, as_array, check_bool, check_float, float_dtype


def _labels(labels: ArrayLike | None, n: int, what: str, who: str) -> Array:
    """Integer labels of shape `(n,)`, from `(n,)` or `(n, 1)`."""
    array = as_array(labels, what, who)
    if array.shape not in ((n,), (n, 1)):
        raise ValueError(
            f"{who}: {what} has shape {array.shape}; it must hold one integer label per "
            f"embedding, shape ({n},) or ({n}, 1)."
        )
    return array.reshape(n).astype(jnp.int32)


def circle(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    ref_labels: ArrayLike | None = None,
    ref_embeddings: ArrayLike | None = None,
    remove_diagonal: bool = True,
    gamma: float = 80.0,
    margin: float = 0.4,
) -> Array:
    """The circle loss of each embedding in `y_pred` against the reference embeddings
    (`y_pred` itself by default), as in Keras.

    `y_true` holds integer labels, `y_pred` L2-normalised embeddings of shape
    `(batch, dim)`. Pairs with equal labels are positives, the others negatives;
    with `remove_diagonal` an embedding is not its own positive. An embedding with
    no positive (or no negative) pair gets 0.
    """
    who = "circle"
    embeddings = as_array(y_pred, "y_pred", who)
    embeddings = embeddings.astype(float_dtype(embeddings))
    if embeddings.ndim != 2:
        raise ValueError(
            f"{who}: y_pred has shape {embeddings.shape}; it must hold one embedding per "
            "example, shape (batch, dim)."
        )
    n = embeddings.shape[0]
    labels = _labels(y_true, n, "y_true", who)
    if ref_embeddings is None:
        refs = embeddings
    else:
        refs = as_array(ref_embeddings, "ref_embeddings", who).astype(embeddings.dtype)
        if refs.ndim != 2 or refs.shape[1] != embeddings.shape[1]:
            raise ValueError(
                f"{who}: ref_embeddings has shape {refs.shape}; it needs shape "
                f"(references, {embeddings.shape[1]}) to match y_pred {embeddings.shape}."
            )
    m = refs.shape[0]
    ref_ids = labels if ref_labels is None else _labels(ref_labels, m, "ref_labels", who)

    distances = jnp.maximum(1.0 - embeddings @ refs.T, 0.0)
    positive = labels[:, None] == ref_ids[None, :]
    negative = ~positive
    if remove_diagonal:
        positive = positive & ~jnp.eye(n, m, dtype=bool)
    pos_weights = jnp.maximum((margin + distances) * positive.astype(distances.dtype), 0.0)
    neg_weights = jnp.maximum((1.0 + margin - distances) * negative.astype(distances.dtype), 0.0)
    pos_logits = -gamma * pos_weights * (margin - distances)
    neg_logits = gamma * neg_weights * (1.0 - margin - distances)
    pos_loss = jax.nn.logsumexp(jnp.where(positive, pos_logits, -jnp.inf), axis=1)
    neg_loss = jax.nn.logsumexp(jnp.where(negative, neg_logits, -jnp.inf), axis=1)
    return jax.nn.softplus(pos_loss + neg_loss)


class Circle(Loss):
    """Circle loss for metric learning: pulls together embeddings of the same label
    and pushes apart the others, each pair weighted by how far it is from its optimum.

    `y_true` holds integer labels `(batch,)`, `y_pred` L2-normalised embeddings
    `(batch, dim)`; pairs are formed within the batch. `gamma` scales the loss,
    `margin` relaxes it; `remove_diagonal` keeps an embedding from being its own
    positive. Examples whose loss is 0 (no positive or no negative pair in the
    batch) are left out of the mean, as in Keras.
    """

    gamma: float = eqx.field(static=True)
    margin: float = eqx.field(static=True)
    remove_diagonal: bool = eqx.field(static=True)

    def __init__(
        self,
        gamma: float = 80.0,
        margin: float = 0.4,
        remove_diagonal: bool = True,
        *,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
    ):
        who = type(self).__name__
        self.gamma = check_float(gamma, who, "gamma", low=0.0, open_low=True)
        self.margin = check_float(margin, who, "margin")
        self.remove_diagonal = check_bool(remove_diagonal, who, "remove_diagonal")
        super().__init__(reduction=reduction, name=name)

    def values_and_mask(self, y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array | None]:
        values = self.call(y_true, y_pred)
        return values, values > 0

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Array:
        return circle(
            y_true,
            y_pred,
            remove_diagonal=self.remove_diagonal,
            gamma=self.gamma,
            margin=self.margin,
        )
