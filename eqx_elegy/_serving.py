"""`load_exported`: run a model written by `Model.export` with jax and numpy alone.

This module imports nothing but the standard library, jax and numpy (not equinox, optax
or the rest of eqx_elegy), so that a server needs neither the model's code nor its
training stack; it may even be copied on its own next to a server. jax's deserialiser
also needs the `flatbuffers` package (eqx_elegy's `export` extra).

An export at `path/` holds:

- `manifest.json`: the format and its version, the versions that wrote it, the
  platforms it was lowered for, each file's SHA-256, and the shapes and dtypes of the
  weights, the inputs and the outputs (`"batch"` standing for the batch dimension);
- `predict.jaxexport`: the prediction as a `jax.export` artifact (versioned StableHLO),
  `predict(weights, x) -> y_pred`, with a symbolic batch dimension;
- `weights.npz`: its `weights`, a dict of arrays named `w00000`, `w00001`, ..., stored
  beside the function rather than baked into it, in formats numpy reads without pickle.

So the artifact also runs without eqx_elegy: `jax.export.deserialize` the function and
call it with `dict(np.load("weights.npz"))` and `x` (docs/export.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

FORMAT = "eqx_elegy.export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FUNCTION_FILE = "predict.jaxexport"
WEIGHTS_FILE = "weights.npz"
BATCH = "batch"
STAGING_MARK = ".eqx_elegy-exporting"  # in an export's directory while it is written
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
_MAX_MANIFEST_BYTES = 16 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
_CHECKPOINT_FORMAT = "eqx_elegy.checkpoint"


class ExportError(ValueError):
    """A model cannot be exported, or an export cannot be read or does not hold what its
    manifest says."""


# ---------------------------------------------------------------------------- helpers


def require_flatbuffers(what: str) -> None:
    """Raise a clear ImportError, before any work, when jax.export cannot (de)serialise."""
    try:
        import flatbuffers  # noqa: F401
    except ImportError:
        raise ImportError(
            f"{what} needs the flatbuffers package, which jax.export (de)serialises with: "
            "pip install 'eqx_elegy[export]' (or pip install flatbuffers)."
        ) from None


def weight_name(index: int) -> str:
    """The name of weight array `index` in `weights.npz` (sorted names keep the order)."""
    return f"w{index:05d}"


def describe_shape(shape: Sequence[Any]) -> list[int | str]:
    """A shape for the manifest: ints, and symbolic dimensions by name (e.g. `"batch"`)."""
    return [d if isinstance(d, int) else str(d) for d in shape]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def read_regular(file: Path, limit: int | None = None) -> bytes | None:
    """The bytes of `file` if it is a regular file (read once, so that what is checked
    is what is used), or None. A symbolic link is never followed and a named pipe never
    blocks. More than `limit` bytes raises `ExportError`."""
    try:
        fd = os.open(file, _NO_FOLLOW)
    except OSError:  # missing, a link (ELOOP), unreadable
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ExportError(f"{file} is larger than {limit >> 20} MiB; it is not an export's.")
    return data


def _aval(shape: Sequence[Any], dtype: Any) -> str:
    return f"{np.dtype(dtype).name}[{', '.join(str(d) for d in shape)}]"


def _paths(treedef: Any) -> list[str]:
    """`x['image']`-style names of the leaves of `treedef`."""
    leaves = jax.tree.unflatten(treedef, [0] * treedef.num_leaves)
    return [f"x{jax.tree_util.keystr(p)}" for p, _ in jax.tree_util.tree_leaves_with_path(leaves)]


# ---------------------------------------------------------------------------- manifest


def _malformed(where: Path, problem: str) -> ExportError:
    return ExportError(
        f"{where} is not a valid eqx_elegy export manifest: {problem}. The export is damaged "
        "or was not written by Model.export; export the model again."
    )


def _is_plain_name(name: Any) -> bool:
    """A child of the export's directory: no separator, not hidden, not `.` or `..`."""
    return isinstance(name, str) and _PLAIN_NAME.fullmatch(name) is not None


def _is_shape(shape: Any, symbolic: bool) -> bool:
    return isinstance(shape, list) and all(
        (isinstance(d, int) and not isinstance(d, bool) and d >= 0)
        or (symbolic and isinstance(d, str))
        for d in shape
    )


def _leaf_table_ok(table: Any, *, symbolic: bool, named: bool) -> bool:
    return isinstance(table, list) and all(
        isinstance(leaf, dict)
        and isinstance(leaf.get("path"), str)
        and isinstance(leaf.get("dtype"), str)
        and _is_shape(leaf.get("shape"), symbolic)
        and (not named or isinstance(leaf.get("name"), str))
        for leaf in table
    )


def _file_entry_ok(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and _is_plain_name(entry.get("file"))
        and isinstance(entry.get("sha256"), str)
        and _SHA256.fullmatch(entry["sha256"]) is not None
    )


def read_manifest(directory: Path) -> dict[str, Any]:
    """The checked manifest of the export in `directory`."""
    where = directory / MANIFEST
    raw = read_regular(where, _MAX_MANIFEST_BYTES)
    if raw is None:
        raise ExportError(
            f"{directory} is not an eqx_elegy export: it has no {MANIFEST} (a regular file)."
        )
    try:
        manifest = json.loads(raw)
    except RecursionError:
        raise _malformed(where, "not valid JSON (nested too deeply)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _malformed(where, f"not valid JSON ({error})") from None
    if isinstance(manifest, dict) and manifest.get("format") == _CHECKPOINT_FORMAT:
        raise ExportError(
            f"{directory} is an eqx_elegy checkpoint (written by model.save), not an export; "
            "load it with model.load, or write an export with model.export."
        )
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(
            f"{directory} is not an eqx_elegy export: the 'format' of its {MANIFEST} is not "
            f"{FORMAT!r}."
        )
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version:
        raise _malformed(where, f"format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise ExportError(
            f"{directory} is an export of format version {version}; this eqx_elegy reads "
            f"versions up to {FORMAT_VERSION}. Upgrade eqx_elegy to load it."
        )
    weights: Any = manifest.get("weights")
    platforms = manifest.get("platforms")
    checks = [
        (_file_entry_ok(manifest.get("function")), "'function' is not {file, sha256}"),
        (
            _file_entry_ok(weights)
            and _leaf_table_ok(weights.get("arrays"), symbolic=False, named=True),
            "'weights' is not {file, sha256, arrays}",
        ),
        (
            _leaf_table_ok(manifest.get("inputs"), symbolic=True, named=False),
            "'inputs' is not a list of {path, shape, dtype}",
        ),
        (
            _leaf_table_ok(manifest.get("outputs"), symbolic=True, named=False),
            "'outputs' is not a list of {path, shape, dtype}",
        ),
        (
            isinstance(platforms, list)
            and bool(platforms)
            and all(isinstance(p, str) for p in platforms),
            "'platforms' is not a list of platform names",
        ),
    ]
    for ok, problem in checks:
        if not ok:
            raise _malformed(where, problem)
    return manifest


# ---------------------------------------------------------------------------- files


def _artifact_file(directory: Path, entry: Mapping[str, Any]) -> bytes:
    """The bytes of a file the manifest names: a regular file in `directory` whose
    SHA-256 is the manifest's."""
    file = directory / entry["file"]
    data = read_regular(file)
    if data is None:
        raise ExportError(
            f"{file} is missing or not a regular file; the export at {directory} is incomplete."
        )
    if sha256(data) != entry["sha256"]:
        raise ExportError(
            f"{file} does not match the SHA-256 in {directory / MANIFEST}: the file is corrupt, "
            "was changed after exporting, or comes from another export. Export the model again."
        )
    return data


def _deserialize(file: Path, data: bytes) -> jax_export.Exported:
    try:
        return jax_export.deserialize(bytearray(data))
    except Exception as error:
        raise ExportError(
            f"{file} could not be deserialised by jax.export ({type(error).__name__}: {error}); "
            "it is corrupt, or was written by a JAX too new for this one "
            f"({jax.__version__})."
        ) from None


def _read_weights(file: Path, data: bytes, table: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The arrays of `weights.npz` (its bytes `data`), exactly those the manifest lists,
    with its shapes and dtypes; read without pickle."""
    expected = {leaf["name"]: leaf for leaf in table}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = list(npz.files)
            if sorted(names) != sorted(expected):
                missing = sorted(set(expected) - set(names))
                extra = sorted(set(names) - set(expected))
                raise ExportError(
                    f"{file} holds other arrays than {MANIFEST} lists (missing: {missing[:5]}, "
                    f"unexpected: {extra[:5]}); the export is damaged."
                )
            arrays = {name: npz[name] for name in names}
    except ExportError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ExportError(f"{file} could not be read as .npz ({error}); it is corrupt.") from None
    for name, leaf in expected.items():
        array = arrays[name]
        if list(array.shape) != leaf["shape"] or array.dtype.name != leaf["dtype"]:
            raise ExportError(
                f"{file} holds {name} ({leaf['path']}) as {_aval(array.shape, array.dtype)} where "
                f"{MANIFEST} says {leaf['dtype']}{leaf['shape']}; the export is damaged."
            )
    return arrays


# ---------------------------------------------------------------------------- loading


def current_platform() -> str:
    """The platform jax runs on here, named as `jax.export` names platforms."""
    backend = jax.default_backend()
    if backend != "gpu":
        return backend
    version = jax.devices()[0].client.platform_version.lower()
    return "rocm" if "rocm" in version else "cuda"


class ExportedModel:
    """A model's prediction loaded from an export: call it on a batch `x` of any size.

    `inputs` and `outputs` describe the leaves `x` must have and `y_pred` will have (path,
    shape with `"batch"` in front, dtype); `platforms` are those the artifact runs on;
    `manifest` is the whole manifest; `exported` the `jax.export.Exported` function.
    """

    def __init__(self, directory: Path, manifest: dict[str, Any], exported: Any, weights: Any):
        self.directory = directory
        self.manifest = manifest
        self.exported = exported
        self.platforms: tuple[str, ...] = tuple(exported.platforms)
        self.inputs: list[dict[str, Any]] = manifest["inputs"]
        self.outputs: list[dict[str, Any]] = manifest["outputs"]
        self._weights = weights
        self._x_tree = exported.in_tree.children()[0].children()[1]
        self._x_names = _paths(self._x_tree)
        self._x_avals = exported.in_avals[len(manifest["weights"]["arrays"]) :]
        self._call = jax.jit(exported.call)

    def __repr__(self) -> str:
        return (
            f"ExportedModel({str(self.directory)!r}, model_class="
            f"{self.manifest.get('model_class')!r}, platforms={self.platforms})"
        )

    def __call__(self, x: Any) -> Any:
        """`y_pred` for the batch `x` (the structure the model was built with: an array, or
        a dict/tuple of arrays, each with the batch in front), as numpy arrays, like
        `model.predict`. Arrays of another dtype of the same kind (float64 for float32,
        integers for floats) are converted as jax would convert them."""
        try:
            leaves = self._x_tree.flatten_up_to(x)
        except (ValueError, TypeError):
            expected = ", ".join(self._x_names)
            raise TypeError(
                f"x must have the structure the model was exported with ({expected}), got "
                f"{jax.tree.structure(x)}."
            ) from None
        arrays = [
            self._checked(name, leaf, aval)
            for name, leaf, aval in zip(self._x_names, leaves, self._x_avals, strict=True)
        ]
        sizes = {int(a.shape[0]) for a in arrays}
        if len(sizes) > 1:
            raise ValueError(
                f"The leaves of x have different batch sizes {sorted(sizes)}; every leaf needs "
                "the same number of examples along its first axis."
            )
        if sizes == {0}:
            raise ValueError("x is empty (0 examples); pass at least one example.")
        x = jax.tree.unflatten(self._x_tree, arrays)
        return jax.device_get(self._call(self._weights, x))

    @staticmethod
    def _checked(name: str, leaf: Any, aval: Any) -> Any:
        array = leaf if isinstance(leaf, jax.Array) else np.asarray(leaf)
        want = np.dtype(aval.dtype)
        if array.dtype != want:
            if not np.can_cast(array.dtype, want, "same_kind"):
                raise TypeError(
                    f"{name} has dtype {array.dtype.name}; the exported model takes "
                    f"{want.name} (convert it, e.g. with .astype(np.{want.name}))."
                )
            array = array.astype(want)
        shape = aval.shape
        if array.ndim != len(shape) or any(
            isinstance(d, int) and d != n for d, n in zip(shape, array.shape, strict=True)
        ):
            raise ValueError(
                f"{name} has shape {list(array.shape)}; the exported model takes "
                f"{describe_shape(shape)} (`{BATCH}` is any number of examples)."
            )
        return array


def _check_function(
    directory: Path, manifest: dict[str, Any], exported: Any, weights: Mapping[str, np.ndarray]
) -> None:
    """Raise unless the deserialised function takes the manifest's weights and inputs and
    returns its outputs."""
    table = manifest["weights"]["arrays"]
    names = [leaf["name"] for leaf in table]
    problem = None
    children = exported.in_tree.children()
    if (
        exported.in_tree.num_leaves != len(exported.in_avals)
        or len(children) != 2
        or children[1].num_leaves != 0
        or len(children[0].children()) != 2
    ):
        problem = f"it takes {exported.in_tree}, not (weights, x)"
    else:
        w_tree = children[0].children()[0]
        if w_tree != jax.tree.structure(dict.fromkeys(names, 0)):
            problem = f"it takes the weights {w_tree}, not the arrays {MANIFEST} lists"
        else:
            for name, aval in zip(sorted(names), exported.in_avals, strict=False):
                array = weights[name]
                if tuple(array.shape) != tuple(aval.shape) or array.dtype != aval.dtype:
                    problem = (
                        f"it takes {name} as {_aval(aval.shape, aval.dtype)}, the weights file "
                        f"holds {_aval(array.shape, array.dtype)}"
                    )
                    break
    if problem is None:
        ins = exported.in_avals[len(names) :]
        for role, table_, avals in (
            ("inputs", manifest["inputs"], ins),
            ("outputs", manifest["outputs"], exported.out_avals),
        ):
            found = [(describe_shape(a.shape), np.dtype(a.dtype).name) for a in avals]
            listed = [(leaf["shape"], leaf["dtype"]) for leaf in table_]
            if found != listed:
                problem = f"its {role} are {found}, {MANIFEST} lists {listed}"
                break
    if problem is None and sorted(exported.platforms) != sorted(manifest["platforms"]):
        problem = f"it was lowered for {list(exported.platforms)}, not {manifest['platforms']}"
    if problem is not None:
        raise ExportError(
            f"The function in {directory / manifest['function']['file']} does not match the "
            f"rest of the export: {problem}. The files come from different exports; export "
            "the model again."
        )


def load_exported(path: str | os.PathLike[str]) -> ExportedModel:
    """Load the model exported to directory `path` by `Model.export`: a callable
    `f(x) -> y_pred` for batches of any size, needing only jax and numpy (not the model's
    class, its code, or equinox).

    The files are checked against the manifest's SHA-256 sums, shapes and dtypes; nothing is
    unpickled. Raises `ExportError` for a directory that is not an export, a damaged or
    mismatched one, or one lowered only for platforms other than the one jax runs on here.
    """
    require_flatbuffers("load_exported")
    directory = Path(path)
    previous = directory.with_name(f".{directory.name}.previous")
    if not directory.exists() and previous.is_dir():
        directory = previous  # an export replacing this one stopped between two renames
    if not directory.is_dir():
        raise ExportError(f"No export found at {directory}: it is not a directory.")
    manifest = read_manifest(directory)
    here = current_platform()
    if here not in manifest["platforms"]:
        raise ExportError(
            f"The export at {directory} was lowered for {manifest['platforms']}, and jax runs "
            f"on {here!r} here. Export it with platforms=({here!r}, ...) to run it here."
        )
    function = directory / manifest["function"]["file"]
    exported = _deserialize(function, _artifact_file(directory, manifest["function"]))
    weights_file = directory / manifest["weights"]["file"]
    weights = _read_weights(
        weights_file,
        _artifact_file(directory, manifest["weights"]),
        manifest["weights"]["arrays"],
    )
    _check_function(directory, manifest, exported, weights)
    return ExportedModel(directory, manifest, exported, jax.device_put(weights))
