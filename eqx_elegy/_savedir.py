"""File access confined to one directory, for reading saves that may be hostile.

Every read goes through a file descriptor of the save's directory: a name is a plain
child of it (no separators, no `.` or `..`), is opened with `O_NOFOLLOW` (a symbolic
link is refused, never followed out of the directory) and `O_NONBLOCK` (a named pipe
cannot block), and must be a regular file both before it is opened (`lstat`, so that
no device or pipe is ever opened) and after (`fstat`, so that a swap in between is
caught). Anything else is a `CheckpointError` that says what was found where.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

MAX_JSON_BYTES = 64 << 20  # far above any manifest or record this library writes
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
Fail = Callable[[str], Exception]
"""Builds the error for a problem phrased after the file's name ("is missing")."""
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class CheckpointError(ValueError):
    """A save or backup cannot be read, is in the way, or does not fit the model."""


def is_plain_name(name: object) -> bool:
    """Whether `name` names a child of a directory and nothing else: no separator, not
    `.` or `..`, not hidden, not absolute."""
    return isinstance(name, str) and _PLAIN_NAME.fullmatch(name) is not None


def kind(mode: int) -> str:
    """What an `lstat` mode is, in words."""
    for test, words in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return words
    return "a special file"


def lstat(path: Path) -> os.stat_result | None:
    """`path`'s own status (a link's, not its target's), or None where nothing is; a
    path that cannot be examined (too long, a parent not searchable) is a
    `CheckpointError`."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # the latter: a parent is a file
        return None
    except OSError as error:
        raise CheckpointError(f"{path} cannot be examined ({error.strerror}).") from None


def resolve(path: str | os.PathLike[str]) -> Path:
    """`path` made absolute with every symbolic link in it resolved."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as error:  # a link loop (RuntimeError before 3.13)
        raise CheckpointError(f"{os.fspath(path)} cannot be resolved ({error}).") from None


@contextlib.contextmanager
def open_dir(path: Path) -> Iterator[int]:
    """A descriptor of directory `path` (itself not a link) to open its children by."""
    try:
        fd = os.open(path, _FLAGS | os.O_DIRECTORY)
    except OSError as error:
        raise CheckpointError(f"{path} cannot be opened as a directory ({error}).") from None
    try:
        yield fd
    finally:
        os.close(fd)


def child_stat(dir_fd: int, name: str) -> os.stat_result | None:
    """The status of child `name` of the directory `dir_fd` (not following a link)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_regular(dir_fd: int, name: str, fail: Fail) -> BinaryIO:
    """Child `name` of the directory open as `dir_fd`, opened for reading, refused
    with `fail(problem)` unless it is a regular file."""
    if not is_plain_name(name):
        raise fail("is not a plain file name")
    before = child_stat(dir_fd, name)
    if before is None:
        raise fail("is missing")
    if not stat.S_ISREG(before.st_mode):
        raise fail(f"is {kind(before.st_mode)}, not a regular file")
    try:
        fd = os.open(name, _FLAGS, dir_fd=dir_fd)
    except OSError as error:
        raise fail(f"cannot be opened ({error.strerror})") from None
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or after.st_ino != before.st_ino:
        os.close(fd)
        raise fail("changed while it was being opened")
    return os.fdopen(fd, "rb")


def read_json(dir_fd: int, name: str, fail: Fail) -> Any:
    """The JSON value in child `name` of the directory open as `dir_fd`, at most
    `MAX_JSON_BYTES` long; anything that is not JSON (bad UTF-8, bad syntax, nesting
    Python cannot parse) is `fail(problem)`."""
    with open_regular(dir_fd, name, fail) as f:
        text = f.read(MAX_JSON_BYTES + 1)
    if len(text) > MAX_JSON_BYTES:
        raise fail(f"is larger than {MAX_JSON_BYTES} bytes")
    try:
        return json.loads(text.decode("utf-8"))
    except RecursionError:
        reason = "nested too deeply"
    except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError is a ValueError
        reason = str(error)
    raise fail(f"is not valid JSON ({reason})")
