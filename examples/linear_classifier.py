"""The LinearClassifier of Elegy's low-level API docs, trained on scikit-learn's digits.

The class below is the Elegy documentation's example as written there; only the import
changed (`import eqx_elegy as elegy`). It overrides `test_step` alone: `fit` still works
because the default `train_step` differentiates `test_step` through `grad_step`.

    python examples/linear_classifier.py          # full run, prints held-out accuracy
    python examples/linear_classifier.py --quick  # a few steps, to check that it runs
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import eqx_elegy as elegy


# fmt: off
class LinearClassifier(elegy.Model):
    def test_step(self, x,  y_true,  states, initializing) -> elegy.TestStep:
        x = jnp.reshape(x, (x.shape[0], -1)) / 255

        # initialize or use existing parameters
        if initializing:
            w = jax.random.uniform(
                jax.random.PRNGKey(42), shape=[np.prod(x.shape[1:]), 10]
            )
            b = jax.random.uniform(jax.random.PRNGKey(69), shape=[1])
        else:
            w, b = states.net_params

        # model
        logits = jnp.dot(x, w) + b

        # categorical crossentropy loss
        labels = jax.nn.one_hot(y_true, 10)
        loss = jnp.mean(-jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))
        accuracy=jnp.mean(jnp.argmax(logits, axis=-1) == y_true)

        # metrics
        logs = dict(accuracy=accuracy, loss=loss)

        # update states
        states = states.update(net_params=(w, b))

        return loss, logs, states
# fmt: on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    args = parser.parse_args()

    # 8x8 digit images, rescaled from 0..16 to 0..255 like the MNIST images the docs used.
    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)
    X_train, X_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, random_state=0
    )

    model = LinearClassifier(optimizer=optax.adam(1e-3))
    model.fit(
        x=X_train,
        y=y_train,
        epochs=2 if args.quick else 100,
        batch_size=64,
        steps_per_epoch=3 if args.quick else None,
        verbose=0 if args.quick else 2,
    )

    # The logs of a custom test_step are those of the batch it saw last, so evaluate the
    # held-out set as one batch to get the accuracy over all of it.
    logs = model.evaluate(x=X_test, y=y_test, batch_size=len(X_test), verbose=0)
    print(f"held-out accuracy: {logs['accuracy']:.4f}")


if __name__ == "__main__":
    main()
