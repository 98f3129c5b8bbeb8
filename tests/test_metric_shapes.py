"""Issue 24: every metric follows Keras' shape rules on the common output/label shapes.

Binary outputs `(n,)` or `(n, 1)` (probabilities or logits) with labels `(n,)` or
`(n, 1)`; multi-class outputs with class-id or one-hot labels; multi-label outputs.
Each case is checked against scikit-learn on fixed predictions, with and without
`sample_weight`, and end to end through `Model.evaluate`/`fit` for the usual
`(n, 1)` sigmoid classifier.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sklearn.metrics as skm

import eqx_elegy as elegy
from eqx_elegy import losses, metrics
from eqx_elegy._losses_and_metrics import LossesAndMetrics

N, C = 40, 4
rng = np.random.default_rng(24)
# Binary: labels and scores that agree most of the time.
BIN = rng.integers(0, 2, size=N).astype(np.float32)
BIN[:4] = [0, 1, 0, 1]
LOGIT = (2.0 * (2 * BIN - 1) + rng.normal(scale=1.5, size=N)).astype(np.float32)
PROB = (1 / (1 + np.exp(-LOGIT.astype(np.float64)))).astype(np.float32)
# Multi-class: class ids, their one-hot rows and softmax scores.
IDS = rng.integers(0, C, size=N)
IDS[:C] = np.arange(C)
SCORES = (3.0 * np.eye(C)[IDS] + rng.normal(scale=1.5, size=(N, C))).astype(np.float32)
SOFTMAX = np.asarray(jax.nn.softmax(SCORES, axis=-1))
ONE_HOT = np.eye(C, dtype=np.float32)[IDS]
# Multi-label: each column its own binary label.
MULTI = rng.integers(0, 2, size=(N, C)).astype(np.float32)
MULTI_LOGITS = (2.0 * (2 * MULTI - 1) + rng.normal(scale=1.5, size=(N, C))).astype(np.float32)
MULTI_PROBS = (1 / (1 + np.exp(-MULTI_LOGITS.astype(np.float64)))).astype(np.float32)
W = rng.uniform(0.0, 2.0, size=N).astype(np.float32)
WEIGHTS = [None, W]


def value(metric, y_true, y_pred, sample_weight=None, batches=(15, 25)):
    """The metric accumulated over two uneven batches, in one compiled call."""

    @jax.jit
    def go(y_true, y_pred, sample_weight):
        state, start = metric.init(), 0
        for n in batches:
            part = slice(start, start + n)
            sw = None if sample_weight is None else sample_weight[part]
            state = metric.update(state, y_true[part], y_pred[part], sw)
            start += n
        return metric.compute(state)

    return float(go(y_true, y_pred, sample_weight))


def close(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------- binary

# (label shape, output shape): every combination of (n,) and (n, 1).
SHAPES = [((N,), (N,)), ((N,), (N, 1)), ((N, 1), (N,)), ((N, 1), (N, 1))]
SHAPE_IDS = ["labels(n)-out(n)", "labels(n)-out(n,1)", "labels(n,1)-out(n)", "labels(n,1)-out(n,1)"]


def binary_case(label_shape, output_shape, logits):
    scores = LOGIT if logits else PROB
    return BIN.reshape(label_shape), scores.reshape(output_shape)


def binary_metrics(logits):
    """Each binary metric (built for probabilities or logits) and its scikit-learn value."""
    cut = 0.0 if logits else 0.5
    predicted = (LOGIT if logits else PROB) > cut
    return {
        "accuracy": (metrics.Accuracy(), None),
        "binary_accuracy": (
            metrics.BinaryAccuracy(threshold=cut),
            lambda w: skm.accuracy_score(BIN, predicted, sample_weight=w),
        ),
        "binary_accuracy_from_logits": (
            metrics.BinaryAccuracy(from_logits=logits),
            lambda w: skm.accuracy_score(BIN, predicted, sample_weight=w),
        ),
        "precision": (
            metrics.Precision(from_logits=logits),
            lambda w: skm.precision_score(BIN, predicted, sample_weight=w),
        ),
        "recall": (
            metrics.Recall(from_logits=logits),
            lambda w: skm.recall_score(BIN, predicted, sample_weight=w),
        ),
        "f1": (
            metrics.F1(from_logits=logits),
            lambda w: skm.f1_score(BIN, predicted, sample_weight=w),
        ),
        "auc": (
            metrics.AUC(num_thresholds=5000, from_logits=logits),
            lambda w: skm.roc_auc_score(BIN, PROB, sample_weight=w),
        ),
    }


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("shapes", SHAPES, ids=SHAPE_IDS)
def test_binary_probabilities_match_sklearn(shapes, weighted):
    y_true, y_pred = binary_case(*shapes, logits=False)
    w = W if weighted else None
    for name, (metric, reference) in binary_metrics(logits=False).items():
        if reference is None:  # Accuracy on probabilities: binary accuracy at 0.5
            reference = binary_metrics(False)["binary_accuracy"][1]
        tolerance = 2e-3 if name == "auc" else 1e-5  # AUC: 5000 thresholds vs exact
        np.testing.assert_allclose(
            value(metric, y_true, y_pred, w), reference(w), rtol=tolerance, err_msg=name
        )


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("shapes", SHAPES, ids=SHAPE_IDS)
def test_binary_logits_match_sklearn(shapes, weighted):
    y_true, y_pred = binary_case(*shapes, logits=True)
    w = W if weighted else None
    for name, (metric, reference) in binary_metrics(logits=True).items():
        if reference is None:  # Accuracy has no threshold: logits go through a loss (below)
            continue
        tolerance = 2e-3 if name == "auc" else 1e-5
        np.testing.assert_allclose(
            value(metric, y_true, y_pred, w), reference(w), rtol=tolerance, err_msg=name
        )


def test_binary_single_column_is_never_a_one_class_score():
    # The bug of issue 24: a (n, 1) output with (n,) labels was read as one class of
    # scores, so nothing was ever predicted positive.
    y_pred = PROB[:, None]
    assert value(metrics.Precision(), BIN, y_pred) > 0.7
    assert value(metrics.Recall(), BIN, y_pred) > 0.7
    assert value(metrics.F1(), BIN, y_pred) > 0.7
    assert value(metrics.Accuracy(), BIN, y_pred) > 0.7
    assert value(metrics.Accuracy(), BIN[:, None], y_pred) > 0.7


# --------------------------------------------------------------- multi-class


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    "labels", ["ids(n)", "ids(n,1)", "one-hot"], ids=["ids(n)", "ids(n,1)", "one-hot"]
)
def test_multi_class_accuracy_matches_sklearn(labels, weighted):
    y_true = {"ids(n)": IDS, "ids(n,1)": IDS[:, None], "one-hot": ONE_HOT}[labels]
    w = W if weighted else None
    expected = skm.accuracy_score(IDS, SOFTMAX.argmax(-1), sample_weight=w)
    close(value(metrics.Accuracy(), y_true, SOFTMAX, w), expected)
    close(value(metrics.Accuracy(), y_true, SCORES, w), expected)  # logits: same argmax
    if labels == "one-hot":
        close(value(metrics.CategoricalAccuracy(), y_true, SOFTMAX, w), expected)
    else:
        close(value(metrics.SparseCategoricalAccuracy(), y_true, SOFTMAX, w), expected)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_multi_class_precision_recall_f1_match_sklearn(weighted):
    w = W if weighted else None
    predicted = SOFTMAX.argmax(-1)
    for y_true in (IDS, IDS[:, None], ONE_HOT):
        for average in ("macro", "weighted"):
            for cls, fn in [
                (metrics.Precision, skm.precision_score),
                (metrics.Recall, skm.recall_score),
            ]:
                got = value(cls(top_k=1, average=average, num_classes=C), y_true, SOFTMAX, w)
                close(got, fn(IDS, predicted, average=average, sample_weight=w))
            got = value(metrics.F1(average=average, num_classes=C), y_true, SOFTMAX, w)
            np.testing.assert_allclose(
                got, skm.f1_score(IDS, predicted, average=average, sample_weight=w), rtol=1e-5
            )


# --------------------------------------------------------------- multi-label


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_multi_label_matches_sklearn(weighted):
    w = W if weighted else None
    predicted = MULTI_PROBS > 0.5
    weight_per_label = None if w is None else np.repeat(w, C)
    element_accuracy = skm.accuracy_score(
        MULTI.reshape(-1), predicted.reshape(-1), sample_weight=weight_per_label
    )
    close(value(metrics.BinaryAccuracy(), MULTI, MULTI_PROBS, w), element_accuracy)
    close(
        value(metrics.Precision(0.5), MULTI, MULTI_PROBS, w),
        skm.precision_score(MULTI, predicted, average="micro", sample_weight=w),
    )
    close(
        value(metrics.Recall(0.5), MULTI, MULTI_PROBS, w),
        skm.recall_score(MULTI, predicted, average="micro", sample_weight=w),
    )
    np.testing.assert_allclose(
        value(metrics.F1(threshold=0.5, average="macro", num_classes=C), MULTI, MULTI_PROBS, w),
        skm.f1_score(MULTI, predicted, average="macro", sample_weight=w),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        value(metrics.AUC(num_thresholds=5000), MULTI, MULTI_PROBS, w),
        skm.roc_auc_score(
            MULTI.reshape(-1), MULTI_PROBS.reshape(-1), sample_weight=weight_per_label
        ),
        rtol=2e-3,
    )


# ------------------------------------------------- "accuracy" in a model's metrics


def logs_of(loss, metric_names, y_true, y_pred, sample_weight=None):
    """The logs of `LossesAndMetrics` over two batches (as the model's loop runs it)."""
    lam = LossesAndMetrics.build(loss, metric_names)

    @eqx.filter_jit
    def go(lam, y_true, y_pred, sample_weight):
        states, start = lam.init(), 0
        for n in (15, 25):
            part = slice(start, start + n)
            sw = None if sample_weight is None else sample_weight[part]
            _, logs, states = lam(states, y_true[part], y_pred[part], sw, None, None, batch_size=n)
            start += n
        return logs

    return {k: float(v) for k, v in go(lam, y_true, y_pred, sample_weight).items()}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_accuracy_string_resolves_from_loss_and_shapes(weighted):
    w = W if weighted else None
    binary = skm.accuracy_score(BIN, PROB > 0.5, sample_weight=w)
    for label_shape, output_shape in SHAPES:
        y_true, y_pred = BIN.reshape(label_shape), PROB.reshape(output_shape)
        for loss in (losses.BinaryCrossentropy(), losses.MeanSquaredError()):
            for name in ("accuracy", "acc"):
                close(logs_of(loss, [name], y_true, y_pred, w)[name], binary)
        # Logits with a from_logits loss: the threshold is 0.
        logs = logs_of(
            losses.BinaryCrossentropy(from_logits=True),
            ["accuracy", metrics.Accuracy()],
            y_true,
            LOGIT.reshape(output_shape),
            w,
        )
        close(logs["accuracy"], binary)
        close(logs["accuracy_1"], binary)
    multi_class = skm.accuracy_score(IDS, SOFTMAX.argmax(-1), sample_weight=w)
    close(
        logs_of(losses.CategoricalCrossentropy(), ["accuracy"], ONE_HOT, SOFTMAX, w)["accuracy"],
        multi_class,
    )
    sparse = losses.SparseCategoricalCrossentropy()
    close(logs_of(sparse, ["accuracy"], IDS, SOFTMAX, w)["accuracy"], multi_class)
    close(logs_of(sparse, ["accuracy"], IDS[:, None], SOFTMAX, w)["accuracy"], multi_class)
    # Multi-label: a binary crossentropy makes "accuracy" the per-label binary accuracy.
    weight_per_label = None if w is None else np.repeat(w, C)
    multi_label = skm.accuracy_score(
        MULTI.reshape(-1), (MULTI_LOGITS > 0).reshape(-1), sample_weight=weight_per_label
    )
    for loss, scores in [
        (losses.BinaryCrossentropy(), MULTI_PROBS),
        (losses.BinaryCrossentropy(from_logits=True), MULTI_LOGITS),
    ]:
        close(logs_of(loss, ["accuracy"], MULTI, scores, w)["accuracy"], multi_label)


def test_string_metrics_take_from_logits_from_a_binary_loss():
    predicted = LOGIT > 0
    logs = logs_of(
        losses.BinaryCrossentropy(from_logits=True),
        ["precision", "recall", "f1", "auc", "binary_accuracy"],
        BIN,
        LOGIT[:, None],
        W,
    )
    close(logs["precision"], skm.precision_score(BIN, predicted, sample_weight=W))
    close(logs["recall"], skm.recall_score(BIN, predicted, sample_weight=W))
    close(logs["f1"], skm.f1_score(BIN, predicted, sample_weight=W))
    close(logs["binary_accuracy"], skm.accuracy_score(BIN, predicted, sample_weight=W))
    np.testing.assert_allclose(
        logs["auc"], skm.roc_auc_score(BIN, PROB, sample_weight=W), atol=1e-2
    )
    # An object the user built keeps its own arguments: Precision() thresholds at 0.5.
    assert ((LOGIT > 0) & (LOGIT <= 0.5)).any()
    logs = logs_of(
        losses.BinaryCrossentropy(from_logits=True), [metrics.Precision()], BIN, LOGIT[:, None]
    )
    close(logs["precision"], skm.precision_score(BIN, LOGIT > 0.5))


# ------------------------------------------------------------------ end to end


class Sigmoid(eqx.Module):
    """A fixed logistic regression: one probability per example, shape (1,) or ()."""

    weight: jax.Array
    squeeze: bool = eqx.field(static=True)
    logits: bool = eqx.field(static=True)

    def __call__(self, x):
        z = x @ self.weight
        out = z if self.logits else jax.nn.sigmoid(z)
        return out[0] if self.squeeze else out


def binary_data():
    x = np.stack([LOGIT, np.ones(N, np.float32)], axis=1)  # z = x[:, 0] with weight (1, 0)
    return x.astype(np.float32)


METRIC_NAMES = ["accuracy", "binary_accuracy", "precision", "recall", "f1", "auc"]


def expected_binary_logs(w):
    predicted = PROB > 0.5
    return {
        "accuracy": skm.accuracy_score(BIN, predicted, sample_weight=w),
        "binary_accuracy": skm.accuracy_score(BIN, predicted, sample_weight=w),
        "precision": skm.precision_score(BIN, predicted, sample_weight=w),
        "recall": skm.recall_score(BIN, predicted, sample_weight=w),
        "f1": skm.f1_score(BIN, predicted, sample_weight=w),
        "auc": skm.roc_auc_score(BIN, PROB, sample_weight=w),
    }


@pytest.mark.parametrize(
    "squeeze,logits,label_shape",
    [
        (False, False, (N,)),
        (False, False, (N, 1)),
        (True, False, (N,)),
        (False, True, (N,)),
    ],
    ids=["out(n,1)-labels(n)", "out(n,1)-labels(n,1)", "out(n)-labels(n)", "logits(n,1)"],
)
def test_sigmoid_model_evaluate_and_fit_logs_match_sklearn(squeeze, logits, label_shape):
    weight = jnp.asarray([[1.0], [0.0]], jnp.float32)
    model = elegy.Model(
        module=Sigmoid(weight, squeeze, logits),
        loss=losses.BinaryCrossentropy(from_logits=logits),
        metrics=METRIC_NAMES,
        optimizer=optax.sgd(0.0),  # fit changes nothing: its logs are on fixed predictions
    )
    x, y = binary_data(), BIN.reshape(label_shape)
    predictions = np.asarray(model.predict(x, batch_size=16))
    np.testing.assert_allclose(predictions.reshape(-1), LOGIT if logits else PROB, rtol=1e-6)
    for w in WEIGHTS:
        logs = model.evaluate(x, y, batch_size=16, sample_weight=w, verbose=0)
        for name, expected in expected_binary_logs(w).items():
            tolerance = 1e-2 if name == "auc" else 1e-5  # AUC: 200 thresholds vs exact
            np.testing.assert_allclose(logs[name], expected, atol=tolerance, err_msg=name)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for name, expected in expected_binary_logs(None).items():
        tolerance = 1e-2 if name == "auc" else 1e-5
        np.testing.assert_allclose(history.history[name][-1], expected, atol=tolerance)


def test_binary_scores_per_position_keep_their_last_axis_of_one():
    """(n, t, 1) scores with (n, t, 1) labels: one binary score per position, thresholded
    at 0.5, not read as t classes."""
    y_true = np.array([[1, 0, 1], [0, 1, 1]], np.float32)[..., None]
    y_pred = np.array([[0.9, 0.2, 0.3], [0.6, 0.8, 0.7]], np.float32)[..., None]
    assert value(metrics.Accuracy(), y_true, y_pred, batches=(1, 1)) == pytest.approx(4 / 6)
