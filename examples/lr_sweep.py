"""A learning-rate sweep as one Population: 8 MLPs, one compiled program, one data pipeline.

`elegy.Population` stacks the states of 8 copies of the model and trains them together
(the model's steps vmapped over the members), each with its own learning rate, injected
into an `optax.inject_hyperparams` optimizer. The script plots the 8 validation curves
into a PNG, picks the member with the lowest final validation loss with
`population.best`, and evaluates it on held-out data as an ordinary Model.

    python examples/lr_sweep.py [--quick] [--out DIR]
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

LEARNING_RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]


def make_model(seed: int) -> elegy.Model:
    """Member `seed`: its MLP initialised from its own seed."""
    return elegy.Model(
        module=eqx.nn.MLP(64, 10, width_size=64, depth=1, key=jax.random.key(seed)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        # The learning rate lives in the optimizer's state, so each member has its own.
        optimizer=optax.inject_hyperparams(optax.adam)(learning_rate=1e-3),
        seed=seed,
    )


def plot(history: elegy.History, path: pathlib.Path) -> None:
    """One validation-loss curve per member, labelled with its learning rate."""
    curves = np.stack(history.history["val_loss"])  # [epochs, members]
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(curves) + 1)
    for member, rate in enumerate(LEARNING_RATES):
        ax.plot(epochs, curves[:, member], label=f"lr={rate:g}")
    ax.set(xlabel="epoch", ylabel="validation loss", yscale="log", title="Learning-rate sweep")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs", "lr_sweep"))
    args = parser.parse_args()

    digits = load_digits()
    x = (digits.data / 16).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=0
    )

    population = elegy.Population(make_model, hyperparams={"learning_rate": LEARNING_RATES})
    history = population.fit(
        x_train,
        y_train,
        epochs=2 if args.quick else 30,
        batch_size=32,
        validation_split=0.25,
        steps_per_epoch=3 if args.quick else None,
        verbose=0 if args.quick else 2,
    )
    os.makedirs(args.out, exist_ok=True)
    path = args.out / "lr_sweep.png"
    plot(history, path)
    print(f"saved {path}")

    final = history.history["val_loss"][-1]
    for rate, loss in zip(LEARNING_RATES, final, strict=True):
        print(f"lr={rate:<8g} final validation loss {loss:.4f}")
    best = population.best("val_loss")
    rate = population.hyperparams["learning_rate"][best.seed]
    logs = best.evaluate(x_test, y_test, batch_size=128, verbose=0)
    print(f"best learning rate: {rate:g}; held-out accuracy: {logs['accuracy']:.4f}")


if __name__ == "__main__":
    main()
