"""A `test_step` annotated `-> elegy.GradStep` (four elements) that returns the three of
a TestStep: the return type is wrong for the value and for the method it overrides."""

import jax.numpy as jnp

import eqx_elegy as elegy


class Confused(elegy.Model):
    def test_step(self, x, y_true, states) -> elegy.GradStep:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        loss = jnp.mean((x - y_true) ** 2)
        return loss, {"loss": loss}, states  # type: ignore[return-value]  # pyright: ignore[reportReturnType]
