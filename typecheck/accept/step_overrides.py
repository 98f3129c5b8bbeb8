"""Every step method overridden, each with a different subset of the injectable
parameters (x, y_true, y_pred, sample_weight, class_weight, states, initializing,
training, rng), annotated or not. The base class declares each step as
`(self, *args: Any, **kwargs: Any) -> Alias`, so pyright's reportIncompatibleMethodOverride
and mypy's override check accept any subset, while the return types stay checked.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float
from typing_extensions import assert_type

import eqx_elegy as elegy


class AllSteps(elegy.Model):
    """A linear regression written entirely in overridden steps."""

    def states_step(self) -> elegy.States:
        return elegy.States(rng=elegy.RNGSeq(self.seed))

    def init_step(self, x: jax.Array, states: elegy.States) -> elegy.InitStep:
        key, rng = states.rng.next()
        w = jax.random.normal(key, (x.shape[1], 1)) * 0.01
        return states.update(net_params={"w": w}, rng=rng, optimizer_states=None)

    def pred_step(self, x: jax.Array, states: elegy.States, training: bool) -> elegy.PredStep:
        del training
        return x @ states.net_params["w"], states

    def test_step(
        self,
        x: jax.Array,
        y_true: jax.Array,
        sample_weight: jax.Array | None,
        class_weight: dict[int, float] | None,
        states: elegy.States,
        initializing: bool,
        training: bool,
    ) -> elegy.TestStep:
        del class_weight, initializing
        y_pred, states = self.pred_step(x=x, states=states, training=training)
        errors = jnp.mean((y_pred - y_true) ** 2, axis=-1)
        if sample_weight is not None:
            errors = errors * sample_weight
        loss: Float[Array, ""] = jnp.mean(errors)
        return loss, {"mse": loss}, states

    def grad_step(self, x, y_true, states) -> elegy.GradStep:  # unannotated parameters
        def loss_fn(params: Any) -> tuple[jax.Array, tuple[elegy.Logs, elegy.States]]:
            loss, logs, new = self.test_step(
                x=x,
                y_true=y_true,
                sample_weight=None,
                class_weight=None,
                states=states.update(net_params=params),
                initializing=False,
                training=True,
            )
            return loss, (logs, new)

        (loss, (logs, states)), grads = jax.value_and_grad(loss_fn, has_aux=True)(states.net_params)
        return loss, logs, states, grads

    def train_step(
        self, x: jax.Array, y_true: jax.Array, states: elegy.States, rng: elegy.RNGSeq
    ) -> elegy.TrainStep:
        key, _ = rng.next()
        noise = jax.random.normal(key, ()) * 0.0
        loss, logs, states, grads = self.grad_step(x=x, y_true=y_true, states=states)
        params = jax.tree.map(lambda p, g: p - 0.1 * g + noise, states.net_params, grads)
        return {**logs, "loss": loss}, states.update(net_params=params)

    def summary_step(self, x: jax.Array) -> list[elegy.SummaryRow]:
        del x
        return []


class OnlyStates(elegy.Model):
    """Steps that take nothing but `states`, or nothing at all."""

    def pred_step(self, states: elegy.States) -> elegy.PredStep:
        return jnp.zeros((4, 1)), states

    def init_step(self) -> elegy.InitStep:
        return elegy.States()


class YPredTakers(elegy.Model):
    """`y_pred` and `rng` are injectable too; a step may also take everything as kwargs."""

    def test_step(self, y_pred: jax.Array, y_true: jax.Array, states) -> elegy.TestStep:
        loss = jnp.mean(jnp.abs(y_pred - y_true))
        return loss, {}, states

    def train_step(self, **kwargs: Any) -> elegy.TrainStep:
        _, logs, states, _ = self.grad_step(**kwargs)
        return logs, states


def _steps_keep_their_types(model: AllSteps, x: jax.Array, y: jax.Array) -> None:
    states = model.states
    y_pred, states = model.pred_step(x=x, states=states, training=False)
    assert_type(states, elegy.States)
    loss, logs, states, grads = model.grad_step(x, y, states)
    assert_type(loss, jax.Array)
    assert_type(logs, elegy.Logs)
    logs2, states = model.train_step(x=x, y_true=y, states=states, rng=elegy.RNGSeq(0))
    assert_type(logs2, elegy.Logs)


if __name__ == "__main__":
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    model = AllSteps(optimizer=optax.sgd(0.1))
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=False)
    assert history.history["mse"][-1] < history.history["mse"][0], history.history
    assert model.predict(x).shape == (64, 1)
