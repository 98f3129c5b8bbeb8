"""Using the batch API's result as the wrong kind: Keras' list (`return_dict=False`) read
as a dict of logs, and the dict of logs read as a number."""

import numpy as np

import eqx_elegy as elegy

x = np.zeros((8, 3), np.float32)
y = np.zeros((8,), np.int32)
model = elegy.Model()

values = model.train_on_batch(x, y, return_dict=False)
values["loss"]  # type: ignore[index, call-overload]  # pyright: ignore[reportIndexIssue, reportCallIssue, reportArgumentType]
logs = model.test_on_batch(x, y)
total: float = logs + 1.0  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
