"""Each callback doing its job on a tiny MLP; the progress bar's throttling; bad input.

Models are built once per module and `reset()` between tests, so that their compiled
steps are reused (a new model compiles its steps again, which takes seconds here).
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax
import pytest
from helpers import CountCompiles, tensorboard_scalars
from rich.console import Console

import eqx_elegy as elegy
from eqx_elegy.callbacks import (
    BackupAndRestore,
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgbarLogger,
    ReduceLROnPlateau,
    TensorBoard,
    TerminateOnNaN,
)
from eqx_elegy.callbacks._reduce_lr import learning_rates, with_learning_rates

STEPS = 4  # steps per epoch: 64 examples, batch 16
BATCH = 16


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    return x, y


X, Y = _data()


def _model(optimizer: optax.GradientTransformation) -> elegy.Model:
    return elegy.Model(
        module=eqx.nn.MLP(4, 3, 8, 1, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optimizer,
    )


@pytest.fixture(scope="module")
def adam_model() -> elegy.Model:
    return _model(optax.adam(1e-2))


@pytest.fixture(scope="module")
def sgd_model() -> elegy.Model:
    """SGD with its learning rate in the optimizer state."""
    return _model(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1))


@pytest.fixture
def model(adam_model: elegy.Model) -> elegy.Model:
    adam_model.reset()
    return adam_model


@pytest.fixture
def injected(sgd_model: elegy.Model) -> elegy.Model:
    sgd_model.reset()
    return sgd_model


def _params(model: elegy.Model) -> list[np.ndarray]:
    return [np.array(leaf) for leaf in jax.tree.leaves(model.states.net_params)]


def _fit(model: elegy.Model, callbacks: list[Any], epochs: int = 3, **kwargs: Any) -> History:
    kwargs.setdefault("shuffle", False)
    return model.fit(
        X, Y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=callbacks, **kwargs
    )


class Crash(Exception):
    pass


def _crash_at(epoch: int, batch: int) -> LambdaCallback:
    state = {"epoch": -1}

    def begin(e: int, logs: Any) -> None:
        state["epoch"] = e

    def end(b: int, logs: Any) -> None:
        if (state["epoch"], b) == (epoch, batch):
            raise Crash(f"crash at epoch {epoch}, batch {batch}")

    return LambdaCallback(on_epoch_begin=begin, on_train_batch_end=end)


def _saved_params(model: elegy.Model, path: Path) -> list[np.ndarray]:
    """The parameters of the save at `path`, loaded into `model` (whose states change)."""
    model.load(path)
    return _params(model)


# ---------------------------------------------------------------------------- base


def test_hooks_are_called_and_unused_ones_skipped(model: elegy.Model) -> None:
    calls: list[tuple[str, int]] = []
    seen_logs: list[dict[str, float]] = []
    recorder = LambdaCallback(
        on_epoch_end=lambda epoch, logs: calls.append(("epoch", epoch)),
        on_train_batch_end=lambda batch, logs: (
            calls.append(("batch", batch)),
            seen_logs.append(dict(logs)),
        ),
    )
    history = _fit(model, [recorder], epochs=2)
    assert calls == [*[("batch", b) for b in range(STEPS)], ("epoch", 0)] + [
        *[("batch", b) for b in range(STEPS)],
        ("epoch", 1),
    ]
    # The last step's logs are the epoch's (running values over the epoch).
    assert seen_logs[-1]["loss"] == pytest.approx(history.history["loss"][-1])
    assert all(isinstance(v, float) for v in seen_logs[0].values())

    # evaluate and predict take callbacks too.
    seen: list[tuple[str, int]] = []
    watcher = LambdaCallback(
        on_test_batch_end=lambda batch, logs: seen.append(("test", batch)),
        on_predict_batch_end=lambda batch, logs: seen.append(("predict", batch)),
    )
    model.evaluate(X, Y, batch_size=BATCH, verbose=0, callbacks=[watcher])
    y_pred = model.predict(X, batch_size=BATCH, callbacks=[watcher])
    assert seen == [("test", b) for b in range(STEPS)] + [("predict", b) for b in range(STEPS)]
    assert y_pred.shape == (len(X), 3)

    quiet = CallbackList([History()], model, {})
    assert not quiet.wants("on_train_batch_end")
    assert CallbackList([recorder], model, {}).wants("on_train_batch_end")
    assert not CallbackList([recorder], model, {}).wants("on_train_batch_begin")


@pytest.mark.parametrize("reads_states", [True, False])
def test_states_are_stored_for_batch_hooks_only_when_read(
    model: elegy.Model, reads_states: bool
) -> None:
    # Storing the States on the model rebuilds the pytree, which costs about a small
    # model's step: the loop does it before every batch hook only for callbacks that may
    # read the model some other way than `self.model` (reads_states_per_batch, the
    # default); otherwise only when `self.model` is read (Keras' approach on JAX).
    class Watcher(Callback):
        reads_states_per_batch = reads_states

        def __init__(self) -> None:
            super().__init__()
            self.stored: list[elegy.States] = []  # as on the model, without a sync
            self.read: list[list[np.ndarray]] = []

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.stored.append(model.states)
            if batch % 2:  # reads through self.model, every other step
                self.read.append(_params(self.model))

    watcher = Watcher()
    reference = _snapshots_per_step(model)
    model.reset()
    _fit(model, [watcher], epochs=1)
    stored = [id(states) for states in watcher.stored]
    if reads_states:
        assert len(set(stored)) == STEPS
    else:  # the initial states, then those stored by the read at batch 1 (seen at 2 and 3)
        assert stored[0] == stored[1] != stored[2] == stored[3]
    for seen, expected in zip(watcher.read, reference[1::2], strict=True):
        for a, b in zip(seen, expected, strict=True):
            np.testing.assert_array_equal(a, b)
    assert not ProgbarLogger.reads_states_per_batch


def _snapshots_per_step(model: elegy.Model) -> list[list[np.ndarray]]:
    """The parameters after each step of one epoch (from a callback that reads them all)."""
    seen: list[list[np.ndarray]] = []
    _fit(model, [LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(_params(model)))], 1)
    return seen


def test_throttled_batch_end_hooks_come_rarely_and_at_each_last_step(model: elegy.Model) -> None:
    class Display(Callback):
        batch_end_interval = 1e6  # seconds: the loop only reads its clock per step

        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, int, float]] = []

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.calls.append(("train", batch, logs["loss"]))

        def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
            self.calls.append(("test", batch, logs["loss"]))

    display = Display()
    history = _fit(model, [display], epochs=2, steps_per_execution=3)
    # Due at the first step (nothing drawn yet), then only at each epoch's last step,
    # with that step's logs (the running loss of the epoch).
    assert [c[:2] for c in display.calls] == [("train", 2), ("train", 3), ("train", 3)]
    assert display.calls[-1][2] == pytest.approx(history.history["loss"][-1])
    assert not CallbackList([display], model, {}).wants("on_train_batch_end")

    display.calls.clear()
    logs = model.evaluate(
        X, Y, batch_size=BATCH, verbose=0, callbacks=[display], steps_per_execution=1
    )
    assert [c[:2] for c in display.calls] == [("test", 0), ("test", 3)]
    assert display.calls[-1][2] == pytest.approx(logs["loss"])
    # With "auto" (the default) the 4 batches run in one call: due once, at its last step.
    display.calls.clear()
    model.evaluate(X, Y, batch_size=BATCH, verbose=0, callbacks=[display])
    assert [c[:2] for c in display.calls] == [("test", 3), ("test", 3)]


def test_stop_training_ends_fit_after_the_current_step(model: elegy.Model) -> None:
    steps: list[int] = []

    def end(batch: int, logs: Any) -> None:
        steps.append(batch)
        if batch == 1:
            model.stop_training = True

    history = _fit(model, [LambdaCallback(on_train_batch_end=end)], epochs=3)
    assert steps == [0, 1]
    assert history.epoch == [0]


def test_lambda_callback_bad_input() -> None:
    with pytest.raises(TypeError, match="unknown hook 'on_epoch_ends'.*on_epoch_end"):
        LambdaCallback(on_epoch_ends=print)
    with pytest.raises(TypeError, match="on_epoch_end must be a function, got int"):
        LambdaCallback(on_epoch_end=3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- EarlyStopping


def _snapshots(store: dict[int, list[np.ndarray]], model: elegy.Model) -> LambdaCallback:
    return LambdaCallback(on_epoch_end=lambda epoch, logs: store.__setitem__(epoch, _params(model)))


def test_early_stopping_restores_the_best_epochs_weights(model: elegy.Model) -> None:
    # The loss falls every epoch, so with mode="max" the first epoch is the best one.
    seen: dict[int, list[np.ndarray]] = {}
    stopper = EarlyStopping(monitor="loss", mode="max", patience=2, restore_best_weights=True)
    history = _fit(model, [_snapshots(seen, model), stopper], epochs=10)
    assert history.epoch == [0, 1, 2]
    assert (stopper.stopped_epoch, stopper.best_epoch) == (2, 0)
    for final, best, last in zip(_params(model), seen[0], seen[2], strict=True):
        np.testing.assert_array_equal(final, best)
        assert not np.array_equal(final, last)
    # The restored weights are laid out as the loop's: training on compiles nothing new.
    with CountCompiles() as compiles:
        _fit(model, [], epochs=1)
    assert compiles.count == 0


def test_early_stopping_restores_the_weights_a_checkpoint_holds(
    model: elegy.Model, tmp_path: Path
) -> None:
    stopper = EarlyStopping(monitor="loss", mode="max", patience=1, restore_best_weights=True)
    saver = ModelCheckpoint(tmp_path / "epoch{epoch}")
    _fit(model, [saver, stopper], epochs=10)
    restored = _params(model)
    assert sorted(os.listdir(tmp_path)) == ["epoch1", "epoch2"]
    for a, b in zip(restored, _saved_params(model, tmp_path / "epoch1"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_patience_min_delta_baseline_and_warm_up(model: elegy.Model) -> None:
    # No later epoch lowers the loss by 10: epoch 0 is the best, two epochs of patience.
    stopper = EarlyStopping(monitor="loss", min_delta=10.0, patience=2)
    assert _fit(model, [stopper], epochs=10).epoch == [0, 1, 2]
    assert stopper.best_epoch == 0

    # A baseline never beaten keeps the count running from the first epoch.
    model.reset()
    stopper = EarlyStopping(monitor="loss", mode="max", patience=2, baseline=100.0)
    assert _fit(model, [stopper], epochs=10).epoch == [0, 1]

    # Epochs before start_from_epoch do not count.
    model.reset()
    stopper = EarlyStopping(monitor="loss", mode="max", patience=0, start_from_epoch=2)
    assert _fit(model, [stopper], epochs=10).epoch == [0, 1, 2, 3]
    assert (stopper.best_epoch, stopper.stopped_epoch) == (2, 3)

    # A loss that keeps falling never stops training.
    model.reset()
    stopper = EarlyStopping(monitor="loss", patience=0)
    assert _fit(model, [stopper], epochs=3).epoch == [0, 1, 2]
    assert stopper.stopped_epoch is None


LOGS = "accuracy, loss"


@pytest.mark.parametrize(
    ("make", "validation", "message"),
    [
        (
            lambda: EarlyStopping(monitor="val_loss"),
            False,
            f"EarlyStopping: monitor='val_loss' is not a log of this fit; available: {LOGS}. "
            "val_ logs need validation data: pass validation_data or "
            "validation_split.",
        ),
        (
            lambda: ModelCheckpoint("unused", monitor="val_acc", save_best_only=True),
            True,
            "ModelCheckpoint: monitor='val_acc' is not a log of this fit; available: "
            f"{LOGS}, val_accuracy, val_loss.",
        ),
        (
            lambda: ModelCheckpoint("unused", monitor="val_loss", save_best_only=True, save_freq=2),
            True,
            "ModelCheckpoint: monitor='val_loss' is not a log of this fit; available at each "
            f"step: {LOGS}.",
        ),
    ],
)
def test_an_unknown_monitor_fails_before_the_first_step(
    model: elegy.Model, make: Any, validation: bool, message: str
) -> None:
    _fit(model, [], epochs=1)
    before = model.states
    val = (X, Y) if validation else None
    with CountCompiles() as compiles, pytest.raises(ValueError) as raised:
        _fit(model, [make()], epochs=2, validation_data=val)
    assert str(raised.value) == message
    assert compiles.count == 0 and model.states is before


def test_monitors_may_watch_the_learning_rate_and_val_logs(injected: elegy.Model) -> None:
    reducer = ReduceLROnPlateau(monitor="val_los", mode="min")
    with pytest.raises(ValueError) as raised:
        _fit(injected, [reducer], epochs=1, validation_data=(X, Y))
    assert str(raised.value) == (
        "ReduceLROnPlateau: monitor='val_los' is not a log of this fit; available: accuracy, "
        "learning_rate, loss, val_accuracy, val_loss."
    )
    # The learning rate falls by 0.9 every epoch: with mode="max" it never improves.
    stopper = EarlyStopping(monitor="learning_rate", mode="max", patience=1)
    history = _fit(
        injected,
        [LearningRateScheduler(lambda epoch, lr: 0.1 * 0.9**epoch), stopper],
        epochs=5,
    )
    assert history.epoch == [0, 1] and stopper.stopped_epoch == 1
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.09])


def test_checkpoint_filepaths_may_use_the_learning_rate(
    injected: elegy.Model, adam_model: elegy.Model, tmp_path: Path
) -> None:
    _fit(injected, [ModelCheckpoint(tmp_path / "e{epoch}-lr{learning_rate:.3f}")], epochs=2)
    assert sorted(os.listdir(tmp_path)) == ["e1-lr0.100", "e2-lr0.100"]
    adam_model.reset()
    saver = ModelCheckpoint(tmp_path / "x{learning_rate}")
    with pytest.raises(ValueError) as raised:
        _fit(adam_model, [saver], epochs=1)
    assert str(raised.value) == (
        f"ModelCheckpoint: filepath {saver.filepath!r} uses {{learning_rate}}, which is not a "
        "log of this fit; available: accuracy, epoch, loss."
    )


def _adds_score(values: list[float]) -> LambdaCallback:
    """Adds the log `score` (`values[epoch]`) for the callbacks after it, as a user's
    callback may."""

    def add(epoch: int, logs: Any) -> None:
        logs["score"] = values[epoch]

    return LambdaCallback(on_epoch_end=add)


def test_a_monitor_a_callback_before_it_may_add_is_a_warning(model: elegy.Model) -> None:
    stopper = EarlyStopping(monitor="score", mode="max", patience=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _fit(model, [_adds_score([1.0, 3.0, 2.0, 2.5, 4.0]), stopper], epochs=5)
    # The log was added, so only the check before the first step warned, and the
    # callback used it: epoch 1 is the best, epoch 3 the second without improvement.
    assert [str(w.message) for w in caught] == [
        f"EarlyStopping: monitor='score' is not a log of this fit; available: {LOGS}. "
        "A callback before it may add that log, so this is a warning (as in Keras); if none "
        "does, the callback never acts on it."
    ]
    assert caught[0].filename == __file__  # the warning points at the user's call of fit
    assert history.epoch == [0, 1, 2, 3] and stopper.best_epoch == 1
    # After the monitor, a callback cannot add its log: that is an error.
    model.reset()
    with pytest.raises(ValueError, match="EarlyStopping: monitor='score' is not a log"):
        _fit(model, [stopper, _adds_score([1.0])], epochs=1)


def test_a_monitor_nothing_adds_warns_once_more_when_it_is_missing(model: elegy.Model) -> None:
    stopper = EarlyStopping(monitor="val_loss", patience=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _fit(model, [LambdaCallback(on_epoch_end=lambda e, logs: None), stopper])
    assert history.epoch == [0, 1, 2]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert messages[0].startswith("EarlyStopping: monitor='val_loss' is not a log of this fit")
    assert messages[1] == (
        f"EarlyStopping: monitor='val_loss' is not in the logs (available: {LOGS}); early "
        "stopping is not checked on such epochs."
    )


class _OwnLogs(elegy.Model):
    """A test step with logs of its own: they cannot be known before it runs."""

    def test_step(
        self, x: Any, y_true: Any, states: elegy.States, initializing: bool
    ) -> elegy.TestStep:
        loss, _, states = super().test_step(x, y_true, states=states, initializing=initializing)
        return loss, {"loss": loss, "own": 2 * loss}, states


def test_with_a_step_of_the_users_own_monitors_are_not_checked_ahead() -> None:
    model = _OwnLogs(
        module=eqx.nn.MLP(4, 3, 8, 1, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-2),
    )
    stopper = EarlyStopping(monitor="own", mode="max", patience=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _fit(model, [stopper], epochs=3)
    assert not caught and history.epoch == [0, 1] and stopper.stopped_epoch == 1


def test_monitor_bad_input() -> None:
    with pytest.raises(ValueError, match="cannot tell whether monitor='speed'.*mode='min'"):
        EarlyStopping(monitor="speed")
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max', got 'up'"):
        EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience must be an int >= 0, got -1"):
        EarlyStopping(patience=-1)
    assert EarlyStopping(monitor="val_accuracy").monitor.mode == "max"
    assert EarlyStopping(monitor="val_loss").monitor.mode == "min"


# ---------------------------------------------------------------------------- TerminateOnNaN


def test_terminate_on_nan_stops_at_the_first_nan_loss(model: elegy.Model) -> None:
    x = X.copy()
    x[2 * BATCH + 3] = np.nan  # in the third batch (shuffle is off)
    steps: list[int] = []
    stopper = TerminateOnNaN()
    counter = LambdaCallback(on_train_batch_end=lambda batch, logs: steps.append(batch))
    history = model.fit(
        x, Y, batch_size=BATCH, epochs=3, verbose=0, shuffle=False, callbacks=[stopper, counter]
    )
    assert (stopper.stopped_epoch, stopper.stopped_batch) == (0, 2)
    assert steps == [0, 1, 2]
    assert history.epoch == [0] and np.isnan(history.history["loss"][0])

    model.reset()
    stopper = TerminateOnNaN()
    assert _fit(model, [stopper], epochs=2).epoch == [0, 1]
    assert stopper.stopped_batch is None


# ---------------------------------------------------------------------------- ModelCheckpoint


def test_model_checkpoint_int_save_freq_saves_at_those_steps(
    model: elegy.Model, tmp_path: Path
) -> None:
    seen: dict[tuple[int, int], list[np.ndarray]] = {}
    epoch = {"now": 0}
    recorder = LambdaCallback(
        on_epoch_begin=lambda e, logs: epoch.__setitem__("now", e),
        on_train_batch_end=lambda b, logs: seen.__setitem__((epoch["now"], b), _params(model)),
    )
    saver = ModelCheckpoint(tmp_path / "e{epoch}-b{batch}-{loss:.3f}", save_freq=3)
    history = _fit(model, [recorder, saver], epochs=2)
    del history
    # Steps 3 and 6 of 8: epoch 1's batch 3 and epoch 2's batch 2 (counted from 1).
    names = sorted(os.listdir(tmp_path))
    assert [name.rsplit("-", 1)[0] for name in names] == ["e1-b3", "e2-b2"]
    for name, key in zip(names, [(0, 2), (1, 1)], strict=True):
        for a, b in zip(_saved_params(model, tmp_path / name), seen[key], strict=True):
            np.testing.assert_array_equal(a, b)


def test_model_checkpoint_save_best_only_saves_only_improvements(
    model: elegy.Model, tmp_path: Path
) -> None:
    # With mode="max" on a falling loss only the first epoch improves.
    saver = ModelCheckpoint(
        tmp_path / "max{epoch}", monitor="loss", mode="max", save_best_only=True
    )
    _fit(model, [saver], epochs=3)
    assert os.listdir(tmp_path) == ["max1"]

    model.reset()
    saver = ModelCheckpoint(
        tmp_path / "val{epoch}-{val_loss:.4f}", monitor="val_loss", save_best_only=True
    )
    history = _fit(model, [saver], epochs=6, validation_data=(X[:20], (Y[:20] + 1) % 3))
    best, expected = np.inf, []
    for epoch, value in enumerate(history.history["val_loss"]):
        if value < best:
            best = value
            expected.append(f"val{epoch + 1}-{value:.4f}")
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("val")) == sorted(expected)
    assert len(expected) < 6  # validation on wrong labels gets worse: some epochs are skipped


def test_model_checkpoint_weights_only_and_its_record_of_the_epoch(
    model: elegy.Model, tmp_path: Path
) -> None:
    saver = ModelCheckpoint(tmp_path / "w{epoch}", save_weights_only=True)
    history = _fit(model, [saver], epochs=2)
    final = _params(model)
    manifest = json.loads((tmp_path / "w2" / "manifest.json").read_text())
    assert manifest["weights_only"] is True
    assert manifest["metadata"]["epoch"] == 2 and manifest["metadata"]["batch"] is None
    assert manifest["metadata"]["logs"]["loss"] == pytest.approx(history.history["loss"][-1])
    model.reset()
    model.load(tmp_path / "w2", weights_only=True)
    for a, b in zip(_params(model), final, strict=True):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_bad_input(model: elegy.Model, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a valid format string"):
        ModelCheckpoint(tmp_path / "{epoch")
    with pytest.raises(ValueError, match="fields must name a log"):
        ModelCheckpoint(tmp_path / "ckpt{}")
    with pytest.raises(ValueError, match="save_freq must be 'epoch' or an int >= 1"):
        ModelCheckpoint(tmp_path / "ckpt", save_freq="batch")
    saver = ModelCheckpoint(tmp_path / "ckpt-{val_loss:.2f}")
    with pytest.raises(ValueError, match=r"uses \{val_loss\}, which is not a log.*available: "):
        _fit(model, [saver], epochs=1)


@pytest.mark.parametrize(
    "make",
    [
        lambda path: ModelCheckpoint(path / "ckpt"),
        lambda path: CSVLogger(path / "log.csv"),
        lambda path: TensorBoard(path / "tb"),
        lambda path: BackupAndRestore(path / "backup"),
    ],
    ids=["ModelCheckpoint", "CSVLogger", "TensorBoard", "BackupAndRestore"],
)
def test_unwritable_directory_fails_when_training_begins(
    model: elegy.Model, tmp_path: Path, make: Any
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    callback = make(blocker)
    epochs: list[int] = []
    watcher = LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs.append(epoch))
    with pytest.raises(OSError, match=f"{type(callback).__name__}: cannot write to"):
        _fit(model, [callback, watcher], epochs=1)
    assert epochs == []


# ---------------------------------------------------------------------------- CSVLogger


def test_csv_logger_writes_a_header_and_a_row_per_epoch(model: elegy.Model, tmp_path: Path) -> None:
    path = tmp_path / "logs" / "train.csv"
    history = _fit(model, [CSVLogger(path)], epochs=3)
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    keys = sorted(history.history)
    assert rows[0] == ["epoch", *keys]
    assert len(rows) == 4
    for epoch, row in enumerate(rows[1:]):
        assert int(row[0]) == epoch
        for key, value in zip(keys, row[1:], strict=True):
            assert float(value) == pytest.approx(history.history[key][epoch], rel=1e-6)

    # append keeps the header and adds rows; a new file with another separator.
    history = _fit(model, [CSVLogger(path, append=True)], epochs=2)
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    assert len(rows) == 6 and rows[0] == ["epoch", *keys]
    assert float(rows[-1][keys.index("loss") + 1]) == pytest.approx(history.history["loss"][-1])
    _fit(model, [CSVLogger(path, separator=";")], epochs=1)
    assert path.read_text().splitlines()[0] == ";".join(["epoch", *keys])
    with pytest.raises(ValueError, match="separator must be one character"):
        CSVLogger(path, separator=";;")


# ---------------------------------------------------------------------------- TensorBoard


def test_tensorboard_writes_epoch_step_and_learning_rate_scalars(
    injected: elegy.Model, tmp_path: Path
) -> None:
    board = TensorBoard(tmp_path, update_freq=3)
    history = _fit(injected, [board], epochs=2, validation_data=(X[:32], Y[:32]))
    train, val = (
        tensorboard_scalars(tmp_path / "train"),
        tensorboard_scalars(tmp_path / "validation"),
    )
    for name in ("loss", "accuracy"):
        assert train[f"epoch_{name}"] == pytest.approx(dict(enumerate(history.history[name])))
        assert val[f"epoch_{name}"] == pytest.approx(
            dict(enumerate(history.history[f"val_{name}"]))
        )
    assert train["epoch_learning_rate"] == pytest.approx({0: 0.1, 1: 0.1})
    assert sorted(train["batch_loss"]) == [3, 6]  # every 3 of the 8 steps
    assert "batch_loss" not in val

    # Per-epoch logging adds no batch hook (nothing is read per step).
    assert not CallbackList([TensorBoard(tmp_path / "quiet")], injected, {}).wants(
        "on_train_batch_end"
    )
    with pytest.raises(ValueError, match="update_freq must be 'epoch' or an int >= 1"):
        TensorBoard(tmp_path, update_freq=0)


# ---------------------------------------------------------------------------- ReduceLROnPlateau


class _StartFrom(Callback):
    """Starts a fit from the given states (through the public callback API)."""

    def __init__(self, states: elegy.States) -> None:
        super().__init__()
        self.states = states

    def on_train_begin(self, logs: Any = None) -> None:
        self.set_states(self.states)


def _one_step(
    model: elegy.Model, epoch: int, start: elegy.States | None = None
) -> list[np.ndarray]:
    """How one training step (epoch `epoch`, step 0, fixed batch) changes the parameters,
    from the model's states or from `start`."""
    states = model.states if start is None else start
    before = [np.array(leaf) for leaf in jax.tree.leaves(states.net_params)]
    model.fit(
        X, Y, batch_size=BATCH, epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=1,
        shuffle=False, verbose=0, callbacks=[] if start is None else [_StartFrom(start)],
    )  # fmt: skip
    return [after - b for after, b in zip(_params(model), before, strict=True)]


def test_reduce_lr_on_plateau_lowers_the_rate_the_optimizer_uses(injected: elegy.Model) -> None:
    # The loss falls, so with mode="max" every epoch after the first is a plateau.
    reducer = ReduceLROnPlateau(monitor="loss", mode="max", factor=0.5, patience=0)
    _fit(injected, [reducer], epochs=3)
    assert learning_rates(injected.states.optimizer_states) == pytest.approx([0.025])
    rate = injected.states.optimizer_states.hyperparams["learning_rate"]
    assert (rate.dtype, rate.shape) == (np.float32, ())

    # The next step moves the parameters a quarter as far as it would at the initial rate
    # (SGD: the update is -lr * grad, from the same states and batch), and nothing recompiles.
    saved = jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, injected.states)
    with CountCompiles() as compiles:
        reduced = _one_step(injected, 3)
        at_initial_rate = with_learning_rates(saved.optimizer_states, lambda lr: 0.1)
        initial = _one_step(injected, 3, start=saved.update(optimizer_states=at_initial_rate))
    assert compiles.count == 0
    small, large = (
        np.concatenate([a.ravel() for a in reduced]),
        np.concatenate([a.ravel() for a in initial]),
    )
    # Differences of float32 parameters carry rounding of about 1e-7.
    np.testing.assert_allclose(small, 0.25 * large, atol=2e-7)
    assert np.dot(small, large) / np.dot(large, large) == pytest.approx(0.25, rel=1e-3)


def test_reduce_lr_on_plateau_cooldown_and_min_lr(injected: elegy.Model) -> None:
    reducer = ReduceLROnPlateau(
        monitor="loss", mode="max", factor=0.5, patience=0, cooldown=2, min_lr=0.04
    )
    rates: list[float] = []
    recorder = LambdaCallback(
        on_epoch_end=lambda e, logs: rates.extend(learning_rates(injected.states.optimizer_states))
    )
    _fit(injected, [reducer, recorder], epochs=5)
    # Epoch 0 is the best; 1 reduces; 2 cools down (as in Keras, the count goes down before
    # the check, so a cooldown of 2 skips one epoch); 3 reduces to the floor; 4 stays there.
    assert rates == pytest.approx([0.1, 0.05, 0.05, 0.04, 0.04])


def test_reduce_lr_on_plateau_says_when_there_is_no_rate_to_change(model: elegy.Model) -> None:
    with pytest.raises(ValueError, match="no learning rate to change.*optax.inject_hyperparams"):
        _fit(model, [ReduceLROnPlateau(monitor="loss")], epochs=1)
    with pytest.raises(ValueError, match=r"factor must be in \(0, 1\), got 1.5"):
        ReduceLROnPlateau(factor=1.5)


# ---------------------------------------------------------------------------- BackupAndRestore


@pytest.mark.parametrize(
    ("save_freq", "spe", "resumed_from"),
    [("epoch", 1, (1, 0)), (3, 1, (1, 2)), (2, 2, (1, 2))],
    ids=["epoch", "every-3-steps", "every-2-steps-in-chunks-of-2"],
)
def test_backup_and_restore_resumes_to_the_uninterrupted_result(
    model: elegy.Model, tmp_path: Path, save_freq: Any, spe: int, resumed_from: Any
) -> None:
    epochs = 3
    reference = _fit(model, [], epochs=epochs, shuffle=True, steps_per_execution=spe)
    expected = _params(model)

    model.reset()
    backup = tmp_path / "backup"
    with pytest.raises(Crash):
        _fit(
            model,
            [BackupAndRestore(backup, save_freq=save_freq), _crash_at(1, 3)],
            epochs=epochs,
            shuffle=True,
            steps_per_execution=spe,
        )
    assert (backup / "backup.json").exists()

    model.reset()  # as a fresh process would build it
    restorer = BackupAndRestore(backup, save_freq=save_freq)
    steps: list[int] = []
    counter = LambdaCallback(on_train_batch_end=lambda batch, logs: steps.append(batch))
    resumed = _fit(model, [restorer, counter], epochs=epochs, shuffle=True, steps_per_execution=spe)
    assert restorer.resumed_from == resumed_from
    epoch, step = resumed_from
    assert len(steps) == (epochs - epoch) * STEPS - step
    for a, b in zip(_params(model), expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # The resumed epoch's logs include the steps before the backup (metrics are restored).
    assert resumed.epoch == list(range(epoch, epochs))
    for key, values in reference.history.items():
        assert resumed.history[key] == pytest.approx(values[epoch:], rel=1e-5)
    assert os.listdir(backup) == []  # removed after a completed fit


def test_backup_and_restore_bad_record(model: elegy.Model, tmp_path: Path) -> None:
    (tmp_path / "backup.json").write_text('{"epoch": 1}')
    with pytest.raises(ValueError, match="is not a backup record"):
        _fit(model, [BackupAndRestore(tmp_path)], epochs=1)
    (tmp_path / "backup.json").write_text('{"epoch": 1, "step": 0, "checkpoint": "gone"}')
    with pytest.raises(ValueError, match="points to the backup 'gone', which is not a directory"):
        _fit(model, [BackupAndRestore(tmp_path)], epochs=1)
    with pytest.raises(ValueError, match="save_freq must be 'epoch' or an int >= 1"):
        BackupAndRestore(tmp_path, save_freq=0)


def test_backup_kept_with_delete_checkpoint_false_continues_training(
    model: elegy.Model, tmp_path: Path
) -> None:
    _fit(model, [], epochs=3, shuffle=True)
    expected = _params(model)
    model.reset()
    _fit(model, [BackupAndRestore(tmp_path, delete_checkpoint=False)], epochs=2, shuffle=True)
    model.reset()
    restorer = BackupAndRestore(tmp_path, delete_checkpoint=False)
    assert _fit(model, [restorer], epochs=3, shuffle=True).epoch == [2]
    assert restorer.resumed_from == (2, 0)
    for a, b in zip(_params(model), expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- ProgbarLogger


class CountingLogs(Mapping[str, float]):
    """Logs that count how often their values are read (each read is a device fetch)."""

    def __init__(self) -> None:
        self.reads = 0

    def __getitem__(self, key: str) -> float:
        self.reads += 1
        return 0.5

    def __iter__(self) -> Iterator[str]:
        return iter(["loss"])

    def __len__(self) -> int:
        return 1


def _terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=200)


@pytest.mark.parametrize("refresh_per_second", [1e-6, 1e9])
def test_progbar_reads_logs_only_when_it_redraws(refresh_per_second: float) -> None:
    bar = ProgbarLogger(refresh_per_second=refresh_per_second, console=_terminal())
    bar.set_params({"epochs": 1, "steps": 100, "verbose": 1})
    logs = CountingLogs()
    bar.on_epoch_begin(0)
    for batch in range(100):
        bar.on_train_batch_end(batch, logs)
    reads_during_epoch = logs.reads
    bar.on_epoch_end(0, {"loss": 0.25})
    # Never redrawn within a 10^6 s interval; redrawn (and read) at every step otherwise.
    assert reads_during_epoch == (0 if refresh_per_second < 1 else 100)
    output = bar.console.file.getvalue()  # type: ignore[attr-defined]
    assert "Epoch 1/1" in output and "100/100" in output and "loss: 0.2500" in output


def test_progbar_in_a_terminal_draws_a_bar_with_rate_eta_and_logs(model: elegy.Model) -> None:
    bar = ProgbarLogger(refresh_per_second=1e9, console=_terminal())
    history = model.fit(X, Y, batch_size=BATCH, epochs=2, verbose=1, callbacks=[bar])
    output = bar.console.file.getvalue()  # type: ignore[attr-defined]
    assert "steps/s" in output and "ETA" in output and "━" in output
    assert f"loss: {history.history['loss'][-1]:.4f}" in output
    assert "Epoch 2/2" in output


def test_progbar_without_a_terminal_prints_one_line_per_epoch(
    model: elegy.Model, capsys: pytest.CaptureFixture[str]
) -> None:
    for verbose in (1, 2):
        model.reset()
        plain = Console(file=io.StringIO(), force_terminal=False, width=400)
        bar = ProgbarLogger(console=plain)
        history = model.fit(X, Y, batch_size=BATCH, epochs=2, verbose=verbose, callbacks=[bar])
        lines = plain.file.getvalue().splitlines()  # type: ignore[attr-defined]
        assert len(lines) == 2
        assert lines[1].startswith("Epoch 2/2 - ") and f"{STEPS} steps" in lines[1]
        assert f"accuracy: {history.history['accuracy'][1]:.4f}" in lines[1]
    # The ProgbarLogger passed replaced the default one: nothing went to stdout.
    assert capsys.readouterr().out == ""

    plain = Console(file=io.StringIO(), force_terminal=False, width=400)
    logs = model.evaluate(X, Y, batch_size=BATCH, callbacks=[ProgbarLogger(console=plain)])
    line = plain.file.getvalue()  # type: ignore[attr-defined]
    assert line.startswith("Evaluate - ") and f"loss: {logs['loss']:.4f}" in line


def test_progbar_bad_input() -> None:
    with pytest.raises(ValueError, match="refresh_per_second must be > 0, got 0"):
        ProgbarLogger(refresh_per_second=0)


def test_model_checkpoint_must_beat_initial_value_threshold(
    model: elegy.Model, tmp_path: Path
) -> None:
    losses = _fit(model, [], epochs=3).history["loss"]
    assert losses[0] > losses[1] > losses[2]
    model.reset()
    saver = ModelCheckpoint(
        tmp_path / "e{epoch}",
        monitor="loss",
        save_best_only=True,
        initial_value_threshold=(losses[1] + losses[2]) / 2,
    )
    _fit(model, [saver], epochs=3)
    assert os.listdir(tmp_path) == ["e3"]  # the first two epochs do not beat the threshold


class _Normed(eqx.Module):
    """A module with state (BatchNorm's running statistics change at every step)."""

    linear: eqx.nn.Linear
    norm: eqx.nn.BatchNorm

    def __init__(self, key: Any) -> None:
        self.linear = eqx.nn.Linear(4, 3, key=key)
        self.norm = eqx.nn.BatchNorm(3, axis_name="batch", mode="ema")

    def __call__(self, x: Any, state: Any) -> Any:
        return self.norm(self.linear(x), state)


def test_early_stopping_restores_the_best_epochs_net_states() -> None:
    model = elegy.Model(
        module=_Normed(jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-2),
    )
    seen: dict[int, list[np.ndarray]] = {}

    def keep(epoch: int, logs: Any) -> None:
        seen[epoch] = [np.array(leaf) for leaf in jax.tree.leaves(model.states.net_states)]

    # The loss falls, so with mode="max" epoch 0 is the best; training stops at epoch 1.
    stopper = EarlyStopping(monitor="loss", mode="max", patience=1, restore_best_weights=True)
    assert _fit(model, [LambdaCallback(on_epoch_end=keep), stopper], epochs=5).epoch == [0, 1]
    final = [np.array(leaf) for leaf in jax.tree.leaves(model.states.net_states)]
    assert final and any(not np.array_equal(a, b) for a, b in zip(seen[0], seen[1], strict=True))
    for a, b in zip(final, seen[0], strict=True):
        np.testing.assert_array_equal(a, b)


def _poison(epochs: set[int]) -> LambdaCallback:
    """Makes the loss NaN in the logs of `epochs` (for the callbacks after it)."""

    def poison(epoch: int, logs: Any) -> None:
        if epoch in epochs:
            logs["loss"] = float("nan")

    return LambdaCallback(on_epoch_end=poison)


def test_early_stopping_does_not_stop_at_a_nan_first_epoch(model: elegy.Model) -> None:
    # The first epoch that counts never stops training; a NaN never improves, so the first
    # finite loss after it is the best so far, and the falling loss never stops training.
    stopper = EarlyStopping(monitor="loss", patience=1)
    history = _fit(model, [_poison({0}), stopper], epochs=4)
    assert history.epoch == [0, 1, 2, 3]
    assert (stopper.stopped_epoch, stopper.best_epoch) == (None, 3)
    # Only NaN: patience runs out at the second epoch.
    model.reset()
    stopper = EarlyStopping(monitor="loss", patience=1)
    assert _fit(model, [_poison(set(range(4))), stopper], epochs=4).epoch == [0, 1]
    assert stopper.stopped_epoch == 1


# ---------------------------------------------------------------------------- the callback API


def test_a_callback_sets_states_and_resumes_through_its_own_methods(model: elegy.Model) -> None:
    x0 = _params(model)

    class Restart(Callback):
        reads_states_per_batch = False

        def on_train_begin(self, logs: Any = None) -> None:
            self.resume_at(1, 2)  # as if one epoch and two steps had run

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.batches.append(batch)
            if batch == 3:  # back to the initial weights, once
                self.set_states(self.model.states.update(net_params=self.initial))

    restart = Restart()
    restart.batches = []
    restart.initial = model.states.net_params
    history = _fit(model, [restart], epochs=2)
    assert history.epoch == [1] and restart.batches == [2, 3]
    for a, b in zip(_params(model), x0, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_callback_api_refuses_bad_input(model: elegy.Model) -> None:
    callback = Callback()
    with pytest.raises(AttributeError, match="Callback has no model yet"):
        callback.model  # noqa: B018
    callback.set_model(model)
    assert callback.model is model and callback.is_main_process()
    with pytest.raises(TypeError, match=r"Callback.set_states takes elegy.States .* got dict"):
        callback.set_states({"net_params": None})  # type: ignore[arg-type]
    for bad in ((-1, 0), (0, 1.5), (True, 0)):
        with pytest.raises(ValueError, match="Callback.resume_at: .* must be an int >= 0"):
            callback.resume_at(*bad)  # type: ignore[arg-type]
    assert model.fit(X, Y, batch_size=BATCH, epochs=1, verbose=0).epoch == [0]  # nothing set


def test_callbacks_write_only_on_the_main_process(model: elegy.Model, tmp_path: Path) -> None:
    class Elsewhere(elegy.DefaultStrategy):
        """Runs here, but this process is not the one that writes."""

        def is_main_process(self) -> bool:
            return False

    log = tmp_path / "log.csv"
    _fit(model.distributed(Elsewhere()), [CSVLogger(log)], epochs=1)
    assert not log.exists()
    _fit(model, [CSVLogger(log)], epochs=1)
    assert log.exists()
