"""The JSON manifest of a save: what it holds, and the strict check of one read back.

A manifest is read from a file that may have been damaged or written by someone else,
so every field is checked for its exact JSON type before anything else looks at it:
`format` and `format_version` say the directory is one of our saves; `entries` name
the leaf files (plain names inside the save's directory) with their checksums and
leaves. Unknown fields are refused, so that a manifest that merely resembles ours is
not taken for one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._savedir import CheckpointError, is_plain_name

FORMAT = "eqx_elegy.checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TOP = {
    "format": str,
    "format_version": int,
    "versions": dict,
    "model_class": str,
    "weights_only": bool,
    "metadata": dict,
    "entries": list,
}
_ENTRY = {"key": str, "file": (str, type(None)), "sha256": (str, type(None)), "leaves": list}
_LEAF = {"path": str, "shape": list, "dtype": str}
_JSON_TYPES = {str: "a string", int: "an int", bool: "a bool", dict: "an object", list: "a list"}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields(
    value: Any, schema: dict[str, Any], where: str, fail: Callable[[str], Exception]
) -> None:
    """Check that JSON object `value` has exactly the fields of `schema`, each of its
    type (a bool is not an int here, as it is in Python)."""
    if not isinstance(value, dict):
        raise fail(f"{where} is {_short(value)}, not an object")
    missing = [name for name in schema if name not in value]
    unknown = sorted(name for name in value if name not in schema)
    if missing:
        raise fail(f"{where} has no {', '.join(missing)}")
    if unknown:
        raise fail(f"{where} has unknown fields: {', '.join(unknown)}")
    for name, types in schema.items():
        field = value[name]
        options = types if isinstance(types, tuple) else (types,)
        if not isinstance(field, options) or (isinstance(field, bool) and bool not in options):
            label = f"'{name}'" if where == "the manifest" else f"{where}.{name}"
            wanted = " or ".join(_JSON_TYPES.get(t, "null") for t in options)
            raise fail(f"{label} is {_short(field)}, not {wanted}")


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check(raw: Any, fail: Callable[[str], Exception]) -> dict[str, Any]:
    """`raw` (a parsed manifest) if it is a well-formed one, else `fail(problem)` raised."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise fail(f"its 'format' is not {FORMAT!r}")
    _fields(raw, _TOP, "the manifest", fail)
    version = raw["format_version"]
    if not 1 <= version <= FORMAT_VERSION:
        raise fail(
            f"format_version {version} is not one this eqx_elegy reads (1 to {FORMAT_VERSION})"
        )
    for name, value in raw["versions"].items():
        if not isinstance(value, str):
            raise fail(f"'versions.{name}' is {_short(value)}, not a string")
    keys, files = set(), set()
    for i, entry in enumerate(raw["entries"]):
        where = f"entries[{i}]"
        _fields(entry, _ENTRY, where, fail)
        if entry["key"] in keys:
            raise fail(f"entry {entry['key']!r} appears twice")
        keys.add(entry["key"])
        file, digest = entry["file"], entry["sha256"]
        if file is not None:
            if not is_plain_name(file) or file == MANIFEST or file in files:
                raise fail(f"{where}.file {_short(file)} is not a plain file name of this save")
            files.add(file)
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise fail(f"{where}.sha256 is not 64 hex digits")
        elif digest is not None or entry["leaves"]:
            raise fail(f"{where} has no file but has a sha256 or leaves")
        for j, leaf in enumerate(entry["leaves"]):
            _fields(leaf, _LEAF, f"{where}.leaves[{j}]", fail)
            if not all(_is_size(d) for d in leaf["shape"]):
                raise fail(
                    f"{where}.leaves[{j}].shape is {_short(leaf['shape'])}, not a list of sizes"
                )
    return raw


def malformed(path: Path) -> Callable[[str], CheckpointError]:
    """The error for a manifest at `path` with a given problem."""

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(
            f"{path} is not a valid eqx_elegy manifest: {problem}. The save is damaged or "
            "not an eqx_elegy save; load an older one or save again."
        )

    return fail
