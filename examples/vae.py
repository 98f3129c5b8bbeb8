"""A variational autoencoder on the digits: a custom `test_step` that draws random numbers.

`test_step` asks for `rng`, the step's random sequence (an `elegy.RNGSeq`, a fresh one
every step, fixed by the model's seed, the epoch and the step), takes a key with
`key, rng = rng.next()` and samples the latent code with it. It logs the reconstruction
and KL terms of the loss separately. `pred_step` decodes the mean code, so `predict`
returns reconstructions; the script saves a PNG grid of them next to the originals.

    python examples/vae.py [--quick] [--out DIR]
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
from jaxtyping import Array, Float, PRNGKeyArray
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import eqx_elegy as elegy

matplotlib.use("Agg")  # draw to files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


class VAE(eqx.Module):
    encoder: eqx.nn.MLP  # pixels -> (mean, log-variance) of the code
    decoder: eqx.nn.MLP  # code -> pixel logits

    def __init__(self, pixels: int, latent: int, *, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        self.encoder = eqx.nn.MLP(pixels, 2 * latent, width_size=128, depth=1, key=k1)
        self.decoder = eqx.nn.MLP(latent, pixels, width_size=128, depth=1, key=k2)

    def encode(self, x: Float[Array, " pixels"]) -> tuple[Array, Array]:
        mean, log_var = jnp.split(self.encoder(x), 2)
        return mean, log_var


class VAEModel(elegy.Model):
    def test_step(self, x, states, rng) -> elegy.TestStep:
        vae = eqx.combine(states.net_params, self.module)
        mean, log_var = jax.vmap(vae.encode)(x)
        key, rng = rng.next()
        z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
        logits = jax.vmap(vae.decoder)(z)
        # Per image: Bernoulli negative log-likelihood of the pixels, and KL(q(z|x) || N(0, 1)).
        reconstruction = jnp.mean(jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x), axis=-1))
        kl = jnp.mean(-0.5 * jnp.sum(1 + log_var - mean**2 - jnp.exp(log_var), axis=-1))
        loss = reconstruction + kl
        logs = dict(loss=loss, reconstruction_loss=reconstruction, kl_loss=kl)
        return loss, logs, states

    def pred_step(self, x, states) -> elegy.PredStep:
        vae = eqx.combine(states.net_params, self.module)
        mean, _ = jax.vmap(vae.encode)(x)
        return jax.nn.sigmoid(jax.vmap(vae.decoder)(mean)), states


def save_grid(originals: np.ndarray, reconstructions: np.ndarray, path: pathlib.Path) -> None:
    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(n, 2.2))
    for i in range(n):
        for row, images in enumerate((originals, reconstructions)):
            axes[row, i].imshow(images[i].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            axes[row, i].axis("off")
    axes[0, 0].set_title("input", loc="left", fontsize=8)
    axes[1, 0].set_title("reconstruction", loc="left", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a few steps only")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs", "vae"))
    args = parser.parse_args()

    x = (load_digits().data / 16).astype(np.float32)
    x_train, x_test = train_test_split(x, test_size=0.2, random_state=0)

    model = VAEModel(module=VAE(64, 8, key=jax.random.key(0)), optimizer=optax.adam(1e-3))
    model.fit(
        x_train,
        x_train,  # the target of an autoencoder is its input (our test_step ignores y)
        epochs=2 if args.quick else 100,
        batch_size=64,
        steps_per_epoch=3 if args.quick else None,
        verbose=0 if args.quick else 2,
    )
    # One batch for the whole test set, so the logs cover all of it.
    logs = model.evaluate(x_test, x_test, batch_size=len(x_test), verbose=0)

    os.makedirs(args.out, exist_ok=True)
    path = args.out / "vae_reconstructions.png"
    save_grid(x_test[:10], model.predict(x_test[:10]), path)
    print(f"saved {path}")
    print(f"held-out KL term: {logs['kl_loss']:.3f}")
    print(f"held-out negative ELBO (nats per image): {logs['loss']:.3f}")


if __name__ == "__main__":
    main()
