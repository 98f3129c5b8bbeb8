"""L1, L2 and L1L2 against their Keras formulas over a model's parameter leaves."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqx_elegy import regularizers

rng = np.random.default_rng(0)
W1 = rng.normal(size=(3, 4)).astype(np.float32)
B1 = rng.normal(size=(4,)).astype(np.float32)
W2 = rng.normal(size=(4, 2)).astype(np.float32)
PARAMS = {
    "dense1": {"w": jnp.asarray(W1), "b": jnp.asarray(B1)},
    "dense2": (jnp.asarray(W2), jnp.arange(3)),  # an int leaf is not a parameter
    "config": "relu",
}
FLOATS = [W1, B1, W2]


def test_keras_formulas_and_defaults():
    l1 = sum(np.abs(x).sum() for x in FLOATS)
    l2 = sum((x**2).sum() for x in FLOATS)
    np.testing.assert_allclose(regularizers.L1()(PARAMS), 0.01 * l1, rtol=1e-6)
    np.testing.assert_allclose(regularizers.L2()(PARAMS), 0.01 * l2, rtol=1e-6)
    np.testing.assert_allclose(regularizers.L1(0.3)(PARAMS), 0.3 * l1, rtol=1e-6)
    np.testing.assert_allclose(regularizers.L2(l2=1e-3)(PARAMS), 1e-3 * l2, rtol=1e-6)
    np.testing.assert_allclose(
        regularizers.L1L2(l1=0.2, l2=0.5)(PARAMS), 0.2 * l1 + 0.5 * l2, rtol=1e-6
    )
    assert float(regularizers.L1L2()(PARAMS)) == 0.0  # Keras' defaults are 0


def test_filter_selects_leaves():
    kernels_only = regularizers.L2(0.1, filter=lambda w: w.ndim > 1)
    np.testing.assert_allclose(
        kernels_only(PARAMS), 0.1 * ((W1**2).sum() + (W2**2).sum()), rtol=1e-6
    )


def test_on_an_equinox_module_jitted_and_differentiable():
    mlp = eqx.nn.MLP(3, 2, 8, 1, key=jax.random.key(0))
    params, _ = eqx.partition(mlp, eqx.is_inexact_array)
    reg = regularizers.L2(0.05)
    expected = 0.05 * sum(float((x**2).sum()) for x in jax.tree.leaves(params))
    np.testing.assert_allclose(jax.jit(reg)(params), expected, rtol=1e-5)
    grads = jax.grad(reg)(params)
    for g, x in zip(jax.tree.leaves(grads), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(g, 0.1 * x, rtol=1e-5)


def test_low_precision_parameters_are_penalised_in_float32():
    out = regularizers.L2()({"w": jnp.asarray(W1, jnp.bfloat16)})
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, 0.01 * (W1**2).sum(), rtol=1e-2)


def test_names_and_bad_arguments():
    assert [r.name for r in (regularizers.L1(), regularizers.L2(), regularizers.L1L2())] == [
        "l1",
        "l2",
        "l1l2",
    ]
    assert regularizers.L2(name="weight_decay").name == "weight_decay"
    with pytest.raises(ValueError, match=r"L2: l2=-1 must be a float >= 0"):
        regularizers.L2(-1)
    with pytest.raises(ValueError, match=r"L1L2: l1='x'"):
        regularizers.L1L2(l1="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`filter` must be a callable"):
        regularizers.L1(filter=True)  # type: ignore[arg-type]
