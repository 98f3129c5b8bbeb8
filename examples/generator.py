"""Training from a Python generator: data augmentation computed on the fly.

`batches` is an endless generator yielding `(x, y)` batches; each image is shifted by up
to one pixel in a random direction, so the model never sees quite the same digit twice.
`fit` takes the generator as `x`; since it never ends, `steps_per_epoch` says how many
batches make an epoch. Validation data is a plain `(x, y)` tuple of arrays.

    python examples/generator.py [--quick]
"""

import argparse
from collections.abc import Iterator

import equinox as eqx
import jax
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import eqx_elegy as elegy


def batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless random batches of images, each shifted by -1, 0 or 1 pixel along each axis."""
    rng = np.random.default_rng(seed)
    while True:
        index = rng.integers(0, len(images), batch_size)
        shifts = rng.integers(-1, 2, size=(batch_size, 2))
        shifted = np.stack(
            [
                np.roll(image, shift, axis=(0, 1))
                for image, shift in zip(images[index], shifts, strict=True)
            ]
        )
        yield shifted.reshape(batch_size, -1), labels[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    args = parser.parse_args()

    digits = load_digits()
    images = (digits.images / 16).astype(np.float32)  # (n, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, random_state=0
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_train, y_train, test_size=0.1, random_state=0
    )

    model = elegy.Model(
        module=eqx.nn.MLP(64, 10, width_size=256, depth=2, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-3),
    )
    model.fit(
        batches(x_train, y_train, batch_size=64, seed=0),
        epochs=2 if args.quick else 30,
        steps_per_epoch=3 if args.quick else 50,
        validation_data=(x_val.reshape(len(x_val), -1), y_val),
        verbose=0 if args.quick else 2,
    )
    logs = model.evaluate(x_test.reshape(len(x_test), -1), y_test, batch_size=128, verbose=0)
    print(f"held-out accuracy: {logs['accuracy']:.4f}")


if __name__ == "__main__":
    main()
