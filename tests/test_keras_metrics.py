"""Issue 18: every class of `keras.metrics` exists here and gives Keras' value.

Owned by the metrics engineer. The losses engineer owns the regression and
probabilistic metrics (listed in `LOSSES_OWNED`) and tests them in
tests/test_keras_regression_metrics.py; the enumeration below notices a class Keras adds later.

Each case feeds the same inputs, in two batches with sample weights, to Keras 3 (the
jax backend) and to our metric, and compares the accumulated values within 1e-5
relative, in float32.
"""

import inspect
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: it reads this once
import keras  # noqa: E402

from eqx_elegy import metrics  # noqa: E402
from eqx_elegy._losses_and_metrics import LossesAndMetrics  # noqa: E402

# The classes of keras.metrics the losses engineer implements (issue 18's split).
LOSSES_OWNED = {
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalHinge",
    "ConcordanceCorrelation",
    "CosineSimilarity",
    "Hinge",
    "KLDivergence",
    "LogCoshError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredError",
    "MeanSquaredLogarithmicError",
    "PearsonCorrelation",
    "Poisson",
    "R2Score",
    "RootMeanSquaredError",
    "SparseCategoricalCrossentropy",
    "SquaredHinge",
}
# The classes of keras.metrics this file checks.
MINE = {
    "AUC",
    "Accuracy",
    "BinaryAccuracy",
    "BinaryIoU",
    "CategoricalAccuracy",
    "F1Score",
    "FBetaScore",
    "FalseNegatives",
    "FalsePositives",
    "IoU",
    "Mean",
    "MeanIoU",
    "MeanMetricWrapper",
    "OneHotIoU",
    "OneHotMeanIoU",
    "Precision",
    "PrecisionAtRecall",
    "Recall",
    "RecallAtPrecision",
    "SensitivityAtSpecificity",
    "SparseCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy",
    "SpecificityAtSensitivity",
    "Sum",
    "TopKCategoricalAccuracy",
    "TrueNegatives",
    "TruePositives",
}


def keras_metric_classes() -> set[str]:
    return {
        name
        for name, obj in vars(keras.metrics).items()
        if inspect.isclass(obj)
        and issubclass(obj, keras.metrics.Metric)
        and obj is not keras.metrics.Metric
    }


def test_every_keras_metric_class_is_accounted_for():
    assert keras.backend.backend() == "jax"
    assert not MINE & LOSSES_OWNED
    missing = keras_metric_classes() - MINE - LOSSES_OWNED
    assert not missing, f"keras.metrics has classes nobody implements yet: {sorted(missing)}"
    assert not (MINE | LOSSES_OWNED) - keras_metric_classes()
    assert len(keras_metric_classes()) == 45


@pytest.mark.parametrize("name", sorted(MINE))
def test_class_exists_with_keras_default_name(name):
    ours = getattr(metrics, name)
    assert issubclass(ours, metrics.Metric)
    required = {
        "IoU": (3, [0]),
        "MeanIoU": (3,),
        "OneHotIoU": (3, [0]),
        "OneHotMeanIoU": (3,),
        "PrecisionAtRecall": (0.5,),
        "RecallAtPrecision": (0.5,),
        "SensitivityAtSpecificity": (0.5,),
        "SpecificityAtSensitivity": (0.5,),
        "MeanMetricWrapper": (jnp.subtract,),
    }.get(name, ())
    keras_name = getattr(keras.metrics, name)(*required).name
    if name == "MeanMetricWrapper":  # Keras names it after the class, we after `fn`
        assert ours(*required).name == "subtract" and keras_name == "mean_metric_wrapper"
    else:
        assert ours(*required).name == keras_name


# ---------------------------------------------------------------- fixed inputs

N, C = 24, 5
SPLIT = 10  # two batches: 10 and 14 examples
rng = np.random.default_rng(18)
BIN = rng.integers(0, 2, size=N).astype(np.float32)
BIN[:2] = [0, 1]
LOGIT = (1.5 * (2 * BIN - 1) + rng.normal(size=N)).astype(np.float32)
PROB = (1 / (1 + np.exp(-LOGIT.astype(np.float64)))).astype(np.float32)
IDS = rng.integers(0, C, size=N).astype(np.int32)
IDS[:C] = np.arange(C)
ONE_HOT = np.eye(C, dtype=np.float32)[IDS]
SCORES = (2.0 * ONE_HOT + rng.normal(size=(N, C))).astype(np.float32)
SOFTMAX = np.asarray(jax.nn.softmax(SCORES, axis=-1))
MULTI = rng.integers(0, 2, size=(N, C)).astype(np.float32)
MULTI_LOGITS = (1.5 * (2 * MULTI - 1) + rng.normal(size=(N, C))).astype(np.float32)
MULTI_PROBS = (1 / (1 + np.exp(-MULTI_LOGITS.astype(np.float64)))).astype(np.float32)
PRED_IDS = np.where(rng.uniform(size=N) < 0.6, IDS, rng.integers(0, C, size=N)).astype(np.int32)
SORTED_IDS = np.argsort(-SCORES, axis=-1).astype(np.int32)
SEG_TRUE = rng.integers(0, C, size=(N, 3)).astype(np.int32)
SEG_PRED = np.where(rng.uniform(size=(N, 3)) < 0.5, SEG_TRUE, rng.integers(0, C, size=(N, 3)))
SEG_PRED = SEG_PRED.astype(np.int32)
SEG_OUT_OF_RANGE = SEG_TRUE.copy()
SEG_OUT_OF_RANGE[::4, 0] = C  # ids outside [0, C) are skipped
W = rng.uniform(0.0, 2.0, size=N).astype(np.float32)
# Keras' IoU family flattens labels and weights alike, so it takes one weight per element.
W_SEG = rng.uniform(0.0, 2.0, size=(N, 3)).astype(np.float32)
W_MULTI = rng.uniform(0.0, 2.0, size=(N, C)).astype(np.float32)


def batches():
    return [slice(0, SPLIT), slice(SPLIT, N)]


def keras_value(metric, y_true, y_pred, sample_weight, values_only=False):
    with warnings.catch_warnings(), jax.numpy_dtype_promotion("standard"):
        warnings.simplefilter("ignore")  # Keras warns about int64 on jax
        for part in batches():
            sw = None if sample_weight is None else sample_weight[part]
            if values_only:
                metric.update_state(y_pred[part], sample_weight=sw)
            else:
                metric.update_state(y_true[part], y_pred[part], sample_weight=sw)
        return np.asarray(metric.result())


def our_value(metric, y_true, y_pred, sample_weight):
    @jax.jit
    def go(y_true, y_pred, sample_weight):
        state = metric.init()
        for part in batches():
            sw = None if sample_weight is None else sample_weight[part]
            yt = None if y_true is None else y_true[part]
            state = metric.update(state, yt, y_pred[part], sw)
        return metric.compute(state)

    out = go(y_true, y_pred, sample_weight)
    for leaf in jax.tree.leaves(metric.init()):
        assert leaf.dtype == jnp.float32
    assert out.dtype == jnp.float32
    return np.asarray(out)


def squared_error(y_true, y_pred, power=2.0):
    return jnp.mean(jnp.abs(y_true - y_pred) ** power, axis=-1)


# id -> (class name, args, keyword args for both, keyword args for ours only, y_true, y_pred)
CASES: dict[str, tuple] = {
    "accuracy_ids": ("Accuracy", (), {}, {}, IDS, PRED_IDS),
    "accuracy_ids_column": ("Accuracy", (), {}, {}, IDS[:, None], PRED_IDS[:, None]),
    "binary_accuracy": ("BinaryAccuracy", (), {}, {}, BIN[:, None], PROB[:, None]),
    "binary_accuracy_threshold": (
        "BinaryAccuracy",
        (),
        {"threshold": 0.7},
        {},
        BIN[:, None],
        PROB[:, None],
    ),
    "binary_accuracy_multi_label": ("BinaryAccuracy", (), {}, {}, MULTI, MULTI_PROBS),
    "categorical_accuracy": ("CategoricalAccuracy", (), {}, {}, ONE_HOT, SOFTMAX),
    "sparse_categorical_accuracy": ("SparseCategoricalAccuracy", (), {}, {}, IDS, SOFTMAX),
    "sparse_categorical_accuracy_column": (
        "SparseCategoricalAccuracy",
        (),
        {},
        {},
        IDS[:, None],
        SOFTMAX,
    ),
    "top_k_default": ("TopKCategoricalAccuracy", (), {}, {}, ONE_HOT, SOFTMAX),
    "top_k_2": ("TopKCategoricalAccuracy", (2,), {}, {}, ONE_HOT, SOFTMAX),
    "top_k_1": ("TopKCategoricalAccuracy", (1,), {}, {}, ONE_HOT, SCORES),
    "sparse_top_k_2": ("SparseTopKCategoricalAccuracy", (2,), {}, {}, IDS, SOFTMAX),
    "sparse_top_k_3_column": ("SparseTopKCategoricalAccuracy", (3,), {}, {}, IDS[:, None], SCORES),
    "sparse_top_k_sorted_ids": (
        "SparseTopKCategoricalAccuracy",
        (2,),
        {"from_sorted_ids": True},
        {},
        IDS,
        SORTED_IDS,
    ),
    "f1_none": ("F1Score", (), {}, {"num_classes": C}, ONE_HOT, SOFTMAX),
    "f1_micro": ("F1Score", ("micro",), {}, {}, ONE_HOT, SOFTMAX),
    "f1_macro": ("F1Score", ("macro",), {}, {"num_classes": C}, ONE_HOT, SOFTMAX),
    "f1_weighted_threshold": (
        "F1Score",
        ("weighted", 0.4),
        {},
        {"num_classes": C},
        MULTI,
        MULTI_PROBS,
    ),
    "f1_binary_column_threshold": ("F1Score", (None, 0.5), {}, {}, BIN[:, None], PROB[:, None]),
    "fbeta_2_macro": ("FBetaScore", ("macro", 2.0), {}, {"num_classes": C}, ONE_HOT, SOFTMAX),
    "fbeta_half_micro_threshold": (
        "FBetaScore",
        ("micro", 0.5, 0.3),
        {},
        {},
        MULTI,
        MULTI_PROBS,
    ),
    "fbeta_weighted": ("FBetaScore", ("weighted", 1.5), {}, {"num_classes": C}, ONE_HOT, SCORES),
    "mean_metric_wrapper": ("MeanMetricWrapper", (squared_error,), {}, {}, MULTI, MULTI_PROBS),
    "mean_metric_wrapper_kwargs": (
        "MeanMetricWrapper",
        (squared_error,),
        {"power": 3.0},
        {},
        MULTI,
        MULTI_PROBS,
    ),
    "iou": ("IoU", (C, [0, 2, 4]), {}, {}, SEG_TRUE, SEG_PRED),
    "iou_ignore_class": ("IoU", (C, [1, 2]), {"ignore_class": 2}, {}, SEG_TRUE, SEG_PRED),
    "iou_out_of_range": ("IoU", (C, [0, 1, 2]), {}, {}, SEG_OUT_OF_RANGE, SEG_PRED),
    "iou_dense_pred": ("IoU", (C, [0, 3]), {"sparse_y_pred": False}, {}, IDS, SOFTMAX),
    "mean_iou": ("MeanIoU", (C,), {}, {}, SEG_TRUE, SEG_PRED),
    "mean_iou_dense": (
        "MeanIoU",
        (C,),
        {"sparse_y_true": False, "sparse_y_pred": False},
        {},
        ONE_HOT,
        SOFTMAX,
    ),
    "one_hot_iou": ("OneHotIoU", (C, [1, 3]), {}, {}, ONE_HOT, SOFTMAX),
    "one_hot_iou_sparse_pred": (
        "OneHotIoU",
        (C, [0, 4]),
        {"sparse_y_pred": True},
        {},
        ONE_HOT,
        PRED_IDS,
    ),
    "one_hot_mean_iou": ("OneHotMeanIoU", (C,), {}, {}, ONE_HOT, SCORES),
    "one_hot_mean_iou_ignore": ("OneHotMeanIoU", (C,), {"ignore_class": 0}, {}, ONE_HOT, SCORES),
    "binary_iou": ("BinaryIoU", (), {}, {}, BIN, PROB),
    "binary_iou_positive_threshold": ("BinaryIoU", ([1], 0.3), {}, {}, MULTI, MULTI_PROBS),
}
for _counter in ("TruePositives", "FalsePositives", "TrueNegatives", "FalseNegatives"):
    CASES |= {
        f"{_counter}": (_counter, (), {}, {}, BIN[:, None], PROB[:, None]),
        f"{_counter}_thresholds": (_counter, ([0.25, 0.5, 0.75],), {}, {}, MULTI, MULTI_PROBS),
        f"{_counter}_even": (_counter, ([0.0, 0.5, 1.0],), {}, {}, MULTI, MULTI_PROBS),
    }
for _cls in ("Precision", "Recall"):
    CASES |= {
        f"{_cls}": (_cls, (), {}, {}, BIN[:, None], PROB[:, None]),
        f"{_cls}_multi_label": (_cls, (), {}, {}, MULTI, MULTI_PROBS),
        f"{_cls}_one_hot": (_cls, (), {}, {}, ONE_HOT, SOFTMAX),
        f"{_cls}_thresholds": (_cls, ([0.3, 0.5, 0.9],), {}, {}, MULTI, MULTI_PROBS),
        f"{_cls}_even_thresholds": (_cls, ([0, 0.25, 0.5, 0.75, 1],), {}, {}, MULTI, MULTI_PROBS),
        f"{_cls}_top_k": (_cls, (None, 2), {}, {}, ONE_HOT, SOFTMAX),
        f"{_cls}_top_k_threshold": (_cls, (0.2, 2), {}, {}, MULTI, MULTI_PROBS),
        f"{_cls}_class_id": (_cls, (None, None, 2), {}, {}, MULTI, MULTI_PROBS),
        f"{_cls}_top_k_class_id": (_cls, (None, 1, 3), {}, {}, ONE_HOT, SCORES),
    }
for _cls, _value in [
    ("PrecisionAtRecall", 0.6),
    ("RecallAtPrecision", 0.7),
    ("SensitivityAtSpecificity", 0.5),
    ("SpecificityAtSensitivity", 0.8),
]:
    CASES |= {
        f"{_cls}": (_cls, (_value,), {}, {}, BIN[:, None], PROB[:, None]),
        f"{_cls}_multi_label_50": (_cls, (_value, 50), {}, {}, MULTI, MULTI_PROBS),
        f"{_cls}_one_threshold": (_cls, (_value, 1), {}, {}, BIN[:, None], PROB[:, None]),
        f"{_cls}_class_id": (_cls, (_value, 200, 1), {}, {}, MULTI, MULTI_PROBS),
    }
CASES |= {
    "auc": ("AUC", (), {}, {}, BIN[:, None], PROB[:, None]),
    "auc_pr": ("AUC", (200, "PR"), {}, {}, MULTI, MULTI_PROBS),
    "auc_pr_minoring": ("AUC", (37, "PR", "minoring"), {}, {}, MULTI, MULTI_PROBS),
    "auc_roc_majoring": ("AUC", (37, "ROC", "majoring"), {}, {}, MULTI, MULTI_PROBS),
    "auc_prgain": ("AUC", (100, "PRGAIN"), {}, {}, BIN[:, None], PROB[:, None]),
    "auc_prgain_minoring": ("AUC", (100, "PRGAIN", "minoring"), {}, {}, MULTI, MULTI_PROBS),
    "auc_uneven_thresholds": (
        "AUC",
        (),
        {"thresholds": [0.1, 0.4, 0.45, 0.9]},
        {},
        MULTI,
        MULTI_PROBS,
    ),
    "auc_even_thresholds_pr": (
        "AUC",
        (),
        {"thresholds": [0.25, 0.5, 0.75], "curve": "PR"},
        {},
        MULTI,
        MULTI_PROBS,
    ),
    "auc_multi_label": ("AUC", (), {"multi_label": True, "num_labels": C}, {}, MULTI, MULTI_PROBS),
    "auc_multi_label_pr_weights": (
        "AUC",
        (60, "PR"),
        {"multi_label": True, "num_labels": C, "label_weights": [1.0, 0.5, 2.0, 0.0, 1.0]},
        {},
        MULTI,
        MULTI_PROBS,
    ),
    "auc_label_weights": (
        "AUC",
        (),
        {"label_weights": [1.0, 0.5, 2.0, 0.0, 1.0]},
        {},
        MULTI,
        MULTI_PROBS,
    ),
    "auc_from_logits": ("AUC", (), {"from_logits": True}, {}, MULTI, MULTI_LOGITS),
    "auc_one_hot": ("AUC", (50,), {}, {}, ONE_HOT, SOFTMAX),
}


def weights_for(case):
    """Per-example weights, or per-element ones where Keras' IoU flattens the labels."""
    name, _, kwargs, _, y_true, _ = CASES[case]
    sparse_labels = kwargs.get("sparse_y_true", not name.startswith("OneHot"))
    if "IoU" in name and sparse_labels and y_true.ndim == 2:
        return {(N, 3): W_SEG, (N, C): W_MULTI}[y_true.shape]
    return W


# Without sample weights: the first case of each class.
UNWEIGHTED = sorted({CASES[case][0]: case for case in reversed(list(CASES))}.values())


@pytest.mark.parametrize(
    "case, weighted",
    [(case, True) for case in sorted(CASES)] + [(case, False) for case in UNWEIGHTED],
    ids=[f"{case}-weighted" for case in sorted(CASES)]
    + [f"{case}-unweighted" for case in UNWEIGHTED],
)
def test_value_equals_keras(case, weighted):
    name, args, kwargs, ours_only, y_true, y_pred = CASES[case]
    keras_kwargs = {"dtype": "float32"} if "IoU" in name else {}  # Keras' IoU counts in int
    weights = weights_for(case) if weighted else None
    expected = keras_value(
        getattr(keras.metrics, name)(*args, **kwargs, **keras_kwargs), y_true, y_pred, weights
    )
    ours = getattr(metrics, name)(*args, **kwargs, **ours_only)
    got = our_value(ours, y_true, y_pred, weights)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["Mean", "Sum"])
def test_mean_and_sum_equal_keras(name):
    for values in (PROB, MULTI_PROBS, SCORES.reshape(N, 1, C)):
        expected = keras_value(getattr(keras.metrics, name)(), None, values, W, values_only=True)
        np.testing.assert_allclose(
            our_value(getattr(metrics, name)(), None, values, W), expected, rtol=1e-5
        )
        expected = keras_value(getattr(keras.metrics, name)(), None, values, None, True)
        np.testing.assert_allclose(
            our_value(getattr(metrics, name)(), None, values, None), expected, rtol=1e-5
        )


# ------------------------------------------------- shape rules for every metric

# Metrics of one binary label per element, built for probabilities: the four binary
# shape combinations give Keras' value on (n, 1) labels and outputs.
BINARY = {
    "BinaryAccuracy": lambda **kw: metrics.BinaryAccuracy(**kw),
    "TruePositives": lambda **kw: metrics.TruePositives([0.3, 0.6], **kw),
    "FalsePositives": lambda **kw: metrics.FalsePositives(**kw),
    "TrueNegatives": lambda **kw: metrics.TrueNegatives(**kw),
    "FalseNegatives": lambda **kw: metrics.FalseNegatives([0.0, 0.5, 1.0], **kw),
    "Precision": lambda **kw: metrics.Precision(**kw),
    "Recall": lambda **kw: metrics.Recall(**kw),
    "PrecisionAtRecall": lambda **kw: metrics.PrecisionAtRecall(0.6, **kw),
    "RecallAtPrecision": lambda **kw: metrics.RecallAtPrecision(0.7, **kw),
    "SensitivityAtSpecificity": lambda **kw: metrics.SensitivityAtSpecificity(0.5, **kw),
    "SpecificityAtSensitivity": lambda **kw: metrics.SpecificityAtSensitivity(0.8, **kw),
    "AUC": lambda **kw: metrics.AUC(**kw),
    "F1Score": lambda **kw: metrics.F1Score(threshold=0.5, **kw),
    "FBetaScore": lambda **kw: metrics.FBetaScore(beta=2.0, threshold=0.5, **kw),
    "BinaryIoU": lambda **kw: metrics.BinaryIoU(**kw),
}
KERAS_BINARY = {
    "F1Score": lambda: keras.metrics.F1Score(threshold=0.5),
    "FBetaScore": lambda: keras.metrics.FBetaScore(beta=2.0, threshold=0.5),
    "TruePositives": lambda: keras.metrics.TruePositives([0.3, 0.6]),
    "FalseNegatives": lambda: keras.metrics.FalseNegatives([0.0, 0.5, 1.0]),
    "PrecisionAtRecall": lambda: keras.metrics.PrecisionAtRecall(0.6),
    "RecallAtPrecision": lambda: keras.metrics.RecallAtPrecision(0.7),
    "SensitivityAtSpecificity": lambda: keras.metrics.SensitivityAtSpecificity(0.5),
    "SpecificityAtSensitivity": lambda: keras.metrics.SpecificityAtSensitivity(0.8),
    "BinaryIoU": lambda: keras.metrics.BinaryIoU(dtype="float32"),
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_shapes_all_give_keras_value(name):
    keras_metric = KERAS_BINARY.get(name, getattr(keras.metrics, name))()
    expected = keras_value(keras_metric, BIN[:, None], PROB[:, None], W)
    for labels in (BIN, BIN[:, None]):
        for scores in (PROB, PROB[:, None]):
            got = our_value(BINARY[name](), labels, scores, W)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_logits_with_from_logits_equal_probabilities(name):
    probabilities = our_value(BINARY[name](), BIN, PROB, W)
    logits = our_value(BINARY[name](from_logits=True), BIN, LOGIT, W)
    np.testing.assert_allclose(logits, probabilities, rtol=1e-5, atol=1e-7)


# Metrics that score label columns: class ids give the value of their one-hot rows.
COLUMNS = {
    "TruePositives": lambda: metrics.TruePositives(),
    "FalseNegatives": lambda: metrics.FalseNegatives([0.2, 0.4]),
    "Precision": lambda: metrics.Precision(),
    "Precision_top_k": lambda: metrics.Precision(top_k=1),
    "Recall_class_id": lambda: metrics.Recall(class_id=2),
    "Recall_macro": lambda: metrics.Recall(top_k=1, average="macro", num_classes=C),
    "PrecisionAtRecall": lambda: metrics.PrecisionAtRecall(0.5, class_id=1),
    "AUC": lambda: metrics.AUC(),
    "AUC_multi_label": lambda: metrics.AUC(multi_label=True, num_labels=C),
    "F1Score": lambda: metrics.F1Score("macro", num_classes=C),
    "FBetaScore": lambda: metrics.FBetaScore("weighted", 0.5, num_classes=C),
    "F1": lambda: metrics.F1(num_classes=C),
}


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_class_ids_equal_their_one_hot_rows(name):
    expected = our_value(COLUMNS[name](), ONE_HOT, SOFTMAX, W)
    for labels in (IDS, IDS[:, None]):
        np.testing.assert_allclose(
            our_value(COLUMNS[name](), labels, SOFTMAX, W), expected, rtol=1e-6
        )


def test_sparse_and_one_hot_families_agree():
    pairs = [
        (metrics.SparseTopKCategoricalAccuracy(2), metrics.TopKCategoricalAccuracy(2)),
        (metrics.SparseCategoricalAccuracy(), metrics.CategoricalAccuracy()),
        (metrics.IoU(C, [0, 2]), metrics.OneHotIoU(C, [0, 2])),
        (metrics.MeanIoU(C), metrics.OneHotMeanIoU(C)),
        (metrics.Accuracy(), metrics.Accuracy()),
    ]
    for sparse, one_hot in pairs:
        expected = our_value(one_hot, ONE_HOT, SOFTMAX, W)
        # IoU's class ids with class scores: the scores' argmax is the prediction.
        np.testing.assert_allclose(our_value(sparse, IDS, SOFTMAX, W), expected, rtol=1e-6)
        np.testing.assert_allclose(our_value(sparse, IDS[:, None], SOFTMAX, W), expected, rtol=1e-6)


def test_iou_per_example_weights_weigh_every_element():
    repeated = np.repeat(W[:, None], 3, axis=1)
    for metric in (metrics.IoU(C, [0, 1, 4]), metrics.MeanIoU(C)):
        np.testing.assert_allclose(
            our_value(metric, SEG_TRUE, SEG_PRED, W),
            our_value(metric, SEG_TRUE, SEG_PRED, repeated),
            rtol=1e-6,
        )


# ------------------------------------------------------------- names in metrics=

NEEDS_ARGUMENTS = {
    "IoU",
    "MeanIoU",
    "OneHotIoU",
    "OneHotMeanIoU",
    "PrecisionAtRecall",
    "RecallAtPrecision",
    "SensitivityAtSpecificity",
    "SpecificityAtSensitivity",
    "MeanMetricWrapper",
}


def snake(name):
    """Keras' to_snake_case."""
    import re

    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


@pytest.mark.parametrize("name", sorted(MINE))
def test_keras_string_names_resolve(name):
    for spelling in (name, snake(name)):
        if name in NEEDS_ARGUMENTS:
            with pytest.raises(TypeError):  # Keras cannot build it from its name either
                keras.metrics.get(spelling)
            with pytest.raises(ValueError, match=rf"{spelling!r} in `metrics` needs arguments"):
                LossesAndMetrics.build(None, spelling)
            continue
        assert type(keras.metrics.get(spelling)).__name__ == name
        (term,) = LossesAndMetrics.build(None, [spelling]).metrics
        expected = "F1" if name == "F1Score" else name  # F1: F1Score averaged over classes
        assert type(term.metric).__name__ == expected and term.log_name == spelling


def test_per_class_names_log_one_number():
    (term,) = LossesAndMetrics.build(None, ["f_beta_score"]).metrics
    assert type(term.metric) is metrics.FBetaScore and term.metric.average == "macro"
    (term,) = LossesAndMetrics.build(None, ["f1_score"]).metrics
    assert term.metric.average == "macro" and term.metric.name == "f1_score"


def test_a_metric_with_several_values_is_refused_in_a_model():
    lam = LossesAndMetrics.build(None, [metrics.Precision([0.3, 0.5])])
    with pytest.raises(
        ValueError,
        match=r"Metric 'precision' \(Precision\) gives a value of shape \(2,\).*single threshold",
    ):
        lam(lam.init(), BIN, PROB, None, None, None, batch_size=N)
