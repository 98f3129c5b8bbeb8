"""Steps decorated with `eqx.filter_jit` keep their signatures and return types, and the
library runs them (inside its own compiled step, where the inner jit is inlined)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import eqx_elegy as elegy


class JittedSteps(elegy.Model):
    @eqx.filter_jit
    def pred_step(self, x: jax.Array, states: elegy.States) -> elegy.PredStep:
        return jnp.tanh(x @ states.net_params), states

    @eqx.filter_jit
    def test_step(
        self, x: jax.Array, y_true: jax.Array, states: elegy.States, initializing: bool
    ) -> elegy.TestStep:
        if initializing:
            states = states.update(net_params=jnp.zeros((x.shape[-1], 1)))
        y_pred, states = self.pred_step(x=x, states=states)
        loss = jnp.mean((y_pred - y_true) ** 2)
        return loss, {"loss": loss}, states


def predictions(model: JittedSteps, x: jax.Array) -> jax.Array:
    y_pred, _ = model.pred_step(x=x, states=model.states)
    return y_pred


if __name__ == "__main__":
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = np.tanh(x @ np.array([[0.3], [-0.2], [0.1]], np.float32))
    model = JittedSteps(optimizer=optax.adam(1e-2))
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0], history.history
    assert model.predict(x).shape == (64, 1)
