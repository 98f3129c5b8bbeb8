"""A custom `train_step` that calls `self.grad_step(...)` and unpacks
`loss, logs, states, grads`: once with a hand-written SGD update, once with the model's
optax optimizer (typed `optax.GradientTransformation | None`, so it is narrowed first).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PyTree
from typing_extensions import assert_type

import eqx_elegy as elegy


class LinearRegression(elegy.Model):
    """Parameters created on the first trace, as in the Elegy docs."""

    def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
        if initializing:
            w = jnp.zeros((x.shape[-1], 1))
        else:
            w = states.net_params
        loss = jnp.mean((x @ w - y_true) ** 2)
        return loss, {"loss": loss}, states.update(net_params=w)


class ManualSGD(LinearRegression):
    """A user field with a default, next to the Model's own (keyword-only) fields."""

    learning_rate: float = 0.1

    def train_step(self, x, y_true, states: elegy.States, initializing: bool) -> elegy.TrainStep:
        loss, logs, states, grads = self.grad_step(
            x=x, y_true=y_true, states=states, initializing=initializing
        )
        assert_type(loss, jax.Array)
        assert_type(logs, elegy.Logs)
        assert_type(states, elegy.States)
        assert_type(grads, PyTree)
        params = jax.tree.map(lambda p, g: p - self.learning_rate * g, states.net_params, grads)
        return logs, states.update(net_params=params)


class WithOptax(LinearRegression):
    """A user field without a default: Model's fields are keyword-only, so this works."""

    clip: float

    def train_step(
        self, x, y_true, sample_weight, states: elegy.States, initializing: bool
    ) -> elegy.TrainStep:
        loss, logs, states, grads = self.grad_step(
            x=x,
            y_true=y_true,
            sample_weight=sample_weight,
            states=states,
            initializing=initializing,
        )
        optimizer = self.optimizer
        assert optimizer is not None, "WithOptax needs optimizer="
        grads = jax.tree.map(lambda g: jnp.clip(g, -self.clip, self.clip), grads)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes dtypes
            if initializing:
                return logs, states.update(optimizer_states=optimizer.init(states.net_params))
            updates, opt_states = optimizer.update(
                grads, states.optimizer_states, states.net_params
            )
            params = optax.apply_updates(states.net_params, updates)
        return {**logs, "grad_loss": loss}, states.update(
            net_params=params, optimizer_states=opt_states
        )


if __name__ == "__main__":
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    sgd = ManualSGD(learning_rate=0.05)
    h1 = sgd.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert h1.history["loss"][-1] < h1.history["loss"][0], h1.history
    adam = WithOptax(1.0, optimizer=optax.adam(1e-2))
    h2 = adam.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert h2.history["loss"][-1] < h2.history["loss"][0], h2.history
