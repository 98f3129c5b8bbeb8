"""A custom `train_step` that applies the model's optimizer through `get_optimizer()`,
typed `optax.GradientTransformation` (never None, unlike the `optimizer` field), so
`optimizer.init(...)` and `optimizer.update(...)` need no narrowing. Two parameter
groups: the weights follow the model's optimizer, the bias a second optimizer declared
as a field of the subclass; both states live in `states.optimizer_states`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from typing_extensions import assert_type

import eqx_elegy as elegy


class TwoGroups(elegy.Model):
    bias_optimizer: optax.GradientTransformation = optax.sgd(0.1)

    def test_step(self, x, y_true, states: elegy.States, initializing: bool) -> elegy.TestStep:
        if initializing:
            params = {"w": jnp.zeros((x.shape[1], 1)), "b": jnp.zeros((1,))}
        else:
            params = states.net_params
        loss = jnp.mean((x @ params["w"] + params["b"] - y_true) ** 2)
        return loss, {"loss": loss}, states.update(net_params=params)

    def train_step(self, x, y_true, states: elegy.States, initializing: bool) -> elegy.TrainStep:
        _, logs, states, grads = self.grad_step(
            x=x, y_true=y_true, states=states, initializing=initializing
        )
        optimizer = self.get_optimizer()
        assert_type(optimizer, optax.GradientTransformation)
        params = states.net_params
        with jax.numpy_dtype_promotion("standard"):  # optax mixes dtypes
            if initializing:
                opt_states = (optimizer.init(params["w"]), self.bias_optimizer.init(params["b"]))
                return logs, states.update(optimizer_states=opt_states)
            w_state, b_state = states.optimizer_states
            w_updates, w_state = optimizer.update(grads["w"], w_state, params["w"])
            b_updates, b_state = self.bias_optimizer.update(grads["b"], b_state, params["b"])
        params = {
            "w": optax.apply_updates(params["w"], w_updates),
            "b": optax.apply_updates(params["b"], b_updates),
        }
        return logs, states.update(net_params=params, optimizer_states=(w_state, b_state))


if __name__ == "__main__":
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 3.0
    model = TwoGroups(optimizer=optax.adam(1e-1))
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0], history.history
