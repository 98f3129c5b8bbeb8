"""Freezing parameters: the `trainable=` filter of `Model`, applied to `net_params`.

The filter is what `eqx.partition` takes: a callable on leaves (`lambda w: w.ndim > 1`)
or a pytree of bools (or callables) with the module's structure, or a prefix of it
(`eqx.tree_at(lambda m: m.layers[-1], jax.tree.map(lambda _: False, module),
replace=True)` trains the last layer alone). The parameters it selects are trainable;
the others are frozen: the default `grad_step` does not differentiate them, the optimizer
gets no state for them, `fit` returns them bitwise unchanged, and regularizers skip them
(unless built with `include_frozen=True`).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
from jaxtyping import PyTree


def split_trainable(trainable: Any, params: PyTree) -> tuple[PyTree, PyTree]:
    """`(trainable part, frozen part)` of `params`, each with None where the other has a
    leaf (`eqx.partition` by the filter)."""
    return eqx.partition(params, trainable)


def check_trainable(trainable: Any, params: PyTree) -> None:
    """Raise a ValueError naming `trainable` if the filter does not fit `params` (the
    module's parameters) or selects none of them; nothing has compiled yet."""
    try:
        selected, _ = split_trainable(trainable, params)
    except Exception as error:
        raise ValueError(
            "trainable= must be a filter over the module as eqx.partition takes it: a callable "
            "leaf -> bool, or a pytree of bools with the module's structure (or a prefix of "
            f"it); applying it to the module's parameters failed: {error}"
        ) from None
    if not jax.tree.leaves(selected):
        raise ValueError(
            "trainable= selects none of the module's parameters, so there is nothing to "
            "train: pass a filter that is True for the parameters to train (e.g. "
            "eqx.is_inexact_array for all of them), or leave trainable=None."
        )


def frozen_ids(trainable: Any, params: PyTree) -> frozenset[int]:
    """The `id`s of the frozen leaves of `params`, to tell them apart in a summary."""
    if trainable is None or params is None:
        return frozenset()
    return frozenset(id(leaf) for leaf in jax.tree.leaves(split_trainable(trainable, params)[1]))
