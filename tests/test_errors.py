"""Bad input: a clear ValueError/TypeError naming the argument, raised before anything
is compiled, and the model left exactly as it was."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import CountCompiles, digits, mlp_model
from hypothesis import given, settings
from hypothesis import strategies as st

import eqx_elegy as elegy

X, Y = digits(64)
ONE_HOT = np.eye(10, dtype=np.float32)[Y]


def labels(index, value, dtype=np.int32):
    """Y as `dtype`, with `value` at example `index`."""
    y = Y.astype(dtype)
    y[index] = value
    return y


SPARSE = r"y holds the labels of the sparse categorical crossentropy 'sparse_categorical_crossentropy_loss', which must be class ids: integers in \[0, 10\) \(the output has 10 classes\), but y "


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
            dict(x=X, y=labels(5, 10)),
            ValueError,
            SPARSE + r"is 10 or more at example 5 \(10; 1 such labels\)",
        ),
        (dict(x=X, y=labels(7, -1)), ValueError, SPARSE + r"is negative at example 7"),
        (
            dict(x=X, y=labels(2, -(2**32) + 9, np.int64)),
            ValueError,
            r"y holds the integer -4294967287, which does not fit in int32: JAX runs without "
            r"64-bit integers",
        ),
        (
            dict(x=X, y=labels(3, np.inf, np.float32)),
            ValueError,
            SPARSE + r"is not finite at example 3 \(inf",
        ),
        (
            dict(x=X, y=labels(4, 1.7, np.float32)),
            ValueError,
            SPARSE + r"is not an integer at example 4",
        ),
        (
            dict(x=X, y=ONE_HOT),
            ValueError,
            SPARSE
            + r"has shape \[64, 10\], the shape of the output: it looks one-hot\. Pass y\.argmax\(-1\), or use CategoricalCrossentropy",
        ),
        (
            dict(x=X[:, :10], y=Y, batch_size=16),
            ValueError,
            r"The module cannot be applied to x: a batch of x is float32\[16, 10\], and the module failed on it with TypeError: .*dot_general.*\nPass x with the shape",
        ),
        (
            dict(x=X, y=Y, validation_data=(X[:, :10], Y)),
            ValueError,
            r"The module cannot be applied to validation_data x: a batch of validation_data x is float32\[32, 10\]",
        ),
        (
            dict(x=X, y=Y, validation_data=[(X[:8, :3], Y[:8])]),
            ValueError,
            r"The module cannot be applied to validation_data: a batch of validation_data is float32\[8, 3\]",
        ),
        (
            dict(x=X, y=Y, validation_data=(X, ONE_HOT)),
            ValueError,
            r"validation_data y holds the labels .* it looks one-hot",
        ),
        (
            dict(x=X, y=Y, validation_data=(X, labels(0, 12))),
            ValueError,
            r"validation_data y holds the labels .* is 10 or more at example 0",
        ),
        (
            dict(x=X, y=Y, validation_data=(X, labels(0, np.nan, np.float32))),
            ValueError,
            r"validation_data y contains NaN \(first at example 0\)",
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


def test_a_trained_model_is_unchanged_by_bad_labels_or_inputs():
    model = mlp_model()
    model.fit(X, Y, verbose=0)
    before = model.states
    for kwargs in (dict(y=labels(0, 10)), dict(x=X[:, :5]), dict(validation_data=(X[:, :5], Y))):
        with CountCompiles() as compiles, pytest.raises(ValueError):
            model.fit(**{"x": X, "y": Y, **kwargs}, verbose=0)
        assert_unchanged(model, before)
        assert compiles.count == 0 and model.initialized
    for x, y in ((X, labels(1, -1)), (X, ONE_HOT), (X[:, :5], Y)):
        with pytest.raises(ValueError, match=r"\by\b.*class ids|cannot be applied to x"):
            model.evaluate(x, y, verbose=0)
        assert_unchanged(model, before)


@settings(max_examples=25, deadline=None)
@given(
    index=st.integers(0, 63),
    value=st.one_of(
        st.integers(-(2**31), -1),
        st.integers(10, 2**31 - 1),
        st.floats(allow_nan=False, width=32).filter(lambda v: not (v.is_integer() and 0 <= v < 10)),
    ),
)
def test_any_invalid_sparse_label_is_named(index, value):
    # Every label that is not a class id of the 10 outputs is found, at its example,
    # before anything compiles.
    y = labels(index, value, np.float32 if isinstance(value, float) else np.int32)
    model = mlp_model()
    with CountCompiles() as compiles, pytest.raises(ValueError, match=rf"example {index} "):
        model.evaluate(X, y, verbose=0)
    assert compiles.count == 0


def test_default_train_step_needs_optimizer():
    model = mlp_model(optimizer=None)
    with pytest.raises(
        TypeError,
        match=r"^Model has no optimizer, and its train_step needs one: build it with "
        r"optimizer=optax.adam\(1e-3\)",
    ):
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


@pytest.mark.parametrize(
    ("filepath", "save_freq", "validation", "pattern"),
    [
        ("c-{val_loss:.2f}", "epoch", False, r"uses \{val_loss\}, which is not a log of this fit"),
        ("c-{acc}", "epoch", True, r"available: accuracy, epoch, loss, .*val_accuracy, val_loss"),
        (
            "c-{val_loss}",
            2,
            True,
            r"uses \{val_loss\}.*available at each step: accuracy, batch, epoch",
        ),
        ("c-{batch}", "epoch", False, r"uses \{batch\}, but it saves at the end of each epoch"),
    ],
)
def test_checkpoint_fields_are_checked_before_the_first_step(
    tmp_path, filepath, save_freq, validation, pattern
):
    model = mlp_model()
    model.fit(X, Y, verbose=0)
    before = model.states
    saver = elegy.callbacks.ModelCheckpoint(tmp_path / filepath, save_freq=save_freq)
    val = (X, Y) if validation else None
    with CountCompiles() as compiles, pytest.raises(ValueError, match=pattern):
        model.fit(X, Y, validation_data=val, callbacks=[saver], verbose=0)
    assert_unchanged(model, before)
    assert compiles.count == 0 and not list(tmp_path.iterdir())


def test_checkpoint_fields_that_are_logs_pass(tmp_path):
    saver = elegy.callbacks.ModelCheckpoint(tmp_path / "c{epoch}-{val_accuracy:.2f}-{loss:.1f}")
    mlp_model().fit(X, Y, validation_data=(X, Y), callbacks=[saver], verbose=0)
    assert len(list(tmp_path.iterdir())) == 1
