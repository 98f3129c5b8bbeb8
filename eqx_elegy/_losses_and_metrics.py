"""The plumbing of the default `test_step`: losses and metrics from `Model(loss=, metrics=)`.

Turns whatever the user passed (one object, a list, a dict, a plain callable) into one
pure function from a batch to `(loss, logs, metrics_states)`, where the logs are the
running values over the epoch so far, as Keras reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from .losses import Loss
from .metrics import Metric


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _loss_name(loss: Any) -> str:
    if isinstance(loss, Loss):
        return loss.log_name
    return getattr(loss, "__name__", type(loss).__name__).lower()


class LossesAndMetrics(eqx.Module):
    """The losses and metrics of a model, with log names fixed once."""

    losses: tuple[Any, ...]
    loss_names: tuple[str, ...] = eqx.field(static=True)
    metrics: tuple[Metric, ...]
    metric_names: tuple[str, ...] = eqx.field(static=True)

    @classmethod
    def build(cls, loss: Any, metrics: Any, loss_weights: Any = None) -> LossesAndMetrics:
        losses = _as_list(loss)
        for item in losses:
            if not callable(item):
                raise TypeError(
                    f"loss= got a {type(item).__name__}; pass an elegy.losses object, a "
                    "callable (y_true, y_pred) -> scalar, or a list/dict of them."
                )
        metric_list = _as_list(metrics)
        for item in metric_list:
            if not isinstance(item, Metric):
                raise TypeError(
                    f"metrics= got a {type(item).__name__}; pass elegy.metrics objects."
                )
        return cls(
            tuple(losses),
            tuple(f"{_loss_name(item)}_loss" for item in losses),
            tuple(metric_list),
            tuple(m.log_name for m in metric_list),
        )

    @property
    def has_loss(self) -> bool:
        return bool(self.losses)

    def init(self) -> PyTree:
        zero = jnp.zeros((), jnp.float32)
        trackers = {name: (zero, zero) for name in ("loss", *self.loss_names)}
        return {"trackers": trackers, "metrics": [m.init() for m in self.metrics]}

    def __call__(
        self,
        metrics_states: PyTree,
        y_true: Any,
        y_pred: Any,
        sample_weight: Any,
        class_weight: Any,
        net_params: Any,
        *,
        batch_size: int,
    ) -> tuple[Array, dict[str, Array], PyTree]:
        del class_weight, net_params
        terms: dict[str, Array] = {}
        for name, loss in zip(self.loss_names, self.losses, strict=True):
            fn: Callable[..., Array] = loss
            value = (
                fn(y_true, y_pred, sample_weight) if isinstance(loss, Loss) else fn(y_true, y_pred)
            )
            terms[name] = jnp.asarray(value, jnp.float32)
        total = sum(terms.values(), jnp.zeros((), jnp.float32))
        size = jnp.asarray(batch_size, jnp.float32)
        trackers = dict(metrics_states["trackers"])
        for name, value in {"loss": total, **terms}.items():
            acc, count = trackers[name]
            trackers[name] = (acc + value * size, count + size)
        new_metrics = [
            m.update(s, y_true, y_pred, sample_weight)
            for m, s in zip(self.metrics, metrics_states["metrics"], strict=True)
        ]
        logs = {name: acc / count for name, (acc, count) in trackers.items()}
        for name, m, s in zip(self.metric_names, self.metrics, new_metrics, strict=True):
            logs[name] = m.compute(s)
        return total, logs, {"trackers": trackers, "metrics": new_metrics}
