"""`ema_decay=`: states.ema_params equal a hand-computed EMA of the parameters; evaluate,
predict and validation use it unless use_ema=False; saved and restored; bad values."""

import jax
import numpy as np
import optax
import pytest
from helpers import digits, mlp_model

import eqx_elegy as elegy


def _params(tree):
    return [np.asarray(a, np.float64) for a in jax.tree.leaves(tree)]


def test_ema_params_equal_a_hand_computed_average():
    x, y = digits(96)
    model = mlp_model(ema_decay=0.9, optimizer=optax.sgd(0.5))
    ema = _params(model.states.net_params)
    for a, b in zip(ema, _params(model.states.ema_params), strict=True):  # starts at params
        np.testing.assert_array_equal(a, b)
    for i in range(0, 96, 32):  # one train step per batch, then the average by hand
        model.train_on_batch(x[i : i + 32], y[i : i + 32])
        ema = [
            0.9 * e + 0.1 * p for e, p in zip(ema, _params(model.states.net_params), strict=True)
        ]
    for a, b in zip(_params(model.states.ema_params), ema, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(_params(model.states.ema_params)[0], _params(model.states.net_params)[0])


def test_fit_keeps_the_average_step_by_step():
    x, y = digits(128)
    fitted = mlp_model(ema_decay=0.8)
    fitted.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    stepped = mlp_model(ema_decay=0.8)
    # The same eight steps through train_on_batch give the same average (each call is a
    # one-step epoch there, which changes nothing for this deterministic model).
    for _epoch in range(2):
        for i in range(0, 128, 32):
            stepped.train_on_batch(x[i : i + 32], y[i : i + 32])
    for a, b in zip(
        _params(fitted.states.ema_params), _params(stepped.states.ema_params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_evaluate_predict_and_validation_use_the_average_unless_told_not_to():
    x, y = digits(128)
    model = mlp_model(ema_decay=0.9)
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, validation_data=(x[:64], y[:64]))
    raw = elegy.Model(module=model.module, loss=model.loss, metrics=model.metrics)
    on_ema = elegy.Model(module=model.module, loss=model.loss, metrics=model.metrics)
    raw.set_weights([np.asarray(a) for a in jax.tree.leaves(model.states.net_params)])
    on_ema.set_weights([np.asarray(a) for a in jax.tree.leaves(model.states.ema_params)])
    assert model.evaluate(x, y, verbose=0) == pytest.approx(on_ema.evaluate(x, y, verbose=0))
    assert model.evaluate(x, y, verbose=0, use_ema=False) == pytest.approx(
        raw.evaluate(x, y, verbose=0)
    )
    np.testing.assert_allclose(model.predict(x), on_ema.predict(x), rtol=1e-6)
    np.testing.assert_allclose(model.predict(x, use_ema=False), raw.predict(x), rtol=1e-6)
    assert not np.allclose(model.predict(x), model.predict(x, use_ema=False))
    assert history.history["val_loss"][-1] == pytest.approx(
        on_ema.evaluate(x[:64], y[:64], verbose=0)["loss"], rel=1e-6
    )


def test_ema_params_are_saved_and_restored(tmp_path):
    x, y = digits(64)
    model = mlp_model(ema_decay=0.95)
    model.fit(x, y, batch_size=32, verbose=0)
    model.save(tmp_path / "ckpt")
    restored = mlp_model(ema_decay=0.95)
    restored.load(tmp_path / "ckpt")
    for a, b in zip(
        _params(restored.states.ema_params), _params(model.states.ema_params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(restored.predict(x), model.predict(x))


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (1.0, ValueError, r"ema_decay must be in \(0, 1\).*got 1.0"),
        (0.0, ValueError, r"ema_decay must be in \(0, 1\)"),
        (-0.5, ValueError, r"ema_decay must be in \(0, 1\)"),
        ("0.9", TypeError, r"ema_decay must be None or a float in \(0, 1\).*str '0.9'"),
        (True, TypeError, r"ema_decay must be None or a float"),
    ],
)
def test_bad_ema_decay_is_a_clear_error(value, error, message):
    with pytest.raises(error, match=message):
        mlp_model(ema_decay=value)
