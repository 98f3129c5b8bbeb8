"""The CNN of cnn_digits.py trained with several of the recipes in docs/recipes.md at once:
mixed precision (bfloat16 compute on float32 weights), an EMA of the weights for
evaluation, gradient accumulation (optax.MultiSteps: 2 batches of 32 per update), the
learning rate scheduled per epoch (LearningRateScheduler, logged in History), and the
batch API for a last fine-tuning step.

    python examples/cnn_digits_recipes.py [--quick]
"""

import argparse

import jax
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import eqx_elegy as elegy

try:  # run as a script: the sibling example
    from cnn_digits import CNN
except ImportError:  # imported as examples.cnn_digits_recipes
    from examples.cnn_digits import CNN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    args = parser.parse_args()

    digits = load_digits()
    images = (digits.images / 16).astype(np.float32)[:, None]  # (n, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, random_state=0
    )

    adam = optax.inject_hyperparams(optax.adam)(learning_rate=2e-3)
    model = elegy.Model(
        module=CNN(key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.MultiSteps(adam, every_k_schedule=2),  # 2 x 32 = 64 per update
        dtype_policy="mixed_bfloat16",
        ema_decay=0.9,
    )
    epochs = 2 if args.quick else 20
    history = model.fit(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=32,
        steps_per_epoch=4 if args.quick else None,
        validation_data=(x_test, y_test),
        callbacks=[elegy.callbacks.LearningRateScheduler(lambda epoch, lr: 2e-3 * 0.9**epoch)],
        verbose=0 if args.quick else 2,
    )
    print("learning rates:", [f"{lr:.2e}" for lr in history.history["learning_rate"]])
    model.train_on_batch(x_train[:32], y_train[:32])  # one more step, as fit would run it
    raw = model.evaluate(x_test, y_test, batch_size=128, verbose=0, use_ema=False)
    print(f"raw weights accuracy: {raw['accuracy']:.4f}")
    logs = model.evaluate(x_test, y_test, batch_size=128, verbose=0)
    print(f"held-out accuracy (EMA weights): {logs['accuracy']:.4f}")


if __name__ == "__main__":
    main()
