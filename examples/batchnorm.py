"""BatchNorm: a module with state, kept in `states.net_states`.

`eqx.nn.BatchNorm` keeps running statistics in an `eqx.nn.State`. `eqx.nn.make_with_state`
returns the module and its initial state; pass both to the model
(`Model(module=..., module_state=...)`). The default `pred_step` vmaps the module over
the batch with `axis_name="batch"` (the axis the BatchNorm layers average over), hands
it the state and stores the state it returns; in `evaluate` and `predict` the model is
in inference mode, so BatchNorm uses its running statistics.

    python examples/batchnorm.py [--quick]
"""

import argparse

import equinox as eqx
import jax
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import eqx_elegy as elegy


class BatchNormMLP(eqx.Module):
    linear1: eqx.nn.Linear
    norm1: eqx.nn.BatchNorm
    linear2: eqx.nn.Linear
    norm2: eqx.nn.BatchNorm
    head: eqx.nn.Linear

    def __init__(self, *, key: PRNGKeyArray):
        k1, k2, k3 = jax.random.split(key, 3)
        self.linear1 = eqx.nn.Linear(64, 128, key=k1)
        self.norm1 = eqx.nn.BatchNorm(128, axis_name="batch", mode="ema")
        self.linear2 = eqx.nn.Linear(128, 128, key=k2)
        self.norm2 = eqx.nn.BatchNorm(128, axis_name="batch", mode="ema")
        self.head = eqx.nn.Linear(128, 10, key=k3)

    def __call__(
        self, x: Float[Array, " 64"], state: eqx.nn.State
    ) -> tuple[Float[Array, " 10"], eqx.nn.State]:
        x, state = self.norm1(self.linear1(x), state)
        x, state = self.norm2(self.linear2(jax.nn.relu(x)), state)
        return self.head(jax.nn.relu(x)), state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    args = parser.parse_args()

    digits = load_digits()
    x = (digits.data / 16).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=0
    )

    module, state = eqx.nn.make_with_state(BatchNormMLP)(key=jax.random.key(0))
    model = elegy.Model(
        module=module,
        module_state=state,
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-3),
    )
    model.fit(
        x_train,
        y_train,
        epochs=2 if args.quick else 20,
        batch_size=64,
        steps_per_epoch=3 if args.quick else None,
        verbose=0 if args.quick else 2,
    )
    state = model.states.net_states  # the running statistics, updated by every train step
    running_mean, _ = state.get(module.norm1.ema_state_index)  # mode="ema"
    print(f"first BatchNorm running mean, first 4 features: {np.asarray(running_mean[:4])}")

    logs = model.evaluate(x_test, y_test, batch_size=128, verbose=0)
    print(f"held-out accuracy: {logs['accuracy']:.4f}")


if __name__ == "__main__":
    main()
