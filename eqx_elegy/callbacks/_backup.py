"""`BackupAndRestore`: periodic backups of a fit, so that a fit restarted after a crash
resumes where the last backup left it."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import Any

from .._checkpoint import remove_save
from .._savedir import CheckpointError, child_stat, is_plain_name, kind, lstat, open_dir, read_json
from ._callback import Callback, Logs
from ._files import check_writable, write_json_atomic

_PROGRESS = "backup.json"


class BackupAndRestore(Callback):
    """Back up the model's states (with `model.save`) into `backup_dir` while it trains;
    when a fit starts with a backup there, load it and continue from the epoch and step it
    was taken at.

    `save_freq="epoch"` backs up at the start of each epoch after the first (so after the
    previous epoch's validation and callbacks); an int N backs up at the first step
    boundary at least N training steps after the last backup, mid-epoch included. A
    resumed fit runs exactly the steps an uninterrupted one would have run after that
    point, with the same shuffling and random keys (they depend only on the seed, epoch
    and step), so it ends with the same parameters. Other callbacks' own counters (e.g.
    EarlyStopping's patience) are not backed up.

    Each backup is written to a new directory, then `backup.json` is switched to it
    atomically, then the previous one is removed: a crash at any point leaves a complete
    backup. `backup.json` is trusted only as far as it names a plain subdirectory of
    `backup_dir`; a directory is removed only if it is one of our saves, never one that
    holds anything else (it is left in place, with a warning). With `delete_checkpoint=True` (the default) the backup is removed when the fit
    ends normally; otherwise a last backup of the final states is kept.
    """

    reads_states_per_batch = False  # step-wise backups read them through self.model

    def __init__(
        self,
        backup_dir: str | os.PathLike[str],
        save_freq: int | str = "epoch",
        delete_checkpoint: bool = True,
    ):
        super().__init__()
        if save_freq != "epoch" and (
            isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1
        ):
            raise ValueError(
                f"BackupAndRestore: save_freq must be 'epoch' or an int >= 1 (steps), got "
                f"{save_freq!r}."
            )
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = delete_checkpoint
        self._every = save_freq if isinstance(save_freq, int) else None
        if self._every is not None:
            # Step-wise backups watch the batch hooks; epoch-wise ones cost nothing per step.
            self.on_train_batch_begin = self._batch_begin  # type: ignore[method-assign]
            self.on_train_batch_end = self._batch_end  # type: ignore[method-assign]
        self.resumed_from: tuple[int, int] | None = None
        self._current: str | None = None
        self._epoch = 0
        self._done: int | None = None
        self._started = False
        self._since = 0
        self._at_boundary = False

    @property
    def _progress(self) -> str:
        return os.path.join(self.backup_dir, _PROGRESS)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.resumed_from = None
        self._current = None
        self._done = None
        self._started = False
        self._since = 0
        progress = self._read_progress()  # before anything is written, even a probe
        check_writable("BackupAndRestore", "backup_dir", self.backup_dir)
        if progress is None:
            return
        epoch, step, name = progress
        self.model.load(os.path.join(self.backup_dir, name))
        self.resume_at(epoch, step)  # instead of the fit's initial_epoch
        self.resumed_from = (epoch, step)
        self._current = name

    def _read_progress(self) -> tuple[int, int, str] | None:
        """`(epoch, step, name)` of the backup that `backup.json` records, or None
        when there is none; a record that is not one this callback writes, or names
        anything but a subdirectory of `backup_dir`, is a `CheckpointError`."""

        def bad(problem: str) -> CheckpointError:
            return CheckpointError(
                f"BackupAndRestore: {self._progress} {problem}; remove it to start training "
                "from scratch."
            )

        directory = Path(self.backup_dir)
        if lstat(directory) is None:
            return None
        with open_dir(directory) as fd:
            if child_stat(fd, _PROGRESS) is None:
                return None
            data: Any = read_json(fd, _PROGRESS, bad)
            if not (
                isinstance(data, dict)
                and set(data) == {"epoch", "step", "checkpoint"}
                and all(_is_count(data[k]) for k in ("epoch", "step"))
            ):
                raise bad(
                    'is not a backup record ({"epoch": int, "step": int, "checkpoint": name}'
                    f", got {str(data)[:80]})"
                )
            name = data["checkpoint"]
            found = child_stat(fd, name) if is_plain_name(name) else None
        if not is_plain_name(name):
            raise bad(f"points to the backup {name!r}, which is not a plain directory name")
        if found is None or not stat.S_ISDIR(found.st_mode):
            what = "nothing" if found is None else kind(found.st_mode)
            raise bad(
                f"points to the backup {name!r}, which is not a directory in {self.backup_dir} "
                f"({directory / name} is {what})"
            )
        return data["epoch"], data["step"], name

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch
        self._at_boundary = True
        if self.save_freq == "epoch" and self._started:
            self._backup(epoch, 0)
        self._started = True

    def _batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        # Begin hooks are called for all the steps of a compiled chunk before it runs, and
        # end hooks after; so right after an end hook (or an epoch's start) the model holds
        # the states of exactly `batch` steps into the epoch.
        assert self._every is not None
        if self._at_boundary and self._since >= self._every:
            self._backup(self._epoch, batch)
        self._at_boundary = False

    def _batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._since += 1
        self._at_boundary = True

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._done = epoch + 1

    def _backup(self, epoch: int, step: int) -> None:
        name = f"epoch{epoch}-step{step}"
        if name == self._current:
            return
        self.model.save(os.path.join(self.backup_dir, name))  # every process: a collective
        previous, self._current = self._current, name
        self._since = 0
        if not self.is_main_process():  # process 0 alone writes the files
            return
        write_json_atomic(self._progress, {"epoch": epoch, "step": step, "checkpoint": name})
        if previous is not None:
            self._remove(previous)

    def _remove(self, name: str) -> None:
        """Remove backup `name` if it is one of our saves; warn and keep it otherwise."""
        path = Path(self.backup_dir, name)
        problem = remove_save(path)
        if problem is not None:
            warnings.warn(
                f"BackupAndRestore: {path} is not only a backup ({problem}); left it in place.",
                stacklevel=2,
            )

    def on_train_end(self, logs: Logs | None = None) -> None:
        if not self.delete_checkpoint:
            if self._done is not None:
                self._backup(self._done, 0)
            return
        if self.is_main_process():
            if os.path.lexists(self._progress):
                os.remove(self._progress)
            if self._current is not None:
                self._remove(self._current)
        self._current = None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
