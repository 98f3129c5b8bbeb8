"""The batch API (train_on_batch, test_on_batch, predict_on_batch), evaluate's
return_dict, and get_weights/set_weights, against fit/evaluate/predict on real numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import digits, mlp_model

import eqx_elegy as elegy


def _leaves(model):
    return [np.asarray(a) for a in jax.tree.leaves(model.states.net_params)]


def test_train_on_batch_equals_one_fit_step():
    x, y = digits(64)
    fitted = mlp_model()
    history = fitted.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    stepped = mlp_model()
    logs = stepped.train_on_batch(x, y)
    for a, b in zip(_leaves(fitted), _leaves(stepped), strict=True):
        np.testing.assert_array_equal(a, b)
    assert set(logs) == {"loss", "accuracy"}  # one loss: logged as `loss` alone
    assert logs["loss"] == pytest.approx(history.history["loss"][0], rel=1e-6)
    assert logs["accuracy"] == pytest.approx(history.history["accuracy"][0])


def test_train_on_batch_calls_are_epochs_of_one_step():
    """The n-th call runs as the only step of epoch n: metrics are reset each call (as in
    Keras 3) and three calls equal a three-epoch fit on that one batch."""
    x, y = digits(48)
    fitted = mlp_model()
    history = fitted.fit(x, y, batch_size=48, epochs=3, shuffle=False, verbose=0)
    stepped = mlp_model()
    losses = [stepped.train_on_batch(x, y)["loss"] for _ in range(3)]
    for a, b in zip(_leaves(fitted), _leaves(stepped), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(losses, history.history["loss"], rtol=1e-6)
    assert losses[2] < losses[0]


def test_train_on_batch_sample_and_class_weight_and_list_logs():
    x, y = digits(40)
    weights = np.linspace(0.5, 1.5, 40).astype(np.float32)
    fitted = mlp_model()
    fitted.fit(x, y, batch_size=40, sample_weight=weights, shuffle=False, verbose=0)
    stepped = mlp_model()
    out = stepped.train_on_batch(x, y, sample_weight=weights, return_dict=False)
    assert isinstance(out, list) and len(out) == 2  # loss first, then the accuracy
    for a, b in zip(_leaves(fitted), _leaves(stepped), strict=True):
        np.testing.assert_array_equal(a, b)
    class_weight = {i: 1.0 + i / 10 for i in range(10)}
    a, b = mlp_model(), mlp_model()
    a.fit(x, y, batch_size=40, class_weight=class_weight, shuffle=False, verbose=0)
    b.train_on_batch(x, y, class_weight=class_weight)
    for u, v in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)


def test_train_on_batch_keeps_states_the_user_holds():
    x, y = digits(32)
    model = mlp_model()
    model.train_on_batch(x, y)
    before = model.states
    kept = _leaves(model)
    model.train_on_batch(x, y)
    for a, b in zip(kept, jax.tree.leaves(before.net_params), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))  # not donated away
    assert any(not np.array_equal(a, b) for a, b in zip(kept, _leaves(model), strict=True))


def test_test_and_predict_on_batch_match_evaluate_and_predict():
    x, y = digits(50)
    model = mlp_model()
    model.fit(x, y, batch_size=25, epochs=2, verbose=0)
    expected = model.evaluate(x, y, batch_size=50, verbose=0)
    got = model.test_on_batch(x, y)
    assert got == pytest.approx(expected, rel=1e-6)
    listed = model.test_on_batch(x, y, return_dict=False)
    assert listed[:2] == pytest.approx([expected["loss"], expected["accuracy"]], rel=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x), model.predict(x), rtol=1e-6)
    assert model.predict_on_batch(x).shape == (50, 10)


def test_test_on_batch_resets_metrics_each_call():
    x, y = digits(60)
    model = mlp_model()
    model.fit(x, y, batch_size=30, verbose=0)
    first = model.test_on_batch(x[:30], y[:30])
    model.test_on_batch(x[30:], y[30:])
    assert model.test_on_batch(x[:30], y[:30]) == pytest.approx(first, rel=1e-6)


def test_evaluate_return_dict_false_is_keras_list_loss_first():
    x, y = digits(64)
    model = mlp_model()
    logs = model.evaluate(x, y, verbose=0)
    values = model.evaluate(x, y, verbose=0, return_dict=False)
    names = ["loss", "accuracy"]
    assert values == pytest.approx([logs[name] for name in names])

    class OnlyLoss(elegy.Model):
        def test_step(self, x, states, initializing) -> elegy.TestStep:
            params = jnp.zeros(()) if initializing else states.net_params
            loss = jnp.mean(x) + params
            return loss, {"loss": loss}, states.update(net_params=params)

    single = OnlyLoss().evaluate(x, y, verbose=0, return_dict=False)
    assert isinstance(single, float)  # Keras: one value alone is returned as it is


def test_get_weights_are_net_params_leaves_in_tree_order():
    model = mlp_model()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(32, 64), (32,), (10, 32), (10,)]
    assert all(isinstance(w, np.ndarray) for w in weights)
    for w, leaf in zip(weights, jax.tree.leaves(model.states.net_params), strict=True):
        np.testing.assert_array_equal(w, np.asarray(leaf))


def test_set_weights_round_trip_and_predictions():
    x, y = digits(64)
    trained = mlp_model()
    trained.fit(x, y, batch_size=32, epochs=2, verbose=0)
    fresh = mlp_model()
    fresh.set_weights(trained.get_weights())
    np.testing.assert_array_equal(fresh.predict(x), trained.predict(x))
    for a, b in zip(fresh.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # Training continues from the set weights.
    fresh.fit(x, y, batch_size=32, verbose=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda w: w[:-1], "set_weights got 3 arrays, but the model has 4"),
        (lambda w: [w[0].T, *w[1:]], r"weights\[0\] has shape \(64, 32\)"),
        (lambda w: [w[0].astype(np.float64), *w[1:]], r"weights\[0\] has dtype float64"),
        (lambda w: dict(enumerate(w)), "set_weights takes a list of arrays"),
    ],
)
def test_set_weights_bad_input_leaves_model_unchanged(change, message):
    model = mlp_model()
    before = model.states
    with pytest.raises((ValueError, TypeError), match=message):
        model.set_weights(change(model.get_weights()))
    assert model.states is before


def test_get_weights_before_any_parameters_is_a_clear_error():
    class Custom(elegy.Model):
        def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
            raise NotImplementedError

    model = Custom(optimizer=optax.sgd(0.1))
    with pytest.raises(ValueError, match=r"no weights yet.*init"):
        model.get_weights()
    with pytest.raises(ValueError, match=r"no weights yet.*init"):
        model.set_weights([])


def test_batch_api_bad_input_is_checked_before_compiling():
    x, y = digits(20)
    model = mlp_model()
    before = model.states
    with pytest.raises(ValueError, match="x has 20 examples but y has 19"):
        model.train_on_batch(x, y[:19])
    with pytest.raises(ValueError, match="train_on_batch needs labels"):
        model.train_on_batch(x)
    with pytest.raises(TypeError, match="class_weight"):
        model.train_on_batch(x, y, class_weight=[1.0])
    assert model.states is before
