"""The batch API's return types follow `return_dict`, as `evaluate`'s do: a dict of logs by
default, Keras' list (or one float) with `return_dict=False`, and the union when the flag
is only known at run time."""

import equinox as eqx
import jax
import numpy as np
import optax
from typing_extensions import assert_type

import eqx_elegy as elegy

Either = dict[str, float] | float | list[float]


def run(x: np.ndarray, y: np.ndarray, as_dict: bool) -> None:
    model = elegy.Model(
        module=eqx.nn.MLP(4, 3, 8, 1, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-3),
    )
    assert_type(model.train_on_batch(x, y), dict[str, float])
    assert_type(model.train_on_batch(x, y, return_dict=False), float | list[float])
    assert_type(model.test_on_batch(x, y), dict[str, float])
    assert_type(model.test_on_batch(x, y, return_dict=False), float | list[float])
    assert_type(model.train_on_batch(x, y, return_dict=as_dict), Either)
    assert_type(model.test_on_batch(x, y, return_dict=as_dict), Either)
    assert_type(model.evaluate(x, y, verbose=0, return_dict=as_dict), Either)
    logs = model.train_on_batch(x, y)
    assert logs["loss"] > 0 and {"loss", "accuracy"} <= set(logs)


if __name__ == "__main__":
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    run(x, (x[:, 0] > 0).astype(np.int32), True)
