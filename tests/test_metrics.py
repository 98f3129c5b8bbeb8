"""Every metric against numpy transcriptions of Keras 3's formulas, whole-data and
accumulated over uneven batches."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

import eqx_elegy as elegy
from eqx_elegy import losses, metrics
from eqx_elegy._losses_and_metrics import LossesAndMetrics

EPS = 1e-7
N, C = 16, 4
BATCHES = (5, 9, 2)  # uneven, last one partial

rng = np.random.default_rng(1)
LOGITS = rng.normal(size=(N, C)).astype(np.float32)
IDS = rng.integers(0, C, size=N)
IDS[:C] = np.arange(C)  # every class present
ONE_HOT = np.eye(C, dtype=np.float32)[IDS]
PROBS = np.asarray(jax.nn.softmax(LOGITS, axis=-1))
MULTI_LABELS = rng.integers(0, 2, size=(N, C)).astype(np.float32)
SIGMOID = (1 / (1 + np.exp(-LOGITS))).astype(np.float32)
BIN_LABELS = rng.integers(0, 2, size=N).astype(np.float32)
BIN_PROBS = rng.uniform(size=N).astype(np.float32)
REAL_TRUE = rng.normal(size=(N, 3)).astype(np.float32)
REAL_PRED = rng.normal(size=(N, 3)).astype(np.float32)
INT_TRUE = rng.integers(0, 3, size=N)
INT_PRED = rng.integers(0, 3, size=N)
W = rng.uniform(0.0, 2.0, size=N).astype(np.float32)


def wmean(values, w):
    """Keras' Mean: per-example values (extra axes averaged) weighted by w."""
    values = values.reshape(len(values), -1).mean(-1)
    w = np.ones(len(values)) if w is None else w
    return (values * w).sum() / w.sum()


def confusion(t, p, w):
    w = np.ones(len(t)) if w is None else w
    w = w.reshape((-1,) + (1,) * (t.ndim - 1))
    return (w * t * p).sum(0), (w * (1 - t) * p).sum(0), (w * t * (1 - p)).sum(0)


def no_nan(a, b):
    return np.where(b == 0, 0.0, a / np.where(b == 0, 1, b))


def average(per_class, support, how):
    if how == "micro":
        return per_class
    if how == "macro":
        return per_class.mean()
    return (per_class * support).sum() / support.sum()


def precision_ref(t, p, w, how="micro"):
    tp, fp, fn = confusion(t, p, w)
    if how == "micro":
        tp, fp = tp.sum(), fp.sum()
    return average(no_nan(tp, tp + fp), tp + fn, how)


def recall_ref(t, p, w, how="micro"):
    tp, fp, fn = confusion(t, p, w)
    if how == "micro":
        tp, fn = tp.sum(), fn.sum()
    return average(no_nan(tp, tp + fn), tp + fn, how)


def f1_ref(t, p, w, how):
    """Keras' FBetaScore.result with beta=1."""
    tp, fp, fn = confusion(t, p, w)
    if how == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    prec = tp / (tp + fp + EPS)
    rec = tp / (tp + fn + EPS)
    f1 = 2 * prec * rec / (prec + rec + EPS)
    if how == "weighted":
        support = tp + fn
        return (f1 * support / (support.sum() + EPS)).sum()
    return f1.mean()


def top1(scores):
    return (scores >= scores.max(-1, keepdims=True)).astype(np.float64)


def auc_ref(y, p, w, curve="ROC", summation="interpolation", n=200):
    """Keras' AUC from counts at n thresholds -eps, 1/(n-1), ..., 1+eps."""
    thresholds = np.array([-EPS] + [(i + 1) / (n - 1) for i in range(n - 2)] + [1 + EPS])
    w = np.ones(len(y)) if w is None else w
    w = np.broadcast_to(w.reshape((-1,) + (1,) * (y.ndim - 1)), y.shape).reshape(-1)
    y, p = y.reshape(-1), p.reshape(-1)
    above = p[None, :] > thresholds[:, None]
    tp = (w * y * above).sum(1)
    fp = (w * (1 - y) * above).sum(1)
    fn = (w * y).sum() - tp
    tn = (w * (1 - y)).sum() - fp
    if curve == "PR" and summation == "interpolation":
        pos = tp + fp
        dtp, dp = tp[:-1] - tp[1:], pos[:-1] - pos[1:]
        slope = no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * pos[1:]
        ok = (pos[:-1] > 0) & (pos[1:] > 0)
        ratio = np.where(ok, no_nan(pos[:-1], np.maximum(pos[1:], 0)), 1.0)
        return no_nan(
            slope * (dtp + intercept * np.log(ratio)), np.maximum(tp[1:] + fn[1:], 0)
        ).sum()
    rec = no_nan(tp, tp + fn)
    x, h = (no_nan(fp, fp + tn), rec) if curve == "ROC" else (rec, no_nan(tp, tp + fp))
    heights = {
        "interpolation": (h[:-1] + h[1:]) / 2,
        "minoring": np.minimum(h[:-1], h[1:]),
        "majoring": np.maximum(h[:-1], h[1:]),
    }[summation]
    return ((x[:-1] - x[1:]) * heights).sum()


# name -> (metric, y_true, y_pred, reference(y_true, y_pred, w))
CASES = {
    "accuracy_ids_logits": (
        metrics.Accuracy(),
        IDS,
        LOGITS,
        lambda t, p, w: wmean(p.argmax(-1) == t, w),
    ),
    "accuracy_ids_trailing_axis": (
        metrics.Accuracy(),
        IDS[:, None],
        LOGITS,
        lambda t, p, w: wmean(p.argmax(-1) == t[:, 0], w),
    ),
    "accuracy_exact": (metrics.Accuracy(), INT_TRUE, INT_PRED, lambda t, p, w: wmean(t == p, w)),
    "sparse_categorical_accuracy": (
        metrics.SparseCategoricalAccuracy(),
        IDS,
        PROBS,
        lambda t, p, w: wmean(p.argmax(-1) == t, w),
    ),
    "categorical_accuracy": (
        metrics.CategoricalAccuracy(),
        ONE_HOT,
        PROBS,
        lambda t, p, w: wmean(p.argmax(-1) == t.argmax(-1), w),
    ),
    "binary_accuracy": (
        metrics.BinaryAccuracy(),
        BIN_LABELS,
        BIN_PROBS,
        lambda t, p, w: wmean((p > 0.5) == t, w),
    ),
    "binary_accuracy_multi_label": (
        metrics.BinaryAccuracy(threshold=0.7),
        MULTI_LABELS,
        SIGMOID,
        lambda t, p, w: wmean((p > 0.7) == t, w),
    ),
    "mean_squared_error": (
        metrics.MeanSquaredError(),
        REAL_TRUE,
        REAL_PRED,
        lambda t, p, w: wmean((t - p) ** 2, w),
    ),
    "mean_absolute_error": (
        metrics.MeanAbsoluteError(),
        REAL_TRUE,
        REAL_PRED,
        lambda t, p, w: wmean(np.abs(t - p), w),
    ),
    "mean_of_y_pred": (metrics.Mean(), None, REAL_PRED, lambda t, p, w: wmean(p, w)),
    "sum_of_y_pred": (
        metrics.Sum(),
        None,
        REAL_PRED,
        lambda t, p, w: (p.sum(-1) * (1 if w is None else w)).sum(),
    ),
    "precision_binary": (
        metrics.Precision(),
        BIN_LABELS,
        BIN_PROBS,
        lambda t, p, w: precision_ref(t, p > 0.5, w),
    ),
    "precision_multi_label": (
        metrics.Precision(0.5),
        MULTI_LABELS,
        SIGMOID,
        lambda t, p, w: precision_ref(t, p > 0.5, w),
    ),
    "precision_macro_ids": (
        metrics.Precision(top_k=1, average="macro", num_classes=C),
        IDS,
        LOGITS,
        lambda t, p, w: precision_ref(np.eye(C)[t], top1(p), w, "macro"),
    ),
    "recall_binary": (
        metrics.Recall(),
        BIN_LABELS,
        BIN_PROBS,
        lambda t, p, w: recall_ref(t, p > 0.5, w),
    ),
    "recall_weighted_one_hot": (
        metrics.Recall(top_k=1, average="weighted", num_classes=C),
        ONE_HOT,
        PROBS,
        lambda t, p, w: recall_ref(t, top1(p), w, "weighted"),
    ),
    "f1_binary": (
        metrics.F1(),
        BIN_LABELS,
        BIN_PROBS,
        lambda t, p, w: f1_ref(t[:, None], p[:, None] > 0.5, w, "macro"),
    ),
    "f1_micro_one_hot": (
        metrics.F1(average="micro"),
        ONE_HOT,
        PROBS,
        lambda t, p, w: f1_ref(t, top1(p), w, "micro"),
    ),
    "f1_macro_ids": (
        metrics.F1(num_classes=C),
        IDS,
        LOGITS,
        lambda t, p, w: f1_ref(np.eye(C)[t], top1(p), w, "macro"),
    ),
    "f1_weighted_threshold": (
        metrics.F1(threshold=0.3, average="weighted", num_classes=C),
        MULTI_LABELS,
        SIGMOID,
        lambda t, p, w: f1_ref(t, p > 0.3, w, "weighted"),
    ),
    "auc_roc": (metrics.AUC(), MULTI_LABELS, SIGMOID, lambda t, p, w: auc_ref(t, p, w)),
    "auc_roc_logits_majoring": (
        metrics.AUC(summation_method="majoring", from_logits=True),
        MULTI_LABELS,
        LOGITS,
        lambda t, p, w: auc_ref(t, 1 / (1 + np.exp(-p)), w, "ROC", "majoring"),
    ),
    "auc_pr": (
        metrics.AUC(curve="PR"),
        BIN_LABELS,
        BIN_PROBS,
        lambda t, p, w: auc_ref(t, p, w, "PR"),
    ),
    "auc_pr_minoring_50": (
        metrics.AUC(num_thresholds=50, curve="PR", summation_method="minoring"),
        MULTI_LABELS,
        SIGMOID,
        lambda t, p, w: auc_ref(t, p, w, "PR", "minoring", 50),
    ),
}


def accumulate(metric, y_true, y_pred, w, batches):
    """init, update over consecutive (uneven) batches, compute."""
    state, start = metric.init(), 0
    for n in batches:
        part = slice(start, start + n)
        state = metric.update(
            state,
            None if y_true is None else y_true[part],
            y_pred[part],
            None if w is None else w[part],
        )
        start += n
    return metric.compute(state)


def run(metric, y_true, y_pred, w, batches=(N,)):
    """`accumulate` as one compiled call (cheaper to compile than op-by-op)."""
    return jax.jit(lambda yt, yp, w: accumulate(metric, yt, yp, w, batches))(y_true, y_pred, w)


def run_all(weighted, batches):
    """Every case over the same batches, in one compiled call."""

    @jax.jit
    def go(data):
        return {case: accumulate(CASES[case][0], *data[case], batches) for case in data}

    w = W if weighted else None
    return go({case: (yt, yp, w) for case, (_, yt, yp, _) in CASES.items()})


@pytest.fixture(scope="module")
def results():
    return {
        "whole": run_all(False, (N,)),
        "whole_weighted": run_all(True, (N,)),
        "uneven_weighted": run_all(True, BATCHES),
    }


def reference(case, weighted):
    _, y_true, y_pred, ref = CASES[case]
    t = (
        None
        if y_true is None
        else np.asarray(y_true, np.float64 if y_true.dtype.kind == "f" else None)
    )
    return ref(t, y_pred.astype(np.float64), W if weighted else None)


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_keras_formula(results, case):
    for key, weighted in [("whole", False), ("whole_weighted", True)]:
        got = results[key][case]
        assert got.shape == () and got.dtype == jnp.float32
        np.testing.assert_allclose(got, reference(case, weighted), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_uneven_batches_equal_whole_data(results, case):
    # Batches of 5, 9 and 2 examples accumulate to the whole-data value.
    got = results["uneven_weighted"][case]
    np.testing.assert_allclose(got, reference(case, True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, results["whole_weighted"][case], rtol=1e-5, atol=1e-6)


def test_eager_and_compiled_agree():
    for case in ["f1_macro_ids"]:
        metric, y_true, y_pred, _ = CASES[case]
        np.testing.assert_allclose(
            accumulate(metric, y_true, y_pred, W, BATCHES), reference(case, True), rtol=1e-5
        )


def test_auc_agrees_with_sklearn():
    # Independent check of the threshold-count approximation.
    y, p = MULTI_LABELS.reshape(-1), SIGMOID.reshape(-1)
    roc = run(metrics.AUC(num_thresholds=1000), MULTI_LABELS, SIGMOID, None)
    np.testing.assert_allclose(roc, roc_auc_score(y, p), atol=2e-3)
    pr = run(metrics.AUC(num_thresholds=1000, curve="PR"), MULTI_LABELS, SIGMOID, None)
    np.testing.assert_allclose(pr, average_precision_score(y, p), atol=3e-2)


def test_mean_standalone_and_per_element_weights():
    mean = metrics.Mean()
    state = mean.update(
        mean.init(), np.array([1.0, 2.0, 3.0]), sample_weight=np.array([1.0, 0.0, 3.0])
    )
    np.testing.assert_allclose(mean.compute(state), 2.5)
    # Weights with the values' rank: Keras averages both per example first.
    values = np.array([[1.0, 3.0], [5.0, 7.0]])
    weights = np.array([[1.0, 0.0], [1.0, 1.0]])
    state = mean.update(mean.init(), values, sample_weight=weights)
    np.testing.assert_allclose(mean.compute(state), (0.5 + 6.0) / 1.5)
    assert float(mean.compute(mean.init())) == 0.0


def test_names():
    assert metrics.Accuracy().name == "accuracy"
    assert metrics.SparseCategoricalAccuracy().name == "sparse_categorical_accuracy"
    assert metrics.AUC().name == "auc"
    assert metrics.F1().name == "f1"
    assert metrics.MeanSquaredError().name == "mean_squared_error"
    assert metrics.Precision(name="p").name == "p"
    assert metrics.MeanMetricWrapper(losses.Huber().call, name="huber").name == "huber"


def test_state_has_explicit_dtypes_and_reinit_does_not_retrace():
    for metric, *_ in CASES.values():
        for leaf in jax.tree.leaves(metric.init()):
            assert leaf.dtype == jnp.float32 and not leaf.weak_type
    traces = []

    @jax.jit
    def step(states, yt, yp):
        traces.append(None)
        return [m.update(s, yt, yp) for m, s in zip(ms, states, strict=True)]

    ms = [metrics.Accuracy(), metrics.F1(num_classes=C), metrics.AUC(), metrics.Mean()]
    states = step([m.init() for m in ms], ONE_HOT, PROBS)
    states = step(states, ONE_HOT, PROBS)
    step([m.init() for m in ms], ONE_HOT, PROBS)
    assert len(traces) == 1


def test_loss_as_metric_averages_per_example_values():
    m = metrics.MeanMetricWrapper(losses.Huber(0.5).call, name="huber")
    e = np.abs(REAL_TRUE - REAL_PRED)
    per_example = np.where(e <= 0.5, 0.5 * e**2, 0.5 * e - 0.125).mean(-1)
    np.testing.assert_allclose(
        run(m, REAL_TRUE, REAL_PRED, W, BATCHES), (per_example * W).sum() / W.sum(), rtol=1e-5
    )


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"built for 1 class.*has 4: pass num_classes=4"):
        run(metrics.F1(), IDS, LOGITS, None)
    with pytest.raises(ValueError, match=r"built for 3 class.*pass num_classes=4"):
        run(metrics.Recall(average="macro", num_classes=3), ONE_HOT, PROBS, None)
    with pytest.raises(
        ValueError, match="average='binary' is not one of 'micro', 'macro', 'weighted'"
    ):
        metrics.Precision(average="binary")
    with pytest.raises(
        ValueError, match=r"\(16,\) and y_pred has shape \(16, 4\).*SparseCategoricalAccuracy"
    ):
        run(metrics.CategoricalAccuracy(), IDS, PROBS, None)
    with pytest.raises(ValueError, match=r"\(16, 4\) and y_pred has shape \(16, 3\)"):
        run(metrics.SparseCategoricalAccuracy(), ONE_HOT, PROBS[:, :3], None)
    with pytest.raises(ValueError, match=r"\(16, 3\) and y_pred has shape \(16, 2\)"):
        run(metrics.MeanSquaredError(), REAL_TRUE, REAL_PRED[:, :2], None)
    with pytest.raises(ValueError, match="num_thresholds=1"):
        metrics.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="curve='XY'"):
        metrics.AUC(curve="XY")
    with pytest.raises(TypeError, match="`y_true` is None"):
        run(metrics.Accuracy(), None, LOGITS, None)
    with pytest.raises(TypeError, match="must be callable"):
        metrics.MeanMetricWrapper("accuracy")  # type: ignore[arg-type]


class Scores(eqx.Module):
    """Outputs its input: the model's predictions are fixed scores."""

    def __call__(self, x):
        return x


def model_metrics():
    """Every metric family at once, as a model with class-id labels uses them."""
    return [
        "accuracy",
        "sparse_top_k_categorical_accuracy",
        "precision",
        "recall",
        "auc",
        "true_positives",
        "false_positives",
        "true_negatives",
        "false_negatives",
        "mean",
        "sum",
        metrics.SparseTopKCategoricalAccuracy(2, name="top_2"),
        metrics.Precision(top_k=1, average="macro", num_classes=C, name="macro_precision"),
        metrics.Recall(class_id=1, name="recall_1"),
        metrics.PrecisionAtRecall(0.5),
        metrics.RecallAtPrecision(0.5),
        metrics.SensitivityAtSpecificity(0.5),
        metrics.SpecificityAtSensitivity(0.5),
        metrics.AUC(60, "PR", multi_label=True, num_labels=C, name="pr_auc"),
        metrics.F1Score("weighted", num_classes=C),
        metrics.FBetaScore("micro", 2.0),
        metrics.IoU(C, [0, 2]),
        metrics.MeanIoU(C),
        metrics.BinaryIoU([1], name="binary_iou"),
    ]


def test_metrics_in_a_model_on_devices_and_in_chunks_equal_whole_data_values():
    # Metric states are sums, so 8 batches over 2 devices, or 3 steps per compiled
    # call, accumulate to the values of the whole data in one update.
    n = 70  # batches of 16 and a last one of 6
    x = np.asarray(jax.nn.softmax(rng.normal(size=(n, C)), axis=-1), np.float32)
    y = rng.integers(0, C, size=n).astype(np.int32)
    w = rng.uniform(0.0, 2.0, size=n).astype(np.float32)
    lam = LossesAndMetrics.build(losses.SparseCategoricalCrossentropy(), model_metrics())
    _, expected, _ = lam(lam.init(), y, x, w, None, None, batch_size=n)

    def make():
        return elegy.Model(
            module=Scores(),
            loss=losses.SparseCategoricalCrossentropy(),
            metrics=model_metrics(),
            optimizer=optax.sgd(0.0),
        )

    single = make().evaluate(x, y, batch_size=16, sample_weight=w, verbose=0)
    chunks = make().evaluate(x, y, batch_size=16, sample_weight=w, verbose=0, steps_per_execution=3)
    devices = (
        make()
        .distributed(elegy.DataParallel(jax.devices()[:2]))
        .evaluate(x, y, batch_size=16, sample_weight=w, verbose=0)
    )
    assert set(single) == set(expected) and len(single) == 25  # loss (one: no term log), 24 metrics
    for name, value in expected.items():
        for logs in (single, chunks, devices):
            np.testing.assert_allclose(logs[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: metrics.TruePositives(1.5),
            r"TruePositives: thresholds must lie in \[0, 1\]; got \[1.5\]",
        ),
        (lambda: metrics.Precision([]), r"thresholds=\[\] must be a float or a list of floats"),
        (lambda: metrics.Precision(top_k=0), "top_k=0 keeps no prediction"),
        (lambda: metrics.Recall(class_id=-1), "class_id=-1 must be a non-negative int or None"),
        (lambda: metrics.Precision(top_k=1.5), r"top_k=1.5 must be a non-negative int"),
        (
            lambda: metrics.Precision(class_id=1, average="macro", num_classes=3),
            "class_id=1 scores one class; average='macro' averages over classes",
        ),
        (
            lambda: metrics.Recall(average="macro", num_classes=0),
            "num_classes=0 must be a positive int",
        ),
        (lambda: metrics.PrecisionAtRecall(1.5), r"recall=1.5 must be a number in \[0, 1\]"),
        (lambda: metrics.RecallAtPrecision("high"), "precision='high' must be a number"),
        (
            lambda: metrics.SensitivityAtSpecificity(0.5, num_thresholds=0),
            "num_thresholds=0 must be an int > 0",
        ),
        (lambda: metrics.AUC(num_thresholds=1), "num_thresholds=1 must be an int > 1"),
        (lambda: metrics.AUC(curve="XY"), "curve='XY' is not one of ROC, PR, PRGAIN"),
        (lambda: metrics.AUC(summation_method="trapezoid"), "summation_method='trapezoid'"),
        (lambda: metrics.AUC(multi_label=True), "needs their number up front: pass num_labels"),
        (lambda: metrics.AUC(num_labels=3), "num_labels is needed only when multi_label=True"),
        (lambda: metrics.AUC(label_weights=[1.0, -1.0]), "label_weights must be non-negative"),
        (
            lambda: metrics.AUC(multi_label=True, num_labels=2, label_weights=[1.0]),
            "label_weights has 1 entries for num_labels=2",
        ),
        (lambda: metrics.AUC(thresholds=[0.5, 2.0]), r"thresholds must lie in \[0, 1\]"),
        (lambda: metrics.FBetaScore(beta=0.0), "beta=0.0 must be a number > 0"),
        (lambda: metrics.F1Score(threshold=0.0), r"threshold=0.0 must be None or in \(0, 1\]"),
        (
            lambda: metrics.F1Score(average="binary"),
            "average='binary' is not one of None, 'micro', 'macro', 'weighted'",
        ),
        (lambda: metrics.F1(num_classes=2.0), "num_classes=2.0 must be a positive int"),
        (lambda: metrics.IoU(0, [0]), "num_classes=0 must be an int >= 1"),
        (
            lambda: metrics.IoU(3, [3]),
            r"target_class_ids=\[3\] must be non-empty and within \[0, 3\)",
        ),
        (lambda: metrics.IoU(3, []), "must be non-empty"),
        (lambda: metrics.IoU(3, 1), "target_class_ids=1 must be a list of class ids"),
        (lambda: metrics.IoU(3, [-1]), "target_class_ids=-1 must be an int >= 0"),
        (lambda: metrics.MeanIoU(True), "num_classes=True must be an int >= 1"),
        (lambda: metrics.BinaryIoU(threshold="a"), "threshold='a' must be a number"),
        (lambda: metrics.TopKCategoricalAccuracy(0), "k=0 must be a positive int"),
        (lambda: metrics.SparseTopKCategoricalAccuracy(2.5), "k=2.5 must be a positive int"),
    ],
)
def test_bad_arguments_name_the_argument(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_inputs_that_do_not_fit_the_metric():
    with pytest.raises(ValueError, match=r"class_id=5, but y_pred has 4 class column"):
        run(metrics.Precision(class_id=5), ONE_HOT, PROBS, None)
    with pytest.raises(
        ValueError, match=r"built for 3 class\(es\), but y_pred of shape \(16, 4\).*num_labels=4"
    ):
        run(metrics.AUC(multi_label=True, num_labels=3), ONE_HOT, PROBS, None)
    with pytest.raises(ValueError, match="label_weights has 2 entries, but y_pred has 4"):
        run(metrics.AUC(label_weights=[1.0, 2.0]), ONE_HOT, PROBS, None)
    with pytest.raises(
        ValueError, match=r"16 class ids \(shape \(16,\)\) and y_pred 8 .*one to one"
    ):
        run(metrics.IoU(4, [0]), IDS, IDS[:8], None)
    with pytest.raises(ValueError, match="use SparseTopKCategoricalAccuracy"):
        run(metrics.TopKCategoricalAccuracy(2), IDS, PROBS, None)
    with pytest.raises(ValueError, match=r"\(16, 4\) and y_pred has shape \(16, 4\).*one class id"):
        run(metrics.SparseTopKCategoricalAccuracy(2), ONE_HOT, PROBS, None)


def test_mean_metric_wrapper_names_a_missing_argument() -> None:
    metric = metrics.MeanMetricWrapper(jnp.subtract, name="diff")
    state = metric.init()
    with pytest.raises(TypeError) as caught:
        metric.update(state, None, REAL_PRED)
    assert str(caught.value) == "diff: `y_true` is None; it needs an array."
    with pytest.raises(TypeError) as caught:
        metric.update(state, REAL_TRUE, None)
    assert str(caught.value) == "diff: `y_pred` is None; it needs an array."


def test_sum_names_missing_values() -> None:
    metric = metrics.Sum(name="total")
    with pytest.raises(TypeError) as caught:
        metric.update(metric.init())
    assert str(caught.value) == "total: `values` is None; it needs an array."
