"""`export`'s platforms are keyword-only and platform names are strings."""

from pathlib import Path

import eqx_elegy as elegy

model = elegy.Model()

model.export(Path("out"), ("cpu", "cuda"))  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
model.export(Path("out"), platforms=[1, 2])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
elegy.load_exported(3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
