"""Keyword arguments that `fit` (and `evaluate`) do not have, and one of the wrong type."""

import numpy as np

import eqx_elegy as elegy

x = np.zeros((8, 3), np.float32)
y = np.zeros((8,), np.int32)
model = elegy.Model()

model.fit(x, y, epoch=10)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
model.fit(x=x, y=y, nb_epoch=10, batch_size=4)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
model.evaluate(x, y, epochs=2)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
model.fit(x, y, batch_size="64")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
