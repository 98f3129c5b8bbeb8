"""Keras' batch API (`train_on_batch`, `test_on_batch`, `predict_on_batch`) and weights as
a list of arrays (`get_weights`, `set_weights`).

Each runs the model's compiled steps on one batch: `train_on_batch` is exactly a `fit`
step (the same compiled function), so a loop of them trains as `fit` does. The n-th call
on a model runs as the only step of epoch n (its random keys follow from that), and the
metrics are reset at every call, as in Keras 3: the logs are that batch's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from ._engine import engine
from ._flat import unflatten_ahead, unflatten_states_on_host
from ._loop import LazyLogs, _check_labels, _class_weight, _counter, _run_test
from ._strategy import strategy_of
from .callbacks import CallbackList
from .data import ArrayAdapter

if TYPE_CHECKING:
    from ._model import Model


def as_keras_list(logs: Mapping[str, float]) -> float | list[float]:
    """Logs as Keras returns them with `return_dict=False`: a list with the loss first and
    the other logs in order, or the one value alone when there is only one."""
    names = sorted(logs, key=lambda name: name != "loss")
    values = [float(logs[name]) for name in names]
    return values[0] if len(values) == 1 else values


def _one_batch(model: Model, x: Any, y: Any, sample_weight: Any, method: str) -> ArrayAdapter:
    """`x`, `y` and `sample_weight` checked and converted as fit would, as one batch."""
    data = ArrayAdapter(x, y, sample_weight)
    custom = model._overridden() & {"train_step", "grad_step", "test_step"}
    if data.y is None and not custom:
        raise ValueError(
            f"{method} needs labels: pass y, or override test_step/train_step to run without them."
        )
    if data.y is not None:
        _check_labels(data.y)
    data.batch_size = data.size
    return data


def train_on_batch(
    model: Model, x: Any, y: Any, sample_weight: Any, class_weight: Any, return_dict: bool
) -> dict[str, float] | float | list[float]:
    """`Model.train_on_batch`: one compiled training step on the batch, its logs."""
    data = _one_batch(model, x, y, sample_weight, "train_on_batch")
    cw = _class_weight(class_weight)
    if "train_step" not in model._overridden():
        model.get_optimizer()
    batch = (data.x, data.y, data.sample_weight)
    run = engine(model)
    if not model.initialized:
        run.initialize(batch, cw)
    strategy = strategy_of(model)
    # Buffers of its own, as fit takes: the step donates them, and the user may still
    # hold the model's current states.
    leaves, layout = run.owned_flat_states()
    unflatten_ahead(layout, leaves)  # while the step compiles, the first time
    if strategy.places_batches:
        batch = strategy.put_batch(batch)
    epoch = run.batch_epoch
    logs, leaves = run.training(layout).train(leaves, batch, cw, _counter(epoch, 0))
    run.commit(unflatten_states_on_host(layout, leaves), flat=(leaves, layout))
    run.batch_epoch = epoch + 1
    host = dict(LazyLogs(logs))
    return host if return_dict else as_keras_list(host)


def test_on_batch(
    model: Model, x: Any, y: Any, sample_weight: Any, return_dict: bool
) -> dict[str, float] | float | list[float]:
    """`Model.test_on_batch`: the test step's logs on the batch, from fresh metrics."""
    data = _one_batch(model, x, y, sample_weight, "test_on_batch")
    run = engine(model)
    if not model.initialized:
        run.initialize((data.x, data.y, data.sample_weight), None)
    callbacks = CallbackList([], model, {"steps": 1, "verbose": 0})
    host = _run_test(model, *run.flat_states(), data, callbacks, None, 1)
    return host if return_dict else as_keras_list(host)


def get_weights(model: Model) -> list[np.ndarray]:
    """`Model.get_weights`: the leaves of `states.net_params`, in tree order, on the host."""
    params = _net_params(model, "get_weights")
    return [np.asarray(leaf) for leaf in jax.device_get(jax.tree.leaves(params))]


def set_weights(model: Model, weights: Sequence[Any]) -> None:
    """`Model.set_weights`: replace the leaves of `states.net_params` (in tree order) with
    `weights`, after checking their number, shapes and dtypes; on any mismatch the model
    is left as it was. A model with `ema_decay` restarts its average from them."""
    params = _net_params(model, "set_weights")
    if isinstance(weights, str | bytes | Mapping) or not isinstance(weights, Sequence):
        raise TypeError(
            "set_weights takes a list of arrays, one per leaf of states.net_params in tree "
            f"order (as get_weights returns them); got {type(weights).__name__}."
        )
    leaves, treedef = jax.tree.flatten(params)
    if len(weights) != len(leaves):
        raise ValueError(
            f"set_weights got {len(weights)} arrays, but the model has {len(leaves)} weights "
            "(the leaves of states.net_params, as get_weights returns them)."
        )
    new = []
    for i, (leaf, value) in enumerate(zip(leaves, weights, strict=True)):
        array = np.asarray(value)
        shape, dtype = tuple(leaf.shape), np.dtype(leaf.dtype)
        if array.shape != shape:
            raise ValueError(
                f"set_weights: weights[{i}] has shape {array.shape}, but the model's weight "
                f"{i} has shape {shape}."
            )
        if array.dtype != dtype:
            raise ValueError(
                f"set_weights: weights[{i}] has dtype {array.dtype}, but the model's weight {i} "
                f"has dtype {dtype}; convert it first (e.g. w.astype(np.{dtype}))."
            )
        new.append(jnp.asarray(array))
    params = jax.tree.unflatten(treedef, new)
    states = model.states.update(net_params=params)
    if states.get("ema_params") is not None:  # the average starts over from the new weights
        states = states.update(ema_params=jax.tree.map(jnp.copy, params))
    engine(model).commit(states)


def _net_params(model: Model, method: str) -> Any:
    params = model.states.net_params
    if params is None:
        raise ValueError(
            f"{type(model).__name__} has no weights yet (states.net_params is None): call "
            f"model.init(x, y) or fit first, then {method}."
        )
    return params
