"""The high-level API: an equinox MLP classifying scikit-learn's 8x8 digits.

No subclassing: the model is `elegy.Model` with an `eqx.nn.MLP` as `module`, a loss, a
metric and an optax optimizer. `summary` prints its layers, `fit` holds out 20% of the
training data for validation, `evaluate` scores the test set and `predict` returns the
logits.

    python examples/mlp_digits.py [--quick]
"""

import argparse

import equinox as eqx
import jax
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import eqx_elegy as elegy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    args = parser.parse_args()

    digits = load_digits()
    x = (digits.data / 16).astype(np.float32)  # 64 pixels in [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=0
    )

    model = elegy.Model(
        module=eqx.nn.MLP(64, 10, width_size=128, depth=2, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-3),
    )
    model.summary(x_train[:1])  # layers, output shapes and parameter counts
    history = model.fit(
        x_train,
        y_train,
        epochs=2 if args.quick else 30,
        batch_size=64,
        validation_split=0.2,
        steps_per_epoch=3 if args.quick else None,
        verbose=0 if args.quick else 2,
    )
    print(f"last validation accuracy: {history.history['val_accuracy'][-1]:.4f}")

    logs = model.evaluate(x_test, y_test, batch_size=128, verbose=0)
    logits = model.predict(x_test, batch_size=128)
    predicted = np.argmax(logits, axis=-1)
    print("first test predictions:", predicted[:10], "labels:", y_test[:10])
    print(f"accuracy of the predictions: {np.mean(predicted == y_test):.4f}")
    print(f"held-out accuracy: {logs['accuracy']:.4f}")


if __name__ == "__main__":
    main()
