"""`Model.save` and `Model.load`: a directory of states that loads without running code.

Layout of a save at `path/`:

- `manifest.json`: format and versions, the model's class, and for each key of the states
  its leaf file, the file's SHA-256, and its leaves as paths with shapes and dtypes;
- one leaf file per key of the states, written by `eqx.tree_serialise_leaves` as a
  sequence of `.npy` records (never pickled; read back with `allow_pickle=False`).

Loading needs a model built the same way: its current states are the template that gives
the structure, so nothing about classes or code is read from the files. A save is written
into a sibling directory and renamed into place, so at any instant one complete save is
on disk under `path` or, between two renames, under the sibling `.<name>.previous`, which
`load` falls back to.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._distributed import gather_to_host
from ._engine import engine
from ._summary import path_str

if TYPE_CHECKING:
    from ._model import Model

FORMAT = "eqx_elegy.checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHT_KEYS = ("net_params", "net_states")
_SCALARS = (bool, int, float, complex)
_SAVED = (jax.Array, np.ndarray, np.generic, *_SCALARS)


class CheckpointError(ValueError):
    """A save cannot be read, or does not fit the model it is loaded into."""


# ---------------------------------------------------------------------------- leaves


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_saved(x: Any) -> bool:
    """Leaves that are written to disk: arrays and Python numbers. Anything else (a
    string, a function) is part of the structure and comes from the template."""
    return isinstance(x, _SAVED)


def _describe(x: Any) -> tuple[list[int], str]:
    """`(shape, dtype)` of a saved leaf as the manifest writes them."""
    if isinstance(x, _SCALARS):
        return [], type(x).__name__
    if _is_key(x):
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
    if _is_key(x):
        np.save(f, np.asarray(jax.random.key_data(x)), allow_pickle=False)
    elif _is_saved(x):
        np.save(f, np.asarray(x), allow_pickle=False)


def _reader(source: str) -> Any:
    """The `filter_spec` that reads one leaf back, checked against the template leaf."""

    def read(f: BinaryIO, like: Any) -> Any:
        if not _is_saved(like):
            return like
        data = np.load(f, allow_pickle=False)
        expected: Any = like  # only its shape and dtype are read
        if _is_key(like):
            expected = jax.eval_shape(jax.random.key_data, like)
        elif isinstance(like, _SCALARS):
            expected = np.asarray(like)
        want = np.dtype(expected.dtype)
        if data.dtype.kind == "V" and data.dtype.itemsize == want.itemsize:
            data = data.view(want)  # e.g. bfloat16, which .npy stores as raw bytes
        if data.shape != tuple(expected.shape) or data.dtype != want:
            raise CheckpointError(
                f"{source} holds a {data.dtype.name}{list(data.shape)} leaf where the manifest "
                f"and the model have {want.name}{list(expected.shape)}; the file is corrupt."
            )
        if isinstance(like, _SCALARS):
            return type(like)(data.item())
        if isinstance(like, np.ndarray | np.generic):
            return data if isinstance(like, np.ndarray) else like.dtype.type(data.item())
        if _is_key(like):
            return jax.random.wrap_key_data(jnp.asarray(data), impl=jax.random.key_impl(like))
        return jax.device_put(data, like.sharding)

    return read


# ---------------------------------------------------------------------------- files


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_name(index: int, key: str) -> str:
    return f"{index:02d}_{re.sub(r'[^A-Za-z0-9_]', '_', key)[:40]}.eqx"


def _versions() -> dict[str, str]:
    import equinox
    import optax

    from . import __version__

    return {
        "eqx_elegy": __version__,
        "jax": jax.__version__,
        "equinox": equinox.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
    }


def _is_save_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file()


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

    In a multi-process run every process calls it: states sharded across processes are
    gathered (a collective), and process 0 alone writes, so that processes sharing a
    filesystem never write the same files."""
    target = Path(path)
    if target.exists() and not (
        target.is_dir() and (_is_save_dir(target) or not any(target.iterdir()))
    ):
        raise CheckpointError(
            f"{target} exists and is not an eqx_elegy save (no {MANIFEST}); refusing to "
            "replace it. Pass a new directory path."
        )
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
        if jax.process_index() != 0:
            return
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": _versions(),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "weights_only": weights_only,
        "metadata": dict(metadata or {}),
        "entries": [],
    }
    json.dumps(manifest["metadata"])  # fail now, before anything is written

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, previous = _sibling(target, "saving"), _sibling(target, "previous")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a save that crashed while writing
    tmp.mkdir()
    for index, key in enumerate(keys):
        value = states[key]
        entry: dict[str, Any] = {"key": key, "file": None, "sha256": None, "leaves": []}
        if value is not None:
            name = _file_name(index, key)
            eqx.tree_serialise_leaves(tmp / name, value, filter_spec=_write_leaf)
            _fsync(tmp / name)
            entry.update(file=name, sha256=_sha256(tmp / name), leaves=_leaf_table(value, key))
        manifest["entries"].append(entry)
    with open(tmp / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _fsync(tmp)

    if target.exists():
        if previous.exists():
            shutil.rmtree(previous)
        _rename(target, previous)
    _rename(tmp, target)
    _fsync(target.parent)
    if previous.exists():
        shutil.rmtree(previous)


# ---------------------------------------------------------------------------- loading


def _resolve(path: str | os.PathLike[str]) -> Path:
    """The directory holding the save at `path`: `path` itself or, after a crash
    between the two renames of a save, the previous save set aside next to it."""
    target = Path(path)
    if _is_save_dir(target):
        return target
    previous = _sibling(target, "previous")
    if not target.exists() and _is_save_dir(previous):
        return previous
    if target.is_dir():
        raise CheckpointError(f"{target} is not an eqx_elegy save: it has no {MANIFEST}.")
    raise CheckpointError(f"No save found at {target}.")


def _malformed(manifest_path: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"{manifest_path} is not a valid eqx_elegy manifest: {problem}. The save is "
        "damaged; load an older one or save again."
    )


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked manifest of the save at `path` (see the module docstring)."""
    manifest_path = _resolve(path) / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _malformed(manifest_path, f"not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _malformed(manifest_path, f"its 'format' is not {FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise _malformed(
            manifest_path,
            f"format_version {version!r} is not one this eqx_elegy reads (<= {FORMAT_VERSION})",
        )
    entries = manifest.get("entries")
    if not isinstance(entries, list) or not isinstance(manifest.get("weights_only"), bool):
        raise _malformed(manifest_path, "'entries' or 'weights_only' is missing")
    for i, entry in enumerate(entries):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("key"), str)
            and isinstance(entry.get("leaves"), list)
            and (entry.get("file") is None or isinstance(entry.get("sha256"), str))
        )
        name = entry.get("file") if isinstance(entry, dict) else None
        if name is not None and (
            not isinstance(name, str) or Path(name).name != name or name.startswith(".")
        ):
            ok = False  # a leaf file must be a plain name inside the save's directory
        leaves = entry.get("leaves", []) if ok else []
        for leaf in leaves:
            ok = ok and (
                isinstance(leaf, dict)
                and isinstance(leaf.get("path"), str)
                and isinstance(leaf.get("dtype"), str)
                and isinstance(leaf.get("shape"), list)
                and all(isinstance(d, int) for d in leaf["shape"])
            )
        if not ok:
            raise _malformed(manifest_path, f"entry {i} is not {{key, file, sha256, leaves}}")
    return manifest


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


def load(model: Model, path: str | os.PathLike[str], *, weights_only: bool = False) -> None:
    """Replace `model.states` (or only its weights) with the save at `path`; on any
    mismatch or damage, raise `CheckpointError` and leave the model as it was."""
    directory = _resolve(path)
    manifest = read_manifest(directory)
    entries = {entry["key"]: entry for entry in manifest["entries"]}
    if manifest["weights_only"] and not weights_only:
        raise CheckpointError(
            f"{directory} holds only the weights ({', '.join(WEIGHT_KEYS)}); load it with "
            "weights_only=True."
        )
    states = model.states
    keys = [k for k in WEIGHT_KEYS if k in states] if weights_only else list(states)
    problems = [f"{k}: in the save, not in the model" for k in entries if k not in keys]
    if weights_only:
        problems = []
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
            " The model has no net_params yet: call model.init(x, y) first so that its "
            "structure is known."
            if states.net_params is None
            else " Build the model the same way as the one that was saved."
        )
        raise CheckpointError(
            f"The save at {directory} does not fit {type(model).__name__}'s states "
            f"({len(problems)} differences):\n  {shown}{more}\n{hint.strip()}"
        )

    loaded: dict[str, Any] = {}
    for key in keys:
        entry = entries[key]
        if entry["file"] is None:
            continue
        file = directory / entry["file"]
        if not file.is_file():
            raise CheckpointError(f"{file} is missing; the save at {directory} is incomplete.")
        if _sha256(file) != entry["sha256"]:
            raise CheckpointError(
                f"{file} does not match the checksum in its manifest: the file is corrupt or "
                "was changed after saving. Load an older save."
            )
        try:
            loaded[key] = eqx.tree_deserialise_leaves(
                file, states[key], filter_spec=_reader(str(file))
            )
        except CheckpointError:
            raise
        except Exception as error:  # a truncated or garbled .npy record
            raise CheckpointError(f"{file} could not be read ({error}); it is corrupt.") from None
    if weights_only:
        engine(model).commit(states.update(**loaded))
    else:
        engine(model).commit(states.update(**loaded), initialized=True)
