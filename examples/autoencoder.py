"""An autoencoder: squeeze each 64-pixel digit through an 8-number code and back.

The targets are the inputs (`fit(x, x)`), the loss is the mean squared error of the
reconstruction. For scale, the script also prints the error of the trivial model that
always predicts the mean training image.

    python examples/autoencoder.py [--quick]
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


class Autoencoder(eqx.Module):
    encoder: eqx.nn.MLP
    decoder: eqx.nn.MLP

    def __init__(self, pixels: int, code: int, *, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        self.encoder = eqx.nn.MLP(pixels, code, width_size=64, depth=1, key=k1)
        self.decoder = eqx.nn.MLP(
            code, pixels, width_size=64, depth=1, final_activation=jax.nn.sigmoid, key=k2
        )

    def __call__(self, x: Float[Array, " pixels"]) -> Float[Array, " pixels"]:
        return self.decoder(self.encoder(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    args = parser.parse_args()

    x = (load_digits().data / 16).astype(np.float32)
    x_train, x_test = train_test_split(x, test_size=0.2, random_state=0)

    model = elegy.Model(
        module=Autoencoder(64, 8, key=jax.random.key(0)),
        loss=elegy.losses.MeanSquaredError(),
        optimizer=optax.adam(3e-3),
    )
    model.fit(
        x_train,
        x_train,
        epochs=2 if args.quick else 100,
        batch_size=64,
        steps_per_epoch=3 if args.quick else None,
        verbose=0 if args.quick else 2,
    )
    logs = model.evaluate(x_test, x_test, batch_size=128, verbose=0)
    baseline = np.mean((x_test - x_train.mean(axis=0)) ** 2)
    print(f"mean-image baseline MSE: {baseline:.4f}")
    print(f"held-out MSE: {logs['loss']:.4f}")


if __name__ == "__main__":
    main()
