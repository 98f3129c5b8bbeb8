"""Population: several models trained as one compiled program, each member equal to a
separate fit of the same model with its seed and hyperparameters."""

import logging
import os
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import CountCompiles, digits, mlp, tensorboard_scalars

import eqx_elegy as elegy
from eqx_elegy import CheckpointError

X, Y = digits(192)
LRS = [3e-3, 1e-2, 3e-2]


def classifier(seed: int, lr: float = 1e-2, width: int = 16, **kwargs) -> elegy.Model:
    return elegy.Model(
        module=mlp(seed, width=width),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.inject_hyperparams(optax.adam)(learning_rate=lr),
        seed=seed,
        **kwargs,
    )


def max_difference(a, b) -> float:
    return max(
        (
            float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        ),
        default=0.0,
    )


def assert_members_match(population, separate, fit_kwargs) -> None:
    members = population.members()
    assert len(members) == len(separate)
    for member, model in zip(members, separate, strict=True):
        model.fit(X, Y, **fit_kwargs)
        assert max_difference(member.states.net_params, model.states.net_params) < 1e-5
        assert max_difference(member.states.net_states, model.states.net_states) < 1e-5


FIT = dict(batch_size=32, epochs=2, shuffle=False, verbose=0)


def test_members_equal_separate_fits_over_seeds_and_learning_rates():
    population = elegy.Population(classifier, hyperparams={"learning_rate": LRS})
    assert population.size == 3 and population.seeds == [0, 1, 2]
    history = population.fit(X, Y, **FIT)
    assert history.epoch == [0, 1]
    for values in history.history.values():
        assert all(np.shape(v) == (3,) for v in values)
    assert_members_match(
        population, [classifier(s, lr) for s, lr in zip([0, 1, 2], LRS, strict=True)], FIT
    )
    # The members did train differently: a larger learning rate, a lower loss here.
    loss = history.history["loss"][-1]
    assert loss[0] > loss[2]


class Dropout(eqx.Module):
    """An MLP with dropout: members that differ by seed alone get different keys."""

    mlp: eqx.nn.MLP
    dropout: eqx.nn.Dropout

    def __init__(self):
        self.mlp = mlp(0, width=16)
        self.dropout = eqx.nn.Dropout(0.5)

    def __call__(self, x, *, key):
        return self.mlp(self.dropout(x, key=key))


def test_a_model_with_seeds_gives_members_that_differ_by_their_random_keys():
    model = elegy.Model(
        module=Dropout(),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-2),
    )
    population = elegy.Population(model, seeds=[3, 5])
    population.fit(X, Y, **FIT)
    members = population.members()
    assert [m.seed for m in members] == [3, 5]
    assert max_difference(members[0].states.net_params, members[1].states.net_params) > 1e-3
    separate = [
        elegy.Model(
            module=Dropout(),
            loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
            optimizer=optax.adam(1e-2),
            seed=seed,
        )
        for seed in (3, 5)
    ]
    assert_members_match(population, separate, FIT)


class SGD(elegy.Model):
    """A linear classifier with its own train_step (plain SGD, no optax)."""

    lr: float = 0.5

    def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
        if initializing:
            key, rng = states.rng.next()
            w = jax.random.normal(key, (64, 10)) * 0.01
            states = states.update(net_params=(w, jnp.zeros(10)), rng=rng)
        w, b = states.net_params
        logits = x @ w + b
        labels = jax.nn.one_hot(y_true, 10)
        loss = -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))
        return loss, {"loss": loss}, states

    def train_step(self, x, y_true, states, initializing) -> elegy.TrainStep:
        def loss_fn(params):
            loss, logs, _ = self.test_step(x, y_true, states.update(net_params=params), False)
            return loss, logs

        if initializing:
            _, _, states = self.test_step(x, y_true, states, True)
        grads, logs = jax.grad(loss_fn, has_aux=True)(states.net_params)
        params = jax.tree.map(lambda p, g: p - self.lr * g, states.net_params, grads)
        return logs, states.update(net_params=params)


def test_members_equal_separate_fits_with_a_custom_train_step():
    population = elegy.Population(SGD(), size=3)
    history = population.fit(X, Y, **FIT)
    assert np.shape(history.history["loss"][-1]) == (3,)
    members = population.members()
    # Initialised from each member's seed, so they differ.
    assert max_difference(members[0].states.net_params, members[1].states.net_params) > 1e-4
    assert_members_match(population, [SGD(seed=s) for s in range(3)], FIT)


class BatchNormMLP(eqx.Module):
    linear: eqx.nn.Linear
    norm: eqx.nn.BatchNorm
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.linear = eqx.nn.Linear(64, 16, key=k1)
        self.norm = eqx.nn.BatchNorm(16, axis_name="batch", mode="ema")
        self.head = eqx.nn.Linear(16, 10, key=k2)

    def __call__(self, x, state):
        x, state = self.norm(self.linear(x), state)
        return self.head(jax.nn.relu(x)), state


def batchnorm_model(seed: int, lr: float = 1e-2) -> elegy.Model:
    module, state = eqx.nn.make_with_state(BatchNormMLP)(jax.random.key(seed))
    return elegy.Model(
        module=module,
        module_state=state,
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=lr),
        seed=seed,
    )


def test_members_equal_separate_fits_with_a_batchnorm_module():
    population = elegy.Population(
        batchnorm_model, seeds=[1, 2], hyperparams={"learning_rate": [0.1, 0.01]}
    )
    population.fit(X, Y, **FIT)
    members = population.members()
    assert max_difference(members[0].states.net_states, members[1].states.net_states) > 1e-4
    assert_members_match(population, [batchnorm_model(1, 0.1), batchnorm_model(2, 0.01)], FIT)


def compiled_programs(run) -> list[str]:
    """The names of the programs XLA compiles while `run()` runs, without the one-op
    copies that depend on which array shapes earlier tests used."""
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            run()
    finally:
        logger.removeHandler(handler)
    names = [m.split()[1] for m in messages if m.startswith("Compiling ")]
    return sorted(name for name in names if name != "jit(copy)")


def test_one_compile_per_step_kind_whatever_the_number_of_members():
    def uses(model) -> list[str]:
        def run() -> None:
            model.fit(X, Y, batch_size=32, epochs=2, verbose=0, validation_split=0.25)
            model.evaluate(X, Y, batch_size=32, verbose=0)
            model.predict(X, batch_size=32)

        return compiled_programs(run)

    # Widths no other test uses, so that no shape is in a cache yet.
    population = elegy.Population(lambda s: classifier(s, width=19), size=2)
    two = uses(population)
    five = uses(elegy.Population(lambda s: classifier(s, width=19), size=5))
    assert two == five == uses(classifier(0, width=23))
    # Training: the 4 batches of 32 in one chunk ("auto"), the last batch of 16 alone.
    assert two.count("jit(one)") == 1
    with CountCompiles() as compiles:  # a second fit compiles nothing
        population.fit(X, Y, batch_size=32, epochs=2, verbose=0, validation_split=0.25)
    assert compiles.count == 0


def test_evaluate_and_predict_carry_the_member_axis():
    population = elegy.Population(classifier, hyperparams={"learning_rate": LRS})
    population.fit(X, Y, **FIT)
    logs = population.evaluate(X, Y, batch_size=50, verbose=0)
    assert set(logs) == {"loss", "accuracy"}  # one loss: logged as `loss` alone
    assert all(np.shape(v) == (3,) for v in logs.values())
    y_pred = population.predict(X, batch_size=50, steps_per_execution=2)
    assert y_pred.shape == (3, len(X), 10)
    for i, member in enumerate(population.members()):
        np.testing.assert_allclose(member.predict(X, batch_size=50), y_pred[i], atol=1e-5)
        single = member.evaluate(X, Y, batch_size=50, verbose=0)
        for name, value in single.items():
            assert abs(value - logs[name][i]) < 1e-5


def test_steps_per_execution_gives_the_same_members():
    one, auto, three = (
        elegy.Population(classifier, hyperparams={"learning_rate": LRS}) for _ in range(3)
    )
    logs = [
        population.fit(X, Y, **FIT, validation_split=0.25, steps_per_execution=spe).history
        for population, spe in ((one, 1), (auto, None), (three, 3))  # None: "auto"
    ]
    for other, history in ((auto, logs[1]), (three, logs[2])):
        assert max_difference(one.states.net_params, other.states.net_params) < 1e-5
        assert max_difference(one.states.optimizer_states, other.states.optimizer_states) < 1e-5
        for name, values in logs[0].items():
            np.testing.assert_allclose(history[name], values, rtol=1e-5, err_msg=name)
    y_pred = one.predict(X, batch_size=16, steps_per_execution=1)
    np.testing.assert_allclose(auto.predict(X, batch_size=16), y_pred, atol=1e-5)
    single = one.evaluate(X, Y, batch_size=16, verbose=0, steps_per_execution=1)
    for name, value in auto.evaluate(X, Y, batch_size=16, verbose=0).items():
        np.testing.assert_allclose(value, single[name], rtol=1e-5, err_msg=name)


def test_members_are_independent_models():
    population = elegy.Population(classifier, size=2)
    population.fit(X, Y, **FIT)
    first, second = population.members()
    before = population.states.net_params
    first.fit(X, Y, **FIT)
    assert max_difference(population.states.net_params, before) == 0
    assert max_difference(population.members()[1].states.net_params, second.states.net_params) == 0


def test_the_progress_line_summarises_the_members(capsys):
    population = elegy.Population(classifier, hyperparams={"learning_rate": LRS})
    population.fit(X, Y, batch_size=64, epochs=1, verbose=2, shuffle=False)
    out = capsys.readouterr().out
    assert "loss: best " in out and ", mean " in out and ", worst " in out


def test_the_typed_step_check_sees_one_members_shapes():
    class Unreduced(SGD):
        def train_step(self, x, y_true, states, initializing) -> elegy.TrainStep:
            logs, states = super().train_step(x, y_true, states, initializing)
            return {"loss": jnp.full((x.shape[0],), logs["loss"])}, states

    population = elegy.Population(Unreduced(), size=3)
    with pytest.raises(TypeError, match=r"Unreduced.train_step .* its log 'loss' is float32\[32\]"):
        population.fit(X, Y, batch_size=32, verbose=0)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(size=3, seeds=[0, 1]), ValueError, r"size=3 but 2 seeds"),
        (dict(size=0), ValueError, r"size must be an int >= 1, got 0"),
        (dict(), ValueError, r"pass size .*, seeds .* or hyperparams"),
        (dict(seeds="01"), TypeError, r"seeds must be a sequence of ints"),
        (
            dict(hyperparams={"learning_rate": [1e-3, 1e-2], "b1": [0.9]}),
            ValueError,
            r"hyperparams lists have different lengths",
        ),
        (
            dict(size=3, hyperparams={"learning_rate": [1e-3, 1e-2]}),
            ValueError,
            r"hyperparams\['learning_rate'\] has 2 values for 3 members",
        ),
        (
            dict(hyperparams={"momentum": [0.1, 0.2]}),
            ValueError,
            r"hyperparams\['momentum'\] is not a hyperparameter .* it injects b1, b2, eps, "
            r"eps_root, learning_rate",
        ),
        (dict(hyperparams={"learning_rate": ["fast"]}), TypeError, r"must be a number"),
        (dict(hyperparams=[1e-3]), TypeError, r"hyperparams must be a dict"),
    ],
)
def test_bad_arguments_fail_before_anything_compiles(kwargs, error, message):
    model = classifier(0)
    with CountCompiles() as compiles, pytest.raises(error, match=message):
        elegy.Population(model, **kwargs)
    assert compiles.count == 0


def test_a_plain_optimizer_has_no_hyperparameters_to_sweep():
    model = elegy.Model(
        module=mlp(0, width=16),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-2),
    )
    with pytest.raises(ValueError, match=r"it injects none .*optax.inject_hyperparams"):
        elegy.Population(model, hyperparams={"learning_rate": [1e-3, 1e-2]})


def test_model_must_be_a_model_or_a_factory():
    with pytest.raises(TypeError, match=r"model must be an eqx_elegy.Model or a callable"):
        elegy.Population(mlp(0), size=2)  # an equinox module, not a Model
    with pytest.raises(
        TypeError, match=r"model\(seed\) must return an eqx_elegy.Model.*returned MLP"
    ):
        elegy.Population(lambda seed: mlp(seed), size=2)


def test_members_must_have_the_same_shapes():
    with pytest.raises(ValueError, match=r"same structure, shapes and dtypes.*member 1"):
        elegy.Population(lambda seed: classifier(0) if seed == 0 else SGD(), size=2)


class _Renamed(elegy.Model):
    """The same model under another class (whose steps could differ)."""


def _plain(seed, optimizer=None, activation=jax.nn.relu, from_logits=True, cls=elegy.Model):
    return cls(
        module=eqx.nn.MLP(64, 10, 16, 1, activation=activation, key=jax.random.key(seed)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optimizer if optimizer is not None else optax.adam(1e-2),
    )


def _activation(seed: int):
    # A function built per member, as a factory builds it: the same code, so the same model.
    return lambda x: jnp.maximum(x, 0.0)


@pytest.mark.parametrize(
    "factory",
    [
        lambda seed: classifier(seed, lr=LRS[seed]),  # injected: the rate is in the states
        lambda seed: _plain(seed, activation=_activation(seed)),
    ],
    ids=["injected learning rates", "per-member lambda"],
)
def test_members_built_alike_are_one_program(factory):
    assert len(elegy.Population(factory, size=3)) == 3


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda seed: _plain(seed, optax.adam([1e-2, 1e-3][seed])), "`optimizer`"),
        (
            lambda seed: _plain(
                seed, optax.adam(optax.exponential_decay(1e-2, 10, [0.9, 0.5][seed]))
            ),
            "`optimizer`",
        ),
        (
            lambda seed: _plain(
                seed, optax.chain(optax.clip_by_global_norm([1.0, 2.0][seed]), optax.adam(1e-2))
            ),
            "`optimizer`",
        ),
        (lambda seed: _plain(seed, activation=[jax.nn.relu, jax.nn.gelu][seed]), "`module`"),
        (lambda seed: _plain(seed, from_logits=seed == 0), "`loss`"),
        (lambda seed: _plain(seed, cls=[elegy.Model, _Renamed][seed]), "its class"),
    ],
    ids=["plain learning rates", "schedules", "clipping", "activation", "loss", "class"],
)
def test_members_that_differ_outside_their_states_are_refused(factory, field):
    """A population runs member 0's configuration: a member built differently would
    silently train as member 0, so it is refused, naming the member and the field."""
    with pytest.raises(ValueError, match=rf"member 1 differs from member 0 in {field}"):
        elegy.Population(factory, size=2)


def test_tensorboard_writes_each_member_as_a_run(tmp_path):
    population = elegy.Population(classifier, hyperparams={"learning_rate": LRS})
    board = elegy.callbacks.TensorBoard(tmp_path, update_freq=2)
    history = population.fit(X, Y, **FIT, validation_split=0.25, callbacks=[board])
    for member in range(len(LRS)):
        train = tensorboard_scalars(tmp_path / "train" / f"member_{member}")
        val = tensorboard_scalars(tmp_path / "validation" / f"member_{member}")
        for name in ("loss", "accuracy"):
            logged = [history.history[name][epoch][member] for epoch in range(FIT["epochs"])]
            assert train[f"epoch_{name}"] == pytest.approx(dict(enumerate(logged)))
            val_logged = [history.history[f"val_{name}"][e][member] for e in range(FIT["epochs"])]
            assert val[f"epoch_{name}"] == pytest.approx(dict(enumerate(val_logged)))
        assert train["epoch_learning_rate"] == pytest.approx(
            dict.fromkeys(range(FIT["epochs"]), LRS[member])
        )
        assert len(train["batch_loss"]) > 0
    assert not list((tmp_path / "train").glob("events.*"))  # nothing outside the members


# ---------------------------------------------------------------------------- best, save, load


def test_best_picks_the_member_with_the_best_latest_value():
    population = elegy.Population(classifier, hyperparams={"learning_rate": [1e-4, 3e-2, 1e-3]})
    history = population.fit(X, Y, **FIT, validation_data=(X[:64], Y[:64]))
    best = population.best("val_loss")
    assert isinstance(best, elegy.Model) and best.seed == 1
    assert np.argmin(history.history["val_loss"][-1]) == 1
    assert population.best("val_accuracy").seed == int(
        np.argmax(history.history["val_accuracy"][-1])
    )
    with pytest.raises(ValueError, match=r"monitor='val_auc' is not in the latest fit's logs"):
        population.best("val_auc")
    with pytest.raises(ValueError, match=r"not been fitted"):
        elegy.Population(classifier, size=2).best("loss")


def test_save_and_load_the_whole_population(tmp_path):
    population = elegy.Population(classifier, hyperparams={"learning_rate": LRS})
    population.fit(X, Y, **FIT)
    population.save(tmp_path / "pop")
    fresh = elegy.Population(classifier, hyperparams={"learning_rate": LRS})
    fresh.load(tmp_path / "pop")
    assert max_difference(fresh.states.net_params, population.states.net_params) == 0
    assert max_difference(fresh.states.optimizer_states, population.states.optimizer_states) == 0
    np.testing.assert_array_equal(fresh.predict(X[:10]), population.predict(X[:10]))
    with pytest.raises(CheckpointError, match=r"does not fit"):
        elegy.Population(classifier, size=2).load(tmp_path / "pop")
    # Each member saves and loads as an ordinary model.
    member = population.members()[2]
    member.save(tmp_path / "member")
    other = classifier(2, LRS[2])
    other.load(tmp_path / "member")
    np.testing.assert_allclose(other.predict(X[:10]), population.predict(X[:10])[2], atol=1e-6)


# ---------------------------------------------------------------------------- callbacks


def test_early_stopping_freezes_each_member_on_its_own():
    # Member 0 learns nothing (learning rate 0), so it stops after `patience` epochs and
    # stays frozen while member 1 trains on.
    population = elegy.Population(classifier, hyperparams={"learning_rate": [0.0, 1e-2]})
    stopping = elegy.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=1e-3)
    history = population.fit(X, Y, **{**FIT, "epochs": 4}, callbacks=[stopping])
    assert history.epoch == [0, 1, 2, 3]
    first, second = stopping.members  # type: ignore[attr-defined]
    assert first.stopped_epoch == 1 and second.stopped_epoch is None
    frozen = population.members()[0]
    assert max_difference(frozen.states.net_params, classifier(0, 0.0).states.net_params) == 0
    # The same fit of member 1 alone.
    alone = classifier(1, 1e-2)
    alone.fit(X, Y, **{**FIT, "epochs": 4})
    assert max_difference(population.members()[1].states.net_params, alone.states.net_params) < 1e-5


def test_the_fit_ends_when_every_member_has_stopped():
    population = elegy.Population(classifier, hyperparams={"learning_rate": [0.0, 0.0]})
    stopping = elegy.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e-3)
    history = population.fit(X, Y, **{**FIT, "epochs": 5}, callbacks=[stopping])
    assert history.epoch == [0, 1]


def test_reduce_lr_on_plateau_changes_each_members_learning_rate():
    population = elegy.Population(classifier, hyperparams={"learning_rate": [0.0, 1e-2]})
    reduce = elegy.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.5, patience=0, min_delta=1e-3
    )
    population.fit(X, Y, **{**FIT, "epochs": 2}, callbacks=[reduce])
    rates = population.states.optimizer_states.hyperparams["learning_rate"]
    assert float(rates[1]) == pytest.approx(1e-2)  # improving: unchanged
    assert float(rates[0]) == 0.0  # halved from 0


def test_model_checkpoint_saves_each_member(tmp_path):
    population = elegy.Population(classifier, hyperparams={"learning_rate": LRS})
    checkpoint = elegy.callbacks.ModelCheckpoint(str(tmp_path / "m{member}-e{epoch}"))
    population.fit(X, Y, **FIT, callbacks=[checkpoint])
    model = classifier(1, LRS[1])
    model.load(tmp_path / "m1-e2")
    assert max_difference(model.states.net_params, population.members()[1].states.net_params) == 0
    with pytest.raises(ValueError, match=r"filepath must hold a \{member\} field"):
        population.fit(X, Y, callbacks=[elegy.callbacks.ModelCheckpoint(str(tmp_path / "x"))])


POPULATION_LOGS = "accuracy, learning_rate, loss"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(callbacks=elegy.callbacks.EarlyStopping()),
            "EarlyStopping: monitor='val_loss' is not a log of this fit; available: "
            f"{POPULATION_LOGS}. val_ logs need validation data: pass validation_data or "
            "validation_split.",
        ),
        (
            dict(callbacks=[elegy.callbacks.ModelCheckpoint("m{member}-{val_acc}")]),
            "ModelCheckpoint: filepath 'm{member}-{val_acc}' uses {val_acc}, which is not a "
            "log of this fit; available: accuracy, epoch, learning_rate, loss, member. val_ "
            "logs need validation data: pass validation_data or validation_split.",
        ),
        (
            dict(x=X[:, :10]),
            r"The module cannot be applied to x: a batch of x is float32\[32, 10\]",
        ),
        (
            dict(y=np.where(np.arange(len(Y)) == 7, 10, Y)),
            r"y holds the labels of the sparse categorical crossentropy .* integers in \[0, 10\) "
            r"\(the output has 10 classes\), but y is 10 or more at example 7",
        ),
    ],
)
def test_population_fit_checks_its_arguments_before_the_first_step(kwargs, message):
    population = elegy.Population(classifier, size=2)
    before = population.states
    with CountCompiles() as compiles, pytest.raises(ValueError) as raised:
        population.fit(**{"x": X, "y": Y, **FIT, **kwargs})
    if "callbacks" in kwargs:
        assert str(raised.value) == message
    else:
        assert re.match(message, str(raised.value))
    assert compiles.count == 0 and population.states is before


def test_population_checkpoints_may_use_each_members_learning_rate(tmp_path):
    population = elegy.Population(classifier, hyperparams={"learning_rate": [1e-2, 3e-2]})
    checkpoint = elegy.callbacks.ModelCheckpoint(str(tmp_path / "m{member}-{learning_rate:.2f}"))
    population.fit(X, Y, **{**FIT, "epochs": 1}, callbacks=checkpoint)  # one, not in a list
    assert sorted(os.listdir(tmp_path)) == ["m0-0.01", "m1-0.03"]


# ---------------------------------------------------------------------------- distribution


def test_data_parallel_population_matches_one_device():
    reference = elegy.Population(classifier, hyperparams={"learning_rate": LRS})
    reference.fit(X, Y, **FIT)
    spread = elegy.Population(classifier, hyperparams={"learning_rate": LRS})
    spread = spread.distributed(elegy.DataParallel(devices=jax.devices()[:2]))
    spread.fit(X, Y, **FIT)
    assert max_difference(spread.states.net_params, reference.states.net_params) < 1e-5
    member = spread.members()[1]
    np.testing.assert_allclose(member.predict(X[:8]), reference.predict(X[:8])[1], atol=1e-5)


def test_fsdp_population_shards_each_members_parameters_and_matches_one_device():
    reference = elegy.Population(classifier, hyperparams={"learning_rate": LRS})
    reference.fit(X, Y, **FIT)
    sharded = elegy.Population(classifier, hyperparams={"learning_rate": LRS})
    sharded = sharded.distributed(elegy.FSDP(devices=jax.devices()[:2], min_size=1))
    sharded.fit(X, Y, **FIT)
    # The member axis (3 members) stays whole; a parameter axis is split over the devices.
    weight = sharded.states.net_params.layers[0].weight
    assert weight.shape == (3, 16, 64)
    assert weight.sharding.spec[0] is None and "data" in tuple(weight.sharding.spec)
    assert max_difference(sharded.states.net_params, reference.states.net_params) < 1e-5
    logs = sharded.evaluate(X, Y, verbose=0)
    np.testing.assert_allclose(logs["loss"], reference.evaluate(X, Y, verbose=0)["loss"], rtol=1e-5)
    member = sharded.members()[2]
    np.testing.assert_allclose(member.predict(X[:8]), reference.predict(X[:8])[2], atol=1e-5)
