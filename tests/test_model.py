"""Model: training parity with a hand-written loop, the docs' LinearClassifier, the
in-place contract, and every bad input with its message."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import digits, mlp, mlp_model
from sklearn.datasets import load_digits

import eqx_elegy as elegy


def hand_written(x, y, batch_size, epochs, lr):
    """The loop a JAX user writes by hand: vmap + optax, same batches, no shuffle."""
    params, static = eqx.partition(mlp(), eqx.is_inexact_array)
    optimizer = optax.adam(lr)
    with jax.numpy_dtype_promotion("standard"):
        opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss_fn(p):
            logits = jax.vmap(eqx.combine(p, static))(xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        grads = jax.grad(loss_fn)(params)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for _ in range(epochs):
        for i in range(0, len(x), batch_size):
            params, opt_state = step(
                params, opt_state, x[i : i + batch_size], y[i : i + batch_size]
            )
    return params


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_fit_matches_hand_written_optax_loop(steps_per_execution):
    x, y = digits(300)  # 300 = 4 full batches of 64 + a partial one of 44
    model = mlp_model(optimizer=optax.adam(1e-2))
    model.fit(
        x,
        y,
        batch_size=64,
        epochs=3,
        shuffle=False,
        verbose=0,
        steps_per_execution=steps_per_execution,
    )
    expected = hand_written(x, y, 64, 3, 1e-2)
    got = model.states.net_params
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


class LinearClassifier(elegy.Model):
    """The Elegy low-level docs' example, verbatim."""

    def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
        x = jnp.reshape(x, (x.shape[0], -1)) / 255
        if initializing:
            w = jax.random.uniform(jax.random.PRNGKey(42), shape=[np.prod(x.shape[1:]), 10])
            b = jax.random.uniform(jax.random.PRNGKey(69), shape=[1])
        else:
            w, b = states.net_params
        logits = jnp.dot(x, w) + b
        labels = jax.nn.one_hot(y_true, 10)
        loss = jnp.mean(-jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == y_true)
        logs = dict(accuracy=accuracy, loss=loss)
        states = states.update(net_params=(w, b))
        return loss, logs, states


def test_linear_classifier_learns_digits():
    data = load_digits()
    images = (data.images * 255 / 16).astype(np.uint8)
    x_train, y_train = images[:1500], data.target[:1500]
    x_test, y_test = images[1500:], data.target[1500:]
    model = LinearClassifier(optimizer=optax.adam(1e-2))
    before = model.states
    history = model.fit(x=x_train, y=y_train, epochs=15, batch_size=64, verbose=0)
    assert before.net_params is None  # the old States is untouched
    assert len(history.history["loss"]) == 15 and history.epoch == list(range(15))
    assert history.history["loss"][-1] < history.history["loss"][0]
    logs = model.evaluate(x=x_test, y=y_test, batch_size=len(x_test), verbose=0)
    assert logs["accuracy"] > 0.85
    # evaluate reflects the trained states: a fresh model scores far lower.
    fresh = LinearClassifier(optimizer=optax.adam(1e-2))
    assert fresh.evaluate(x_test, y_test, batch_size=len(x_test), verbose=0)["accuracy"] < 0.5


def test_high_level_fit_evaluate_predict():
    x, y = digits(600)
    model = mlp_model()
    history = model.fit(x, y, epochs=4, batch_size=64, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.history["val_accuracy"][-1] > 0.7
    logs = model.evaluate(x, y, batch_size=128, verbose=0)
    assert isinstance(logs["loss"], float) and logs["accuracy"] > 0.7
    predictions = model.predict(x, batch_size=128)
    assert isinstance(predictions, np.ndarray) and predictions.shape == (600, 10)
    accuracy = float((predictions.argmax(-1) == y).mean())
    assert abs(accuracy - logs["accuracy"]) < 1e-6


def test_evaluate_metric_over_uneven_batches_equals_whole_data():
    x, y = digits(250)
    model = mlp_model()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    by_batches = model.evaluate(x, y, batch_size=64, verbose=0)
    whole = model.evaluate(x, y, batch_size=250, verbose=0)
    assert by_batches["accuracy"] == pytest.approx(whole["accuracy"], abs=1e-6)
    assert by_batches["loss"] == pytest.approx(whole["loss"], rel=1e-5)


def test_shuffling_depends_only_on_seed_and_epoch():
    x, y = digits(200)
    a, b = mlp_model(seed=3), mlp_model(seed=3)
    a.fit(x, y, epochs=2, batch_size=32, verbose=0)
    b.fit(x, y, epochs=2, batch_size=32, verbose=0)
    for p, q in zip(
        jax.tree.leaves(a.states.net_params), jax.tree.leaves(b.states.net_params), strict=True
    ):
        np.testing.assert_array_equal(p, q)


def test_drop_remaining_and_partial_batch():
    x, y = digits(100)
    seen = []

    class Count(elegy.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    mlp_model().fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[Count()])
    assert seen == [0, 1, 2, 3]  # the last partial batch of 4 trains
    seen.clear()
    mlp_model().fit(
        x, y, batch_size=32, epochs=1, verbose=0, callbacks=[Count()], drop_remaining=True
    )
    assert seen == [0, 1, 2]


def test_steps_per_epoch_and_initial_epoch():
    x, y = digits(256)
    history = mlp_model().fit(
        x, y, batch_size=32, epochs=3, initial_epoch=1, steps_per_epoch=2, verbose=0
    )
    assert history.epoch == [1, 2]


def test_reset_and_init():
    x, y = digits(64)
    model = LinearClassifier(optimizer=optax.sgd(0.1))
    assert not model.initialized
    states = model.init(x.reshape(-1, 8, 8), y)
    assert model.initialized and states is model.states
    assert model.states.net_params[0].shape == (64, 10)
    model.reset()
    assert model.states.net_params is None and not model.initialized


def test_stateful_module_batchnorm():
    class Net(eqx.Module):
        linear: eqx.nn.Linear
        norm: eqx.nn.BatchNorm

        def __init__(self, key):
            self.linear = eqx.nn.Linear(64, 10, key=key)
            self.norm = eqx.nn.BatchNorm(10, axis_name="batch", mode="ema")

        def __call__(self, x, state):
            x, state = self.norm(self.linear(x), state)
            return x, state

    x, y = digits(128)
    loss = elegy.losses.SparseCategoricalCrossentropy(from_logits=True)
    built = elegy.Model(module=Net(jax.random.key(0)), loss=loss, optimizer=optax.adam(1e-2))
    net, state = eqx.nn.make_with_state(Net)(jax.random.key(0))
    paired = elegy.Model(module=net, module_state=state, loss=loss, optimizer=optax.adam(1e-2))
    for model in (built, paired):
        before = jax.tree.leaves(model.states.net_states)
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        after = jax.tree.leaves(model.states.net_states)
        assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
        assert model.predict(x[:5]).shape == (5, 10)


def test_dropout_gets_keys_and_inference_mode():
    class Net(eqx.Module):
        mlp: eqx.nn.MLP
        dropout: eqx.nn.Dropout

        def __call__(self, x, *, key=None):
            return self.mlp(self.dropout(x, key=key))

    net = Net(mlp(), eqx.nn.Dropout(0.5))
    model = elegy.Model(
        module=net,
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-2),
    )
    x, y = digits(64)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    # Inference mode when predicting: deterministic.
    np.testing.assert_array_equal(model.predict(x), model.predict(x))


def test_vmap_false_passes_whole_batch():
    class BatchNet(eqx.Module):
        linear: eqx.nn.Linear

        def __call__(self, x):
            assert x.ndim == 2
            return jax.vmap(self.linear)(x)

    model = elegy.Model(
        module=BatchNet(eqx.nn.Linear(64, 10, key=jax.random.key(0))),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.sgd(0.1),
        vmap=False,
    )
    x, y = digits(64)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert model.predict(x).shape == (64, 10)


def test_pytree_inputs():
    class TwoInputs(eqx.Module):
        a: eqx.nn.Linear
        b: eqx.nn.Linear

        def __call__(self, x):
            return self.a(x["left"]) + self.b(x["right"])

    keys = jax.random.split(jax.random.key(0))
    model = elegy.Model(
        module=TwoInputs(eqx.nn.Linear(32, 10, key=keys[0]), eqx.nn.Linear(32, 10, key=keys[1])),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-2),
    )
    x, y = digits(96)
    inputs = {"left": x[:, :32], "right": x[:, 32:]}
    model.fit(inputs, y, batch_size=32, epochs=1, verbose=0)
    assert model.predict(inputs).shape == (96, 10)


def test_user_filter_jit_steps_work():
    class Jitted(elegy.Model):
        @eqx.filter_jit
        def pred_step(self, x, states) -> elegy.PredStep:
            w = states.net_params
            return x @ w, states

    model = Jitted(
        loss=elegy.losses.MeanSquaredError(),
        optimizer=optax.sgd(0.1),
        states=elegy.States(rng=elegy.RNGSeq(0), net_params=jnp.zeros((3, 1))),
    )
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    model.fit(x, y, batch_size=16, epochs=30, verbose=0)
    np.testing.assert_allclose(model.states.net_params[:, 0], [1.0, -2.0, 0.5], atol=0.05)


def test_jit_step_override_swaps_the_compiler():
    # A compiler of the user's own (here a plain function around jax.jit, with no
    # `.trace`) compiles every step the loops run, chunks included.
    compiled: list[str] = []

    def my_jit(fn, **options):
        compiled.append(getattr(fn, "__name__", type(fn).__name__))
        inner = jax.jit(fn, **options)
        return lambda *args: inner(*args)

    class Custom(elegy.Model):
        def jit_step(self):
            return super().jit_step()._replace(jit=my_jit)

    x, y = digits(128)
    model = Custom(
        module=mlp(),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-2),
    )
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, steps_per_execution=2)
    logs = model.evaluate(x, y, batch_size=32, verbose=0)
    assert model.predict(x, batch_size=32).shape == (128, 10)
    assert history.history["loss"][1] < history.history["loss"][0]
    assert logs["loss"] < history.history["loss"][0]
    assert {"one", "chunk", "step", "start"} <= set(compiled)  # train, test and pred


def test_plain_callable_loss():
    def mse(y_true, y_pred):
        return jnp.mean((y_true - y_pred) ** 2)

    model = elegy.Model(
        module=eqx.nn.Linear(3, 1, key=jax.random.key(0)), loss=mse, optimizer=optax.sgd(0.1)
    )
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    history = model.fit(x, y, batch_size=16, epochs=20, verbose=0)
    assert history.history["loss"][-1] < 0.01
    assert set(history.history) == {"loss"}  # one loss: logged as `loss` alone


def test_fit_without_labels_when_steps_need_none():
    class Centroid(elegy.Model):
        def test_step(self, x, states, initializing) -> elegy.TestStep:
            c = jnp.zeros(x.shape[-1]) if initializing else states.net_params
            loss = jnp.mean(jnp.sum((x - c) ** 2, axis=-1))
            return loss, {"loss": loss}, states.update(net_params=c)

    x, _ = digits(128)
    model = Centroid(optimizer=optax.sgd(0.2))
    model.fit(x, batch_size=128, epochs=60, verbose=0)
    np.testing.assert_allclose(model.states.net_params, x.mean(0), atol=1e-3)


def test_default_test_step_weights_the_loss_and_metrics():
    # Keras' reduction: sum(weight * loss) / batch size; metrics: weighted means.
    x, y = digits(96)
    model = mlp_model()
    weights = np.random.default_rng(1).uniform(0.0, 2.0, size=96).astype(np.float32)
    logs = model.evaluate(x, y, sample_weight=weights, batch_size=96, verbose=0)
    logits = np.asarray(jax.vmap(eqx.combine(model.states.net_params, model.module))(x))
    losses = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    correct = logits.argmax(-1) == y
    assert logs["loss"] == pytest.approx(float((weights * losses).sum() / 96), rel=1e-5)
    assert logs["accuracy"] == pytest.approx(
        float((weights * correct).sum() / weights.sum()), rel=1e-5
    )
    assert logs["loss"] != pytest.approx(float(losses.mean()), rel=1e-3)


def test_a_batch_of_zero_weights_does_not_move_sgd():
    x, y = digits(128)
    weights = np.r_[np.ones(64), np.zeros(64)].astype(np.float32)
    a, b = mlp_model(optimizer=optax.sgd(0.5)), mlp_model(optimizer=optax.sgd(0.5))
    a.fit(x, y, sample_weight=weights, batch_size=64, epochs=2, shuffle=False, verbose=0)
    b.fit(x[:64], y[:64], batch_size=64, epochs=2, shuffle=False, verbose=0)
    for p, q in zip(
        jax.tree.leaves(a.states.net_params), jax.tree.leaves(b.states.net_params), strict=True
    ):
        np.testing.assert_allclose(p, q, atol=1e-6)


class _Dropped(eqx.Module):
    linear: eqx.nn.Linear
    dropout: eqx.nn.Dropout

    def __call__(self, x, *, key=None):
        return self.dropout(self.linear(x), key=key)


def test_dropout_is_active_in_training_only_with_a_key_per_example_and_step():
    net = _Dropped(eqx.nn.Linear(64, 10, key=jax.random.key(0)), eqx.nn.Dropout(0.5))
    model = elegy.Model(
        module=net,
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.sgd(0.0),  # the parameters never move
    )
    x, y = digits(64)
    clean = np.asarray(jax.vmap(net.linear)(x))
    # predict and evaluate run in inference mode: exactly the module without dropout.
    np.testing.assert_allclose(model.predict(x, batch_size=64), clean, atol=1e-6)
    # In training, each example gets its own mask: about half the units are dropped, the
    # others scaled by 1 / (1 - p).
    same = np.repeat(x[:1], 64, axis=0)
    y_pred, _ = model.pred_step(x=same, states=model.states, initializing=False, training=True)
    y_pred = np.asarray(y_pred)
    dropped = y_pred == 0
    assert 0.35 < dropped.mean() < 0.65
    expected = np.broadcast_to(2 * clean[:1], y_pred.shape)
    np.testing.assert_allclose(y_pred[~dropped], expected[~dropped], atol=1e-5)
    assert len({row.tobytes() for row in dropped}) > 32  # masks differ between examples
    # fit trains with dropout, with new masks each epoch.
    history = model.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
    evaluated = model.evaluate(x, y, batch_size=64, verbose=0)["loss"]
    first, second = history.history["loss"]
    assert len({first, second, evaluated}) == 3


class ClippedLinear(elegy.Model):
    """A custom train_step that applies the model's optimizer (issue 23, point 2): clip
    the gradients to a global norm by hand, log the norm, then the optax update."""

    max_norm: float = 0.1

    def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
        w = jnp.zeros((x.shape[1], 10)) if initializing else states.net_params
        loss = optax.softmax_cross_entropy_with_integer_labels(x @ w, y_true).mean()
        return loss, {"loss": loss}, states.update(net_params=w)

    def train_step(self, x, y_true, states, initializing) -> elegy.TrainStep:
        _, logs, states, grads = self.grad_step(
            x=x, y_true=y_true, states=states, initializing=initializing
        )
        optimizer = self.get_optimizer()
        with jax.numpy_dtype_promotion("standard"):
            if initializing:
                return logs, states.update(optimizer_states=optimizer.init(states.net_params))
            norm = optax.tree.norm(grads)
            grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, self.max_norm / norm), grads)
            updates, opt_states = optimizer.update(
                grads, states.optimizer_states, states.net_params
            )
        params = optax.apply_updates(states.net_params, updates)
        return {**logs, "grad_norm": norm}, states.update(
            net_params=params, optimizer_states=opt_states
        )


def test_get_optimizer_in_a_custom_train_step_matches_optax_clipping():
    x, y = digits(256)
    model = ClippedLinear(optimizer=optax.adam(0.1))
    assert model.get_optimizer() is model.optimizer
    history = model.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
    assert history.history["grad_norm"][0] > 0.1  # so the clipping did something

    def loss_fn(w, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(xb @ w, yb).mean()

    optimizer = optax.chain(optax.clip_by_global_norm(0.1), optax.adam(0.1))
    w = jnp.zeros((64, 10))
    with jax.numpy_dtype_promotion("standard"):
        opt_state = optimizer.init(w)
    for _ in range(2):
        for i in range(0, 256, 64):
            grads = jax.grad(loss_fn)(w, x[i : i + 64], y[i : i + 64])
            with jax.numpy_dtype_promotion("standard"):
                updates, opt_state = optimizer.update(grads, opt_state, w)
            w = optax.apply_updates(w, updates)
    np.testing.assert_allclose(model.states.net_params, w, atol=1e-6)


def test_get_optimizer_without_one_says_to_pass_it():
    model = ClippedLinear()
    before = model.states
    message = (
        "ClippedLinear has no optimizer, and its train_step needs one: build it with "
        "optimizer=optax.adam(1e-3) (any optax GradientTransformation), or override "
        "train_step to update the parameters without one."
    )
    with pytest.raises(TypeError) as direct:
        model.get_optimizer()
    assert str(direct.value) == message
    with pytest.raises(TypeError) as in_fit:
        model.fit(*digits(64), verbose=0)
    assert str(in_fit.value) == message
    assert model.states is before


def test_init_leaves_metrics_at_their_initial_values():
    # Issue 23, point 4: a test step run by hand on the states `init` leaves reports the
    # logs of its own batch, as `evaluate` on that batch does, not a mean that includes
    # the init batch.
    x, y = digits(200)
    model = mlp_model()
    model.init(x[:100], y[:100])
    initial = model._losses_and_metrics().init()
    for got, expected in zip(
        jax.tree.leaves(model.states.metrics_states), jax.tree.leaves(initial), strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    _, logs, _ = model.test_step(x[100:], y[100:], states=model.states)
    expected = model.evaluate(x[100:], y[100:], batch_size=100, verbose=0)
    assert set(logs) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(float(logs[name]), value, rtol=1e-6)


def test_init_traces_the_whole_batch_it_is_given():
    seen = []

    class Recorder(elegy.Model):
        def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
            seen.append((x.shape[0], initializing))
            loss = jnp.mean(x)
            return loss, {"loss": loss}, states

    x, _ = digits(100)
    Recorder().init(x)
    assert seen == [(100, True)]


def test_reset_metrics_starts_the_running_means_over():
    x, y = digits(300)
    model = mlp_model()
    model.fit(x[:200], y[:200], batch_size=64, epochs=1, verbose=0)
    expected = model.evaluate(x[200:], y[200:], batch_size=100, verbose=0)
    # After fit the metrics hold the last epoch's running sums, so a step run by hand
    # on them reports a mean over that epoch and its own batch ...
    _, stale, _ = model.test_step(x[200:], y[200:], states=model.states)
    assert abs(float(stale["loss"]) - expected["loss"]) > 1e-3
    # ... until reset_metrics puts them back to their initial values.
    before = model.states
    model.reset_metrics()
    assert model.states.net_params is before.net_params  # only the metrics change
    _, logs, _ = model.test_step(x[200:], y[200:], states=model.states)
    for name, value in expected.items():
        np.testing.assert_allclose(float(logs[name]), value, rtol=1e-6)


def test_reset_metrics_without_loss_or_metrics_changes_nothing():
    x, _ = digits(64)
    model = LinearClassifier(optimizer=optax.sgd(0.1))
    model.init(x.reshape(-1, 8, 8), digits(64)[1])
    before = model.states
    model.reset_metrics()
    assert model.states is before


def _least_squares(n: int) -> np.ndarray:
    x, y = digits(n)
    return np.linalg.lstsq(x, np.eye(10, dtype=np.float32)[y], rcond=None)[0]


class FixedLinear(elegy.Model):
    """A custom test step with per-batch logs on fixed weights (an SGD step of 0 leaves
    them as they are), so each batch's logs are known in advance. The weights are a least
    squares fit to 60 rows: right on some rows of each batch, not on all."""

    def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
        w = jnp.asarray(_least_squares(60)) if initializing else states.net_params
        logits = x @ w
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y_true).mean()
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == y_true)
        return loss, {"loss": loss, "accuracy": accuracy}, states.update(net_params=w)


@pytest.mark.parametrize("steps_per_execution", [1, 2])
def test_custom_step_logs_are_averaged_over_the_epoch(steps_per_execution):
    # Issue 23, point 5: 156 rows in batches of 64 leave a last batch of 28, whose own
    # accuracy was the epoch's. A batch-size weighted mean of per-example means is the
    # mean over the epoch's examples: what one batch of all 156 rows reports.
    x, y = digits(156)
    model = FixedLinear(optimizer=optax.sgd(0.0))
    model.init(x[:8], y[:8])
    whole = model.evaluate(x, y, batch_size=156, verbose=0)
    last = model.evaluate(x[128:], y[128:], batch_size=28, verbose=0)
    assert abs(last["accuracy"] - whole["accuracy"]) > 0.01  # the last batch misleads
    batched = model.evaluate(
        x, y, batch_size=64, verbose=0, steps_per_execution=steps_per_execution
    )
    seen = []
    progress = elegy.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(dict(logs))
    )
    history = model.fit(
        x,
        y,
        batch_size=64,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[progress],
        steps_per_execution=steps_per_execution,
    )
    for logs in (batched, {k: v[1] for k, v in history.history.items()}):
        assert set(logs) == {"loss", "accuracy"}
        for name in logs:
            np.testing.assert_allclose(logs[name], whole[name], rtol=1e-5)
    # Batch logs are the means so far, as Keras' running metrics are.
    first = model.evaluate(x[:64], y[:64], batch_size=64, verbose=0)
    two = model.evaluate(x[:128], y[:128], batch_size=128, verbose=0)
    assert len(seen) == 6
    for name in ("loss", "accuracy"):
        np.testing.assert_allclose(
            [seen[3][name], seen[4][name], seen[5][name]],
            [first[name], two[name], whole[name]],
            rtol=1e-5,
        )


def test_running_metrics_are_not_averaged_again_beside_a_custom_log():
    # The default test step's logs are running means already: a custom train step that
    # adds a log of its own gets that log averaged and leaves the others as they are.
    class WithRows(elegy.Model):
        def train_step(self, x, y_true, states, initializing) -> elegy.TrainStep:
            logs, states = super().train_step(
                x, y_true, states=states, initializing=initializing, training=True
            )
            return {**logs, "rows": jnp.float32(x.shape[0])}, states

    x, y = digits(156)
    kwargs = dict(batch_size=64, epochs=2, shuffle=False, verbose=0)
    plain = mlp_model().fit(x, y, **kwargs).history
    history = (
        WithRows(
            module=mlp(),
            loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=elegy.metrics.Accuracy(),
            optimizer=optax.adam(1e-2),
        )
        .fit(x, y, **kwargs)
        .history
    )
    np.testing.assert_allclose(history["rows"], [(64 * 64 * 2 + 28 * 28) / 156] * 2, rtol=1e-6)
    for name in plain:
        np.testing.assert_allclose(history[name], plain[name], rtol=1e-6)


def test_a_learning_rate_a_custom_step_logs_is_its_last_value_not_averaged():
    # Keras' `learning_rate` log is the rate at the epoch's end, a value at a moment:
    # never averaged, while the step's other logs of its own are.
    schedule = optax.exponential_decay(0.1, transition_steps=1, decay_rate=0.5)

    class Scheduled(elegy.Model):
        def train_step(self, x, y_true, states, initializing) -> elegy.TrainStep:
            logs, states = super().train_step(
                x, y_true, states=states, initializing=initializing, training=True
            )
            count = optax.tree_utils.tree_get(states.optimizer_states, "count")
            rate = schedule(count - 1)  # the rate of the update just made
            return {**logs, "learning_rate": rate, "rows": jnp.float32(x.shape[0])}, states

    x, y = digits(156)
    model = Scheduled(
        module=mlp(),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.sgd(schedule),
    )
    history = model.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0).history
    # Three steps an epoch: the epochs end on steps 2 and 5.
    np.testing.assert_allclose(history["learning_rate"], [0.1 * 0.5**2, 0.1 * 0.5**5], rtol=1e-6)
    np.testing.assert_allclose(history["rows"], [(64 * 64 * 2 + 28 * 28) / 156] * 2, rtol=1e-6)


def test_epoch_logs_last_reports_the_last_step_and_other_values_are_refused():
    x, y = digits(156)
    model = FixedLinear(optimizer=optax.sgd(0.0), epoch_logs="last")
    model.init(x[:8], y[:8])
    last = model.evaluate(x[128:], y[128:], batch_size=28, verbose=0)
    history = model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0).history
    assert history["accuracy"] == [pytest.approx(last["accuracy"], rel=1e-6)]
    with pytest.raises(ValueError) as caught:
        FixedLinear(epoch_logs="sum")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "epoch_logs must be 'mean' (a custom step's logs averaged over the epoch) or 'last' "
        "(as the last step returned them), got 'sum'."
    )
