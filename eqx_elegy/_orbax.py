"""The orbax-checkpoint backend of `save` and `load`: per-process shards, no gathering.

A save at `path/` written with `backend="orbax"` holds

- `manifest.json`: the native format's manifest (class, versions, and every key's leaves
  with paths, shapes and dtypes) with `"backend": "orbax"` and format_version 2; its
  entries name the `orbax` directory instead of a leaf file, with no checksum;
- `orbax/`: an orbax-checkpoint `StandardCheckpointHandler` checkpoint of one flat tree,
  `{key: [leaf, ...]}` in the states' flattening order (PRNG keys as their key data).

Each process writes only the shards of its own devices (orbax and tensorstore do the
writing); a restore puts every array onto the sharding of the model's current leaf, so a
save from 4 devices under FSDP loads onto 1 device or a 2-device mesh. The structure is
checked against the manifest first, exactly as for the native format.

The save is staged in the sibling `.<name>.saving` and renamed into place like a native
save, so the same promise holds: a kill at any moment leaves the last completed save
loadable. With `asynchronous=True`, `save` returns once the arrays are copied off the
devices; a background thread waits for orbax's commit, writes the manifest and renames
the save into place. The next `save` or `load`, `wait_for_saves()`, the end of a fit with
a checkpointing callback, and the exit of the process wait for it; an error in the
background is raised by the next of these (at exit it is printed, and the exit status
becomes 1).

orbax-checkpoint is imported only here, only when this backend is used.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ORBAX_DIR = "orbax"


def ocp_module() -> Any:
    """The `orbax.checkpoint` module, or an error saying which extra installs it."""
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:
        raise ImportError(
            f"backend='orbax' needs orbax-checkpoint, which is not installed ({error}); "
            "install it with: pip install 'eqx_elegy[orbax]'"
        ) from error
    return ocp


# ---------------------------------------------------------------------------- leaves


def _to_saved(leaf: Any, is_key: Callable[[Any], bool]) -> Any:
    """A saved leaf as orbax writes it: a jax.Array stays (sharded, each process writes
    its shards), a PRNG key becomes its key data, numbers and numpy values an ndarray."""
    if is_key(leaf):
        return jax.random.key_data(leaf)
    if isinstance(leaf, jax.Array):
        return leaf
    return np.asarray(leaf)


def _abstract(like: Any, is_key: Callable[[Any], bool]) -> Any:
    """What orbax restores a template leaf as: a jax.Array onto the template's sharding
    (resharding from whatever layout it was saved with), anything else a numpy array.
    Every array gets a sharding: without one orbax would reuse the saved layout, which
    names the devices of the run that saved it ("Topology mismatch" in any other)."""
    if is_key(like):
        data = jax.random.key_data(like)
        return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=data.sharding)
    if isinstance(like, jax.Array):
        return jax.ShapeDtypeStruct(like.shape, like.dtype, sharding=like.sharding)
    value = np.asarray(like)
    return np.zeros(value.shape, value.dtype)  # a numpy template: restored as numpy


def _from_saved(data: Any, like: Any, is_key: Callable[[Any], bool]) -> Any:
    if is_key(like):
        return jax.random.wrap_key_data(jnp.asarray(data), impl=jax.random.key_impl(like))
    if isinstance(like, jax.Array):
        return data
    if isinstance(like, np.ndarray):
        return np.asarray(data)
    if isinstance(like, np.generic):
        return like.dtype.type(np.asarray(data).item())
    return type(like)(np.asarray(data).item())


# ---------------------------------------------------------------------------- saving


class _Pending:
    """A save whose files are still being written in the background."""

    def __init__(self, target: Path, finish: Callable[[], None]):
        self.target = target
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, args=(finish,), name=f"eqx_elegy save {target}", daemon=True
        )

    def _run(self, finish: Callable[[], None]) -> None:
        try:
            finish()
        except BaseException as error:  # surfaced by the next wait_for_saves()
            self.error = error


_pending: list[_Pending] = []
_saves = itertools.count()
_BARRIER_TIMEOUT_MS = 1_200_000  # orbax's own default for a save's barriers (20 minutes)
_lock = threading.Lock()
_exit_hook_installed = False


def wait_for_saves() -> None:
    """Wait for every asynchronous save of this process to be on disk; raise the error of
    the first that failed (each failure is raised once)."""
    with _lock:
        pending = list(_pending)
        _pending.clear()
    first: BaseException | None = None
    for save in pending:
        save.thread.join()
        if save.error is not None and first is None:
            first = save.error
    if first is not None:
        from ._savedir import CheckpointError

        raise CheckpointError(
            f"An asynchronous save failed in the background ({type(first).__name__}: "
            f"{first}); the last completed save is intact."
        ) from first


def _wait_at_exit() -> None:
    """Wait for the saves in flight when the interpreter shuts down; a failure is printed
    and the exit status becomes 1 (a lost checkpoint must not look like a clean exit)."""
    try:
        wait_for_saves()
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


def _install_exit_hook() -> None:
    # `atexit` would be too late: the interpreter first shuts down the thread pools of
    # `concurrent.futures` (which orbax-checkpoint writes with), through threading's own
    # exit hooks, which run in reverse order of registration; this one is registered
    # after orbax's pools exist, so it runs before they are shut down.
    register = getattr(threading, "_register_atexit", atexit.register)
    register(_wait_at_exit)


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    with open(directory / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def save(
    states: Any,
    keys: list[str],
    manifest: dict[str, Any],
    staging: Path,
    commit: Callable[[], None],
    *,
    is_key: Callable[[Any], bool],
    is_saved: Callable[[Any], bool],
    leaf_table: Callable[[Any, str], list[dict[str, Any]]],
    write_manifest: bool,
    asynchronous: bool,
    on_done: Callable[[], None] | None,
) -> None:
    """Write `states[keys]` with orbax into `staging/orbax` (every process its shards),
    then (process `write_manifest`) the manifest, then `commit()` (the renames); in the
    background when `asynchronous`."""
    ocp = ocp_module()
    tree: dict[str, list[Any]] = {}
    for key in keys:
        value = states[key]
        if value is None:
            manifest["entries"].append({"key": key, "file": None, "sha256": None, "leaves": []})
            continue
        leaves = [_to_saved(x, is_key) for x in jax.tree_util.tree_leaves(value) if is_saved(x)]
        tree[key] = leaves
        manifest["entries"].append(
            {"key": key, "file": ORBAX_DIR, "sha256": None, "leaves": leaf_table(value, key)}
        )
    checkpointer = ocp.AsyncCheckpointer(ocp.StandardCheckpointHandler())
    checkpointer.save(staging / ORBAX_DIR, args=ocp.args.StandardSave(tree))
    # Every process saves the same saves in the same order (a collective), so the n-th
    # save has the same barrier name on all of them.
    barrier = f"eqx_elegy_save_{next(_saves)}"

    def finish() -> None:
        try:
            checkpointer.wait_until_finished()
        finally:
            checkpointer.close()
        try:
            if write_manifest:
                _write_manifest(staging, manifest)
                commit()
                if on_done is not None:
                    on_done()
        finally:
            # Orbax's own barriers end before the manifest and the renames: without this
            # one, another process could return and read or save at `path` while process
            # 0 is still renaming (or switching a backup record). Process 0 arrives even
            # when it failed (its error is its own to raise), so that the others never
            # wait for it in vain.
            sync = ocp.multihost.get_barrier_sync_fn()
            sync(key=barrier, timeout_ms=_BARRIER_TIMEOUT_MS)

    if not asynchronous:
        finish()
        return
    global _exit_hook_installed
    pending = _Pending(staging, finish)
    with _lock:
        _pending.append(pending)
        if not _exit_hook_installed:
            _install_exit_hook()
            _exit_hook_installed = True
    pending.thread.start()


# ---------------------------------------------------------------------------- loading


def restore(
    directory: Path,
    states: Any,
    keys: list[str],
    *,
    is_key: Callable[[Any], bool],
    is_saved: Callable[[Any], bool],
) -> dict[str, Any]:
    """The values of `keys` from the orbax checkpoint in `directory`, each array put onto
    the sharding of the model's current leaf (the structure was checked already)."""
    from ._savedir import CheckpointError

    ocp = ocp_module()
    templates = {key: states[key] for key in keys if states[key] is not None}
    abstract = {
        key: [_abstract(x, is_key) for x in jax.tree_util.tree_leaves(value) if is_saved(x)]
        for key, value in templates.items()
    }
    checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
    try:
        restored = checkpointer.restore(
            directory / ORBAX_DIR, args=ocp.args.StandardRestore(abstract)
        )
    except Exception as error:
        raise CheckpointError(
            f"{directory / ORBAX_DIR} could not be read by orbax-checkpoint ({type(error).__name__}: "
            f"{error}); the save is damaged. Load an older save."
        ) from None
    finally:
        checkpointer.close()
    out = {}
    treedef: Any  # jax's PyTreeDef, which mypy cannot see into
    for key, value in templates.items():
        leaves, treedef = jax.tree_util.tree_flatten(value)
        data = iter(restored[key])
        out[key] = treedef.unflatten(
            [_from_saved(next(data), x, is_key) if is_saved(x) else x for x in leaves]
        )
    return out
