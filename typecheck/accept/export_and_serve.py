"""Exporting a model and serving it: `export` takes a path and keyword-only platforms;
`load_exported` returns a callable whose metadata is typed."""

from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import assert_type

import eqx_elegy as elegy


def serve(model: elegy.Model, folder: Path) -> Any:
    model.export(folder / "cpu")
    model.export(str(folder / "both"), platforms=("cpu", "cuda"))
    model.export(folder / "one", platforms="cpu")
    f = elegy.load_exported(folder / "both")
    assert_type(f, elegy.ExportedModel)
    assert_type(f.platforms, tuple[str, ...])
    assert_type(f.inputs, list[dict[str, Any]])
    try:
        return f(np.zeros((3, 4), np.float32))
    except elegy.ExportError as error:
        assert_type(error, elegy.ExportError)
        raise
