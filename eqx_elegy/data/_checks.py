"""Turning what a user's source yields into checked batches of host arrays."""

from __future__ import annotations

import warnings
from typing import Any

import jax
import numpy as np

from ._adapter import Batch

#: A source producing more distinct batch shapes than this gets a warning: each new
#: shape compiles the step again.
MAX_SHAPES = 8


class _Spec:
    """Prints as `float32[32,64]`, so that a pytree of them reads as a structure."""

    def __init__(self, leaf: Any):
        self.text = f"{leaf.dtype}[{','.join(map(str, leaf.shape))}]"

    def __repr__(self) -> str:
        return self.text


def describe_batch(batch: Batch) -> str:
    """The structure of a batch with each leaf's dtype and shape, for error messages."""
    x, y, sample_weight = jax.tree.map(_Spec, batch)
    return f"x={x!r}, y={y!r}, sample_weight={sample_weight!r}"


def _leaf(value: Any, where: str) -> Any:
    """`value` as an array in the dtype JAX will use. Arrays already on a device stay
    there; torch tensors are detached first; anything else goes through numpy."""
    if isinstance(value, jax.Array):
        array: Any = value
    elif isinstance(value, str | bytes):
        raise TypeError(f"{where} is a string; batches must hold arrays of numbers.")
    else:
        if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
            value = value.detach().cpu().numpy()
        try:
            array = np.asarray(value)
        except Exception as error:
            raise TypeError(
                f"{where} is a {type(value).__name__} that could not be converted to an "
                f"array ({error})."
            ) from error
        if array.dtype.kind not in "biufc":
            raise TypeError(f"{where} must hold numbers; got an array of dtype {array.dtype}.")
        dtype = jax.dtypes.canonicalize_dtype(array.dtype)
        if array.dtype != dtype:
            array = array.astype(dtype)
    if array.ndim == 0:
        raise ValueError(
            f"{where} is a scalar, without a batch dimension: a source must yield whole "
            "batches (a torch Dataset needs a DataLoader, a grain dataset a .batch(...))."
        )
    return array


def _split_batch(item: Any, where: str) -> Batch:
    """Keras' convention: a tuple (or list, as torch's collate makes) of one to three
    elements is `(x,)`, `(x, y)` or `(x, y, sample_weight)`; anything else is `x`."""
    if type(item) not in (tuple, list):
        return item, None, None
    if not 1 <= len(item) <= 3:
        raise ValueError(
            f"{where} is a {type(item).__name__} of {len(item)} elements; a batch must be x, "
            "(x, y) or (x, y, sample_weight). To pass several inputs, group them as x: "
            "a dict, or a nested tuple ((x1, x2), y)."
        )
    x, y, sample_weight = (*item, None, None)[:3]
    return x, y, sample_weight


class BatchChecker:
    """Checks each batch of one source against the first: same structure (error showing
    both), one length per batch (error naming the parts), and counts distinct shapes
    (a warning past `MAX_SHAPES`, since each one compiles the step again)."""

    def __init__(self, name: str):
        self.name = name
        self._structure: Any = None
        self._first = ""
        self._shapes: set[Any] = set()

    def __call__(self, item: Any, index: int) -> Batch:
        where = f"{self.name} batch {index}"
        x, y, sample_weight = _split_batch(item, where)
        if x is None:
            raise ValueError(f"{where} has no inputs (x is None).")
        parts = {"x": x, "y": y, "sample_weight": sample_weight}
        x, y, sample_weight = (
            jax.tree.map(lambda leaf, part=part: _leaf(leaf, f"{where}: {part}"), value)
            for part, value in parts.items()
        )
        batch = (x, y, sample_weight)
        structure = jax.tree.structure(batch)
        if self._structure is None:
            self._structure, self._first = structure, describe_batch(batch)
        elif structure != self._structure:
            raise ValueError(
                f"{self.name} yielded batches of different structures: the first was "
                f"({self._first}) but batch {index} is ({describe_batch(batch)}). Every batch "
                "must have the same pytree structure."
            )
        lengths = {
            part: {leaf.shape[0] for leaf in jax.tree.leaves(value)}
            for part, value in zip(parts, batch, strict=True)
        }
        found = {n for ns in lengths.values() for n in ns}
        if len(found) > 1:
            detail = ", ".join(f"{part} {sorted(ns)}" for part, ns in lengths.items() if ns)
            raise ValueError(
                f"{where} has parts of different lengths ({detail}); x, y and sample_weight "
                "must have the same number of examples along the first axis."
            )
        if found == {0}:
            raise ValueError(f"{where} is empty (0 examples).")
        self._count(structure, batch)
        return batch

    def _count(self, structure: Any, batch: Batch) -> None:
        if len(self._shapes) > MAX_SHAPES:
            return
        self._shapes.add((structure, tuple((a.shape, a.dtype) for a in jax.tree.leaves(batch))))
        if len(self._shapes) > MAX_SHAPES:
            warnings.warn(
                f"{self.name} has produced more than {MAX_SHAPES} distinct batch shapes; "
                "the step compiles once per shape. Give batches fixed shapes (pad them, or "
                "drop the ragged last batch) to avoid recompiling.",
                stacklevel=2,
            )
