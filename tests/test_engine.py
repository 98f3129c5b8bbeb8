"""The engine object each model keeps: nothing it holds keeps a dropped model alive,
and it never travels with pickle or copies (a copy builds its own on first use)."""

import copy
import dataclasses
import gc
import pickle
import weakref

import cloudpickle
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import CountCompiles

import eqx_elegy as elegy

X = np.linspace(-1, 1, 48, dtype=np.float32).reshape(16, 3)
Y = (X @ np.array([[1.0, -2.0], [0.5, 0.0], [-1.0, 1.0]], np.float32)).astype(np.float32)


def _sgd_init(params):
    return None


def _sgd_update(grads, state, params=None):
    return jax.tree.map(lambda g: -0.1 * g, grads), state


# optax's own optimizers are closures, which the standard pickle cannot write; a
# GradientTransformation of module-level functions can be.
PICKLABLE_SGD = optax.GradientTransformation(_sgd_init, _sgd_update)


class Tracked(elegy.Model):
    """A model class of its own, so that the test can count its live instances (any copy
    the library makes of the model is one)."""


def _tracked(**kwargs) -> Tracked:
    kwargs.setdefault("optimizer", optax.adam(1e-2))
    return Tracked(
        module=eqx.nn.Linear(3, 2, key=jax.random.key(0)),
        loss=elegy.losses.MeanSquaredError(),
        metrics=elegy.metrics.MeanAbsoluteError(),
        **kwargs,
    )


def _live_tracked() -> int:
    gc.collect()
    return sum(type(o) is Tracked for o in gc.get_objects())


def _fit(model):
    model.fit(X, Y, batch_size=8, epochs=2, verbose=0)


def _distributed_fit(model):
    model.distributed(elegy.DataParallel()).fit(X, Y, batch_size=8, epochs=2, verbose=0)


USES = {
    "fit": _fit,
    "evaluate": lambda model: model.evaluate(X, Y, batch_size=8, verbose=0),
    "predict": lambda model: model.predict(X, batch_size=8),
    "summary": lambda model: model.summary(X[:1], return_string=True),
    "save": lambda model: model.save(model.path),
    "distributed fit": _distributed_fit,
    "fit with callbacks": lambda model: model.fit(
        X,
        Y,
        batch_size=8,
        epochs=2,
        verbose=1,
        validation_split=0.25,
        callbacks=[elegy.callbacks.EarlyStopping(monitor="loss", restore_best_weights=True)],
    ),
}


@pytest.mark.parametrize("use", list(USES))
def test_a_used_model_is_freed_when_dropped(use, tmp_path):
    before = _live_tracked()
    model = _tracked()
    object.__setattr__(model, "path", tmp_path / "ckpt")  # for "save" only
    USES[use](model)
    ref = weakref.ref(model)
    del model
    assert _live_tracked() == before
    assert ref() is None


def test_many_fitted_models_leave_nothing_behind():
    before = _live_tracked()
    refs = []
    for seed in range(5):
        model = _tracked(seed=seed)
        _fit(model)
        model.evaluate(X, Y, verbose=0)
        model.predict(X)
        refs.append(weakref.ref(model))
        del model
    assert _live_tracked() == before and all(ref() is None for ref in refs)


def _pickled(model, dumps=pickle.dumps):
    return pickle.loads(dumps(model))


@pytest.mark.parametrize("then", ["predict", "fit"])
def test_a_used_model_pickles(then):
    model = _tracked(optimizer=PICKLABLE_SGD)
    _fit(model)
    expected = model.predict(X)
    restored = _pickled(model)
    np.testing.assert_array_equal(restored.predict(X), expected)
    assert restored.initialized
    if then == "fit":  # the copy trains on from the same states as the original
        _fit(model)
        _fit(restored)
        np.testing.assert_array_equal(restored.predict(X), model.predict(X))


def test_a_model_with_an_optax_optimizer_cloudpickles_after_fit():
    model = _tracked()
    _fit(model)
    restored = _pickled(model, cloudpickle.dumps)
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    _fit(model)
    _fit(restored)
    for a, b in zip(jax.tree.leaves(model.states), jax.tree.leaves(restored.states), strict=True):
        np.testing.assert_array_equal(_numbers(a), _numbers(b))


def _numbers(leaf) -> np.ndarray:
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.asarray(leaf)


@pytest.mark.parametrize("make_copy", [copy.deepcopy, copy.copy, _pickled])
def test_copies_build_their_own_caches_and_stay_independent(make_copy):
    model = _tracked(optimizer=PICKLABLE_SGD)
    _fit(model)
    model.predict(X)
    duplicate = make_copy(model)
    with CountCompiles() as compiles:  # the original's compiled steps did not travel
        np.testing.assert_array_equal(duplicate.predict(X), model.predict(X))
    assert compiles.count >= 1
    before = model.states.net_params.weight
    duplicate.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    assert model.states.net_params.weight is before
    assert not np.array_equal(duplicate.states.net_params.weight, before)
    assert duplicate.history is not model.history


@pytest.mark.parametrize("make_copy", [copy.deepcopy, copy.copy, _pickled])
def test_copies_are_frozen_like_the_original(make_copy):
    before = _live_tracked()
    model = _tracked(optimizer=PICKLABLE_SGD)
    model.predict(X)
    duplicate = make_copy(model)
    with pytest.raises(dataclasses.FrozenInstanceError):
        duplicate.seed = 3  # type: ignore[misc]
    duplicate.predict(X)
    del duplicate, model
    assert _live_tracked() == before


def test_a_copy_keeps_whether_the_model_was_initialised():
    """A model whose own init_step builds its states: a copy must not initialise again
    (that would reset the trained states), nor a fresh model count as initialised."""

    class OwnInit(elegy.Model):
        def init_step(self, x, states):
            return states.update(net_params=jnp.zeros((3, 2)), optimizer_states=())

        def train_step(self, x, y_true, states):
            w = states.net_params
            grad = jax.grad(lambda w: jnp.mean((x @ w - y_true) ** 2))(w)
            return {"loss": jnp.mean((x @ w - y_true) ** 2)}, states.update(net_params=w - grad)

        def pred_step(self, x, states):
            return x @ states.net_params, states

    model = OwnInit()
    assert not copy.deepcopy(model).initialized
    model.fit(X, Y, batch_size=8, epochs=2, verbose=0)
    trained = np.asarray(model.states.net_params)
    for duplicate in (copy.deepcopy(model), copy.copy(model)):
        assert duplicate.initialized
        np.testing.assert_allclose(duplicate.predict(X), X @ trained, rtol=1e-6)


def test_stop_training_and_history_are_per_model():
    model = _tracked()
    assert model.history is None and model.stop_training is False
    _fit(model)
    other = _tracked()
    model.stop_training = True
    assert other.stop_training is False and other.history is None
    assert model.history is not None and model.history.epoch == [0, 1]
