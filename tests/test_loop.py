"""The compiled engine: compile counts, steps_per_execution, lazy logs, interrupts."""

import jax
import numpy as np
import pytest
from helpers import CountCompiles, digits, mlp_model

import eqx_elegy as elegy


@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_second_epoch_compiles_nothing(steps_per_execution):
    x, y = digits(300)  # 4 full batches of 64 and a partial one
    model = mlp_model()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, steps_per_execution=steps_per_execution)
    with CountCompiles() as compiles:
        model.fit(x, y, batch_size=64, epochs=3, verbose=0, steps_per_execution=steps_per_execution)
    assert compiles.count == 0


def test_partial_last_batch_costs_one_extra_compile():
    x, y = digits(300)
    mlp_model().fit(x[:64], y[:64], batch_size=64, epochs=1, verbose=0)  # warm eager ops
    with CountCompiles() as even:
        mlp_model().fit(x[:256], y[:256], batch_size=64, epochs=2, verbose=0)
    with CountCompiles() as uneven:
        mlp_model().fit(x, y, batch_size=64, epochs=2, verbose=0)
    assert even.count == 1  # each new model compiles its train step once
    assert uneven.count == 2  # plus once for the last batch of 44


def test_steps_per_execution_matches_single_steps():
    x, y = digits(300)
    a, b = mlp_model(), mlp_model()
    ha = a.fit(x, y, batch_size=32, epochs=2, verbose=0)
    hb = b.fit(x, y, batch_size=32, epochs=2, verbose=0, steps_per_execution=4)
    for p, q in zip(
        jax.tree.leaves(a.states.net_params), jax.tree.leaves(b.states.net_params), strict=True
    ):
        np.testing.assert_allclose(p, q, atol=1e-6)
    assert ha.history["loss"] == pytest.approx(hb.history["loss"], rel=1e-5)


def test_batch_hooks_called_per_step_with_chunk_values():
    x, y = digits(200)
    seen: list[tuple[int, float]] = []

    class Record(elegy.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((batch, logs["loss"]))

    mlp_model().fit(
        x, y, batch_size=32, epochs=1, verbose=0, steps_per_execution=3, callbacks=[Record()]
    )
    assert [b for b, _ in seen] == list(range(7))
    assert len({v for _, v in seen}) == 7  # each step's own value, not the chunk's last


def test_lazy_logs_fetch_only_when_read():
    import jax.numpy as jnp

    logs = elegy.LazyLogs({"loss": jnp.array([1.0, 2.0])}, index=1)
    assert logs._host is None and list(logs) == ["loss"]
    assert logs["loss"] == 2.0 and logs._host == {"loss": 2.0}


def test_stop_training_ends_after_current_step():
    x, y = digits(320)

    class StopAt(elegy.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.model.stop_training = True

    history = mlp_model().fit(x, y, batch_size=32, epochs=5, verbose=0, callbacks=[StopAt()])
    assert history.epoch == [0]


def test_interrupt_keeps_last_completed_step():
    x, y = digits(320)
    model = mlp_model()
    snapshots = []

    class Interrupt(elegy.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snapshots.append(jax.device_get(self.model.states.net_params))
            if batch == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[Interrupt()])
    for a, b in zip(
        jax.tree.leaves(model.states.net_params), jax.tree.leaves(snapshots[-1]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    # and the model is usable: its buffers were not donated away
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)


def test_old_states_stay_valid_after_fit():
    x, y = digits(64)
    model = mlp_model()
    old = model.states
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(np.asarray(old.net_params.layers[0].weight)).all()


def test_model_history_survives_an_interrupt():
    x, y = digits(128)

    class Interrupt(elegy.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    model = mlp_model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=32, epochs=5, verbose=0, callbacks=[Interrupt()])
    # History runs before user callbacks, so epoch 1 was recorded before the interrupt.
    assert model.history is not None and model.history.epoch == [0, 1]
