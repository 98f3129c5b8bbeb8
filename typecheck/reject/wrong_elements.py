"""Steps whose tuples have the right length but a wrong element, or the wrong length for
`pred_step`: the aliases check each position, not only the size."""

import jax.numpy as jnp

import eqx_elegy as elegy


class LogsAsList(elegy.Model):
    def test_step(self, x, y_true, states) -> elegy.TestStep:
        loss = jnp.mean((x - y_true) ** 2)
        return loss, [loss], states  # type: ignore[return-value]  # pyright: ignore[reportReturnType]


class PredWithLoss(elegy.Model):
    def pred_step(self, x, states) -> elegy.PredStep:
        return x, jnp.mean(x), states  # type: ignore[return-value]  # pyright: ignore[reportReturnType]
