"""The package version, and the versions that saves and exports record beside it."""

import equinox
import jax
import numpy as np
import optax
from jaxlib import version as jaxlib_version

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """The versions of eqx_elegy and of the libraries that decide what a saved or exported
    file means, for its manifest (a reader names them when a file cannot be read)."""
    return {
        "eqx_elegy": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib_version.__version__,
        "equinox": equinox.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
    }
