"""File-system helpers shared by the callbacks that write files."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any


def check_writable(owner: str, argument: str, directory: str | os.PathLike[str]) -> None:
    """Create `directory` if needed and write a probe file in it, so that a path that
    cannot be written fails when training begins rather than after the first epoch."""
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-probe-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise OSError(
            f"{owner}: cannot write to the directory {os.fspath(directory)!r} of {argument} "
            f"({reason}); pass a path in a directory you can write to."
        ) from error


def write_json_atomic(path: str | os.PathLike[str], value: Any) -> None:
    """Write `value` as JSON to `path` through a temporary file and a rename, so a crash
    leaves either the old file or the new one, never a torn one."""
    directory = os.path.dirname(os.fspath(path)) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(value, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
