"""Plot the learning curves that `fit` returns, and save them as a PNG.

`fit` returns a `History`: `history.history` maps each log name (`loss`, `accuracy`,
and with validation data `val_loss`, `val_accuracy`) to its value at the end of every
epoch, and `history.epoch` lists the epochs.

    python examples/plot_history.py [--quick] [--out DIR]
"""

import argparse
import os
import pathlib

import equinox as eqx
import jax
import matplotlib
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import eqx_elegy as elegy

matplotlib.use("Agg")  # draw to files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot(history: elegy.History, path: pathlib.Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, name in zip(axes, ("loss", "accuracy"), strict=True):
        epochs = np.asarray(history.epoch) + 1
        ax.plot(epochs, history.history[name], label=f"training {name}")
        ax.plot(epochs, history.history[f"val_{name}"], label=f"validation {name}")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs", "history"))
    args = parser.parse_args()

    digits = load_digits()
    x = (digits.data / 16).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=0
    )

    model = elegy.Model(
        module=eqx.nn.MLP(64, 10, width_size=64, depth=1, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.sgd(0.05, momentum=0.9),
    )
    history = model.fit(
        x_train,
        y_train,
        epochs=2 if args.quick else 40,
        batch_size=32,
        validation_split=0.25,
        steps_per_epoch=3 if args.quick else None,
        verbose=0 if args.quick else 2,
    )
    os.makedirs(args.out, exist_ok=True)
    path = args.out / "learning_curves.png"
    plot(history, path)
    print(f"saved {path}")

    logs = model.evaluate(x_test, y_test, batch_size=128, verbose=0)
    print(f"held-out accuracy: {logs['accuracy']:.4f}")


if __name__ == "__main__":
    main()
