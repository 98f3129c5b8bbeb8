"""A Population as the docs use it: a factory of models, a learning-rate sweep, and the
types that fit, evaluate, predict, members and best return."""

import os
import tempfile
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax
from typing_extensions import assert_type

import eqx_elegy as elegy
from eqx_elegy.callbacks import History

x = np.zeros((8, 64), np.float32)
y = np.zeros((8,), np.int32)


def make_model(seed: int) -> elegy.Model:
    return elegy.Model(
        module=eqx.nn.MLP(64, 10, 32, 1, key=jax.random.key(seed)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.inject_hyperparams(optax.adam)(learning_rate=1e-3),
        seed=seed,
    )


population = elegy.Population(make_model, hyperparams={"learning_rate": [1e-3, 1e-2]})
seeded = elegy.Population(make_model(0), size=4)
ensemble = elegy.Population(make_model, seeds=[3, 5, 7])

assert_type(population.fit(x, y, batch_size=4, epochs=2, verbose=0), History)
assert_type(population.evaluate(x, y, verbose=0), dict[str, np.ndarray])
predictions: Any = population.predict(x)
assert_type(population.members(), list[elegy.Model])
assert_type(population.best("loss", mode="min"), elegy.Model)
assert_type(population.size, int)
with tempfile.TemporaryDirectory() as folder:
    population.save(os.path.join(folder, "ckpt"))
    population.load(os.path.join(folder, "ckpt"))
spread: elegy.Population = population.distributed(elegy.DataParallel())
