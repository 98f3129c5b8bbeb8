"""Bad input: a clear ValueError/TypeError naming the argument, raised before anything
is compiled, and the model left exactly as it was."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import CountCompiles, digits, mlp_model

import eqx_elegy as elegy

X, Y = digits(64)


def assert_unchanged(model, before):
    assert model.states is before


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (dict(x=X, y=Y[:50]), ValueError, r"x has 64 examples but y has 50"),
        (dict(x=X[:0], y=Y[:0]), ValueError, r"x is empty"),
        (dict(x=X, y=Y, batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
        (dict(x=X, y=Y, batch_size=2.5), TypeError, r"batch_size must be an int"),
        (
            dict(x=X, y=Y, epochs=2, initial_epoch=3),
            ValueError,
            r"epochs \(2\) is smaller than initial_epoch \(3\)",
        ),
        (
            dict(x=X, y="labels"),
            TypeError,
            r"y must be an array or a pytree of arrays, got a string",
        ),
        (dict(x=X, y=np.array(["a"] * 64)), TypeError, r"y must hold numbers"),
        (
            dict(x=X, y=Y, validation_split=1.0),
            ValueError,
            r"validation_split must be a float in \[0, 1\)",
        ),
        (dict(x=X, y=Y, validation_split=-0.1), ValueError, r"validation_split"),
        (
            dict(x=X, y=np.where(np.arange(64) == 7, np.nan, 1.0)),
            ValueError,
            r"y contains NaN \(first at example 7\)",
        ),
        (dict(x=X), ValueError, r"fit needs labels: pass y"),
        (dict(x=None, y=Y), ValueError, r"x is None"),
        (dict(x=X, y=Y, steps_per_execution=0), ValueError, r"steps_per_execution must be >= 1"),
        (
            dict(x=X, y=Y, class_weight={-1: 2.0}),
            ValueError,
            r"class_weight keys must be class ids",
        ),
        (dict(x=X, y=Y, validation_data=X), TypeError, r"validation_data must be a tuple \(x, y\)"),
        (
            dict(x=X, y=Y, sample_weight=np.ones(10)),
            ValueError,
            r"x has 64 examples but sample_weight has 10",
        ),
        (
            dict(x=X.tolist(), y=Y),
            TypeError,
            r"x is a Python list of numbers \(x\[0\]\[0\] is 0\.0\), but a list or tuple in x "
            r"is read as a pytree of separate arrays \(one per input\)\. Convert it to one "
            r"array first: x=np.asarray\(...\)",
        ),
        (dict(x=X, y=Y.tolist()), TypeError, r"y is a Python list of numbers \(y\[0\] is 0\)"),
        (
            dict(x=X, y=Y, callbacks=elegy.callbacks.TerminateOnNaN),
            TypeError,
            r"callbacks is the class TerminateOnNaN, not a callback: pass an instance, e\.g\. "
            r"callbacks=\[TerminateOnNaN\(\)\]",
        ),
        (
            dict(x=X, y=Y, callbacks=[elegy.callbacks.History(), print]),
            TypeError,
            r"callbacks\[1\] is builtin_function_or_method <built-in function print>, not an "
            r"elegy.callbacks.Callback: pass a list of callbacks.*wrap it in LambdaCallback",
        ),
        (
            dict(x={"a": X, "b": X[:10]}, y=Y),
            ValueError,
            r"The arrays in x have different lengths \[10, 64\]",
        ),
    ],
)
def test_fit_bad_input(kwargs, error, pattern):
    model = mlp_model()
    before = model.states
    with CountCompiles() as compiles, pytest.raises(error, match=pattern):
        model.fit(verbose=0, **kwargs)
    assert_unchanged(model, before)
    assert compiles.count == 0


def test_default_train_step_needs_optimizer():
    model = mlp_model(optimizer=None)
    with pytest.raises(TypeError, match=r"needs an optimizer; pass optimizer=optax.adam"):
        model.fit(X, Y, verbose=0)


def test_optimizer_must_be_optax():
    with pytest.raises(TypeError, match=r"optimizer must be an optax.GradientTransformation"):
        mlp_model(optimizer="adam")


def test_predict_without_module_or_pred_step():
    class OnlyTest(elegy.Model):
        def test_step(self, x, states) -> elegy.TestStep:
            return jnp.zeros(()), {}, states

    with pytest.raises(TypeError, match=r"no module.*pred_step"):
        OnlyTest().predict(X)


def test_no_loss_is_explained():
    model = elegy.Model(module=mlp_model().module, optimizer=optax.sgd(0.1))
    with pytest.raises(TypeError, match=r"has no loss: pass Model\(loss=...\)"):
        model.fit(X, Y, verbose=0)
    assert model.predict(X).shape == (64, 10)  # predicting needs no loss


def test_failed_trace_leaves_states_unchanged():
    class Broken(elegy.Model):
        def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
            if initializing:
                return jnp.zeros(()), {}, states.update(net_params=jnp.zeros(3))
            return jnp.zeros((2,)), {}, states

    model = Broken(optimizer=optax.sgd(0.1))
    with pytest.raises(
        TypeError, match=r"Broken.test_step must return elegy.TestStep.*float32\[2\]"
    ):
        model.fit(X, Y, verbose=0)
    before = model.states
    with pytest.raises(TypeError):
        model.fit(X, Y, verbose=0)
    assert model.states is before
    np.testing.assert_array_equal(model.states.net_params, np.zeros(3))


def test_evaluate_needs_labels():
    with pytest.raises(ValueError, match=r"evaluate needs labels"):
        mlp_model().evaluate(X, verbose=0)


def test_bad_verbose():
    with pytest.raises(ValueError, match=r"verbose must be >= 0"):
        mlp_model().fit(X, Y, verbose=-1)


def test_a_single_callback_needs_no_list():
    # Keras 3 takes one callback as it takes a list of them.
    epochs = []
    model = mlp_model()
    model.fit(
        X, Y, epochs=2, verbose=0,
        callbacks=elegy.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: epochs.append(e)),
    )  # fmt: skip
    assert epochs == [0, 1]
    model.evaluate(X, Y, verbose=0, callbacks=elegy.callbacks.TerminateOnNaN())


def test_validation_data_may_be_a_list():
    history = mlp_model().fit(X, Y, epochs=1, validation_data=[X, Y], verbose=0)
    assert "val_loss" in history.history
