"""`Model.summary`: one row per submodule, with output shapes found by tracing.

Nothing runs on real data. `pred_step` is traced with `eqx.filter_eval_shape` on a copy of
the model whose submodules have been re-classed into recording subclasses: each one's
`__call__` notes the shape and dtype of what it returns, then returns it unchanged. A
recording subclass inherits everything else (fields, methods, `isinstance` checks, e.g.
`eqx.nn.Sequential`'s test for stateful layers), so the traced program is the model's own.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from ._steps import require_predictor, run_step
from ._trainable import frozen_ids

if TYPE_CHECKING:
    from ._model import Model
    from ._states import States

KeyPath = tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class SummaryRow:
    """One line of the summary table.

    `path` locates the submodule inside the model's module (`""` for the module itself,
    e.g. `layers[0]` or `encoder.layers[1]`), `depth` is how many modules deep it sits
    (0 for the root), `output` describes what its first call returned ("" when it was not
    called, or unknown). Parameter counts include every submodule below the row.
    Trainable parameters are the inexact arrays of `states.net_params`; non-trainable ones
    are its other arrays and the row's share of `states.net_states` (e.g. BatchNorm's
    running statistics).
    """

    path: str
    type: str
    output: str
    trainable: int
    trainable_bytes: int
    non_trainable: int
    non_trainable_bytes: int
    depth: int = 0


# ---------------------------------------------------------------------------- counting


def _nbytes(leaf: Any) -> int:
    dtype = leaf.dtype
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        shape = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(leaf.shape, dtype))
        return int(np.prod(shape.shape)) * shape.dtype.itemsize
    return int(np.prod(leaf.shape)) * np.dtype(dtype).itemsize


def _arrays(tree: Any) -> list[Any]:
    return [leaf for leaf in jax.tree.leaves(tree) if hasattr(leaf, "shape")]


def _is_inexact(leaf: Any) -> bool:
    return jnp.issubdtype(leaf.dtype, np.inexact)


def count(tree: Any) -> tuple[int, int]:
    """`(number of scalars, bytes)` of the array leaves of `tree`."""
    leaves = _arrays(tree)
    return sum(int(np.prod(a.shape)) for a in leaves), sum(_nbytes(a) for a in leaves)


def _split_count(
    params: Any, net_states: Any, frozen_ids: frozenset[int] = frozenset()
) -> tuple[int, int, int, int]:
    """Trainable and non-trainable `(count, bytes)` of a subtree of `net_params`, plus
    the entries of `net_states` that belong to the subtree's `eqx.nn.StateIndex`es. The
    leaves in `frozen_ids` (frozen by the model's `trainable=`) are non-trainable."""
    leaves = _arrays(params)
    trains = [_is_inexact(a) and id(a) not in frozen_ids for a in leaves]
    trainable = count([a for a, t in zip(leaves, trains, strict=True) if t])
    frozen = [a for a, t in zip(leaves, trains, strict=True) if not t]
    if isinstance(net_states, eqx.nn.State):
        for index in jax.tree.leaves(params, is_leaf=is_state_index):
            if is_state_index(index):
                frozen.extend(_arrays(net_states.get(index)))
    return (*trainable, *count(frozen))


def totals(states: States, frozen_ids: frozenset[int] = frozenset()) -> dict[str, tuple[int, int]]:
    """The totals under the table, from the states alone: `(count, bytes)` for
    `trainable`, `non_trainable` (other arrays of `net_params`, those in `frozen_ids`,
    and `net_states`), `total` (both) and `optimizer` (`optimizer_states`)."""
    params = _arrays(states.net_params)
    trains = [_is_inexact(a) and id(a) not in frozen_ids for a in params]
    trainable = count([a for a, t in zip(params, trains, strict=True) if t])
    frozen = count(
        [a for a, t in zip(params, trains, strict=True) if not t] + _arrays(states.net_states)
    )
    return {
        "trainable": trainable,
        "non_trainable": frozen,
        "total": (trainable[0] + frozen[0], trainable[1] + frozen[1]),
        "optimizer": count(states.optimizer_states),
    }


# ---------------------------------------------------------------------------- paths


def is_state_index(node: Any) -> bool:
    """Whether `node` is an `eqx.nn.StateIndex`, a handle into `eqx.nn.State`."""
    return isinstance(node, eqx.nn.StateIndex)


def _is_module(node: Any) -> bool:
    return isinstance(node, eqx.Module)


def _is_layer(node: Any) -> bool:
    """Submodules shown as rows: equinox modules, except the handles into `eqx.nn.State`."""
    return isinstance(node, eqx.Module) and not is_state_index(node)


def _key_str(key: Any) -> str:
    if isinstance(key, jax.tree_util.GetAttrKey):
        return f".{key.name}"
    if isinstance(key, jax.tree_util.DictKey):
        return f"[{key.key!r}]"
    if isinstance(key, jax.tree_util.SequenceKey):
        return f"[{key.idx}]"
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return f"[{key.key}]"
    return f"[{key}]"


def path_str(path: KeyPath) -> str:
    """`layers[0].weight` for a jax key path (no leading dot)."""
    return "".join(_key_str(k) for k in path).removeprefix(".")


def _children(node: Any, is_child: Callable[[Any], bool]) -> list[tuple[KeyPath, Any]]:
    """The nearest descendants of `node` for which `is_child` holds (or leaves), with
    their paths relative to `node`."""
    pairs, _ = jax.tree_util.tree_flatten_with_path(
        node, is_leaf=lambda n: n is not node and is_child(n)
    )
    return [(tuple(p), child) for p, child in pairs]


def _layers(module: Any) -> list[tuple[KeyPath, int, Any]]:
    """Every submodule of `module` (depth first, in field order) as `(path, depth, node)`,
    starting with `((), 0, module)`."""
    found: list[tuple[KeyPath, int, Any]] = []

    def visit(node: Any, path: KeyPath, depth: int) -> None:
        found.append((path, depth, node))
        for sub_path, child in _children(node, _is_module):
            if _is_layer(child):
                visit(child, path + sub_path, depth + 1)

    visit(module, (), 0)
    return found


# ---------------------------------------------------------------------------- recording


@dataclasses.dataclass
class _Record:
    output: str = ""
    calls: int = 0


def _has_call(cls: type) -> bool:
    return any("__call__" in vars(k) for k in cls.__mro__ if k is not object)


def _recording_class(cls: type, record: _Record, describe: Callable[[Any], str]) -> type:
    """A subclass of module class `cls` whose `__call__` notes its first output in
    `record`. It carries no new fields, so instances flatten like `cls`'s."""
    original = cls.__call__

    @functools.wraps(original)
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        if not record.calls:
            record.output = describe(out)
        record.calls += 1
        return out

    return type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})


def _recast(node: Any, cls: type) -> Any:
    """`node` (an equinox module) as an instance of its subclass `cls`, same fields."""
    new: Any = object.__new__(cls)
    for field in dataclasses.fields(node):
        if hasattr(node, field.name):
            object.__setattr__(new, field.name, getattr(node, field.name))
    return new


def _swap_classes(tree: Any, classes: Mapping[KeyPath, type], path: KeyPath = ()) -> Any:
    """`tree` with the module at each path in `classes` recast to that class. Used on the
    module and on `net_params` alike (same module structure), so they still combine."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda n: n is not tree and _is_module(n)
    )
    children = []
    for sub_path, child in pairs:
        full = path + tuple(sub_path)
        if _is_layer(child):
            child = _swap_classes(child, classes, full)
            if full in classes:
                child = _recast(child, classes[full])
        children.append(child)
    return jax.tree_util.tree_unflatten(treedef, children)


def describe_output(tree: Any, batch: int | None = None) -> str:
    """`float32[32, 10]`, `(float32[32, 10], int32[32])` or `{'a': ...}` for an output;
    `batch` is prepended to array shapes traced per example under `jax.vmap`."""
    if isinstance(tree, eqx.nn.State):
        return "State"
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):
        shape = tuple(tree.shape) if batch is None else (batch, *tree.shape)
        return f"{np.dtype(tree.dtype).name}[{', '.join(map(str, shape))}]"
    if isinstance(tree, tuple | list):
        inner = ", ".join(describe_output(v, batch) for v in tree)
        return f"({inner})" if isinstance(tree, tuple) else f"[{inner}]"
    if isinstance(tree, Mapping):
        return "{" + ", ".join(f"{k!r}: {describe_output(v, batch)}" for k, v in tree.items()) + "}"
    if tree is None:
        return "None"
    return type(tree).__name__


# ---------------------------------------------------------------------------- rows


def _per_example(model: Model) -> bool:
    """Whether the default pred_step vmaps the module, so submodules see one example."""
    return model.vmap and "pred_step" not in model._overridden()


def _batch(x: Any) -> int | None:
    leaves = jax.tree.leaves(x)
    shape = getattr(leaves[0], "shape", ()) if leaves else ()
    return int(shape[0]) if shape else None


def _trace(model: Model, x: Any, states: States) -> tuple[Any, States]:
    """`pred_step`'s output and states as shapes; a model whose states are not built yet
    (no `net_params`) is traced with `initializing=True`, which builds them."""
    initializing = states.net_params is None
    return eqx.filter_eval_shape(
        lambda s: run_step(
            model, "pred_step", x=x, states=s, initializing=initializing, training=False
        ),
        states,
    )


def summary_states(model: Model, x: Any) -> States:
    """The states to summarise: the model's own, or, for a model not initialised yet,
    their shapes as `pred_step` with `initializing=True` and the optimizer's init would
    build them (nothing is stored on the model)."""
    states = model.states
    if states.net_params is None and "pred_step" in model._overridden():
        _, states = _trace(model, x, states)
    optimizer = model.optimizer
    if states.optimizer_states is None and states.net_params is not None and optimizer is not None:
        with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
            states = states.update(
                optimizer_states=jax.eval_shape(
                    optimizer.init, model._split_trainable(states.net_params)[0]
                )
            )
    return states


def summary_rows(model: Model, x: Any, states: States) -> list[SummaryRow]:
    """The default `summary_step`: a row for the module and each submodule at any depth
    (`Model.summary` cuts them at its `depth`), or, for a model without a module, for
    `pred_step`'s output and each node of `states.net_params`."""
    require_predictor(model, "summary")
    if model.module is None or states.net_params is None:
        return _tree_rows(model, x, states)

    batch = _batch(x) if _per_example(model) else None
    layers = _layers(states.net_params)
    frozen = frozen_ids(model.trainable, states.net_params)
    records: dict[KeyPath, _Record] = {}
    classes: dict[KeyPath, type] = {}
    for path, depth, node in layers:
        if depth and _has_call(type(node)):
            records[path] = _Record()
            classes[path] = _recording_class(
                type(node), records[path], functools.partial(describe_output, batch=batch)
            )
    recording = _swapped_model(model, classes)
    y_pred, _ = _trace(
        recording, x, states.update(net_params=_swap_classes(states.net_params, classes))
    )

    rows = []
    for path, depth, node in layers:
        record = records.get(path)
        if depth == 0:
            output = describe_output(y_pred)
        else:
            output = "" if record is None else record.output
            if record is not None and record.calls > 1:
                output += f" (x{record.calls} calls)"
        rows.append(
            SummaryRow(
                path_str(path),
                type(node).__name__,
                output,
                *_split_count(node, states.net_states, frozen),
                depth=depth,
            )
        )
    return rows


def _swapped_model(model: Model, classes: Mapping[KeyPath, type]) -> Model:
    """A copy of `model` whose module has the recording classes swapped in (made by
    `eqx.tree_at`, so it is a plain pytree copy that nothing keeps alive)."""
    return eqx.tree_at(lambda m: m.module, model, _swap_classes(model.module, classes))


def _tree_rows(model: Model, x: Any, states: States) -> list[SummaryRow]:
    """Rows for a model without a module: `pred_step`'s output, then every node of
    `net_params` by its path (a tuple's entries, a dict's values, a module's fields)."""
    y_pred, traced = _trace(model, x, states)
    params = traced.net_params
    rows = [
        SummaryRow(
            "",
            type(model).__name__,
            describe_output(y_pred),
            *_split_count(params, traced.net_states),
        )
    ]

    def visit(node: Any, path: KeyPath, depth: int) -> None:
        for sub_path, child in _children(node, lambda n: True):
            if child is node:
                continue
            full = path + sub_path
            kind = describe_output(child) if hasattr(child, "shape") else type(child).__name__
            rows.append(
                SummaryRow(path_str(full), kind, "", *_split_count(child, None), depth=depth)
            )
            if not hasattr(child, "shape"):
                visit(child, full, depth + 1)

    if params is not None and not hasattr(params, "shape"):
        visit(params, (), 1)
    return rows


# ---------------------------------------------------------------------------- table


def _size(n: int, nbytes: int) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    value = float(nbytes)
    unit = 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    human = f"{nbytes} B" if unit == 0 else f"{value:.1f} {units[unit]}"
    return f"{n:,} ({human})"


def render(
    model: Model, x: Any, rows: list[SummaryRow], states: States, depth: int, console: Console
) -> None:
    """Print the table of `rows` down to `depth`, then the totals of `states`."""
    title = f"{type(model).__name__} summary"
    table = Table(title=title, box=box.SIMPLE_HEAD, show_lines=False, expand=False)
    table.add_column("Path", overflow="fold")
    table.add_column("Type", overflow="fold")
    table.add_column("Output", overflow="fold")
    table.add_column("Trainable", justify="right", overflow="fold")
    table.add_column("Non-trainable", justify="right", overflow="fold")
    for row in rows:
        if row.depth > depth:
            continue
        table.add_row(
            "  " * row.depth + (row.path or "(root)"),
            row.type,
            row.output,
            _size(row.trainable, row.trainable_bytes),
            _size(row.non_trainable, row.non_trainable_bytes),
        )
    console.print(table)
    frozen = frozen_ids(model.trainable, states.net_params)
    sums = totals(states, frozen)
    console.print(f"Input: {describe_output(x)}")
    if _per_example(model) and model.module is not None:
        console.print(
            "Output shapes include the batch dimension: the module runs per example under "
            "jax.vmap, and each submodule's per-example output is shown with the batch size "
            "prepended."
        )
    console.print(f"Total parameters: {_size(*sums['total'])}")
    console.print(f"  trainable: {_size(*sums['trainable'])}")
    console.print(f"  non-trainable: {_size(*sums['non_trainable'])}")
    if frozen:
        frozen_leaves = [a for a in _arrays(states.net_params) if id(a) in frozen]
        console.print(f"    of which frozen by trainable=: {_size(*count(frozen_leaves))}")
    console.print(f"Optimizer state: {_size(*sums['optimizer'])}")


def summary(
    model: Model,
    x: Any,
    depth: int,
    print_fn: Callable[[str], Any] | None,
    return_string: bool,
    console: Console | None,
) -> str | None:
    """`Model.summary`: run `summary_step` and format its rows (see there)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an int >= 0, got {depth!r}.")
    if x is None or not jax.tree.leaves(x):
        raise ValueError("summary needs x: a batch of inputs (e.g. x_train[:1]) to trace with.")
    states = summary_states(model, x)
    rows = run_step(model, "summary_step", x=x, states=states)
    if not isinstance(rows, list) or not all(isinstance(r, SummaryRow) for r in rows):
        raise TypeError(
            f"{type(model).__name__}.summary_step must return a list of elegy.SummaryRow, got "
            f"{type(rows).__name__}."
        )
    if print_fn is None and not return_string:
        render(model, x, rows, states, depth, console or Console())
        return None
    buffer = io.StringIO()
    width = console.width if console is not None else 100
    render(model, x, rows, states, depth, Console(file=buffer, width=width, color_system=None))
    text = buffer.getvalue()
    if print_fn is not None:
        print_fn(text)
    return text if return_string else None
