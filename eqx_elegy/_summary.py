"""The rows of `Model.summary`, found by tracing with `jax.eval_shape`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import numpy as np

if TYPE_CHECKING:
    from ._model import Model
    from ._states import States


@dataclasses.dataclass(frozen=True)
class SummaryRow:
    """One line of the summary table."""

    path: str
    type: str
    output: str
    trainable: int
    trainable_bytes: int
    non_trainable: int
    non_trainable_bytes: int


def _count(tree: Any) -> tuple[int, int]:
    leaves = [leaf for leaf in jax.tree.leaves(tree) if hasattr(leaf, "shape")]
    return (
        sum(int(np.prod(leaf.shape)) for leaf in leaves),
        sum(int(np.prod(leaf.shape)) * leaf.dtype.itemsize for leaf in leaves),
    )


def _describe_output(tree: Any) -> str:
    return ", ".join(
        f"{leaf.dtype}{list(leaf.shape)}"
        for leaf in jax.tree.leaves(tree)
        if hasattr(leaf, "shape")
    )


def summary_rows(model: Model, x: Any, states: States) -> list[SummaryRow]:
    """One row for the whole model: its output shape from `jax.eval_shape` of `pred_step`
    and its parameter counts from `states`."""
    y_pred, _ = eqx.filter_eval_shape(
        lambda s: model._run("pred_step", x=x, states=s, initializing=False, training=False),
        states,
    )
    trainable = _count(states.net_params)
    frozen = _count(states.net_states)
    name = type(model.module).__name__ if model.module is not None else type(model).__name__
    return [SummaryRow("", name, _describe_output(y_pred), *trainable, *frozen)]
