"""LossesAndMetrics: the loss/metric plumbing of the default test_step."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import digits, mlp

import eqx_elegy as elegy
from eqx_elegy import losses, metrics, regularizers
from eqx_elegy._losses_and_metrics import LossesAndMetrics

N, C = 12, 3
BATCHES = (5, 4, 3)
rng = np.random.default_rng(2)
LOGITS = rng.normal(size=(N, C)).astype(np.float32)
IDS = rng.integers(0, C, size=N)
IDS[:C] = np.arange(C)
W = rng.uniform(0.2, 2.0, size=N).astype(np.float32)
REG_TRUE = rng.normal(size=(N, 1)).astype(np.float32)
REG_PRED = rng.normal(size=(N, 1)).astype(np.float32)
PARAMS = {"w": jnp.asarray(rng.normal(size=(4, C)).astype(np.float32)), "n": 3}


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


CE = -log_softmax(LOGITS.astype(np.float64))[np.arange(N), IDS]


def f1_macro(t, p, w):
    t, p = np.eye(C)[t], np.eye(C)[p]
    tp = (w[:, None] * t * p).sum(0)
    fp = (w[:, None] * (1 - t) * p).sum(0)
    fn = (w[:, None] * t * (1 - p)).sum(0)
    prec, rec = tp / (tp + fp + 1e-7), tp / (tp + fn + 1e-7)
    return (2 * prec * rec / (prec + rec + 1e-7)).mean()


def batches(*arrays, sizes=BATCHES):
    """Consecutive slices of `sizes` examples of each pytree in `arrays` (None stays None)."""
    start = 0
    for n in sizes:
        part = slice(start, start + n)
        yield (
            n,
            [None if a is None else jax.tree.map(lambda x, part=part: x[part], a) for a in arrays],
        )
        start += n


def run(lam, y_true, y_pred, sample_weight=None, class_weight=None, sizes=(N,)):
    """Every batch through one jitted call; returns the last batch loss and final logs."""

    @eqx.filter_jit
    def step(lam, states, yt, yp, sw, n):
        return lam(states, yt, yp, sw, class_weight, PARAMS, batch_size=n)

    states = lam.init()
    for n, (yt, yp, sw) in batches(y_true, y_pred, sample_weight, sizes=sizes):
        loss, logs, states = step(lam, states, yt, yp, sw, n)
    return loss, logs


def test_init_states_have_explicit_dtypes():
    lam = LossesAndMetrics.build(
        [losses.SparseCategoricalCrossentropy(from_logits=True), regularizers.L2()],
        [metrics.Accuracy(), metrics.F1(num_classes=C)],
    )
    states = lam.init()
    assert list(states) == [
        "loss",
        "sparse_categorical_crossentropy_loss",
        "l2_loss",
        "accuracy",
        "f1",
    ]
    for leaf in jax.tree.leaves(states):
        assert leaf.dtype == jnp.float32 and not leaf.weak_type


def test_running_logs_over_uneven_batches_equal_whole_data():
    lam = LossesAndMetrics.build(
        [losses.SparseCategoricalCrossentropy(from_logits=True), regularizers.L2(0.01)],
        [metrics.Accuracy(), metrics.F1(num_classes=C)],
    )
    l2 = 0.01 * float((np.asarray(PARAMS["w"]) ** 2).sum())
    expected = {
        "sparse_categorical_crossentropy_loss": (W * CE).sum() / N,
        "l2_loss": l2,
        "loss": (W * CE).sum() / N + l2,
        "accuracy": (W * (LOGITS.argmax(-1) == IDS)).sum() / W.sum(),
        "f1": f1_macro(IDS, LOGITS.argmax(-1), W),
    }
    _, uneven = run(lam, IDS, LOGITS, W, sizes=BATCHES)
    _, whole = run(lam, IDS, LOGITS, W)
    assert lam.log_names == [
        "loss",
        "sparse_categorical_crossentropy_loss",
        "l2_loss",
        "accuracy",
        "f1",
    ]
    assert set(uneven) == set(lam.log_names)
    for name, value in expected.items():
        np.testing.assert_allclose(uneven[name], value, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(whole[name], value, rtol=1e-5, err_msg=name)
        assert uneven[name].shape == () and uneven[name].dtype == jnp.float32


def test_returned_loss_is_the_batch_total_to_differentiate():
    lam = LossesAndMetrics.build(
        [losses.SparseCategoricalCrossentropy(from_logits=True), regularizers.L2(0.01)],
        None,
        loss_weights=[2.0, 1.0],
    )
    part = slice(0, 5)

    def total(params, logits):
        loss, _, _ = lam(lam.init(), IDS[part], logits, None, None, params, batch_size=5)
        return loss

    loss = total(PARAMS, LOGITS[part])
    expected = 2.0 * CE[part].mean() + 0.01 * float((np.asarray(PARAMS["w"]) ** 2).sum())
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert loss.dtype == jnp.float32
    grads = jax.grad(total)({"w": PARAMS["w"]}, LOGITS[part])
    np.testing.assert_allclose(grads["w"], 0.02 * PARAMS["w"], rtol=1e-5)


def test_loss_weights_scale_the_total_not_the_term_log():
    lam = LossesAndMetrics.build(
        {"ce": losses.SparseCategoricalCrossentropy(from_logits=True), "reg": regularizers.L1(0.1)},
        None,
        loss_weights={"ce": 0.5},
    )
    _, logs = run(lam, IDS, LOGITS)
    l1 = 0.1 * float(np.abs(np.asarray(PARAMS["w"])).sum())
    np.testing.assert_allclose(logs["ce_loss"], CE.mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["reg_loss"], l1, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], 0.5 * CE.mean() + l1, rtol=1e-5)


class TestClassWeight:
    table = {0: 1.0, 2: 5.0}  # class 1 absent: weight 1
    per_example = np.array([1.0, 1.0, 5.0])[IDS].astype(np.float32)

    def test_integer_labels_become_per_example_weights(self):
        lam = LossesAndMetrics.build(
            losses.SparseCategoricalCrossentropy(from_logits=True), metrics.Accuracy()
        )
        _, with_class_weight = run(lam, IDS, LOGITS, class_weight=self.table)
        _, with_sample_weight = run(lam, IDS, LOGITS, self.per_example)
        for name in with_class_weight:
            np.testing.assert_allclose(with_class_weight[name], with_sample_weight[name], rtol=1e-6)
        np.testing.assert_allclose(
            with_class_weight["loss"], (self.per_example * CE).mean(), rtol=1e-5
        )

    def test_multiplies_sample_weight(self):
        lam = LossesAndMetrics.build(losses.SparseCategoricalCrossentropy(from_logits=True), None)
        _, logs = run(lam, IDS[:, None], LOGITS, W, class_weight=self.table)
        np.testing.assert_allclose(logs["loss"], (W * self.per_example * CE).mean(), rtol=1e-5)

    def test_one_hot_labels(self):
        lam = LossesAndMetrics.build(losses.CategoricalCrossentropy(from_logits=True), None)
        _, logs = run(lam, np.eye(C, dtype=np.float32)[IDS], LOGITS, class_weight=self.table)
        np.testing.assert_allclose(logs["loss"], (self.per_example * CE).mean(), rtol=1e-5)

    def test_binary_labels(self):
        labels = (IDS == 1).astype(np.float32)[:, None]
        logits = LOGITS[:, :1]
        lam = LossesAndMetrics.build(losses.BinaryCrossentropy(from_logits=True), None)
        _, logs = run(lam, labels, logits, class_weight={1: 3.0})
        x, y = logits[:, 0].astype(np.float64), labels[:, 0]
        bce = np.logaddexp(0, -x) * y + np.logaddexp(0, x) * (1 - y)
        np.testing.assert_allclose(
            logs["loss"], (np.where(y == 1, 3.0, 1.0) * bce).mean(), rtol=1e-5
        )

    def test_weights_may_be_traced(self):
        # A model's compiled step receives class_weight as a pytree argument.
        lam = LossesAndMetrics.build(losses.SparseCategoricalCrossentropy(from_logits=True), None)

        @jax.jit
        def loss(class_weight):
            return lam(lam.init(), IDS, LOGITS, None, class_weight, None, batch_size=N)[0]

        traced = loss({k: jnp.float32(v) for k, v in self.table.items()})
        np.testing.assert_allclose(traced, (self.per_example * CE).mean(), rtol=1e-5)

    def test_out_of_range_ids_and_bad_keys(self):
        lam = LossesAndMetrics.build(losses.SparseCategoricalCrossentropy(from_logits=True), None)
        with pytest.raises(
            ValueError,
            match=r"class ids \[3, -1\] out of range: y_pred of shape \(12, 3\) has 3 classes \(ids 0..2\)",
        ):
            run(lam, IDS, LOGITS, class_weight={0: 1.0, 3: 2.0, -1: 1.0})
        bce = LossesAndMetrics.build(losses.BinaryCrossentropy(), None)
        with pytest.raises(ValueError, match=r"class ids \[2\].*\(12, 1\) has 2 classes"):
            run(bce, REG_TRUE, REG_PRED, class_weight={2: 1.0})
        with pytest.raises(TypeError, match="keys must be int class ids, got 'a'"):
            run(lam, IDS, LOGITS, class_weight={"a": 1.0})
        with pytest.raises(TypeError, match=r"`class_weight\[0\]` must be a number, got 'x'"):
            run(lam, IDS, LOGITS, class_weight={0: "x"})
        with pytest.raises(TypeError, match=r"`class_weight` must be a dict"):
            run(lam, IDS, LOGITS, class_weight=[1.0, 2.0])
        multi = LossesAndMetrics.build(losses.MeanSquaredError(), None)
        with pytest.raises(ValueError, match="`class_weight` works with a single output"):
            run(multi, {"a": REG_TRUE}, {"a": REG_PRED}, class_weight={0: 1.0})


class TestDictOutputs:
    y_true = {"cls": IDS, "reg": REG_TRUE}
    y_pred = {"cls": LOGITS, "reg": REG_PRED}
    mse = ((REG_TRUE - REG_PRED) ** 2)[:, 0].astype(np.float64)

    def test_matched_by_key_with_prefixed_names(self):
        lam = LossesAndMetrics.build(
            {"cls": losses.SparseCategoricalCrossentropy(from_logits=True), "reg": "mse"},
            {"cls": metrics.Accuracy(), "reg": [metrics.MeanAbsoluteError(), "mse"]},
            loss_weights={"reg": 0.5},
        )
        _, logs = run(lam, self.y_true, self.y_pred, W, sizes=BATCHES)
        names = [
            "loss",
            "cls_loss",
            "reg_loss",
            "cls_accuracy",
            "reg_mean_absolute_error",
            "reg_mse",
        ]
        assert lam.log_names == names and set(logs) == set(names)
        np.testing.assert_allclose(logs["cls_loss"], (W * CE).mean(), rtol=1e-5)
        np.testing.assert_allclose(logs["reg_loss"], (W * self.mse).mean(), rtol=1e-5)
        np.testing.assert_allclose(
            logs["loss"], (W * CE).mean() + 0.5 * (W * self.mse).mean(), rtol=1e-5
        )
        np.testing.assert_allclose(logs["reg_mse"], (W * self.mse).sum() / W.sum(), rtol=1e-5)
        mae = np.abs(REG_TRUE - REG_PRED)[:, 0]
        np.testing.assert_allclose(
            logs["reg_mean_absolute_error"], (W * mae).sum() / W.sum(), rtol=1e-5
        )

    def test_per_output_sample_weights(self):
        lam = LossesAndMetrics.build({"reg": losses.MeanSquaredError()}, None)
        _, logs = run(lam, self.y_true, self.y_pred, {"cls": np.ones(N, np.float32), "reg": W})
        assert list(logs) == ["loss"]  # one loss: `loss` alone, as in Keras 3
        np.testing.assert_allclose(logs["loss"], (W * self.mse).mean(), rtol=1e-5)

    def test_single_loss_sums_over_outputs(self):
        lam = LossesAndMetrics.build(losses.MeanSquaredError(), metrics.MeanSquaredError())
        y = {"a": REG_TRUE, "b": 2 * REG_TRUE}
        _, logs = run(lam, y, {"a": REG_PRED, "b": REG_PRED})
        other = ((2 * REG_TRUE - REG_PRED) ** 2)[:, 0]
        assert "mean_squared_error_loss" not in logs
        np.testing.assert_allclose(logs["loss"], self.mse.mean() + other.mean(), rtol=1e-5)
        # The metric pools both outputs' examples.
        np.testing.assert_allclose(
            logs["mean_squared_error"], (self.mse.sum() + other.sum()) / (2 * N), rtol=1e-5
        )

    def test_key_matching_no_output_lists_the_outputs(self):
        lam = LossesAndMetrics.build({"cls": "mse", "regression": "mse"}, None)
        with pytest.raises(
            ValueError,
            match=r"`loss` has keys \['regression'\] that match no output; the module's outputs are \['cls', 'reg'\]",
        ):
            run(lam, self.y_true, self.y_pred)
        lam = LossesAndMetrics.build(None, {"rgr": metrics.MeanAbsoluteError()})
        with pytest.raises(ValueError, match=r"`metrics` has keys \['rgr'\].*\['cls', 'reg'\]"):
            run(lam, self.y_true, self.y_pred)

    def test_labels_must_cover_the_outputs(self):
        lam = LossesAndMetrics.build({"reg": "mse"}, None)
        with pytest.raises(ValueError, match=r"y_true must be a dict.*got y_true array\(12, 1\)"):
            run(lam, REG_TRUE, self.y_pred)

    def test_list_for_dict_outputs_asks_for_a_dict(self):
        lam = LossesAndMetrics.build(["mse", "mae"], None)
        with pytest.raises(ValueError, match="pass `loss` as a dict keyed by output"):
            run(lam, self.y_true, self.y_pred)


class TestTupleOutputs:
    def test_lists_match_outputs_by_position(self):
        lam = LossesAndMetrics.build(
            [losses.SparseCategoricalCrossentropy(from_logits=True), None],
            [metrics.SparseCategoricalAccuracy(), [metrics.MeanAbsoluteError(), None]],
        )
        _, logs = run(lam, (IDS, REG_TRUE), (LOGITS, REG_PRED))
        assert set(logs) == set(lam.log_names)
        assert lam.log_names == ["loss", "sparse_categorical_accuracy", "mean_absolute_error"]
        np.testing.assert_allclose(logs["loss"], CE.mean(), rtol=1e-5)
        np.testing.assert_allclose(
            logs["mean_absolute_error"], np.abs(REG_TRUE - REG_PRED).mean(), rtol=1e-5
        )

    def test_list_length_must_match(self):
        lam = LossesAndMetrics.build(["mse", "mae", "mape"], None)
        with pytest.raises(
            ValueError, match="`loss` is a list of 3, but the module returns 2 outputs"
        ):
            run(lam, (REG_TRUE, REG_TRUE), (REG_PRED, REG_PRED))
        with pytest.raises(
            ValueError, match=r"y_true must be a tuple of 2; got y_true array\(12, 1\)"
        ):
            run(LossesAndMetrics.build("mse", None), REG_TRUE, (REG_PRED, REG_PRED))


def test_a_single_loss_logs_as_loss_alone_several_keep_their_names():
    """Keras 3: one loss is logged as `loss` only (no `<name>_loss` copy of it); with
    several terms, a regularizer included, each keeps its own name."""
    single = LossesAndMetrics.build(losses.MeanSquaredError(), metrics.MeanAbsoluteError())
    assert single.log_names == ["loss", "mean_absolute_error"]
    assert list(single.init()) == ["loss", "mean_absolute_error"]
    _, logs = run(single, REG_TRUE, REG_PRED, sizes=BATCHES)
    assert set(logs) == {"loss", "mean_absolute_error"}
    np.testing.assert_allclose(logs["loss"], ((REG_TRUE - REG_PRED) ** 2).mean(), rtol=1e-5)
    weighted = LossesAndMetrics.build([losses.MeanSquaredError()], None, loss_weights=[3.0])
    _, logs = run(weighted, REG_TRUE, REG_PRED)
    assert list(logs) == ["loss"]
    np.testing.assert_allclose(logs["loss"], 3 * ((REG_TRUE - REG_PRED) ** 2).mean(), rtol=1e-5)
    for several, names in [
        (["mse", regularizers.L2()], ["mse_loss", "l2_loss"]),
        ({"cls": "mse", "reg": "mae"}, ["cls_loss", "reg_loss"]),
    ]:
        assert LossesAndMetrics.build(several, None).log_names == ["loss", *names]


def test_names_strings_callables_and_duplicates():
    def squared_error(y_true, y_pred):
        return jnp.mean((y_true - y_pred) ** 2, axis=-1)

    lam = LossesAndMetrics.build(
        ["mse", squared_error, losses.MeanSquaredError(), losses.MeanSquaredError()],
        ["accuracy", metrics.Accuracy(), losses.Huber(), lambda t, p: jnp.abs(t - p), "mae"],
    )
    assert lam.log_names == [
        "loss",
        "mse_loss",
        "squared_error_loss",
        "mean_squared_error_loss",
        "mean_squared_error_1_loss",
        "accuracy",
        "accuracy_1",
        "huber",
        "lambda",
        "mae",
    ]
    _, logs = run(lam, REG_TRUE, REG_PRED)
    mse = ((REG_TRUE - REG_PRED) ** 2).mean()
    for name in ["mse_loss", "squared_error_loss", "mean_squared_error_1_loss"]:
        np.testing.assert_allclose(logs[name], mse, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], 4 * mse, rtol=1e-5)
    np.testing.assert_allclose(logs["lambda"], np.abs(REG_TRUE - REG_PRED).mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["mae"], logs["lambda"], rtol=1e-6)


def test_bad_loss_and_metric_specs():
    with pytest.raises(
        TypeError,
        match=r"`loss` must be a Loss .*a Regularizer .*a callable .*or a loss name; got int: 3",
    ):
        LossesAndMetrics.build(3, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Unknown loss name 'msee' in `loss`. Known names: .*mse"):
        LossesAndMetrics.build("msee", None)
    with pytest.raises(
        ValueError,
        match=r"Unknown metric name 'acuracy' in metrics\[0\]. Known names: acc, accuracy",
    ):
        LossesAndMetrics.build(None, ["acuracy"])
    with pytest.raises(TypeError, match=r"metrics\[1\] must be a Metric .*got int: 5"):
        LossesAndMetrics.build(None, [metrics.Accuracy(), 5])  # type: ignore[list-item]
    with pytest.raises(
        TypeError, match=r"`loss` is a Metric \(Accuracy\); pass metrics in `metrics=`"
    ):
        LossesAndMetrics.build(metrics.Accuracy(), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is a Regularizer; pass it in `loss=`"):
        LossesAndMetrics.build(None, regularizers.L2())  # type: ignore[arg-type]
    with pytest.raises(
        ValueError,
        match="`loss_weights` is a list of 1, so `loss` must be a list of the same length",
    ):
        LossesAndMetrics.build(["mse", "mae"], None, loss_weights=[1.0])
    with pytest.raises(
        ValueError, match=r"`loss_weights` keys \['b'\] are not keys of `loss` \(\['a'\]\)"
    ):
        LossesAndMetrics.build({"a": "mse"}, None, loss_weights={"b": 1.0})
    with pytest.raises(TypeError, match="`loss_weights` must be a number, got str"):
        LossesAndMetrics.build("mse", None, loss_weights="1")  # type: ignore[arg-type]


def test_bad_call_inputs():
    lam = LossesAndMetrics.build([losses.MeanSquaredError(reduction="none")], None)
    with pytest.raises(
        ValueError, match=r"'mean_squared_error_loss' returned shape \(12,\); .*scalars"
    ):
        run(lam, REG_TRUE, REG_PRED)
    lam = LossesAndMetrics.build("mse", None)
    with pytest.raises(TypeError, match=r"needs labels, but y_true .* is None"):
        run(lam, None, REG_PRED)
    with pytest.raises(
        ValueError, match=r"y_true has shape \(12, 1\) and y_pred has shape \(12, 3\)"
    ):
        run(lam, REG_TRUE, LOGITS)
    reg = LossesAndMetrics.build(regularizers.L2(), None)
    with pytest.raises(ValueError, match="Regularizer 'l2_loss' needs the model's parameters"):
        reg(reg.init(), None, None, None, None, None, batch_size=1)


def test_nan_loss_check_hints_at_from_logits():
    # Logits given to a loss expecting probabilities: a row summing to 0 gives NaN.
    lam = LossesAndMetrics.build(losses.SparseCategoricalCrossentropy(), None)
    logits = np.array([[1.0, -1.0, 0.0]], np.float32)
    loss, _, _ = lam(lam.init(), np.array([0]), logits, None, None, None, batch_size=1)
    assert np.isnan(loss)
    with pytest.raises(
        FloatingPointError, match=r"(?s)loss is nan.*from_logits=False.*pass from_logits=True"
    ):
        lam.check(loss)
    lam.check(jnp.float32(1.5))  # finite: nothing to say

    def log_loss(y_true, y_pred):
        return -jnp.log(jnp.sum(y_true * y_pred, axis=-1))

    fn = LossesAndMetrics.build(log_loss, None)
    loss, _, _ = fn(fn.init(), np.eye(3)[[0]], logits * -1, None, None, None, batch_size=1)
    with pytest.raises(
        FloatingPointError, match=r"(?s)log_loss_loss: a plain-function loss.*from_logits=True"
    ):
        fn.check(loss)


# ------------------------------------------------------------- through Model.fit


def test_class_weight_shifts_a_trained_models_predictions():
    gen = np.random.default_rng(0)
    y = (gen.uniform(size=256) < 0.5).astype(np.int32)
    x = (gen.normal(size=(256, 2)) + y[:, None]).astype(np.float32)  # overlapping classes

    def share_predicted_as_1(class_weight):
        model = elegy.Model(
            module=eqx.nn.Linear(2, 2, key=jax.random.key(0)),
            loss=losses.SparseCategoricalCrossentropy(from_logits=True),
            optimizer=optax.adam(0.05),
        )
        model.fit(
            x, y, epochs=20, batch_size=64, verbose=0, shuffle=False, class_weight=class_weight
        )
        return float((np.asarray(model.predict(x, batch_size=256)).argmax(-1) == 1).mean())

    plain, weighted = share_predicted_as_1(None), share_predicted_as_1({1: 4.0})
    assert 0.35 < plain < 0.65
    assert weighted > plain + 0.2


def test_model_evaluate_logs_equal_whole_data_values():
    x, y = digits(300)
    model = elegy.Model(
        module=mlp(),
        loss=[losses.SparseCategoricalCrossentropy(from_logits=True), regularizers.L2(1e-3)],
        metrics=[metrics.Accuracy(), metrics.F1(num_classes=10)],
        optimizer=optax.adam(1e-2),
    )
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    logs = model.evaluate(x, y, batch_size=128, verbose=0)  # batches of 128, 128, 44
    logits = np.asarray(model.predict(x, batch_size=300), np.float64)
    ce = -log_softmax(logits)[np.arange(len(y)), y].mean()
    params = [np.asarray(p) for p in jax.tree.leaves(model.states.net_params)]
    l2 = 1e-3 * sum(float((p.astype(np.float64) ** 2).sum()) for p in params)
    predicted = logits.argmax(-1)
    t, p = np.eye(10)[y], np.eye(10)[predicted]
    tp, fp, fn = (t * p).sum(0), ((1 - t) * p).sum(0), (t * (1 - p)).sum(0)
    prec, rec = tp / (tp + fp + 1e-7), tp / (tp + fn + 1e-7)
    expected = {
        "loss": ce + l2,
        "sparse_categorical_crossentropy_loss": ce,
        "l2_loss": l2,
        "accuracy": (predicted == y).mean(),
        "f1": (2 * prec * rec / (prec + rec + 1e-7)).mean(),
    }
    assert set(logs) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(logs[name], value, rtol=1e-4, err_msg=name)
