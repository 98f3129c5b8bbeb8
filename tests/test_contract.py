"""DESIGN §9 "Contract fixes": init on an initialised model, reset, evaluate without
labels, and each step's Python code running once per compilation."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import CountCompiles, digits, mlp_model

import eqx_elegy as elegy

X, Y = digits(64)


def _leaves(states):
    return [
        np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a)
        for a in jax.tree.leaves(states)
    ]


def _assert_same(a, b):
    for p, q in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(p, q)


def test_init_on_an_initialised_model_changes_nothing():
    # Elegy 0.7.4: init returns at once when the model is initialised.
    model = mlp_model()
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    trained = model.states
    with CountCompiles() as compiles:
        assert model.init(X[:7], Y[:7]) is trained
        assert model.init() is trained  # no data needed either
    assert model.states is trained and compiles.count == 0
    # A model initialised by init: a second init, even with other shapes, keeps it.
    fresh = mlp_model()
    first = fresh.init(X[:8], Y[:8])
    assert fresh.init(X[:3, :10], Y[:3]) is first


def test_reset_starts_over():
    model = mlp_model()
    model.fit(X, Y, batch_size=32, epochs=2, verbose=0)
    model.reset()
    assert not model.initialized
    _assert_same(model.states, mlp_model().states)
    # Training again from the reset model gives what a fresh model gives; init works again.
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    fresh = mlp_model()
    fresh.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    _assert_same(model.states.net_params, fresh.states.net_params)
    model.reset()
    model.init(X[:8], Y[:8])
    assert model.initialized


class Centroid(elegy.Model):
    """A test step that needs no labels: the mean squared distance to a centre."""

    def test_step(self, x, states, initializing) -> elegy.TestStep:
        c = jnp.zeros(x.shape[-1]) if initializing else states.net_params
        loss = jnp.mean(jnp.sum((x - c) ** 2, axis=-1))
        return loss, {"loss": loss}, states.update(net_params=c)


def test_evaluate_without_labels_when_the_test_step_needs_none():
    model = Centroid(optimizer=optax.sgd(0.1))
    logs = model.evaluate(X, batch_size=64, verbose=0)  # initialises from x alone
    assert logs["loss"] == pytest.approx(float(np.mean(np.sum(X**2, axis=-1))), rel=1e-5)
    model.fit(X, batch_size=64, epochs=40, verbose=0)
    expected = float(np.mean(np.sum((X - X.mean(0)) ** 2, axis=-1)))
    # A custom step's logs are those of the last batch (docs/low-level-api.md): one batch.
    assert model.evaluate(X, batch_size=64, verbose=0)["loss"] == pytest.approx(expected, rel=1e-3)
    assert model.evaluate(iter([X]), verbose=0)["loss"] == pytest.approx(expected, rel=1e-3)
    # The default test step still needs them, and says so.
    with pytest.raises(ValueError, match="evaluate needs labels: pass y"):
        mlp_model().evaluate(X, verbose=0)


def test_evaluate_without_labels_needs_a_test_step_that_needs_none():
    class OwnTrainStep(elegy.Model):  # evaluate still runs the default test_step
        def train_step(self, x, states) -> elegy.TrainStep:
            return {}, states

    model = OwnTrainStep(
        module=eqx.nn.Linear(64, 10, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(X, verbose=0)
    with pytest.raises(ValueError, match=r"evaluate needs labels.*override test_step"):
        model.evaluate(X, verbose=0)


class Counting(elegy.Model):
    """Counts the Python runs of its steps."""

    calls: dict = eqx.field(static=True, default_factory=dict)

    def pred_step(self, x, states, initializing, training) -> elegy.PredStep:
        self.calls["pred_step"] = self.calls.get("pred_step", 0) + 1
        return super().pred_step(x, states, initializing, training)

    def test_step(
        self, x, y_true, sample_weight, class_weight, states, initializing, training
    ) -> elegy.TestStep:
        self.calls["test_step"] = self.calls.get("test_step", 0) + 1
        args = (x, y_true, sample_weight, class_weight, states, initializing, training)
        return super().test_step(*args)


@pytest.mark.parametrize("steps_per_execution", [1, 2])
def test_evaluate_and_predict_run_the_step_code_once_per_compilation(steps_per_execution):
    model = Counting(
        module=eqx.nn.Linear(64, 10, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.sgd(0.1),
        steps_per_execution=steps_per_execution,
    )
    model.init(X[:32], Y[:32])
    for runs, call in (
        # The default test_step calls pred_step: one Python run of each.
        ({"test_step": 1, "pred_step": 1}, lambda: model.evaluate(X, Y, batch_size=32, verbose=0)),
        ({"pred_step": 1}, lambda: model.predict(X, batch_size=32)),
    ):
        model.calls.clear()
        with CountCompiles() as compiles:
            first = call()
        assert compiles.count >= 1 and model.calls == runs
        model.calls.clear()
        with CountCompiles() as compiles:
            again = call()
        assert (model.calls, compiles.count) == ({}, 0)
        jax.tree.map(np.testing.assert_array_equal, first, again)


def test_a_default_step_given_too_many_positional_arguments_raises():
    model = mlp_model()
    states = model.states_step()
    x = jnp.asarray(X[:4])
    with pytest.raises(
        TypeError,
        match=r"Model\.pred_step takes 4 positional arguments \(x, states, "
        r"initializing, training\) but 5 were given",
    ):
        model.pred_step(x, states, False, False, "extra")
    with pytest.raises(TypeError, match=r"Model\.test_step got multiple values for argument 'x'"):
        model.test_step(x, x=x)
    # Within the limit, arguments bind by position and the rest are None or False.
    y_pred, _ = model.pred_step(x, states)
    assert y_pred.shape == (4, 10)
