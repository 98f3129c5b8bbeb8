"""The high-level API as documented: an equinox module with losses, metrics and an optax
optimizer; callbacks; and the types that fit, evaluate and predict return."""

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax
from typing_extensions import assert_type

import eqx_elegy as elegy
from eqx_elegy.callbacks import Callback, History


class BestLoss(Callback):
    """A user callback: overrides one hook with Keras' signature."""

    def __init__(self) -> None:
        super().__init__()
        self.best = float("inf")

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if logs is not None:
            self.best = min(self.best, float(logs["loss"]))
        if epoch >= 10:
            self.model.stop_training = True


def build() -> elegy.Model:
    return elegy.Model(
        module=eqx.nn.MLP(4, 3, 16, 1, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-3),
        seed=0,
    )


def variants() -> list[elegy.Model]:
    mlp = eqx.nn.MLP(4, 1, 8, 1, key=jax.random.key(1))
    return [
        elegy.Model(module=mlp, loss=[elegy.losses.MeanSquaredError()], optimizer=optax.sgd(0.1)),
        elegy.Model(module=mlp, loss={"mse": elegy.losses.MeanSquaredError()}),
        elegy.Model(
            module=mlp,
            loss=lambda y_true, y_pred: ((y_true - y_pred) ** 2).mean(),
            optimizer=optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3)),
        ),
        elegy.Model(
            module=mlp,
            loss=elegy.losses.MeanSquaredError(),
            optimizer=optax.inject_hyperparams(optax.adam)(learning_rate=1e-3),
            check_types=False,
        ),
    ]


def train(x: np.ndarray, y: np.ndarray) -> None:
    model = build()
    best = BestLoss()
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        verbose=0,
        callbacks=[best],
        validation_split=0.25,
        shuffle=True,
    )
    assert_type(history, History)
    assert_type(history.history, dict[str, list])
    logs = model.evaluate(x, y, batch_size=32, verbose=0)
    assert_type(logs, dict[str, float])
    y_pred = model.predict(x, batch_size=32)
    assert_type(y_pred, np.ndarray)
    assert y_pred.shape == (len(x), 3) and best.best < float("inf")
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.history)


if __name__ == "__main__":
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1).astype(np.int32)
    train(x, y)
    assert len(variants()) == 4
