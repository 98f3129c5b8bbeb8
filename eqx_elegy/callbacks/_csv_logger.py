"""`CSVLogger`: one row of logs per epoch in a CSV file."""

from __future__ import annotations

import csv
import os
from typing import Any

from ._callback import Callback, Logs
from ._files import check_writable


class CSVLogger(Callback):
    """Write each epoch's logs as a row of `filename`: a header `epoch` followed by the log
    names (sorted), then one row per epoch (numbered from 0, as Keras does).

    With `append=True` rows are added to an existing file and its header kept (columns it
    lacks are dropped, as are logs that appear only after the first epoch; missing values
    are written as `NA`). The file is opened and closed for each row, so what a crashed
    run wrote is on disk. Only process 0 writes in a multi-host run.
    """

    def __init__(
        self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False
    ):
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character, got {separator!r}.")
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = append
        self.keys: list[str] | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if not self.is_main_process():
            return
        check_writable("CSVLogger", "filename", os.path.dirname(self.filename) or ".")
        self.keys = None
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as file:
                header = next(csv.reader(file, delimiter=self.separator), None)
            if header:
                self.keys = header
                return
        # A new file (or one to overwrite): its header comes with the first epoch's logs.
        with open(self.filename, "w", newline=""):
            pass

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if not self.is_main_process():
            return
        logs = dict(logs or {})
        write_header = self.keys is None
        if self.keys is None:
            self.keys = ["epoch", *sorted(logs)]
        row: dict[str, Any] = {"epoch": epoch, **logs}
        with open(self.filename, "a", newline="") as file:
            writer = csv.writer(file, delimiter=self.separator)
            if write_header:
                writer.writerow(self.keys)
            writer.writerow([row.get(key, "NA") for key in self.keys])
