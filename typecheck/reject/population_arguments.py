"""Population arguments of the wrong type: a hyperparameter given as one number instead
of one value per member, seeds that are not ints, and a model that is not a Model."""

import equinox as eqx
import jax

import eqx_elegy as elegy

model = elegy.Model()

elegy.Population(model, hyperparams={"learning_rate": 1e-3})  # type: ignore[dict-item]  # pyright: ignore[reportArgumentType]
elegy.Population(model, seeds=["a", "b"])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
elegy.Population(model, size="4")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
elegy.Population(eqx.nn.Linear(2, 2, key=jax.random.key(0)), size=2)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
