"""Test-wide JAX settings: several CPU devices (for the distributed tests) and strict
dtype promotion, so that silent float64/int promotions show up as errors."""

import os

os.environ.setdefault("XLA_FLAGS", "")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_dtype_promotion", "strict")
