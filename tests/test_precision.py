"""`dtype_policy=`: mixed_bfloat16 and mixed_float16 compute in half precision on float32
parameters, with float32 predictions and loss; mixed_float16's dynamic loss scale lives in
states, skips overflowing steps and grows after finite ones; unknown names are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import digits, mlp_model

from eqx_elegy._precision import LossScale


def _dot_dtypes(jaxpr):
    found = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.add(str(eqn.invars[0].aval.dtype))
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found |= _dot_dtypes(inner)
    return found


@pytest.mark.parametrize(
    ("policy", "dtype"), [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")]
)
def test_mixed_policies_compute_in_half_precision_on_float32_parameters(policy, dtype):
    x, y = digits(256)
    model = mlp_model(dtype_policy=policy)
    steps = model.jit_step()
    jaxpr = jax.make_jaxpr(steps.train)(model.states, (x[:8], y[:8], None), None, 0, 0).jaxpr
    assert _dot_dtypes(jaxpr) == {dtype}
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    assert {a.dtype for a in jax.tree.leaves(model.states.net_params)} == {jnp.dtype("float32")}
    assert model.predict(x).dtype == np.float32
    reference = mlp_model()
    reference.fit(x, y, batch_size=32, epochs=3, verbose=0)
    logs, expected = model.evaluate(x, y, verbose=0), reference.evaluate(x, y, verbose=0)
    assert logs["loss"] == pytest.approx(expected["loss"], rel=0.1)
    assert logs["accuracy"] == pytest.approx(expected["accuracy"], abs=0.05)


def test_mixed_float16_keeps_a_dynamic_loss_scale_in_states():
    x, y = digits(64)
    model = mlp_model(dtype_policy="mixed_float16")
    assert float(model.states.loss_scale.scale) == 2.0**15
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert float(model.states.loss_scale.scale) == 2.0**15
    assert int(model.states.loss_scale.counter) == 8  # eight finite steps
    assert "loss_scale" not in mlp_model().states


def test_mixed_float16_skips_a_step_whose_gradients_overflow():
    x, y = digits(64)
    fresh = mlp_model(dtype_policy="mixed_float16")
    huge = fresh.states.update(loss_scale=LossScale.initial(2.0**100))
    model = mlp_model(dtype_policy="mixed_float16", states=huge)
    before = [np.asarray(a) for a in jax.tree.leaves((huge.net_params, huge.optimizer_states))]
    model.train_on_batch(x, y)
    after = [
        np.asarray(a)
        for a in jax.tree.leaves((model.states.net_params, model.states.optimizer_states))
    ]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)  # skipped
    assert float(model.states.loss_scale.scale) == 2.0**99
    for _ in range(90):  # halved at each overflow until the gradients are finite again
        model.train_on_batch(x, y)
    assert float(model.states.loss_scale.scale) < 2.0**20
    assert not np.array_equal(np.asarray(model.states.net_params.layers[0].weight), before[0])


def test_loss_scale_grows_after_a_period_of_finite_steps():
    scale = LossScale(jnp.asarray(8.0), jnp.asarray(0, jnp.int32), period=3)
    finite, overflow = jnp.asarray(True), jnp.asarray(False)
    history = []
    for step in (finite, finite, finite, finite, overflow, finite):
        scale = scale.adjust(step)
        history.append((float(scale.scale), int(scale.counter)))
    assert history == [(8.0, 1), (8.0, 2), (16.0, 0), (16.0, 1), (8.0, 0), (8.0, 1)]
    low = LossScale(jnp.asarray(1.0), jnp.asarray(0, jnp.int32)).adjust(overflow)
    assert float(low.scale) == 1.0  # never below 1


@pytest.mark.parametrize("policy", ["float16", "mixed_float32", None, 16])
def test_unknown_policy_is_a_clear_error(policy):
    with pytest.raises(
        ValueError,
        match=r"dtype_policy must be one of 'float32', 'mixed_bfloat16', 'mixed_float16'",
    ):
        mlp_model(dtype_policy=policy)
