"""The LinearClassifier of Elegy's low-level docs: its code unchanged but for the import
(and ruff's line breaks).

`test_step` is annotated `-> elegy.TestStep` and returns a plain tuple. Its parameters are
unannotated, as in the docs; the only ignore is pyright's, on the `np.prod` line (see the
comment there).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import eqx_elegy as elegy


class LinearClassifier(elegy.Model):
    def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
        x = jnp.reshape(x, (x.shape[0], -1)) / 255

        # initialize or use existing parameters
        if initializing:
            # With jax's annotations, pyright reads np.prod(...) as a numpy integer where
            # `shape` wants int; the docs' line is kept as written, hence this one ignore.
            w = jax.random.uniform(
                jax.random.PRNGKey(42),
                shape=[np.prod(x.shape[1:]), 10],  # pyright: ignore[reportArgumentType]
            )
            b = jax.random.uniform(jax.random.PRNGKey(69), shape=[1])
        else:
            w, b = states.net_params

        # model
        logits = jnp.dot(x, w) + b

        # categorical crossentropy loss
        labels = jax.nn.one_hot(y_true, 10)
        loss = jnp.mean(-jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == y_true)

        # metrics
        logs = dict(accuracy=accuracy, loss=loss)

        # update states
        states = states.update(net_params=(w, b))

        return loss, logs, states


if __name__ == "__main__":
    X_train = np.random.default_rng(0).integers(0, 256, size=(96, 8, 8), dtype=np.uint8)
    y_train = np.random.default_rng(1).integers(0, 10, size=96)

    model = LinearClassifier(optimizer=optax.adam(1e-3))

    model.fit(
        x=X_train,
        y=y_train,
        epochs=2,
        batch_size=64,
        verbose=0,
    )
    logs = model.evaluate(x=X_train, y=y_train, verbose=0)
    assert set(logs) == {"accuracy", "loss"}, logs
