"""An MLP with dropout: how random keys reach an equinox module during `fit`.

`DropoutMLP.__call__` takes a `key`. The default `pred_step` sees that and passes each
example its own key, drawn from `states.rng` (so dropout masks depend only on the model's
seed, the epoch and the step). Outside training (`evaluate`, `predict`) the model is put
in `eqx.nn.inference_mode`, which turns dropout off.

    python examples/mlp_dropout.py [--quick]
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


class DropoutMLP(eqx.Module):
    hidden: list[eqx.nn.Linear]
    output: eqx.nn.Linear
    dropout: eqx.nn.Dropout

    def __init__(self, sizes: list[int], classes: int, rate: float, *, key: PRNGKeyArray):
        keys = jax.random.split(key, len(sizes))
        self.hidden = [
            eqx.nn.Linear(a, b, key=k)
            for a, b, k in zip(sizes[:-1], sizes[1:], keys[:-1], strict=True)
        ]
        self.output = eqx.nn.Linear(sizes[-1], classes, key=keys[-1])
        self.dropout = eqx.nn.Dropout(rate)

    def __call__(self, x: Float[Array, " n"], *, key: PRNGKeyArray) -> Float[Array, " c"]:
        for layer, k in zip(self.hidden, jax.random.split(key, len(self.hidden)), strict=True):
            x = self.dropout(jax.nn.relu(layer(x)), key=k)
        return self.output(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    args = parser.parse_args()

    digits = load_digits()
    x = (digits.data / 16).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=0
    )

    model = elegy.Model(
        module=DropoutMLP([64, 256, 256], 10, rate=0.3, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-3),
    )
    model.fit(
        x_train,
        y_train,
        epochs=2 if args.quick else 40,
        batch_size=64,
        validation_split=0.1,
        steps_per_epoch=3 if args.quick else None,
        verbose=0 if args.quick else 2,
    )
    logs = model.evaluate(x_test, y_test, batch_size=128, verbose=0)
    print(f"held-out accuracy: {logs['accuracy']:.4f}")


if __name__ == "__main__":
    main()
