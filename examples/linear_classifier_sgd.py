"""The LinearClassifier again, now also overriding `train_step` with plain SGD.

`test_step` is the one of `linear_classifier.py`. `train_step` asks `grad_step` for the
loss, logs and gradients (the default `grad_step` differentiates our `test_step`) and
moves `net_params` against the gradient by hand, so no optax optimizer is needed. While
the model initialises (`initializing=True`) `grad_step` returns zero gradients and
`train_step` only passes the freshly built parameters through.

    python examples/linear_classifier_sgd.py [--quick]
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import eqx_elegy as elegy


class LinearClassifier(elegy.Model):
    learning_rate: float = 0.5

    def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
        x = jnp.reshape(x, (x.shape[0], -1)) / 255
        if initializing:
            w = jax.random.uniform(jax.random.key(42), shape=(x.shape[1], 10))
            b = jax.random.uniform(jax.random.key(69), shape=(1,))
        else:
            w, b = states.net_params
        logits = jnp.dot(x, w) + b
        labels = jax.nn.one_hot(y_true, 10)
        loss = jnp.mean(-jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == y_true)
        return loss, dict(accuracy=accuracy, loss=loss), states.update(net_params=(w, b))

    def train_step(self, x, y_true, states, initializing, training) -> elegy.TrainStep:
        loss, logs, states, grads = self.grad_step(
            x=x, y_true=y_true, states=states, initializing=initializing, training=training
        )
        if not initializing:
            params = jax.tree.map(lambda p, g: p - self.learning_rate * g, states.net_params, grads)
            states = states.update(net_params=params)
        return logs, states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    args = parser.parse_args()

    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)
    X_train, X_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, random_state=0
    )

    model = LinearClassifier()  # no optimizer: train_step updates the parameters itself
    model.fit(
        x=X_train,
        y=y_train,
        epochs=2 if args.quick else 50,
        batch_size=64,
        steps_per_epoch=3 if args.quick else None,
        verbose=0 if args.quick else 2,
    )
    logs = model.evaluate(x=X_test, y=y_test, batch_size=len(X_test), verbose=0)
    print(f"held-out accuracy: {logs['accuracy']:.4f}")


if __name__ == "__main__":
    main()
