"""`BackupAndRestore`: periodic backups of a fit, so that a fit restarted after a crash
resumes where the last backup left it."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax

from .._engine import engine
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
    backup. With `delete_checkpoint=True` (the default) the backup is removed when the fit
    ends normally; otherwise a last backup of the final states is kept.
    """

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
        check_writable("BackupAndRestore", "backup_dir", self.backup_dir)
        self.resumed_from = None
        self._current = None
        self._done = None
        self._started = False
        self._since = 0
        progress = self._read_progress()
        if progress is None:
            return
        epoch, step, name = progress
        self.model.load(os.path.join(self.backup_dir, name))
        # The fit loop starts from this point instead of initial_epoch.
        engine(self.model).resume_at = (epoch, step)
        self.resumed_from = (epoch, step)
        self._current = name

    def _read_progress(self) -> tuple[int, int, str] | None:
        if not os.path.exists(self._progress):
            return None
        try:
            with open(self._progress) as file:
                data: Any = json.load(file)
            epoch, step, name = int(data["epoch"]), int(data["step"]), str(data["checkpoint"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"BackupAndRestore: {self._progress} is not a backup record ({error}); remove "
                "it to start training from scratch."
            ) from error
        if os.path.basename(name) != name or not os.path.isdir(os.path.join(self.backup_dir, name)):
            raise ValueError(
                f"BackupAndRestore: {self._progress} points to the backup {name!r}, which is "
                f"not a directory in {self.backup_dir}; remove {self._progress} to start "
                "training from scratch."
            )
        return epoch, step, name

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
        if jax.process_index() != 0:  # process 0 alone writes the files
            return
        write_json_atomic(self._progress, {"epoch": epoch, "step": step, "checkpoint": name})
        if previous is not None:
            shutil.rmtree(os.path.join(self.backup_dir, previous), ignore_errors=True)

    def on_train_end(self, logs: Logs | None = None) -> None:
        if not self.delete_checkpoint:
            if self._done is not None:
                self._backup(self._done, 0)
            return
        if jax.process_index() == 0:
            if os.path.exists(self._progress):
                os.remove(self._progress)
            if self._current is not None:
                shutil.rmtree(os.path.join(self.backup_dir, self._current), ignore_errors=True)
        self._current = None
