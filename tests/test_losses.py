"""Every loss against a numpy transcription of Keras 3's formula, float32, to 1e-5."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqx_elegy import losses

EPS = 1e-7
B, C = 7, 5


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def clipped_log_probs(p):
    p = p / p.sum(-1, keepdims=True)
    return np.log(np.clip(p, EPS, 1 - EPS))


def ref_reduce(values, sample_weight, reduction):
    """Keras' reduce_weighted_values for per-example values of shape (batch,)."""
    if sample_weight is not None:
        values = values * sample_weight
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    return values.sum() / values.size


rng = np.random.default_rng(0)
LOGITS = rng.normal(size=(B, C)).astype(np.float32) * 2
PROBS = jax.nn.softmax(LOGITS, axis=-1).__array__().astype(np.float32)
IDS = rng.integers(0, C, size=B)
ONE_HOT = np.eye(C, dtype=np.float32)[IDS]
BINARY = rng.integers(0, 2, size=(B, C)).astype(np.float32)
SIGMOID = (1 / (1 + np.exp(-LOGITS))).astype(np.float32)
REAL_TRUE = rng.normal(size=(B, C)).astype(np.float32)
REAL_PRED = rng.normal(size=(B, C)).astype(np.float32) * 1.5
POS_TRUE = rng.uniform(0.1, 3.0, size=(B, C)).astype(np.float32)
POS_PRED = rng.uniform(0.0, 3.0, size=(B, C)).astype(np.float32)
WEIGHTS = rng.uniform(0.0, 2.0, size=B).astype(np.float32)


def huber_ref(t, p, delta):
    e = np.abs(p - t)
    return np.where(e <= delta, 0.5 * e**2, delta * e - 0.5 * delta**2).mean(-1)


def cosine_ref(t, p):
    def normalise(x):
        return x / np.sqrt(np.maximum((x**2).sum(-1, keepdims=True), EPS**2))

    return -(normalise(t) * normalise(p)).sum(-1)


def smooth(y, s, k):
    return y * (1 - s) + s / k


# (loss, y_true, y_pred, per-example reference in float64)
CASES = {
    "scce_logits": (
        losses.SparseCategoricalCrossentropy(from_logits=True),
        IDS,
        LOGITS,
        lambda t, p: -log_softmax(p)[np.arange(B), t],
    ),
    "scce_probs": (
        losses.SparseCategoricalCrossentropy(),
        IDS,
        PROBS,
        lambda t, p: -clipped_log_probs(p)[np.arange(B), t],
    ),
    "cce_logits_smoothing": (
        losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2),
        ONE_HOT,
        LOGITS,
        lambda t, p: -(smooth(t, 0.2, C) * log_softmax(p)).sum(-1),
    ),
    "cce_probs": (
        losses.CategoricalCrossentropy(),
        ONE_HOT,
        PROBS,
        lambda t, p: -(t * clipped_log_probs(p)).sum(-1),
    ),
    "bce_logits": (
        losses.BinaryCrossentropy(from_logits=True),
        BINARY,
        LOGITS,
        lambda t, p: -(t * log_sigmoid(p) + (1 - t) * log_sigmoid(-p)).mean(-1),
    ),
    "bce_probs_smoothing": (
        losses.BinaryCrossentropy(label_smoothing=0.1),
        BINARY,
        SIGMOID,
        lambda t, p: (
            -(
                (t * 0.9 + 0.05) * np.log(np.clip(p, EPS, 1 - EPS))
                + (1 - (t * 0.9 + 0.05)) * np.log(1 - np.clip(p, EPS, 1 - EPS))
            ).mean(-1)
        ),
    ),
    "mse": (losses.MeanSquaredError(), REAL_TRUE, REAL_PRED, lambda t, p: ((t - p) ** 2).mean(-1)),
    "mae": (losses.MeanAbsoluteError(), REAL_TRUE, REAL_PRED, lambda t, p: np.abs(t - p).mean(-1)),
    "mape": (
        losses.MeanAbsolutePercentageError(),
        REAL_TRUE,
        REAL_PRED,
        lambda t, p: 100 * (np.abs(t - p) / np.maximum(np.abs(t), EPS)).mean(-1),
    ),
    "msle": (
        losses.MeanSquaredLogarithmicError(),
        POS_TRUE,
        POS_PRED,
        lambda t, p: ((np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(t, EPS) + 1)) ** 2).mean(
            -1
        ),
    ),
    "huber": (losses.Huber(), REAL_TRUE, REAL_PRED, lambda t, p: huber_ref(t, p, 1.0)),
    "huber_delta": (losses.Huber(0.3), REAL_TRUE, REAL_PRED, lambda t, p: huber_ref(t, p, 0.3)),
    "cosine": (losses.CosineSimilarity(), REAL_TRUE, REAL_PRED, cosine_ref),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_keras_formula(case, reduction, weighted):
    base, y_true, y_pred, ref = CASES[case]
    loss = type(base)(
        **{
            k: getattr(base, k)
            for k in ("from_logits", "label_smoothing", "delta")
            if hasattr(base, k)
        },
        reduction=reduction,
    )
    weight = WEIGHTS if weighted else None
    t = y_true.astype(np.float64) if y_true.dtype.kind == "f" else y_true
    expected = ref_reduce(ref(t, y_pred.astype(np.float64)), weight, reduction)
    got = loss(y_true, y_pred, weight)
    assert got.dtype == jnp.float32
    assert got.shape == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_keras_documented_values():
    # The outputs printed in Keras 3's docstrings for these inputs.
    cce = losses.CategoricalCrossentropy(reduction="none")
    got = cce(np.array([[0, 1, 0], [0, 0, 1]]), np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]]))
    np.testing.assert_allclose(got, [0.0513, 2.303], atol=1e-3)
    bce = losses.BinaryCrossentropy(reduction="none")
    got = bce(np.array([[0, 1], [0, 0]]), np.array([[0.6, 0.4], [0.4, 0.6]]))
    np.testing.assert_allclose(got, [0.916, 0.714], atol=1e-3)


def test_default_names():
    assert losses.SparseCategoricalCrossentropy().name == "sparse_categorical_crossentropy"
    assert losses.MeanSquaredError().name == "mean_squared_error"
    assert losses.MeanAbsolutePercentageError().name == "mean_absolute_percentage_error"
    assert losses.Huber().name == "huber"
    assert losses.MeanSquaredError(name="mse").name == "mse"


def test_rank_one_inputs_are_one_value_per_example():
    # (batch,) against (batch,) or (batch, 1): one value per example, so sample
    # weights weigh examples (Keras' result for a model output of shape (batch, 1)).
    t, p = REAL_TRUE[:, 0], REAL_PRED[:, 0]
    mse = losses.MeanSquaredError(reduction="none")
    expected = WEIGHTS * (t - p) ** 2
    for a, b in [(t, p), (t[:, None], p), (t, p[:, None]), (t[:, None], p[:, None])]:
        np.testing.assert_allclose(mse(a, b, WEIGHTS), expected, rtol=1e-6)
    bce = losses.BinaryCrossentropy(from_logits=True)
    labels = BINARY[:, 0]
    expected_bce = -(labels * log_sigmoid(LOGITS[:, 0]) + (1 - labels) * log_sigmoid(-LOGITS[:, 0]))
    np.testing.assert_allclose(
        bce(labels, LOGITS[:, :1], WEIGHTS), (WEIGHTS * expected_bce).mean(), rtol=1e-5
    )


def test_sparse_labels_with_trailing_axis_and_any_int_dtype():
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    a = loss(IDS, LOGITS)
    np.testing.assert_allclose(loss(IDS[:, None].astype(np.uint8), LOGITS), a, rtol=1e-6)
    np.testing.assert_allclose(loss(IDS.astype(np.float32), LOGITS), a, rtol=1e-6)


def test_sequence_losses_weighted_per_example():
    # (batch, time, classes): per-example weights scale every step; the mean is
    # over batch * time values, as Keras' sum_over_batch_size.
    logits = rng.normal(size=(3, 4, C)).astype(np.float32)
    ids = rng.integers(0, C, size=(3, 4))
    w = np.array([1.0, 0.0, 2.0], np.float32)
    per_step = -np.take_along_axis(log_softmax(logits.astype(np.float64)), ids[..., None], -1)[
        ..., 0
    ]
    got = losses.SparseCategoricalCrossentropy(from_logits=True)(ids, logits, w)
    np.testing.assert_allclose(got, (per_step * w[:, None]).sum() / 12, rtol=1e-5)


def test_saturated_probabilities_give_finite_loss():
    # Keras clips probabilities to [1e-7, 1 - 1e-7]: exact 0/1 outputs give no NaN.
    p = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    y = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
    assert np.isfinite(losses.BinaryCrossentropy()(y, p))
    assert np.isfinite(losses.CategoricalCrossentropy()(y, p))
    assert np.isfinite(losses.SparseCategoricalCrossentropy()(np.array([1, 1]), p))
    grad = jax.grad(lambda q: losses.BinaryCrossentropy()(y, q))(p)
    assert np.all(np.isfinite(grad))


def test_loss_function_wraps_plain_callables():
    def my_error(y_true, y_pred):
        return jnp.mean(jnp.abs(y_true - y_pred), axis=-1)

    loss = losses.LossFunction(my_error)
    assert loss.name == "my_error"
    expected = (np.abs(REAL_TRUE - REAL_PRED).mean(-1) * WEIGHTS).mean()
    np.testing.assert_allclose(loss(REAL_TRUE, REAL_PRED, WEIGHTS), expected, rtol=1e-5)
    # A scalar result is scaled by the mean weight (Keras' behaviour).
    scalar = losses.LossFunction(lambda t, p: jnp.sum(p))
    assert scalar.name == "lambda"
    np.testing.assert_allclose(
        scalar(REAL_TRUE, REAL_PRED, WEIGHTS), REAL_PRED.sum() * WEIGHTS.mean(), rtol=1e-5
    )


def test_gradients_and_dtype_under_strict_promotion():
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    g = jax.jit(jax.grad(lambda p: loss(jnp.asarray(IDS, jnp.int32), p, jnp.ones(B))))(LOGITS)
    expected = (jax.nn.softmax(LOGITS) - ONE_HOT) / B
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-7)
    assert loss(IDS, LOGITS.astype(jnp.bfloat16)).dtype == jnp.float32


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(
        ValueError, match=r"y_true has shape \(7, 5\) and y_pred has shape \(7, 4\)"
    ):
        losses.MeanSquaredError()(REAL_TRUE, REAL_PRED[:, :4])
    with pytest.raises(ValueError, match=r"\(7,\).*\(6,\)"):
        losses.MeanAbsoluteError()(REAL_TRUE[:, 0], REAL_PRED[:6, 0])
    # Raised while tracing, as a plain ValueError.
    with pytest.raises(ValueError, match=r"\(7, 5\).*\(7, 3\)"):
        jax.jit(losses.BinaryCrossentropy())(BINARY, SIGMOID[:, :3])


def test_wrong_label_encoding_hints():
    with pytest.raises(ValueError, match=r"\(7, 5\).*\(7, 5\).*use CategoricalCrossentropy"):
        losses.SparseCategoricalCrossentropy()(ONE_HOT, PROBS)
    with pytest.raises(ValueError, match=r"\(7,\).*\(7, 5\).*SparseCategoricalCrossentropy"):
        losses.CategoricalCrossentropy()(IDS, PROBS)
    with pytest.raises(ValueError, match=r"\(7,\) and y_pred has shape \(7,\).*class axis"):
        losses.SparseCategoricalCrossentropy()(IDS, PROBS[:, 0])


def test_bad_arguments():
    with pytest.raises(
        ValueError,
        match="reduction='average' is not one of 'sum_over_batch_size', 'sum', 'mean', "
        "'mean_with_sample_weight', 'none' \\(or None\\)",
    ):
        losses.MeanSquaredError(reduction="average")
    with pytest.raises(ValueError, match="delta=0"):
        losses.Huber(0)
    with pytest.raises(ValueError, match="label_smoothing=1.5"):
        losses.BinaryCrossentropy(label_smoothing=1.5)
    with pytest.raises(TypeError, match="`y_true` is None"):
        losses.MeanSquaredError()(None, REAL_PRED)
    with pytest.raises(ValueError, match=r"sample_weight has shape \(3,\)"):
        losses.MeanSquaredError()(REAL_TRUE, REAL_PRED, np.ones(3))
    with pytest.raises(TypeError, match="must be callable"):
        losses.LossFunction(3)  # type: ignore[arg-type]
