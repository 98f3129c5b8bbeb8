"""A `train_step` that returns the loss instead of `(logs, states)`: under the
`-> elegy.TrainStep` annotation, annotated with what it returns, and unannotated."""

import jax

import eqx_elegy as elegy


class ReturnsLossAnnotated(elegy.Model):
    def train_step(self, x, y_true, states) -> elegy.TrainStep:
        loss, logs, states, grads = self.grad_step(x=x, y_true=y_true, states=states)
        return loss  # type: ignore[return-value]  # pyright: ignore[reportReturnType]


class ReturnsLossOverride(elegy.Model):
    def train_step(self, x, y_true, states) -> jax.Array:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        loss, logs, states, grads = self.grad_step(x=x, y_true=y_true, states=states)
        return loss


class ReturnsLossUnannotated(elegy.Model):
    # pyright infers the return type (Array) and checks it against the base method; mypy
    # treats the return of an unannotated method as Any, so only pyright reports this one.
    def train_step(self, x, y_true, states):  # pyright: ignore[reportIncompatibleMethodOverride]
        loss, logs, states, grads = self.grad_step(x=x, y_true=y_true, states=states)
        return loss
