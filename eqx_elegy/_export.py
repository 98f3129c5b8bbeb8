"""`Model.export`: the model's prediction as a `jax.export` artifact that runs without
the model's code.

The prediction is the model's own `pred_step` (with the user's overrides) in inference
mode, exactly as `predict` runs it, traced with a symbolic batch dimension so that one
artifact serves every batch size. The leaves of the states the step reads (found by
tracing it once) become the function's `weights` argument and are written beside the
function, so no weight is baked into the StableHLO and a large model exports. Typed PRNG
keys travel as their key data and dtypes numpy's `.npz` cannot hold (bfloat16, float8)
as unsigned integers of their width; the function converts them back. `_serving.py`
describes the files and loads them.

The model learns the structure of its inputs (`x`'s pytree, each leaf's per-example
shape and dtype) the first time it sees data, in `init`, `fit`, `evaluate` or `predict`
(`remember_inputs`), and keeps it in a static field, so it survives copies, pickling and
`distributed`.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import equinox as eqx
import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from ._distributed import gather_to_host
from ._serving import (
    BATCH,
    FORMAT,
    FORMAT_VERSION,
    FUNCTION_FILE,
    MANIFEST,
    PLATFORMS,
    STAGING_MARK,
    WEIGHTS_FILE,
    ExportError,
    describe_shape,
    read_manifest,
    require_flatbuffers,
    sha256,
    weight_name,
)
from ._version import versions
from .data import ArrayAdapter, DataAdapter

if TYPE_CHECKING:
    from ._model import Model


# ---------------------------------------------------------------------------- inputs


class InputSpec(NamedTuple):
    """The structure of a model's inputs: `x`'s tree and each leaf's shape and dtype
    without the batch dimension. Hashable, as a static field must be."""

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype[Any], ...]

    def abstract(self, batch: Any) -> Any:
        """`x` as `jax.ShapeDtypeStruct`s with batch dimension `batch` in front."""
        leaves = [
            jax.ShapeDtypeStruct((batch, *shape), dtype)
            for shape, dtype in zip(self.shapes, self.dtypes, strict=True)
        ]
        return jax.tree.unflatten(self.treedef, leaves)


def input_spec(x: Any) -> InputSpec | None:
    """The `InputSpec` of a batch `x`, or None when `x` holds no batched arrays."""
    leaves, treedef = jax.tree.flatten(x)
    if not leaves or not all(np.ndim(leaf) >= 1 for leaf in leaves):
        return None
    return InputSpec(
        treedef,
        tuple(tuple(int(d) for d in np.shape(leaf)[1:]) for leaf in leaves),
        tuple(jax.dtypes.canonicalize_dtype(np.result_type(leaf)) for leaf in leaves),
    )


def remember_inputs(model: Model, data: DataAdapter) -> None:
    """Store the structure of `data`'s inputs on `model`, unless it knows one already
    (the structure it was built with stays)."""
    if model._input_spec is not None:
        return
    # An array source's first batch would cost a shuffle of all the data.
    x = data.x if isinstance(data, ArrayAdapter) else data.first_batch()[0]
    spec = input_spec(x)
    if spec is not None:
        object.__setattr__(model, "_input_spec", spec)


# ---------------------------------------------------------------------------- arguments


def check_platforms(platforms: Any) -> tuple[str, ...] | None:
    """`platforms` as a tuple of jax.export platform names (None: the current one)."""
    if platforms is None:
        return None
    if isinstance(platforms, str):
        platforms = (platforms,)
    if not isinstance(platforms, Sequence) or not platforms:
        raise TypeError(
            "platforms must be None (the current platform) or a non-empty sequence of "
            f"platform names out of {PLATFORMS}, e.g. ('cpu', 'cuda'); got {platforms!r}."
        )
    bad = [p for p in platforms if not isinstance(p, str) or p not in PLATFORMS]
    if bad:
        hint = " ('gpu' is 'cuda' or 'rocm' here)" if "gpu" in bad else ""
        raise ValueError(
            f"platforms has {bad!r}, which jax.export cannot lower for{hint}; use names out "
            f"of {PLATFORMS}."
        )
    if len(set(platforms)) != len(platforms):
        raise ValueError(f"platforms lists a platform twice: {list(platforms)}.")
    return tuple(platforms)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _not_an_export(directory: Path) -> str | None:
    """Why `directory` (a real directory) is not one of our exports, or None: its
    manifest checks, and it holds nothing but the regular files the manifest lists."""
    names = sorted(os.listdir(directory))
    if MANIFEST not in names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return f"it holds {shown} and no {MANIFEST}"
    try:
        manifest = read_manifest(directory)
    except ExportError as error:
        return str(error)
    listed = {MANIFEST, manifest["function"]["file"], manifest["weights"]["file"]}
    for name in names:
        st = _lstat(directory / name)
        if name not in listed:
            return f"it holds {name}, which is not part of an export"
        if st is not None and not stat.S_ISREG(st.st_mode):
            return f"its {name} is {_kind(st.st_mode)}, not a regular file"
    return None


def _in_the_way(path: Path, *, staging: bool = False) -> str | None:
    """Why an export may not remove what is at `path`, or None: nothing is there, an
    empty directory, one of our exports, or (`staging`) an export's unfinished files."""
    st = _lstat(path)
    if st is None:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return f"it is {_kind(st.st_mode)}, not a directory"
    names = os.listdir(path)
    mark = _lstat(path / STAGING_MARK) if staging else None
    if not names or (mark is not None and stat.S_ISREG(mark.st_mode)):
        return None
    return _not_an_export(path)


def check_target(path: str | os.PathLike[str]) -> Path:
    """The directory to export to (links in `path` resolved), refused before any work
    unless it is new, empty or an earlier export, which is replaced; the siblings an
    export writes through must be absent or an export's own."""
    try:
        target = Path(path).resolve()
    except (RuntimeError, OSError) as error:  # a link loop
        raise ExportError(f"{os.fspath(path)} cannot be resolved ({error}).") from None
    problem = _in_the_way(target)
    if problem is not None:
        raise ExportError(
            f"{target} is not an eqx_elegy export ({problem}); refusing to replace it. "
            "Nothing was written; pass a new directory path, or an empty one."
        )
    for role in ("exporting", "previous"):
        sibling = _sibling(target, role)
        problem = _in_the_way(sibling, staging=role == "exporting")
        if problem is not None:
            raise ExportError(
                f"{sibling} is in the way of the export to {target} ({problem}); an export "
                "writes through that name, so it refuses to remove it. Nothing was written; "
                "move it away."
            )
    return target


def _spec_or_raise(model: Model) -> InputSpec:
    spec = model._input_spec
    if spec is None:
        raise ExportError(
            f"{type(model).__name__}.export needs the structure of the model's inputs, which "
            "it learns from the first data it sees: call model.init(x), fit, evaluate or "
            "predict with a batch of inputs first."
        )
    return spec


def _host_states(model: Model) -> Any:
    states = model.states
    deleted = [
        name
        for name, leaf in zip(_state_paths(states), jax.tree.leaves(states), strict=True)
        if isinstance(leaf, jax.Array) and leaf.is_deleted()
    ]
    if deleted:
        raise ExportError(
            f"model.states holds arrays whose buffers were donated to a compiled step (first: "
            f"{deleted[0]}); this happens when a fit is stopped inside a step. Nothing was "
            "exported."
        )
    return gather_to_host(states) if jax.process_count() > 1 else states


# ---------------------------------------------------------------------------- the weights


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


class _Weight(NamedTuple):
    """A leaf of the states as it is stored (`value`, in a dtype `.npz` holds) and the
    function that turns the stored array back into the leaf inside the exported call."""

    value: np.ndarray
    decode: Callable[[Any], Any]


def _weight(leaf: Any) -> _Weight:
    if _is_key(leaf):
        impl = jax.random.key_impl(leaf)
        return _Weight(
            np.asarray(jax.random.key_data(leaf)),
            lambda data: jax.random.wrap_key_data(data, impl=impl),
        )
    value = np.asarray(leaf)
    if value.dtype.kind == "V":  # bfloat16, float8, ...: numpy's .npy has no such dtype
        dtype = value.dtype
        carrier = np.dtype(f"uint{8 * dtype.itemsize}")
        return _Weight(value.view(carrier), lambda bits: jax.lax.bitcast_convert_type(bits, dtype))
    return _Weight(value, lambda array: array)


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray | np.generic)


def _needed_inputs(jaxpr: Any, needed_outputs: Sequence[bool]) -> list[bool]:
    """Which inputs of `jaxpr` its needed outputs depend on: a backward pass over its
    equations, looking inside calls (a `jit` inside the step, e.g. a user's
    `eqx.filter_jit`) so that the states a call receives but never reads are not counted."""
    needed: set[Any] = {
        v for v, n in zip(jaxpr.outvars, needed_outputs, strict=True) if n and _is_var(v)
    }
    for eqn in reversed(jaxpr.eqns):
        wanted = [v in needed for v in eqn.outvars]
        if not any(wanted) and not eqn.effects:
            continue
        inner = _call_jaxpr(eqn)
        flags = (
            _needed_inputs(inner, wanted)
            if inner is not None and not eqn.effects
            else [True] * len(eqn.invars)
        )
        needed.update(v for v, f in zip(eqn.invars, flags, strict=True) if f and _is_var(v))
    return [v in needed for v in jaxpr.invars]


def _is_var(v: Any) -> bool:
    return isinstance(v, jex.Var) and not isinstance(v, jex.Literal)


def _call_jaxpr(eqn: Any) -> Any:
    """The jaxpr an equation calls with its own inputs and outputs (a `jit`, a remat),
    or None."""
    inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    inner = getattr(inner, "jaxpr", inner)
    if (
        inner is None
        or not hasattr(inner, "eqns")
        or inner.constvars
        or len(inner.invars) != len(eqn.invars)
        or len(inner.outvars) != len(eqn.outvars)
    ):
        return None
    return inner


def _callbacks(jaxpr: Any) -> list[str]:
    """The names of the host-callback primitives in `jaxpr` and the jaxprs inside it."""
    found = [
        eqn.primitive.name
        for eqn in jaxpr.eqns
        if "callback" in eqn.primitive.name or eqn.primitive.name == "debug_print"
    ]
    for sub in jex.subjaxprs(jaxpr):
        found += _callbacks(sub)
    return found


# ---------------------------------------------------------------------------- export


def _prediction(model: Model) -> Callable[[Any, Any], Any]:
    """`(states, x) -> y_pred`: the model's `pred_step` as `predict` runs it (its first
    batch's random keys), without a distribution strategy."""
    plain = model
    if model.strategy is not None:
        plain = eqx.tree_at(lambda m: m.strategy, model, None, is_leaf=lambda x: x is None)
    pred = plain.jit_step().pred

    def predict(states: Any, x: Any) -> Any:
        y_pred, _ = pred(states, x, jnp.zeros((), jnp.int32))
        return y_pred

    return predict


def _failed(owner: str, error: Exception, platforms: Sequence[str] | None) -> ExportError:
    reason = f"{type(error).__name__}: {error}"
    hint = ""
    if isinstance(error, jex.InconclusiveDimensionOperation | jax.errors.ConcretizationTypeError):
        hint = (
            "\nThe exported function takes any batch size, so the step must not use the "
            "batch size or the data as Python values (int(x.shape[0]), `if` on a shape, "
            "shapes that depend on the data such as jnp.nonzero without size=): use "
            "x.shape[0] in jnp operations, -1 in reshape, or fixed sizes."
        )
    elif isinstance(error, NotImplementedError) and platforms is not None:
        return ExportError(
            f"{owner}.pred_step cannot be lowered for platforms {tuple(platforms)}: {reason}. "
            "Export for the platforms it supports (e.g. platforms=('cpu',))."
        )
    return ExportError(f"{owner}.pred_step cannot be exported: {reason}{hint}")


def export(
    model: Model, path: str | os.PathLike[str], platforms: Sequence[str] | str | None = None
) -> None:
    """`Model.export`: write the prediction of `model`, its weights and a manifest to
    directory `path` (see the module docstring and `_serving.py`)."""
    chosen = check_platforms(platforms)
    require_flatbuffers("Model.export")
    target = check_target(path)
    spec = _spec_or_raise(model)
    owner = type(model).__name__
    states = _host_states(model)

    leaves, treedef = jax.tree.flatten(states)
    arrays = [i for i, leaf in enumerate(leaves) if _is_array(leaf)]
    weights = [_weight(leaves[i]) for i in arrays]
    predict = _prediction(model)

    def run(stored: Sequence[Any], indices: Sequence[int], x: Any) -> Any:
        """The prediction from the stored forms of the leaves `indices`; every other
        array leaf is zeros (never read: it was found unused)."""
        given = dict(zip(indices, stored, strict=True))
        full = list(leaves)
        for k, i in enumerate(arrays):
            full[i] = (
                weights[k].decode(given[k])
                if k in given
                else jnp.zeros(np.shape(leaves[i]), leaves[i].dtype)
            )
        return predict(jax.tree.unflatten(treedef, full), x)

    (batch,) = jax_export.symbolic_shape(BATCH)
    x = spec.abstract(batch)
    everything = list(range(len(arrays)))
    try:
        traced = jax.make_jaxpr(lambda stored, x: run(stored, everything, x))(
            [w.value for w in weights], x
        )
    except Exception as error:
        raise _failed(owner, error, chosen) from error
    callbacks = sorted(set(_callbacks(traced.jaxpr)))
    if callbacks:
        raise ExportError(
            f"{owner}.pred_step cannot be exported: it calls back into Python "
            f"({', '.join(callbacks)}: jax.pure_callback, io_callback or jax.debug.print), and "
            "an exported function runs without Python. Remove the callback from the prediction."
        )
    flags = _needed_inputs(traced.jaxpr, [True] * len(traced.jaxpr.outvars))
    used = [k for k in everything if flags[k]]

    def served(stored: dict[str, Any], x: Any) -> Any:
        return run([stored[weight_name(j)] for j in range(len(used))], used, x)

    stored = {weight_name(j): weights[k].value for j, k in enumerate(used)}
    abstract = {name: jax.ShapeDtypeStruct(v.shape, v.dtype) for name, v in stored.items()}
    try:
        exported = jax_export.export(jax.jit(served), platforms=chosen)(abstract, x)
    except Exception as error:
        raise _failed(owner, error, chosen) from error
    try:
        blob = exported.serialize()
    except ValueError as error:  # a custom pytree node in x or y_pred
        raise ExportError(
            f"{owner}.pred_step cannot be exported: {error}. Inputs and predictions must be "
            "arrays, or dicts, lists and tuples of arrays."
        ) from error
    if jax.process_index() != 0:
        return
    paths = _state_paths(states)
    table = [
        {
            "name": name,
            "path": paths[arrays[k]],
            "shape": list(value.shape),
            "dtype": value.dtype.name,
            "model_dtype": str(leaves[arrays[k]].dtype),
        }
        for (name, value), k in zip(stored.items(), used, strict=True)
    ]
    _write(target, blob, stored, _manifest(model, exported, table))


def _state_paths(states: Any) -> list[str]:
    """`states.net_params.layers[0].weight`-style names of the leaves of `states`."""
    return [
        "states" + re.sub(r"^\._data\['([^']*)'\]", r".\1", jax.tree_util.keystr(path))
        for path, _ in jax.tree_util.tree_leaves_with_path(states)
    ]


def _leaf_table(avals: Sequence[Any], treedef: Any, prefix: str) -> list[dict[str, Any]]:
    dummy = jax.tree.unflatten(treedef, [0] * treedef.num_leaves)
    keys = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(dummy)]
    return [
        {
            "path": f"{prefix}{key}",
            "shape": describe_shape(a.shape),
            "dtype": np.dtype(a.dtype).name,
        }
        for key, a in zip(keys, avals, strict=True)
    ]


def _manifest(model: Model, exported: Any, table: list[dict[str, Any]]) -> dict[str, Any]:
    x_tree = exported.in_tree.children()[0].children()[1]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": versions(),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "step": "pred_step",
        "platforms": list(exported.platforms),
        "batch_dimension": BATCH,
        "calling_convention_version": exported.calling_convention_version,
        "function": {"file": FUNCTION_FILE, "sha256": ""},
        "weights": {"file": WEIGHTS_FILE, "sha256": "", "arrays": table},
        "inputs": _leaf_table(exported.in_avals[len(table) :], x_tree, "x"),
        "outputs": _leaf_table(exported.out_avals, exported.out_tree, "y_pred"),
    }


def _sibling(target: Path, role: str) -> Path:
    return target.with_name(f".{target.name}.{role}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(target: Path, blob: bytearray, stored: dict[str, np.ndarray], manifest: Any) -> None:
    """Write the export into a sibling directory, then rename it into place (the earlier
    export set aside under another sibling for the instant between the two renames,
    where `load_exported` finds it), so that `target` never holds half an export. The
    siblings were checked to be absent or ours (`check_target`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, previous = _sibling(target, "exporting"), _sibling(target, "previous")
    if _lstat(tmp) is not None:
        shutil.rmtree(tmp)  # left by an export that crashed while writing
    tmp.mkdir()
    (tmp / STAGING_MARK).touch()
    (tmp / FUNCTION_FILE).write_bytes(blob)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **stored)
    (tmp / WEIGHTS_FILE).write_bytes(buffer.getvalue())
    for key, name, data in (
        ("function", FUNCTION_FILE, bytes(blob)),
        ("weights", WEIGHTS_FILE, buffer.getvalue()),
    ):
        _fsync(tmp / name)
        manifest[key]["sha256"] = sha256(data)
    with open(tmp / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    (tmp / STAGING_MARK).unlink()  # a complete export now, known by its manifest
    _fsync(tmp)
    if _lstat(target) is not None:
        if _lstat(previous) is not None:
            shutil.rmtree(previous)
        os.replace(target, previous)
    os.replace(tmp, target)
    _fsync(target.parent)
    if _lstat(previous) is not None:
        shutil.rmtree(previous)
