"""`TensorBoard`: the logs as scalars in TensorBoard event files, written with tensorboardX."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._callback import Callback, Logs
from ._files import check_writable
from ._reduce_lr import learning_rates


class TensorBoard(Callback):
    """Write the logs to TensorBoard event files under `log_dir`: training logs in
    `log_dir/train`, validation logs in `log_dir/validation` (without their `val_`
    prefix, so both curves share a chart), as Keras lays them out.

    Each epoch writes `epoch_<name>` scalars at step `epoch`, and `epoch_learning_rate`
    when the optimizer keeps its learning rate in its state (`optax.inject_hyperparams`).
    With `update_freq=N` (an int), the batch logs are also written as `batch_<name>`
    every N training steps (reading them then waits for the device); with
    `update_freq="epoch"` (the default) nothing is read per step. Only process 0 writes in
    a multi-host run. Needs `tensorboardX` (the `callbacks` extra).

    A `Population`'s logs hold one value per member: member `i`'s go to
    `log_dir/train/member_i` (and `validation/member_i`), so TensorBoard shows the
    members as runs on the same charts.
    """

    reads_states_per_batch = False  # only the batch logs

    def __init__(self, log_dir: str | os.PathLike[str] = "logs", update_freq: int | str = "epoch"):
        super().__init__()
        try:
            import tensorboardX  # noqa: F401
        except ImportError as error:
            raise ImportError(
                "TensorBoard needs tensorboardX: pip install tensorboardX (or "
                "eqx_elegy[callbacks])."
            ) from error
        if update_freq != "epoch" and (
            isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1
        ):
            raise ValueError(
                f"TensorBoard: update_freq must be 'epoch' or an int >= 1 (steps), got "
                f"{update_freq!r}."
            )
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self._every = update_freq if isinstance(update_freq, int) else None
        if self._every is not None:
            # Only then does it have a batch hook, so per-epoch logging costs nothing per step.
            self.on_train_batch_end = self._log_batch  # type: ignore[method-assign]
        self._writers: dict[str, Any] = {}
        self._batches = 0

    def _writer(self, name: str) -> Any:
        from tensorboardX import SummaryWriter

        if name not in self._writers:
            self._writers[name] = SummaryWriter(os.path.join(self.log_dir, name))
        return self._writers[name]

    def _close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._close()
        self._batches = 0
        if self.is_main_process():
            check_writable("TensorBoard", "log_dir", self.log_dir)

    def _log_batch(self, batch: int, logs: Logs | None = None) -> None:
        assert self._every is not None
        self._batches += 1
        if self._batches % self._every or not self.is_main_process() or not logs:
            return
        for name, value in dict(logs).items():
            for run, number in _runs("train", value):
                self._writer(run).add_scalar(f"batch_{name}", number, self._batches)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if not self.is_main_process():
            return
        for name, value in (logs or {}).items():
            part, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            for run, number in _runs(part, value):
                self._writer(run).add_scalar(f"epoch_{tag}", number, epoch)
        # fit logs the rate of an injected optimizer itself, as "learning_rate".
        rates = (
            []
            if "learning_rate" in (logs or {})
            else learning_rates(self.model.states.optimizer_states)
        )
        if rates:
            for run, number in _runs("train", rates[0]):
                self._writer(run).add_scalar("epoch_learning_rate", number, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: Logs | None = None) -> None:
        self._close()


def _runs(part: str, value: Any) -> Iterator[tuple[str, float]]:
    """The run directories and numbers a log value is written as: a scalar to `part`, a
    population's per-member values (one axis) to `part/member_<i>`."""
    values = np.asarray(value, dtype=float)
    if values.ndim == 0:
        yield part, float(values)
        return
    if values.ndim > 1:
        raise TypeError(
            f"TensorBoard writes scalars and a population's per-member values, but a log value "
            f"has shape {values.shape}."
        )
    for member, number in enumerate(values.tolist()):
        yield os.path.join(part, f"member_{member}"), number
