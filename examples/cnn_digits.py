"""A small CNN (`eqx.nn.Conv2d`) on the 8x8 digits, one 1x8x8 image per example.

Equinox modules map one example, channels first; the model vmaps the module over the
batch, so the CNN is written for a single image of shape (1, 8, 8).

    python examples/cnn_digits.py [--quick]
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


class CNN(eqx.Module):
    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    pool: eqx.nn.MaxPool2d
    head: eqx.nn.Linear

    def __init__(self, *, key: PRNGKeyArray):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(1, 16, kernel_size=3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(16, 32, kernel_size=3, padding=1, key=k2)
        self.pool = eqx.nn.MaxPool2d(kernel_size=2, stride=2)
        self.head = eqx.nn.Linear(32 * 4 * 4, 10, key=k3)

    def __call__(self, x: Float[Array, "1 8 8"]) -> Float[Array, " 10"]:
        x = jax.nn.relu(self.conv1(x))
        x = self.pool(jax.nn.relu(self.conv2(x)))  # (32, 4, 4)
        return self.head(x.reshape(-1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    args = parser.parse_args()

    digits = load_digits()
    images = (digits.images / 16).astype(np.float32)[:, None]  # (n, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, random_state=0
    )

    model = elegy.Model(
        module=CNN(key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-3),
    )
    model.fit(
        x_train,
        y_train,
        epochs=2 if args.quick else 15,
        batch_size=64,
        steps_per_epoch=3 if args.quick else None,
        verbose=0 if args.quick else 2,
    )
    logs = model.evaluate(x_test, y_test, batch_size=128, verbose=0)
    print(f"held-out accuracy: {logs['accuracy']:.4f}")


if __name__ == "__main__":
    main()
