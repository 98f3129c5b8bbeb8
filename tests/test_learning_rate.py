"""The learning rate in the epoch logs and History, LearningRateScheduler and
ReduceLROnPlateau changing it without recompiling, and the error without an injected
learning rate."""

import jax
import numpy as np
import optax
import pytest
from helpers import CountCompiles, digits, mlp_model

import eqx_elegy as elegy
from eqx_elegy.callbacks import LearningRateScheduler, ReduceLROnPlateau


def _injected(optimizer=optax.sgd, learning_rate=0.1):
    return optax.inject_hyperparams(optimizer)(learning_rate=learning_rate)


def test_history_carries_the_learning_rate_of_an_injected_optimizer():
    x, y = digits(64)
    model = mlp_model(optimizer=_injected(optax.adam, 0.01))
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    np.testing.assert_allclose(history.history["learning_rate"], [0.01] * 3, rtol=1e-6)
    plain = mlp_model(optimizer=optax.adam(0.01))
    assert "learning_rate" not in plain.fit(x, y, batch_size=32, verbose=0).history


def test_scheduler_equals_the_optax_schedule_it_replaces():
    """One step per epoch: Keras' per-epoch schedule and optax's per-step one agree."""
    x, y = digits(64)
    scheduled = mlp_model(optimizer=_injected(optax.sgd, 1.0))
    scheduler = LearningRateScheduler(lambda epoch, lr: 0.5 * 0.5**epoch)
    history = scheduled.fit(
        x, y, batch_size=64, epochs=4, shuffle=False, verbose=0, callbacks=[scheduler]
    )
    assert history.history["learning_rate"] == pytest.approx([0.5, 0.25, 0.125, 0.0625])
    reference = mlp_model(optimizer=optax.sgd(optax.exponential_decay(0.5, 1, 0.5)))
    reference.fit(x, y, batch_size=64, epochs=4, shuffle=False, verbose=0)
    for a, b in zip(
        jax.tree.leaves(scheduled.states.net_params),
        jax.tree.leaves(reference.states.net_params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_scheduler_changes_the_rate_without_recompiling(capsys):
    x, y = digits(64)
    model = mlp_model(optimizer=_injected(optax.adam, 0.01))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # compiles once
    scheduler = LearningRateScheduler(lambda epoch, lr: lr * 0.5, verbose=1)
    with CountCompiles() as compiles:
        history = model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[scheduler])
    assert compiles.count == 0
    assert history.history["learning_rate"] == pytest.approx([0.005, 0.0025, 0.00125])
    out = capsys.readouterr().out
    assert "Epoch 1: LearningRateScheduler setting learning rate to 0.005." in out


def test_scheduler_takes_keras_one_argument_schedules():
    x, y = digits(32)
    model = mlp_model(optimizer=_injected())
    history = model.fit(
        x,
        y,
        batch_size=32,
        epochs=2,
        verbose=0,
        callbacks=[LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))],
    )
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05])


def test_reduce_lr_on_plateau_writes_the_rate_it_trained_with():
    x, y = digits(64)
    model = mlp_model(optimizer=_injected(optax.sgd, 1e-9))  # no progress: a plateau
    reduce = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1.0)
    with CountCompiles() as compiles:
        history = model.fit(x, y, batch_size=64, epochs=4, verbose=0, callbacks=[reduce])
    # The first fit compiles its steps once; changing the rate compiles nothing more.
    first = compiles.count
    assert history.history["learning_rate"] == pytest.approx([1e-9, 1e-9, 5e-10, 2.5e-10])
    with CountCompiles() as compiles:
        model.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[reduce])
    assert compiles.count == 0 and first > 0


def test_scheduler_without_an_injected_rate_fails_before_compiling():
    x, y = digits(32)
    model = mlp_model(optimizer=optax.adam(1e-3))
    before = model.states
    with CountCompiles() as compiles, pytest.raises(ValueError, match="inject_hyperparams"):
        model.fit(x, y, verbose=0, callbacks=[LearningRateScheduler(lambda epoch, lr: lr)])
    assert compiles.count == 0
    assert model.states is before
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau: .*inject_hyperparams"):
        model.fit(x, y, verbose=0, callbacks=[ReduceLROnPlateau()])


def test_scheduler_bad_schedule_and_arguments():
    with pytest.raises(TypeError, match="schedule must be a callable"):
        LearningRateScheduler(0.1)  # type: ignore[arg-type]
    x, y = digits(32)
    model = mlp_model(optimizer=_injected())
    with pytest.raises(ValueError, match=r"schedule must return a float.*'0.1'"):
        model.fit(x, y, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: "0.1")])


def test_scheduler_is_exported():
    assert elegy.callbacks.LearningRateScheduler is LearningRateScheduler
