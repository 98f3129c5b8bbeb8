"""A GAN on the 8x8 digits: one `train_step` that runs two optax optimizers.

The generator and the discriminator are two equinox modules held as fields of the model.
`init_step` puts their parameters and the state of their two optimizers in `States`
under keys of our own (`states.update` adds any key), and `train_step` takes one
discriminator step and one generator step per batch, with noise from the injected `rng`.

To score the samples without a person looking at them, a logistic regression trained on
real digits classifies them, and the script prints an "inception score" computed with it:
exp(E[KL(p(digit | sample) || p(digit))]); it is high (at most 10) when the samples are
confidently recognised as digits and all ten digits appear. Real test digits give the
reference value.

    python examples/gan.py [--quick] [--out DIR]
"""

import argparse
import os
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

import eqx_elegy as elegy

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LATENT = 16


class GAN(elegy.Model):
    generator: eqx.nn.MLP
    discriminator: eqx.nn.MLP
    generator_optimizer: optax.GradientTransformation
    discriminator_optimizer: optax.GradientTransformation

    def init_step(self, states) -> elegy.InitStep:
        g_params = eqx.filter(self.generator, eqx.is_inexact_array)
        d_params = eqx.filter(self.discriminator, eqx.is_inexact_array)
        return states.update(
            g_params=g_params,
            d_params=d_params,
            g_opt_state=self.generator_optimizer.init(g_params),
            d_opt_state=self.discriminator_optimizer.init(d_params),
        )

    def train_step(self, x, states, rng) -> elegy.TrainStep:
        generator = eqx.combine(states.g_params, self.generator)
        key, rng = rng.next()
        fake = jax.vmap(generator)(jax.random.normal(key, (x.shape[0], LATENT)))

        # Discriminator: real images -> 1, generated ones -> 0.
        def d_loss_fn(d_params):
            discriminator = eqx.combine(d_params, self.discriminator)
            real_logits = jax.vmap(discriminator)(x)
            fake_logits = jax.vmap(discriminator)(fake)
            return jnp.mean(optax.sigmoid_binary_cross_entropy(real_logits, 1.0)) + jnp.mean(
                optax.sigmoid_binary_cross_entropy(fake_logits, 0.0)
            )

        d_loss, d_grads = jax.value_and_grad(d_loss_fn)(states.d_params)
        updates, d_opt_state = self.discriminator_optimizer.update(d_grads, states.d_opt_state)
        d_params = optax.apply_updates(states.d_params, updates)

        # Generator: make the updated discriminator call fresh samples real.
        discriminator = eqx.combine(d_params, self.discriminator)
        key, rng = rng.next()
        z = jax.random.normal(key, (x.shape[0], LATENT))

        def g_loss_fn(g_params):
            samples = jax.vmap(eqx.combine(g_params, self.generator))(z)
            logits = jax.vmap(discriminator)(samples)
            return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, 1.0))

        g_loss, g_grads = jax.value_and_grad(g_loss_fn)(states.g_params)
        updates, g_opt_state = self.generator_optimizer.update(g_grads, states.g_opt_state)
        g_params = optax.apply_updates(states.g_params, updates)

        logs = dict(d_loss=d_loss, g_loss=g_loss)
        return logs, states.update(
            g_params=g_params, d_params=d_params, g_opt_state=g_opt_state, d_opt_state=d_opt_state
        )


def inception_score(classifier: LogisticRegression, images: np.ndarray) -> float:
    p = classifier.predict_proba(images)
    marginal = p.mean(axis=0, keepdims=True)
    kl = np.sum(p * (np.log(p + 1e-12) - np.log(marginal + 1e-12)), axis=1)
    return float(np.exp(kl.mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs", "gan"))
    args = parser.parse_args()

    digits = load_digits()
    x = (digits.data / 8 - 1).astype(np.float32)  # pixels in [-1, 1], like the tanh output
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=0
    )

    g_key, d_key = jax.random.split(jax.random.key(0))
    model = GAN(
        generator=eqx.nn.MLP(LATENT, 64, 128, 2, final_activation=jnp.tanh, key=g_key),
        discriminator=eqx.nn.MLP(64, "scalar", 128, 2, activation=jax.nn.leaky_relu, key=d_key),
        generator_optimizer=optax.adam(2e-4, b1=0.5),
        discriminator_optimizer=optax.adam(2e-4, b1=0.5),
    )
    model.fit(
        x_train,
        y_train,  # fit asks for y; this train_step does not use the labels
        epochs=2 if args.quick else 300,
        batch_size=64,
        steps_per_epoch=3 if args.quick else None,
        verbose=0 if args.quick else 2,
    )

    generator = eqx.combine(model.states.g_params, model.generator)
    z = jax.random.normal(jax.random.key(1), (500, LATENT))
    samples = np.asarray(jax.vmap(generator)(z))

    with threadpool_limits(1):  # a small problem: more BLAS threads only add overhead
        classifier = LogisticRegression(max_iter=2000).fit(x_train, y_train)
    os.makedirs(args.out, exist_ok=True)
    path = args.out / "gan_samples.png"
    fig, axes = plt.subplots(2, 10, figsize=(10, 2))
    for ax, image in zip(axes.flat, samples, strict=False):
        ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=-1, vmax=1)
        ax.axis("off")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"saved {path}")
    print(f"inception score of real test digits: {inception_score(classifier, x_test):.2f}")
    print(f"inception score of 500 samples: {inception_score(classifier, samples):.2f}")


if __name__ == "__main__":
    main()
