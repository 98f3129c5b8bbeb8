"""`elegy.Strategy`: any strategy a user writes runs a model through the same engine as
the built-in ones, and a model without one runs with `DefaultStrategy`."""

import jax
import numpy as np
import pytest
from helpers import digits, mlp_model

import eqx_elegy as elegy


class OneDevice(elegy.Strategy):
    """Everything on one chosen device, counting what the engine asks of it."""

    def __init__(self, device):
        self.device = device
        self.calls = {"put_states": 0, "put_batch": 0, "constrain_states": 0}

    def put_states(self, states):
        self.calls["put_states"] += 1
        return jax.device_put(states, self.device)

    def put_batch(self, batch, stacked=False):
        self.calls["put_batch"] += 1
        return jax.device_put(batch, self.device)

    def constrain_states(self, states):
        self.calls["constrain_states"] += 1
        return states

    def constrain_outputs(self, outputs):
        return outputs


@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_a_user_strategy_runs_fit_evaluate_and_predict(steps_per_execution):
    x, y = digits(96)
    device = jax.devices()[3]
    strategy = OneDevice(device)
    model = mlp_model().distributed(strategy)
    reference = mlp_model()
    kwargs = dict(batch_size=16, epochs=2, verbose=0, shuffle=False)
    history = model.fit(x, y, steps_per_execution=steps_per_execution, **kwargs)
    expected = reference.fit(x, y, steps_per_execution=steps_per_execution, **kwargs)
    assert history.history["loss"] == pytest.approx(expected.history["loss"], rel=1e-5)
    for leaf in jax.tree.leaves(model.states):
        assert leaf.devices() == {device}
    assert model.evaluate(x, y, verbose=0) == pytest.approx(reference.evaluate(x, y, verbose=0))
    np.testing.assert_allclose(model.predict(x), reference.predict(x), rtol=1e-5, atol=1e-6)
    # Batches went through the strategy, and each compiled step pinned its states.
    assert strategy.calls["put_batch"] >= 2 * 96 // (16 * steps_per_execution)
    assert strategy.calls["put_states"] >= 1 and strategy.calls["constrain_states"] >= 1


def test_a_strategy_must_implement_every_method():
    class Partial(elegy.Strategy):
        def put_states(self, states):
            return states

    with pytest.raises(TypeError, match="abstract"):
        Partial()  # type: ignore[abstract]


def test_models_run_with_the_default_strategy():
    x, y = digits(64)
    assert mlp_model().strategy is None  # no strategy of its own
    default = elegy.DefaultStrategy()
    assert default.packs_states and not elegy.DataParallel().packs_states
    model = mlp_model().distributed(default)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    reference = mlp_model()
    reference.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(
        jax.tree.leaves(model.states.net_params),
        jax.tree.leaves(reference.states.net_params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_built_in_strategies_are_strategies():
    assert isinstance(elegy.DataParallel(), elegy.Strategy)
    assert isinstance(elegy.FSDP(), elegy.Strategy)
    assert elegy.DataParallel().is_main_process() is elegy.is_main_process() is True
