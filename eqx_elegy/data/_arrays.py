"""Arrays and pytrees of arrays held in memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from ._adapter import Batch, Chunk, DataAdapter


def _canonical(value: Any, argument: str) -> Any:
    """`value` as a pytree of numpy arrays in the dtypes JAX will use (float64 -> float32
    without x64), converted once here rather than at every step."""

    def convert(leaf: Any) -> np.ndarray:
        if isinstance(leaf, str | bytes):
            raise TypeError(f"{argument} must be an array or a pytree of arrays, got a string.")
        try:
            array = np.asarray(leaf)
        except Exception as error:
            raise TypeError(
                f"{argument} must be an array or a pytree of arrays; a leaf of type "
                f"{type(leaf).__name__} could not be converted ({error})."
            ) from error
        if array.dtype.kind not in "biufc":
            raise TypeError(f"{argument} must hold numbers; got an array of dtype {array.dtype}.")
        if array.ndim == 0:
            raise ValueError(f"{argument} must have a leading batch dimension; got a scalar.")
        dtype = jax.dtypes.canonicalize_dtype(array.dtype)
        if array.dtype == dtype:
            return array
        if array.dtype.kind in "iu" and array.size:
            _check_fits(array, dtype, argument)
        return array.astype(dtype)

    if value is None:
        return None
    _check_no_listed_numbers(value, argument)
    return jax.tree.map(convert, value)


def _check_fits(array: np.ndarray, dtype: np.dtype, argument: str) -> None:
    """Integers narrowed to JAX's dtype (int64 -> int32 without x64) must fit: numpy
    would wrap them around, so a label of -4294967287 would become the class 9."""
    info = np.iinfo(dtype)
    low, high = array.min(), array.max()
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise ValueError(
            f"{argument} holds the integer {bad}, which does not fit in {dtype}: JAX runs "
            f"without 64-bit integers (unless jax_enable_x64 is set), so {argument} is "
            f"converted to {dtype}. Keep its values in [{info.min}, {info.max}]."
        )


def _check_no_listed_numbers(value: Any, argument: str) -> None:
    """A (nested) Python list of numbers is not an array here: a list or tuple is a pytree
    of separate arrays (several inputs), so each number would be an input of its own."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(value):
        listed = any(isinstance(key, jax.tree_util.SequenceKey) for key in path)
        if listed and isinstance(leaf, int | float | complex | np.generic):
            raise TypeError(
                f"{argument} is a Python list of numbers ({argument}"
                f"{jax.tree_util.keystr(path)} is {leaf!r}), but a list or tuple in "
                f"{argument} is read as a pytree of separate arrays (one per input). "
                f"Convert it to one array first: {argument}=np.asarray(...)."
            )


def _length(value: Any, argument: str) -> int | None:
    if value is None:
        return None
    lengths = {leaf.shape[0] for leaf in jax.tree.leaves(value)}
    if not lengths:
        raise ValueError(f"{argument} is an empty pytree; it must contain arrays.")
    if len(lengths) > 1:
        raise ValueError(
            f"The arrays in {argument} have different lengths {sorted(lengths)}; every leaf "
            "needs the same number of examples along its first axis."
        )
    return lengths.pop()


def _take(value: Any, index: Any) -> Any:
    return None if value is None else jax.tree.map(lambda a: a[index], value)


class ArrayAdapter(DataAdapter):
    """Batches sliced from arrays, shuffled each epoch by a permutation that depends only on
    `seed` and the epoch. Consecutive full batches are stacked for `steps_per_execution`
    by reshaping a contiguous slice (no copy), or shuffled, the rows gathered for them."""

    def __init__(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        *,
        batch_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        drop_remaining: bool = False,
        x_name: str = "x",
        y_name: str = "y",
    ):
        if x is None:
            raise ValueError(f"{x_name} is None; pass the input data.")
        self.x = _canonical(x, x_name)
        self.y = _canonical(y, y_name)
        self.sample_weight = _canonical(sample_weight, "sample_weight")
        n = _length(self.x, x_name)
        assert n is not None
        for value, name in ((self.y, y_name), (self.sample_weight, "sample_weight")):
            m = _length(value, name)
            if m is not None and m != n:
                raise ValueError(
                    f"{x_name} has {n} examples but {name} has {m}; they must have the same "
                    "length along the first axis."
                )
        if n == 0:
            raise ValueError(f"{x_name} is empty (0 examples); there is nothing to iterate over.")
        if batch_size is None:
            batch_size = min(32, n)
        self.size = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_remaining = drop_remaining
        self._leaves, self._treedef = jax.tree.flatten((self.x, self.y, self.sample_weight))
        self._latest: tuple[int, np.ndarray] | None = None  # see `_order`

    def num_batches(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full + (1 if rest and not self.drop_remaining else 0)

    def _order(self, epoch: int) -> np.ndarray | None:
        """The order of the examples in epoch `epoch` (None: as given, unshuffled). The
        latest is kept: `first_batch` and the epoch's batches compute it once."""
        if not self.shuffle:
            return None
        if self._latest is None or self._latest[0] != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            self._latest = (epoch, order)
        return self._latest[1]

    def _rows(self, order: np.ndarray | None, start: int, stop: int) -> list[Any]:
        """The leaves of `(x, y, sample_weight)` for rows `start:stop` of an epoch in
        `order`: views when unshuffled, else gathered here, one batch or chunk at a time,
        so that the gathering overlaps the compiled steps still running instead of
        holding back the epoch's first step (and copying the whole data each epoch).
        Working on the flat leaves avoids a Python tree_map per batch (it would cost a
        noticeable part of a small model's step)."""
        index = slice(start, stop) if order is None else order[start:stop]
        return [leaf[index] for leaf in self._leaves]

    def first_batch(self) -> Batch:
        return jax.tree.unflatten(self._treedef, self._rows(self._order(0), 0, self.batch_size))

    def batches(self, epoch: int) -> Iterator[Batch]:
        order, b = self._order(epoch), self.batch_size
        for i in range(self.num_batches()):
            yield jax.tree.unflatten(self._treedef, self._rows(order, i * b, (i + 1) * b))

    def chunks(self, epoch: int, steps_per_execution: int) -> Iterator[Chunk]:
        if steps_per_execution == 1:
            for batch in self.batches(epoch):
                yield Chunk(batch, 1, False)
            return
        order, k, b = self._order(epoch), steps_per_execution, self.batch_size
        full = self.size // b
        start = 0
        for _ in range(full // k):
            rows = self._rows(order, start, start + k * b)
            stacked = [a.reshape(k, b, *a.shape[1:]) for a in rows]
            yield Chunk(jax.tree.unflatten(self._treedef, stacked), k, True)
            start += k * b
        for i in range(start // b, self.num_batches()):
            yield Chunk(
                jax.tree.unflatten(self._treedef, self._rows(order, i * b, (i + 1) * b)), 1, False
            )

    def split(self, fraction: float) -> tuple[ArrayAdapter, ArrayAdapter]:
        """Split off the last `fraction` of the examples (before any shuffling, as Keras
        does) as validation data."""
        cut = self.size - int(round(self.size * fraction))
        if cut <= 0 or cut >= self.size:
            raise ValueError(
                f"validation_split={fraction} leaves {cut} training and {self.size - cut} "
                "validation examples; both need at least one."
            )

        def part(index: slice) -> ArrayAdapter:
            x, y, sw = _take((self.x, self.y, self.sample_weight), index)
            return ArrayAdapter(
                x,
                y,
                sw,
                batch_size=self.batch_size,
                shuffle=self.shuffle,
                seed=self.seed,
                drop_remaining=self.drop_remaining,
            )

        return part(slice(0, cut)), part(slice(cut, None))
