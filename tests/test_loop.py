"""The compiled engine: compile counts, steps_per_execution, lazy logs, interrupts."""

import os
import signal
import threading

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import CountCompiles, digits, mlp, mlp_model

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
    ha = a.fit(x, y, batch_size=32, epochs=2, verbose=0, steps_per_execution=1)
    hb = b.fit(x, y, batch_size=32, epochs=2, verbose=0, steps_per_execution=4)
    for p, q in zip(
        jax.tree.leaves(a.states.net_params), jax.tree.leaves(b.states.net_params), strict=True
    ):
        np.testing.assert_allclose(p, q, atol=1e-6)
    assert ha.history["loss"] == pytest.approx(hb.history["loss"], rel=1e-5)


def test_auto_steps_per_execution_matches_single_steps_in_fit_evaluate_and_predict():
    x, y = digits(300)
    one, auto = mlp_model(steps_per_execution=1), mlp_model()
    assert auto.steps_per_execution == "auto"  # the default
    h1 = one.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_split=0.2)
    ha = auto.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_split=0.2)
    assert h1.history.keys() == ha.history.keys()
    for name, values in h1.history.items():
        assert ha.history[name] == pytest.approx(values, rel=1e-5), name
    for p, q in zip(
        jax.tree.leaves(one.states.net_params), jax.tree.leaves(auto.states.net_params), strict=True
    ):
        np.testing.assert_allclose(p, q, atol=1e-6)
    assert auto.evaluate(x, y, batch_size=7, verbose=0) == pytest.approx(
        one.evaluate(x, y, batch_size=7, verbose=0), rel=1e-5
    )
    np.testing.assert_allclose(
        auto.predict(x, batch_size=7), one.predict(x, batch_size=7), atol=1e-5
    )


def _chunk_ends(**fit_options):
    """The step indices a throttled batch-end hook sees: the last step of each compiled call."""
    ends: list[int] = []

    class Sparse(elegy.callbacks.Callback):
        batch_end_interval = 1e-9  # throttled: called after each compiled call

        def on_train_batch_end(self, batch, logs=None):
            ends.append(batch)

    x, y = digits(64 * 16)
    mlp_model().fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[Sparse()], **fit_options)
    return sorted(set(ends))  # the epoch's last step is also reported once more at its end


def test_auto_steps_per_execution_runs_chunks_and_an_int_fixes_them():
    assert _chunk_ends() == [15]  # 16 batches in one call
    assert _chunk_ends(steps_per_execution=1) == list(range(16))
    assert _chunk_ends(steps_per_execution=4) == [3, 7, 11, 15]
    assert _chunk_ends(steps_per_epoch=10) == [9]


def test_auto_steps_per_execution_runs_single_steps_for_a_per_step_callback():
    x, y = digits(256)
    seen: list[int] = []

    class EveryStep(elegy.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(int(self.model.states.optimizer_states[0].count))

    mlp_model().fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[EveryStep()])
    assert seen == list(range(1, 9))  # each hook sees the states of its own step


def test_steps_per_execution_must_be_auto_or_a_positive_int():
    x, y = digits(64)
    with pytest.raises(ValueError, match='"auto" or an int >= 1'):
        mlp_model().fit(x, y, verbose=0, steps_per_execution="fast")
    with pytest.raises(ValueError, match=">= 1"):
        mlp_model().fit(x, y, verbose=0, steps_per_execution=0)


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def _assert_same_training(a: elegy.Model, b: elegy.Model, atol: float = 1e-6) -> None:
    for name in ("net_params", "ema_params", "optimizer_states"):
        left, right = _leaves(a.states.get(name)), _leaves(b.states.get(name))
        for p, q in zip(left, right, strict=True):
            np.testing.assert_allclose(p, q, atol=atol, err_msg=name)


def test_auto_chunks_train_as_single_steps_with_ema_multisteps_and_validation():
    # 300 examples, 20% for validation: 17 full batches of 14 in one chunk, then a
    # partial one; MultiSteps applies an update every 4 steps, across chunk boundaries.
    x, y = digits(300)

    def build(**kwargs) -> elegy.Model:
        inner = optax.inject_hyperparams(optax.adam)(learning_rate=1e-2)
        return mlp_model(
            optimizer=optax.MultiSteps(inner, every_k_schedule=4), ema_decay=0.9, **kwargs
        )

    one, auto = build(steps_per_execution=1), build()
    options = dict(batch_size=14, epochs=3, verbose=0, validation_split=0.2)
    h1 = one.fit(x, y, **options)
    ha = auto.fit(x, y, **options)
    assert int(auto.states.optimizer_states.gradient_step) == 3 * 18 // 4
    _assert_same_training(one, auto)
    assert h1.history.keys() == ha.history.keys() >= {"val_loss", "learning_rate"}
    for name, values in h1.history.items():
        assert ha.history[name] == pytest.approx(values, rel=1e-5), name


def test_auto_chunks_equal_a_hand_written_optax_loop():
    x, y = digits(256)
    model = mlp_model(optimizer=optax.sgd(0.1))
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)

    net, optimizer = mlp(), optax.sgd(0.1)
    params, static = eqx.partition(net, eqx.is_array)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss(params):
            logits = jax.vmap(eqx.combine(params, static))(xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        grads = jax.grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for _epoch in range(2):
        for i in range(0, 256, 32):
            params, opt_state = step(params, opt_state, x[i : i + 32], y[i : i + 32])
    for p, q in zip(_leaves(model.states.net_params), _leaves(params), strict=True):
        np.testing.assert_allclose(p, q, atol=1e-5)


def test_auto_chunks_resume_a_backup_taken_mid_epoch(tmp_path):
    x, y = digits(320)  # 10 batches of 32 per epoch
    options = dict(batch_size=32, epochs=3, verbose=0)
    reference = mlp_model(steps_per_execution=1)
    reference.fit(x, y, **options)

    class Crash(elegy.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if (self.epoch, batch) == (1, 6):
                raise RuntimeError("crash")

    backup = str(tmp_path / "backup")
    crashed = mlp_model()  # runs single steps: its callbacks watch every batch
    with pytest.raises(RuntimeError, match="crash"):  # backups every 3 steps, the last at (1, 5)
        crashed.fit(
            x, y, **options, callbacks=[Crash(), elegy.callbacks.BackupAndRestore(backup, 3)]
        )

    calls: list[tuple[int, int]] = []

    class Calls(elegy.callbacks.Callback):
        batch_end_interval = 1e-9  # throttled: called after each compiled call

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            calls.append((self.epoch, batch))

    restore = elegy.callbacks.BackupAndRestore(backup)  # per epoch: no per-step hook
    resumed = mlp_model()
    resumed.fit(x, y, **options, callbacks=[restore, Calls()])
    assert restore.resumed_from == (1, 5)
    # Epoch 1 from step 5 runs the rest of its chunk step by step; epoch 2 is one chunk
    # (each reported once after its call and once at the epoch's end).
    assert calls == [(1, 5), (1, 6), (1, 7), (1, 8), (1, 9), (1, 9), (2, 9), (2, 9)]
    _assert_same_training(reference, resumed)


def test_an_exception_in_a_callback_leaves_the_model_at_its_last_completed_chunk():
    x, y = digits(320)  # 10 batches of 32: one chunk of 10 per epoch

    class Fail(elegy.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise ValueError("fail")

    failed = mlp_model()
    with pytest.raises(ValueError, match="fail"):
        failed.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[Fail()])
    reference = mlp_model(steps_per_execution=1)
    reference.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert int(failed.states.optimizer_states[0].count) == 20
    _assert_same_training(reference, failed)
    failed.fit(x, y, batch_size=32, epochs=1, verbose=0)  # its buffers are still usable


def test_ctrl_c_during_auto_chunks_keeps_the_completed_chunks():
    x, y = digits(1280)  # 40 batches of 32: two chunks of 20 per epoch
    ends: list[int] = []

    class CtrlC(elegy.callbacks.Callback):
        batch_end_interval = 1e-9  # throttled: called after each compiled call

        def on_train_batch_end(self, batch, logs=None):
            ends.append(batch)
            if batch == 19:  # the first chunk has run: Ctrl-C as if pressed during it
                os.kill(os.getpid(), signal.SIGINT)

    model = mlp_model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[CtrlC()])
    assert ends == [19]
    assert int(model.states.optimizer_states[0].count) == 20
    reference = mlp_model(steps_per_execution=1)
    reference.fit(x, y, batch_size=32, epochs=1, steps_per_epoch=20, verbose=0)
    _assert_same_training(reference, model)


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


def _weights(states: elegy.States) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves((states.net_params, states.optimizer_states))]


# Width 300: the first weight has 64 * 300 elements, more than fit packs into shared
# buffers (`_flat.PACK_LIMIT`), so it travels as its own buffer; width 32: all packed.
# DataParallel packs nothing: every leaf travels as its own buffer.
@pytest.mark.parametrize("width, parallel", [(32, False), (300, False), (32, True)])
def test_states_the_user_holds_survive_fits_and_train_on_batch(width, parallel):
    # The loop donates the buffers it trains; it must never donate arrays of the states
    # the user holds. The second round starts from the buffers the first fit left,
    # which it takes without copying them when packed (the model's states are arrays
    # of their own).
    x, y = digits(64)
    model = elegy.Model(
        module=mlp(width=width),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-2),
    )
    if parallel:
        model = model.distributed(elegy.DataParallel(jax.devices()[:2]))
    for _ in range(2):
        held = model.states
        values = _weights(held)
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        after_fit = model.states
        model.evaluate(x, y, batch_size=32, verbose=0)  # on the buffers the fit left
        model.train_on_batch(x, y)
        for before, now in zip(values, _weights(held), strict=True):
            np.testing.assert_array_equal(before, now)
        assert not any(a.is_deleted() for a in jax.tree.leaves(after_fit))
        assert not np.array_equal(values[0], _weights(model.states)[0])  # it trained


def test_a_fit_makes_no_copy_per_leaf():
    # The states' leaves are packed into one new buffer by one compiled call: no eager
    # copy per leaf (each compiles once per shape, and costs a dispatch per fit). The
    # widths give this model leaf shapes that no other test uses.
    x, y = digits(64)
    model = elegy.Model(
        module=eqx.nn.MLP(64, 10, 27, 2, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-2),
    )
    model.init(x, y)
    with CountCompiles() as compiles:
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert compiles.count == 3  # packing the states, the training chunk, unpacking them
    with CountCompiles() as compiles:
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        model.train_on_batch(x[:32], y[:32])
    assert compiles.count == 1  # the single training step


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


def test_evaluate_and_predict_compile_once_and_leave_states_alone():
    x, y = digits(300)
    model = mlp_model()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    before = model.states
    first = model.evaluate(x, y, batch_size=64, verbose=0)
    predictions = model.predict(x, batch_size=64)
    with CountCompiles() as compiles:
        again = model.evaluate(x, y, batch_size=64, verbose=0)
        np.testing.assert_array_equal(model.predict(x, batch_size=64), predictions)
    assert compiles.count == 0
    assert again == first
    assert model.states is before
    for leaf in jax.tree.leaves(before):
        assert not leaf.is_deleted()  # nothing of the model's states was donated


def test_evaluate_carries_the_states_a_custom_test_step_changes():
    # The step counts batches and sums labels in states of its own; evaluate threads them
    # from step to step (only the entries the step changes are carried), and the logs of
    # the last step see every batch (`epoch_logs="last"`: its logs are running values,
    # not to be averaged). The model's states are not changed.
    class Counting(elegy.Model):
        def states_step(self):
            return super().states_step().update(seen=jnp.zeros((), jnp.int32), total=jnp.zeros(()))

        def test_step(self, x, y_true, states):
            seen, total = states.seen + 1, states.total + y_true.sum()
            logs = {"loss": jnp.zeros(()), "seen": seen, "total": total}
            return jnp.zeros(()), logs, states.update(seen=seen, total=total)

    x, y = digits(300)
    model = Counting(module=mlp(), epoch_logs="last")
    logs = model.evaluate(x, y.astype(np.float32), batch_size=64, verbose=0)
    assert logs["seen"] == 5  # an int32 log, returned beside the packed float logs
    assert logs["total"] == pytest.approx(float(y.sum()))
    assert int(model.states.seen) == 0 and float(model.states.total) == 0.0


def test_a_step_that_changes_a_dtype_is_refused():
    class Retyping(elegy.Model):
        def states_step(self):
            return super().states_step().update(count=jnp.zeros((), jnp.float32))

        def train_step(self, states):
            return {"loss": jnp.zeros(())}, states.update(count=jnp.ones((), jnp.int32))

    x, y = digits(64)
    with pytest.raises(
        TypeError, match=r"changed the structure.*states.count was float32\[\] and became int32\[\]"
    ):
        Retyping(module=mlp()).fit(x, y, batch_size=32, epochs=1, verbose=0)
    # The compile of the states' unpacking that the fit started ahead, in a thread, has
    # been waited for: nothing of the failed fit keeps running.
    assert not [t for t in threading.enumerate() if t.name.startswith("eqx_elegy-unpack")]


def test_packed_states_round_trip_bit_for_bit():
    from eqx_elegy._flat import flatten_states, flatten_states_on_host, unflatten_states

    states = elegy.States(
        f32=jnp.array([1.5, np.nan, -0.0], jnp.float32),
        i32=jnp.array([-7, 2**31 - 1], jnp.int32),
        f16=jnp.array([0.1, 65504], jnp.float16),
        u8=jnp.arange(3, dtype=jnp.uint8),
        flag=jnp.array([True, False]),
        big=jnp.ones(20000, jnp.float32),
        rng=elegy.RNGSeq(3),
    )
    for buffers, layout in [flatten_states(states), flatten_states_on_host(states)]:
        # one buffer per bit width (32, 16, 8), bool apart, the large leaf as itself
        assert len(buffers) == 5
        back = unflatten_states(layout, buffers)
        for a, b in zip(jax.tree.leaves(states), jax.tree.leaves(back), strict=True):
            if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
                a, b = jax.random.key_data(a), jax.random.key_data(b)
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(
                np.atleast_1d(a).view(np.uint8), np.atleast_1d(b).view(np.uint8)
            )


class TinyCNN(eqx.Module):
    conv: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(1, 4, 3, key=k1)
        self.head = eqx.nn.Linear(4 * 6 * 6, 10, key=k2)

    def __call__(self, x):
        return self.head(jax.nn.relu(self.conv(x.reshape(1, 8, 8))).ravel())


def test_convolutions_on_cpu_run_chunks_step_by_step():
    # XLA:CPU runs a convolution inside a loop body about 10x slower than outside one
    # (jax-ml/jax#12868), so a chunk of a convolutional step runs as single-step calls:
    # nothing is compiled beyond what steps_per_execution=1 compiles, and the results
    # are the same.
    x, y = digits(256)

    def fit(spe):
        model = elegy.Model(
            module=TinyCNN(jax.random.key(0)),
            loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
            optimizer=optax.adam(1e-2),
        )
        model.init(x[:32], y[:32])
        with CountCompiles() as compiles:
            history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, steps_per_execution=spe)
            logs = model.evaluate(x, y, batch_size=32, verbose=0, steps_per_execution=spe)
            predictions = model.predict(x, batch_size=32, steps_per_execution=spe)
        return model, history, logs, predictions, compiles.count

    fit(1), fit(4)  # compile the eager operations both use, once per process
    single, h1, logs1, p1, count1 = fit(1)
    chunked, h4, logs4, p4, count4 = fit(4)
    assert count4 == count1 == 5  # train, test (and its start), predict (and its start)
    assert h4.history["loss"] == pytest.approx(h1.history["loss"], rel=1e-6)
    assert logs4 == pytest.approx(logs1, rel=1e-6)
    np.testing.assert_allclose(p4, p1, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(single.states), jax.tree.leaves(chunked.states), strict=True):
        if not jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            np.testing.assert_allclose(a, b, rtol=1e-6)


class _RandomLogs(elegy.Model):
    """Logs a draw from the injected `rng` and one from `states.rng` at every step."""

    def train_step(self, states, rng) -> elegy.TrainStep:
        injected = jax.random.uniform(rng.next()[0])
        own = jax.random.uniform(states.rng.next()[0])
        return {"injected": injected, "own": own}, states


def _draws(model, **kwargs):
    draws = {}
    epoch = []

    class Record(elegy.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            epoch[:] = [e]

        def on_train_batch_end(self, batch, logs=None):
            draws[epoch[0], batch] = (logs["injected"], logs["own"])

    x = np.zeros((8, 1), np.float32)
    model.fit(x, batch_size=4, verbose=0, callbacks=[Record()], **kwargs)
    return draws


def test_step_randomness_depends_on_seed_epoch_and_step_only():
    draws = _draws(_RandomLogs(seed=1), epochs=2)
    assert sorted(draws) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    values = [v for pair in draws.values() for v in pair]
    assert len(set(values)) == len(values)  # every epoch, step and stream draws anew
    assert _draws(_RandomLogs(seed=1), epochs=2) == draws  # a function of the seed...
    assert set(_draws(_RandomLogs(seed=2), epochs=2).values()).isdisjoint(draws.values())
    # ...and of the epoch: a fit that starts at epoch 1 draws what epoch 1 drew.
    resumed = _draws(_RandomLogs(seed=1), epochs=2, initial_epoch=1)
    assert resumed == {k: v for k, v in draws.items() if k[0] == 1}


@pytest.mark.parametrize("steps_per_execution", [1, 2])
def test_epoch_logs_cover_exactly_that_epochs_batches(steps_per_execution):
    # With a learning rate of 0 nothing changes, so every epoch's logs must equal an
    # evaluation over the same batches: metrics are reset at each epoch's first step.
    x, y = digits(128)
    model = mlp_model(optimizer=optax.sgd(0.0))
    history = model.fit(
        x,
        y,
        batch_size=32,
        epochs=2,
        shuffle=False,
        verbose=0,
        steps_per_execution=steps_per_execution,
    )
    logs = model.evaluate(x, y, batch_size=32, verbose=0)
    for name in ("loss", "accuracy"):
        assert history.history[name] == pytest.approx([logs[name]] * 2, rel=1e-6)


def test_validation_runs_every_validation_freq_epochs():
    x, y = digits(64)
    validated = []

    class Record(elegy.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if "val_loss" in logs:
                validated.append(epoch)

    model = mlp_model()
    kwargs = dict(validation_data=(x, y), validation_freq=2, batch_size=32, verbose=0)
    history = model.fit(x, y, epochs=5, callbacks=[Record()], **kwargs)
    assert validated == [1, 3]  # Keras: the 2nd and 4th epochs
    assert len(history.history["val_loss"]) == 2
    validated.clear()
    model.fit(x, y, epochs=6, initial_epoch=2, callbacks=[Record()], **kwargs)
    assert validated == [3, 5]  # counted from epoch 0, not from initial_epoch
