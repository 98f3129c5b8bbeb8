"""A `test_step` annotated `-> elegy.TestStep` that returns two elements (no logs)."""

import jax.numpy as jnp

import eqx_elegy as elegy


class ForgotLogs(elegy.Model):
    def test_step(self, x, y_true, states) -> elegy.TestStep:
        loss = jnp.mean((x - y_true) ** 2)
        return loss, states  # type: ignore[return-value]  # pyright: ignore[reportReturnType]
