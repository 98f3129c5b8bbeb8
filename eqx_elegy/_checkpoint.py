"""`Model.save` and `Model.load`: a directory of states that loads without running code.

Layout of a save at `path/` (see `_manifest` for the manifest's check):

- `manifest.json`: format and versions, the model's class, and for each key of the states
  its leaf file, the file's SHA-256, and its leaves as paths with shapes and dtypes;
- one leaf file per key of the states, written by `eqx.tree_serialise_leaves` as a
  sequence of `.npy` records (never pickled; read back with `allow_pickle=False`).

Loading needs a model built the same way: its current states are the template that gives
the structure, so nothing about classes or code is read from the files. A save is written
into a sibling directory and renamed into place, so at any instant one complete save is
on disk under `path` or, between two renames, under the sibling `.<name>.previous`, which
`load` falls back to.

Nothing outside the save is touched: `save` replaces a directory only if it is one of
our saves (a valid manifest, and no file the manifest does not list) or empty, and
checks this, and that the staging and set-aside siblings are ours, before it writes
anything; `load` reads only regular files that are plain children of the save's
directory (see `_savedir`), and every damaged or hostile input is a `CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _manifest
from ._distributed import gather_to_host
from ._engine import engine
from ._manifest import FORMAT, FORMAT_VERSION, MANIFEST
from ._savedir import CheckpointError as CheckpointError
from ._savedir import (
    child_stat,
    kind,
    lstat,
    open_dir,
    open_regular,
    read_json,
    resolve,
)
from ._states import is_prng_key
from ._strategy import strategy_of
from ._summary import path_str
from ._version import versions

if TYPE_CHECKING:
    from ._model import Model

WEIGHT_KEYS = ("net_params", "net_states")
_SCALARS = (bool, int, float, complex)
_SAVED = (jax.Array, np.ndarray, np.generic, *_SCALARS)


# ---------------------------------------------------------------------------- leaves


def _is_saved(x: Any) -> bool:
    """Leaves that are written to disk: arrays and Python numbers. Anything else (a
    string, a function) is part of the structure and comes from the template."""
    return isinstance(x, _SAVED)


def _describe(x: Any) -> tuple[list[int], str]:
    """`(shape, dtype)` of a saved leaf as the manifest writes them."""
    if isinstance(x, _SCALARS):
        return [], type(x).__name__
    if is_prng_key(x):
        return list(x.shape), str(x.dtype)
    return list(np.shape(x)), np.dtype(x.dtype).name


def _leaf_table(value: Any, key: str) -> list[dict[str, Any]]:
    pairs, _ = jax.tree_util.tree_flatten_with_path(value)
    table = []
    for path, leaf in pairs:
        if _is_saved(leaf):
            shape, dtype = _describe(leaf)
            table.append(
                {"path": _join(key, path_str(tuple(path))), "shape": shape, "dtype": dtype}
            )
    return table


def _join(key: str, path: str) -> str:
    return key if not path else f"{key}{path}" if path.startswith("[") else f"{key}.{path}"


def _write_leaf(f: BinaryIO, x: Any) -> None:
    if is_prng_key(x):
        np.save(f, np.asarray(jax.random.key_data(x)), allow_pickle=False)
    elif _is_saved(x):
        np.save(f, np.asarray(x), allow_pickle=False)


def _expected(like: Any) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a template leaf is stored with."""
    if is_prng_key(like):
        spec = jax.eval_shape(jax.random.key_data, like)
        return tuple(spec.shape), np.dtype(spec.dtype)
    if isinstance(like, _SCALARS):
        return (), np.asarray(like).dtype
    return tuple(like.shape), np.dtype(like.dtype)


def _read_record(f: BinaryIO, like: Any, source: Path) -> np.ndarray:
    """One `.npy` record, its header checked against the template leaf before its data
    is read, so that a record claiming another shape or an object dtype is refused
    without reading (or allocating) anything more."""
    shape, want = _expected(like)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        found_shape, fortran, found = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        found_shape, fortran, found = np.lib.format.read_array_header_2_0(f)
    else:
        raise CheckpointError(f"{source} holds a .npy record of version {version}.")
    if found.kind == "V" and found.itemsize == want.itemsize and not found.names:
        found = want  # e.g. bfloat16, which .npy stores as raw bytes
    if tuple(found_shape) != shape or found != want:
        raise CheckpointError(
            f"{source} holds a {found.name}{list(found_shape)} leaf where the manifest and "
            f"the model have {want.name}{list(shape)}; the file is corrupt."
        )
    size = want.itemsize * int(np.prod(shape, dtype=np.int64))
    data = f.read(size)
    if len(data) != size:
        raise CheckpointError(f"{source} ends inside a leaf; the file is truncated.")
    return np.frombuffer(data, want).reshape(shape, order="F" if fortran else "C").copy()


def _read_leaf(f: BinaryIO, like: Any, source: Path) -> Any:
    """The next leaf in leaf file `f`, read back as the template leaf `like` is (a
    non-array leaf is part of the structure and comes from the template)."""
    if not _is_saved(like):
        return like
    data = _read_record(f, like, source)
    if isinstance(like, _SCALARS):
        return type(like)(data.item())
    if isinstance(like, np.ndarray | np.generic):
        return data if isinstance(like, np.ndarray) else like.dtype.type(data.item())
    if is_prng_key(like):
        return jax.random.wrap_key_data(jnp.asarray(data), impl=jax.random.key_impl(like))
    return jax.device_put(data, like.sharding)


# ---------------------------------------------------------------------------- files


_STAGING_MARK = ".eqx_elegy-saving"  # in a staging directory while it is being written


def _sibling(target: Path, role: str) -> Path:
    return target.with_name(f".{target.name}.{role}")


def _rename(src: Path, dst: Path) -> None:
    """One atomic rename (a separate function so tests can stop a save between renames)."""
    os.replace(src, dst)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(f: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _file_name(index: int, key: str) -> str:
    return f"{index:02d}_{re.sub(r'[^A-Za-z0-9_]', '_', key)[:40]}.eqx"


class _NotOurs(Exception):
    """Why a directory is not one of our saves (internal: turned into a message)."""


def _not_ours(problem: str) -> _NotOurs:
    return _NotOurs(f"its {MANIFEST} is not an eqx_elegy manifest: {problem}")


def not_a_save(directory: Path) -> str | None:
    """Why `directory` (a real directory) is not one of our saves, or None if it is:
    its manifest is a regular file that passes the manifest's check, and it holds
    nothing but that manifest and the regular files the manifest lists."""
    with open_dir(directory) as fd:
        names = sorted(os.listdir(fd))
        if MANIFEST not in names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            return f"it holds {shown} and no {MANIFEST}"
        try:
            raw = read_json(fd, MANIFEST, lambda problem: _NotOurs(f"its {MANIFEST} {problem}"))
            manifest = _manifest.check(raw, _not_ours)
        except _NotOurs as reason:
            return str(reason)
        listed = {MANIFEST, *(e["file"] for e in manifest["entries"] if e["file"] is not None)}
        for name in names:
            if name not in listed:
                return f"it holds {name}, which is not part of the save"
            st = child_stat(fd, name)
            if st is not None and not stat.S_ISREG(st.st_mode):
                return f"its {name} is {kind(st.st_mode)}, not a regular file"
    return None


def _in_the_way(path: Path, *, staging: bool = False) -> str | None:
    """Why a save may not remove what is at `path`, or None: nothing is there, or an
    empty directory, or one of our saves, or (`staging`) a staging directory of ours."""
    st = lstat(path)
    if st is None:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return f"it is {kind(st.st_mode)}, not a directory"
    with open_dir(path) as fd:
        names = os.listdir(fd)
        mark = child_stat(fd, _STAGING_MARK) if staging else None
    if not names or (mark is not None and stat.S_ISREG(mark.st_mode)):
        return None
    return not_a_save(path)


def _check_target(target: Path) -> None:
    """Refuse, before anything is written, a save that would remove what is not ours:
    at the target itself or at the siblings a save uses."""
    problem = _in_the_way(target)
    if problem is not None:
        if problem.startswith("it is "):
            raise CheckpointError(
                f"{target} {problem.removeprefix('it ')}; refusing to replace it. Nothing "
                "was written; pass a new directory path, or an empty one."
            )
        raise CheckpointError(
            f"{target} is not an eqx_elegy save ({problem}); refusing to replace it. Nothing "
            "was written; pass a new directory path, or an empty one."
        )
    for role in ("saving", "previous"):
        sibling = _sibling(target, role)
        problem = _in_the_way(sibling, staging=role == "saving")
        if problem is not None:
            raise CheckpointError(
                f"{sibling} is in the way of the save at {target} ({problem}); a save uses "
                "that name for its own files, so it is refusing to remove it. Nothing was "
                "written; move it away."
            )


def remove_save(path: Path) -> str | None:
    """Remove the save at `path` if it is one of ours (a directory, not a link); return
    why it was left in place otherwise (None when it was removed or was not there)."""
    problem = _in_the_way(path)
    if problem is not None:
        return problem
    if lstat(path) is not None:
        shutil.rmtree(path)  # the fd-based rmtree, which never follows a link out
    return None


def save(
    model: Model,
    path: str | os.PathLike[str],
    *,
    weights_only: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write `model.states` (or only its weights) to directory `path`, replacing an
    earlier save there atomically. `metadata` (JSON-serialisable, e.g. `{"epoch": 3}`)
    is stored in the manifest as it is.

    `path` may be a link (it is resolved first); what is there must be nothing, an empty
    directory or one of our saves, else `CheckpointError` and nothing is written.

    In a multi-process run every process calls it: states sharded across processes are
    gathered (a collective), and process 0 alone writes, so that processes sharing a
    filesystem never write the same files."""
    extra = dict(metadata or {})
    json.dumps(extra)  # fail now, before anything is written
    target = resolve(path)
    _check_target(target)
    states = model.states
    keys = [k for k in WEIGHT_KEYS if k in states] if weights_only else list(states)
    deleted = [
        _join(key, path_str(tuple(path)))
        for key in keys
        for path, leaf in jax.tree_util.tree_leaves_with_path(states[key])
        if isinstance(leaf, jax.Array) and leaf.is_deleted()
    ]
    if deleted:
        raise CheckpointError(
            f"model.states holds arrays whose buffers were donated to a compiled step (first: "
            f"{deleted[0]}); this happens when a fit is stopped inside a step (e.g. a second "
            "Ctrl-C). Nothing was saved; the previous save is intact."
        )
    if jax.process_count() > 1:
        states = gather_to_host(states)
        if not strategy_of(model).is_main_process():
            return
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": versions(),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "weights_only": weights_only,
        "metadata": extra,
        "entries": [],
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "saving")
    if lstat(tmp) is not None:
        shutil.rmtree(tmp)  # left by a save that crashed while writing (checked as ours)
    tmp.mkdir()
    (tmp / _STAGING_MARK).touch()
    for index, key in enumerate(keys):
        manifest["entries"].append(_write_entry(tmp, index, key, states[key]))
    with open(tmp / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    (tmp / _STAGING_MARK).unlink()  # a complete save now, recognised by its manifest
    _fsync(tmp)
    _swap_in(tmp, target)


def _write_entry(directory: Path, index: int, key: str, value: Any) -> dict[str, Any]:
    """Write one key of the states as a leaf file; its manifest entry."""
    if value is None:
        return {"key": key, "file": None, "sha256": None, "leaves": []}
    name = _file_name(index, key)
    eqx.tree_serialise_leaves(directory / name, value, filter_spec=_write_leaf)
    _fsync(directory / name)
    with open(directory / name, "rb") as f:
        digest = _sha256(f)
    return {"key": key, "file": name, "sha256": digest, "leaves": _leaf_table(value, key)}


def _swap_in(staged: Path, target: Path) -> None:
    """Move the complete save `staged` to `target`, the old save there set aside for the
    instant between the two renames (`load` falls back to it)."""
    previous = _sibling(target, "previous")
    if lstat(target) is not None:
        if lstat(previous) is not None:
            shutil.rmtree(previous)
        _rename(target, previous)
    _rename(staged, target)
    _fsync(target.parent)
    if lstat(previous) is not None:
        shutil.rmtree(previous)


# ---------------------------------------------------------------------------- loading


def _resolve(path: str | os.PathLike[str]) -> Path:
    """The directory holding the save at `path`: `path` itself or, after a crash
    between the two renames of a save, the previous save set aside next to it."""
    target = resolve(path)
    st = lstat(target)
    if st is None:
        previous = _sibling(target, "previous")
        seen = lstat(previous)
        if seen is not None and stat.S_ISDIR(seen.st_mode):
            return previous
        raise CheckpointError(f"No save found at {target}.")
    if not stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{target} is {kind(st.st_mode)}, not a save directory.")
    return target


def _read_manifest(fd: int, directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST

    def damaged(problem: str) -> CheckpointError:
        if problem == "is missing":
            return CheckpointError(f"{directory} is not an eqx_elegy save: it has no {MANIFEST}.")
        return CheckpointError(
            f"{path} {problem}; the save is damaged or not an eqx_elegy save: load an older "
            "one or save again."
        )

    return _manifest.check(read_json(fd, MANIFEST, damaged), _manifest.malformed(path))


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked manifest of the save at `path` (see `_manifest`)."""
    directory = _resolve(path)
    with open_dir(directory) as fd:
        return _read_manifest(fd, directory)


def _differences(expected: list[dict[str, Any]], found: list[dict[str, Any]]) -> list[str]:
    """Human-readable differences between the model's leaves and the save's, by path."""
    mine = {leaf["path"]: leaf for leaf in expected}
    theirs = {leaf["path"]: leaf for leaf in found}
    out = []
    for path in [*mine, *(p for p in theirs if p not in mine)]:
        a, b = mine.get(path), theirs.get(path)
        if b is None:
            out.append(f"{path}: in the model, missing from the save")
        elif a is None:
            out.append(f"{path}: in the save, not in the model")
        elif (a["shape"], a["dtype"]) != (b["shape"], b["dtype"]):
            out.append(
                f"{path}: the model has {a['dtype']}{a['shape']}, the save {b['dtype']}{b['shape']}"
            )
    return out


def _check_fits(
    model: Model, directory: Path, manifest: dict[str, Any], keys: list[str], weights_only: bool
) -> None:
    """Refuse a save whose structure (keys, leaf paths, shapes, dtypes) is not the
    model's, listing the differences."""
    states = model.states
    entries = {entry["key"]: entry for entry in manifest["entries"]}
    problems = []
    if not weights_only:
        problems = [f"{k}: in the save, not in the model" for k in entries if k not in keys]
    for key in keys:
        entry = entries.get(key)
        if entry is None:
            problems.append(f"{key}: in the model, missing from the save")
            continue
        if (states[key] is None) != (entry["file"] is None):
            have = "None" if states[key] is None else "set"
            problems.append(
                f"{key}: the model's is {have}, the save's is {'None' if entry['file'] is None else 'set'}"
            )
            continue
        problems.extend(_differences(_leaf_table(states[key], key), entry["leaves"]))
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        hint = (
            "The model has no net_params yet: call model.init(x, y) first so that its "
            "structure is known."
            if states.net_params is None
            else "Build the model the same way as the one that was saved."
        )
        raise CheckpointError(
            f"The save at {directory} does not fit {type(model).__name__}'s states "
            f"({len(problems)} differences):\n  {shown}{more}\n{hint}"
        )


def _load_entry(fd: int, directory: Path, entry: dict[str, Any], like: Any) -> Any:
    """The value of one key of the states from its leaf file: a regular file inside the
    save, whose checksum is the manifest's and which holds exactly the template's leaves."""
    file = directory / entry["file"]

    def damaged(problem: str) -> CheckpointError:
        return CheckpointError(
            f"{file} {problem}; the save at {directory} is damaged. Load an older save."
        )

    with open_regular(fd, entry["file"], damaged) as f:
        if _sha256(f) != entry["sha256"]:
            raise CheckpointError(
                f"{file} does not match the checksum in its manifest: the file is corrupt or "
                "was changed after saving. Load an older save."
            )
        f.seek(0)
        # The leaves in the order `eqx.tree_serialise_leaves` wrote them (flattening order).
        treedef: Any  # jax's PyTreeDef, which mypy cannot see into
        leaves, treedef = jax.tree_util.tree_flatten(like)
        try:
            value = treedef.unflatten([_read_leaf(f, leaf, file) for leaf in leaves])
        except CheckpointError:
            raise
        except Exception as error:  # a garbled .npy header
            raise CheckpointError(f"{file} could not be read ({error}); it is corrupt.") from None
        if f.read(1):
            raise CheckpointError(f"{file} has data after its last leaf; it is corrupt.")
    return value


def load(model: Model, path: str | os.PathLike[str], *, weights_only: bool = False) -> None:
    """Replace `model.states` (or only its weights) with the save at `path`; on any
    mismatch or damage, raise `CheckpointError` and leave the model as it was."""
    directory = _resolve(path)
    with open_dir(directory) as fd:
        manifest = _read_manifest(fd, directory)
        if manifest["weights_only"] and not weights_only:
            raise CheckpointError(
                f"{directory} holds only the weights ({', '.join(WEIGHT_KEYS)}); load it with "
                "weights_only=True."
            )
        states = model.states
        keys = [k for k in WEIGHT_KEYS if k in states] if weights_only else list(states)
        _check_fits(model, directory, manifest, keys, weights_only)
        entries = {entry["key"]: entry for entry in manifest["entries"]}
        loaded = {
            key: _load_entry(fd, directory, entries[key], states[key])
            for key in keys
            if entries[key]["file"] is not None
        }
    if weights_only:
        engine(model).commit(states.update(**loaded))
    else:
        engine(model).commit(states.update(**loaded), initialized=True)
