"""The regression, probabilistic, hinge and correlation metrics of Keras 3 against Keras
itself: values accumulated over two batches with sample weights, Keras' names, shapes,
errors, and inside a model (uneven batches, `steps_per_execution`, data parallel).

The classification metrics are in test_keras_metrics.py; together the two files
cover `keras.metrics`.
"""

import inspect
import os

os.environ["KERAS_BACKEND"] = "jax"

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
from keras.src.metrics import ALL_OBJECTS_DICT as KERAS_METRIC_NAMES  # noqa: E402

import eqx_elegy as elegy  # noqa: E402
from eqx_elegy import metrics  # noqa: E402
from eqx_elegy._losses_and_metrics import LossesAndMetrics  # noqa: E402

# The Keras metrics this file covers (the rest of keras.metrics: test_keras_metrics.py).
REGRESSION_AND_PROBABILISTIC_METRICS = (
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
)

RTOL, ATOL = 1e-5, 1e-6
B, C = 6, 4
rng = np.random.default_rng(1)


def f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def make_batch() -> dict[str, np.ndarray]:
    logits = f32(rng.normal(size=(B, C)) * 2)
    ids = rng.integers(0, C, size=B)
    return {
        "logits": logits,
        "probs": f32(jax.nn.softmax(logits)),
        "other_probs": f32(jax.nn.softmax(f32(rng.normal(size=(B, C))))),
        "ids": ids,
        "one_hot": np.eye(C, dtype=np.float32)[ids],
        "binary": f32(rng.integers(0, 2, size=(B, C))),
        "sigmoid": f32(jax.nn.sigmoid(logits)),
        "real_true": f32(rng.normal(size=(B, C))),
        "real_pred": f32(rng.normal(size=(B, C))),
        "pos_true": f32(rng.uniform(0.1, 3.0, size=(B, C))),
        "pos_pred": f32(rng.uniform(0.1, 3.0, size=(B, C))),
        "weight": f32(rng.uniform(0.0, 2.0, size=B)),
    }


BATCHES = [make_batch(), make_batch()]

# id -> (class name, kwargs for both libraries, extra kwargs for eqx_elegy, y_true, y_pred)
CASES = {
    "mse": ("MeanSquaredError", {}, {}, "real_true", "real_pred"),
    "mae": ("MeanAbsoluteError", {}, {}, "real_true", "real_pred"),
    "mape": ("MeanAbsolutePercentageError", {}, {}, "real_true", "real_pred"),
    "msle": ("MeanSquaredLogarithmicError", {}, {}, "pos_true", "pos_pred"),
    "rmse": ("RootMeanSquaredError", {}, {}, "real_true", "real_pred"),
    "cosine": ("CosineSimilarity", {}, {}, "real_true", "real_pred"),
    "log_cosh": ("LogCoshError", {}, {}, "real_true", "real_pred"),
    "r2": ("R2Score", {}, {"num_outputs": C}, "real_true", "real_pred"),
    "r2_variance_weighted_adjusted": (
        "R2Score",
        {"class_aggregation": "variance_weighted_average", "num_regressors": 2},
        {"num_outputs": C},
        "real_true",
        "real_pred",
    ),
    "pearson": ("PearsonCorrelation", {}, {}, "real_true", "real_pred"),
    "concordance": ("ConcordanceCorrelation", {}, {}, "real_true", "real_pred"),
    "kl_divergence": ("KLDivergence", {}, {}, "other_probs", "probs"),
    "poisson": ("Poisson", {}, {}, "pos_true", "pos_pred"),
    "bce": ("BinaryCrossentropy", {}, {}, "binary", "sigmoid"),
    "bce_logits_smoothing": (
        "BinaryCrossentropy",
        {"from_logits": True, "label_smoothing": 0.1},
        {},
        "binary",
        "logits",
    ),
    "cce": ("CategoricalCrossentropy", {}, {}, "one_hot", "probs"),
    "cce_logits_smoothing": (
        "CategoricalCrossentropy",
        {"from_logits": True, "label_smoothing": 0.2},
        {},
        "one_hot",
        "logits",
    ),
    "scce": ("SparseCategoricalCrossentropy", {}, {}, "ids", "probs"),
    "scce_logits": ("SparseCategoricalCrossentropy", {"from_logits": True}, {}, "ids", "logits"),
    "hinge": ("Hinge", {}, {}, "binary", "real_pred"),
    "squared_hinge": ("SquaredHinge", {}, {}, "binary", "real_pred"),
    "categorical_hinge": ("CategoricalHinge", {}, {}, "one_hot", "real_pred"),
}


def keras_result(metric, pairs, weights) -> np.ndarray:
    """`metric` (a fresh Keras metric) after `update_state` on each batch."""
    with jax.numpy_dtype_promotion("standard"):
        for (y_true, y_pred), w in zip(pairs, weights, strict=True):
            metric.update_state(y_true, y_pred, sample_weight=w)
        return np.asarray(metric.result())


def our_result(metric, pairs, weights) -> np.ndarray:
    """`metric` after one jitted `update` per batch, as inside a model's step."""
    update = jax.jit(metric.update)
    state = metric.init()
    for (y_true, y_pred), w in zip(pairs, weights, strict=True):
        state = update(state, y_true, y_pred, w)
    return np.asarray(metric.compute(state))


def case_inputs(case: str, weighted: bool):
    _, _, _, t, p = CASES[case]
    pairs = [(b[t], b[p]) for b in BATCHES]
    weights = [b["weight"] if weighted else None for b in BATCHES]
    return pairs, weights


# ---------------------------------------------------------------- every metric


def test_this_files_metrics_are_keras_metrics_and_implemented():
    keras_names = {n for n, o in vars(keras.metrics).items() if inspect.isclass(o)}
    assert set(REGRESSION_AND_PROBABILISTIC_METRICS) <= keras_names
    missing = [n for n in REGRESSION_AND_PROBABILISTIC_METRICS if not hasattr(metrics, n)]
    assert not missing, f"Keras metrics without an eqx_elegy counterpart: {missing}"
    untested = set(REGRESSION_AND_PROBABILISTIC_METRICS) - {c[0] for c in CASES.values()}
    assert not untested, f"metrics not compared with Keras in CASES: {sorted(untested)}"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_accumulated_value_equals_keras(case, weighted):
    name, kwargs, ours_only, _, _ = CASES[case]
    pairs, weights = case_inputs(case, weighted)
    expected = keras_result(getattr(keras.metrics, name)(**kwargs), pairs, weights)
    metric = getattr(metrics, name)(**kwargs, **ours_only)
    got = our_result(metric, pairs, weights)
    assert got.dtype == np.float32 and got.shape == ()
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", REGRESSION_AND_PROBABILISTIC_METRICS)
def test_default_names_are_keras_names(name):
    ours = getattr(metrics, name)(**({"num_outputs": C} if name == "R2Score" else {}))
    assert ours.name == getattr(keras.metrics, name)().name


@pytest.mark.parametrize(
    "name",
    sorted(
        n
        for n, cls in KERAS_METRIC_NAMES.items()
        if getattr(cls, "__name__", None) in REGRESSION_AND_PROBABILISTIC_METRICS
    ),
)
def test_every_keras_name_builds_the_same_metric(name):
    # `metrics=[name]` means what it means in Keras' compile, and names the log.
    keras_metric = keras.metrics.get(name)
    (term,) = LossesAndMetrics.build(None, [name]).metrics
    assert type(term.metric).__name__ == type(keras_metric).__name__
    assert term.log_name == name
    if isinstance(term.metric, metrics.R2Score):
        return  # one output only with the default num_outputs; compared above
    case = next(k for k, c in CASES.items() if c[0] == type(keras_metric).__name__ and not c[1])
    pairs, weights = case_inputs(case, True)
    np.testing.assert_allclose(
        our_result(term.metric, pairs, weights),
        keras_result(keras_metric, pairs, weights),
        rtol=RTOL,
        atol=ATOL,
    )


# Every function `keras.metrics` exports, with inputs in its domain (y_true, y_pred).
FUNCTION_INPUTS = {
    "binary_accuracy": ("binary", "sigmoid"),
    "binary_crossentropy": ("binary", "sigmoid"),
    "binary_focal_crossentropy": ("binary", "sigmoid"),
    "categorical_accuracy": ("one_hot", "probs"),
    "categorical_crossentropy": ("one_hot", "probs"),
    "categorical_focal_crossentropy": ("one_hot", "probs"),
    "categorical_hinge": ("one_hot", "real_pred"),
    "concordance_correlation": ("real_true", "real_pred"),
    "hinge": ("binary", "real_pred"),
    "huber": ("real_true", "real_pred"),
    "kl_divergence": ("other_probs", "probs"),
    "log_cosh": ("real_true", "real_pred"),
    "mean_absolute_error": ("real_true", "real_pred"),
    "mean_absolute_percentage_error": ("real_true", "real_pred"),
    "mean_squared_error": ("real_true", "real_pred"),
    "mean_squared_logarithmic_error": ("pos_true", "pos_pred"),
    "pearson_correlation": ("real_true", "real_pred"),
    "poisson": ("pos_true", "pos_pred"),
    "sparse_categorical_accuracy": ("ids", "probs"),
    "sparse_categorical_crossentropy": ("ids", "probs"),
    "sparse_top_k_categorical_accuracy": ("ids", "probs"),
    "squared_hinge": ("binary", "real_pred"),
    "top_k_categorical_accuracy": ("one_hot", "probs"),
}


def test_every_keras_metric_function_is_covered():
    functions = {
        n
        for n, o in vars(keras.metrics).items()
        if inspect.isfunction(o) and n not in {"get", "serialize", "deserialize"}
    }
    assert functions == set(FUNCTION_INPUTS)


@pytest.mark.parametrize("name", sorted(FUNCTION_INPUTS))
def test_keras_metric_function_names_mean_what_they_mean_in_keras(name):
    # A name Keras' compile accepts builds the same metric, with Keras' value; a name
    # Keras refuses (`"huber"`: only the function works there) is refused here too.
    try:
        keras_metric = keras.metrics.get(name)
    except ValueError:
        with pytest.raises(ValueError, match=rf"Unknown metric name {name!r} in metrics\[0\]"):
            LossesAndMetrics.build(None, [name])
        return
    t, p = FUNCTION_INPUTS[name]
    pairs = [(b[t], b[p]) for b in BATCHES]
    weights = [b["weight"] for b in BATCHES]
    (term,) = LossesAndMetrics.build(None, [name]).metrics
    assert type(term.metric).__name__ == type(keras_metric).__name__
    assert term.log_name == name
    np.testing.assert_allclose(
        our_result(term.metric, pairs, weights),
        keras_result(keras_metric, pairs, weights),
        rtol=RTOL,
        atol=ATOL,
    )


# ---------------------------------------------------------------- deliberate differences


def test_ignored_class_is_left_out_with_or_without_weights():
    # Keras leaves ignore_class out of the mean only when a sample_weight is given (its
    # mask becomes a weight); here it is always left out. With weights: Keras' value.
    kwargs = {"from_logits": True, "ignore_class": 1}
    pairs, weights = case_inputs("scce_logits", True)
    ours = metrics.SparseCategoricalCrossentropy(**kwargs)
    expected = keras_result(keras.metrics.SparseCategoricalCrossentropy(**kwargs), pairs, weights)
    np.testing.assert_allclose(our_result(ours, pairs, weights), expected, rtol=RTOL)
    ids = np.concatenate([b["ids"] for b in BATCHES])
    logits = np.concatenate([b["logits"] for b in BATCHES]).astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_example = -log_probs[np.arange(len(ids)), ids]
    unweighted = our_result(ours, pairs, [None, None])
    np.testing.assert_allclose(unweighted, per_example[ids != 1].mean(), rtol=RTOL)


def weighted_correlations(x, y, w):
    mx, my = np.average(x, weights=w), np.average(y, weights=w)
    vx, vy = np.average((x - mx) ** 2, weights=w), np.average((y - my) ** 2, weights=w)
    cov = np.average((x - mx) * (y - my), weights=w)
    return cov / np.sqrt(vx * vy), 2 * cov / (vx + vy + (mx - my) ** 2 + 1e-7)


@pytest.mark.parametrize("shape", [(1,), ()], ids=["batch_by_1", "batch"])
@pytest.mark.parametrize("sizes", [(20,), (7, 7, 6), (1, 19)])
def test_one_value_per_example_correlates_across_everything_seen(shape, sizes):
    # Keras: NaN for (batch, 1) and a mean of per-batch values for (batch,); here the
    # weighted correlation of all examples, whatever the batches.
    t = f32(rng.normal(size=20))
    p = f32(0.6 * t + rng.normal(size=20) * 0.5 + 0.3)
    w = f32(rng.uniform(0.1, 2.0, size=20))
    bounds = np.cumsum((0, *sizes))
    pairs = [
        (t[a:b].reshape(-1, *shape), p[a:b].reshape(-1, *shape))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    weights = [w[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    pearson, concordance = weighted_correlations(t.astype(np.float64), p, w)
    np.testing.assert_allclose(
        our_result(metrics.PearsonCorrelation(), pairs, weights), pearson, rtol=RTOL
    )
    np.testing.assert_allclose(
        our_result(metrics.ConcordanceCorrelation(), pairs, weights), concordance, rtol=RTOL
    )


def test_r2_of_one_output_with_or_without_trailing_axis():
    t = [b["real_true"][:, 0] for b in BATCHES]
    p = [b["real_pred"][:, 0] * 0.3 + b["real_true"][:, 0] for b in BATCHES]
    w = [b["weight"] for b in BATCHES]
    expected = keras_result(
        keras.metrics.R2Score(), [(a[:, None], b[:, None]) for a, b in zip(t, p, strict=True)], w
    )
    for pairs in [
        list(zip(t, p, strict=True)),
        [(a[:, None], b) for a, b in zip(t, p, strict=True)],
    ]:
        np.testing.assert_allclose(our_result(metrics.R2Score(), pairs, w), expected, rtol=RTOL)


def test_adjusted_r2_falls_back_without_enough_samples():
    # 4 samples and 3 regressors: Keras warns and returns the plain R², as here.
    pairs = [
        (np.array([1.0, 2.0, 3.0, 5.0], np.float32), np.array([1.2, 1.9, 3.3, 4.4], np.float32))
    ]
    plain = our_result(metrics.R2Score(), pairs, [None])
    np.testing.assert_allclose(our_result(metrics.R2Score(num_regressors=3), pairs, [None]), plain)
    with pytest.warns(UserWarning, match="Falling back"):
        expected = keras_result(
            keras.metrics.R2Score(num_regressors=3),
            [(a[:, None], b[:, None]) for a, b in pairs],
            [None],
        )
    np.testing.assert_allclose(plain, expected, rtol=RTOL)


# ---------------------------------------------------------------- shapes and errors


@pytest.mark.parametrize(
    "name",
    [
        "BinaryCrossentropy",
        "Hinge",
        "SquaredHinge",
        "Poisson",
        "MeanSquaredError",
        "LogCoshError",
        "RootMeanSquaredError",
    ],
)
def test_one_output_labels_with_or_without_trailing_axis(name):
    pairs = [(b["binary"][:, 0], b["sigmoid"][:, :1]) for b in BATCHES]
    weights = [b["weight"] for b in BATCHES]
    expected = keras_result(
        getattr(keras.metrics, name)(), [(t[:, None], p) for t, p in pairs], weights
    )
    for shaped in [
        pairs,
        [(t[:, None], p[:, 0]) for t, p in pairs],
        [(t, p[:, 0]) for t, p in pairs],
    ]:
        np.testing.assert_allclose(
            our_result(getattr(metrics, name)(), shaped, weights), expected, rtol=RTOL
        )


@pytest.mark.parametrize(
    "metric, y_true, y_pred, message",
    [
        (
            metrics.SparseCategoricalCrossentropy(),
            "one_hot",
            "probs",
            "use CategoricalCrossentropy",
        ),
        (metrics.CategoricalCrossentropy(), "ids", "probs", "use SparseCategoricalCrossentropy"),
        (metrics.R2Score(), "real_true", "real_pred", r"num_outputs=1: pass num_outputs=4"),
        (
            metrics.PearsonCorrelation(axis=0),
            "real_true",
            "real_pred",
            "axis=0 on inputs of shape \\(6, 4\\) is the batch axis",
        ),
        (
            metrics.CosineSimilarity(axis=3),
            "real_true",
            "real_pred",
            r"cosine_similarity: axis=3 is out of range for inputs of shape \(6, 4\)",
        ),
    ],
)
def test_wrong_inputs_are_named(metric, y_true, y_pred, message):
    batch = BATCHES[0]
    with pytest.raises(ValueError, match=message):
        metric.update(metric.init(), batch[y_true], batch[y_pred])


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: metrics.R2Score(class_aggregation=None), ValueError, "class_aggregation=None is not one of 'uniform_average', 'variance_weighted_average'"),
        (lambda: metrics.R2Score(num_regressors=-1), ValueError, "num_regressors=-1 must be an int >= 0"),
        (lambda: metrics.R2Score(num_outputs=0), ValueError, "num_outputs=0 must be an int >= 1"),
        (lambda: metrics.PearsonCorrelation(axis=None), TypeError, "axis=None must be an int"),
        (lambda: metrics.BinaryCrossentropy(label_smoothing=-0.1), ValueError, r"label_smoothing=-0.1 must be in \[0.0, 1.0\]"),
        (lambda: metrics.SparseCategoricalCrossentropy(from_logits=None), TypeError, "from_logits=None must be True or False"),
    ],
)  # fmt: skip
def test_bad_constructor_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


# ---------------------------------------------------------------- inside a model


class Heads(eqx.Module):
    """One input, a regression output and class probabilities (read as one-hot and sparse)."""

    regression: eqx.nn.Linear
    classes: eqx.nn.Linear

    def __call__(self, x):
        probs = jax.nn.softmax(self.classes(x))
        return {"reg": self.regression(x), "onehot": probs, "sparse": probs}


N = 20
X = f32(rng.normal(size=(N, 5)))
IDS = rng.integers(0, C, size=N).astype(np.int32)
Y = {"reg": f32(rng.normal(size=(N, 3))), "onehot": np.eye(C, dtype=np.float32)[IDS], "sparse": IDS}
W = f32(rng.uniform(0.1, 2.0, size=N))
MODEL_METRICS = {
    "reg": ["mse", "mae", "mape", "msle", "root_mean_squared_error", "cosine_similarity",
            "log_cosh_error", "pearson_correlation", "concordance_correlation"],
    "onehot": ["kl_divergence", "poisson", "bce", "categorical_crossentropy", "hinge",
               "squared_hinge", "categorical_hinge"],
    "sparse": ["sparse_categorical_crossentropy"],
}  # fmt: skip


def heads_model() -> elegy.Model:
    key_a, key_b = jax.random.split(jax.random.key(0))
    return elegy.Model(
        module=Heads(eqx.nn.Linear(5, 3, key=key_a), eqx.nn.Linear(5, C, key=key_b)),
        loss={"reg": "mse", "onehot": "categorical_crossentropy", "sparse": "ce"},
        metrics={**MODEL_METRICS, "reg": [*MODEL_METRICS["reg"], metrics.R2Score(num_outputs=3)]},
        optimizer=optax.adam(1e-2),
    )


def test_model_logs_equal_keras_over_uneven_batches_chunks_and_devices():
    model = heads_model()
    model.fit(X, Y, batch_size=N, epochs=1, verbose=0)
    logs = model.evaluate(X, Y, batch_size=8, sample_weight=W, verbose=0)  # 8, 8, 4
    y_pred = model.predict(X, batch_size=N)
    bounds = [(0, 8), (8, 16), (16, 20)]
    specs = {**MODEL_METRICS, "reg": [*MODEL_METRICS["reg"], "R2Score"]}
    for output, names in specs.items():
        for name in names:
            pairs = [(Y[output][a:b], y_pred[output][a:b]) for a, b in bounds]
            expected = keras_result(keras.metrics.get(name), pairs, [W[a:b] for a, b in bounds])
            log = f"{output}_{name if name != 'R2Score' else 'r2_score'}"
            np.testing.assert_allclose(logs[log], expected, rtol=RTOL, atol=ATOL, err_msg=log)
    chunked = model.evaluate(X, Y, batch_size=8, sample_weight=W, verbose=0, steps_per_execution=2)
    parallel = model.distributed(elegy.DataParallel(jax.devices()[:4]))
    sharded = parallel.evaluate(X, Y, batch_size=8, sample_weight=W, verbose=0)
    for name, value in logs.items():
        np.testing.assert_allclose(chunked[name], value, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(sharded[name], value, rtol=RTOL, atol=ATOL, err_msg=name)
