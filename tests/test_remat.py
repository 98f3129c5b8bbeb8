"""`remat=True`: the module's blocks run under jax.checkpoint in the gradient (seen in the
step's jaxpr), with the same training results, for plain, random and stateful modules."""

import equinox as eqx
import jax
import numpy as np
import optax
from helpers import digits, mlp_model

import eqx_elegy as elegy


def _remats(jaxpr):
    """How many checkpointed regions `jaxpr` (and the jaxprs nested in it) holds."""
    found = 0
    for eqn in jaxpr.eqns:
        found += "remat" in eqn.primitive.name or "checkpoint" in eqn.primitive.name
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += _remats(inner)
    return found


def _train_jaxpr(model, x, y):
    steps = model.jit_step()
    return jax.make_jaxpr(steps.train)(model.states, (x, y, None), None, 0, 0).jaxpr


def test_each_block_of_the_module_is_checkpointed_in_training_only():
    x, y = digits(8)
    assert _remats(_train_jaxpr(mlp_model(), x, y)) == 0
    assert _remats(_train_jaxpr(mlp_model(remat=True), x, y)) == 2  # the MLP's two layers
    steps = mlp_model(remat=True).jit_step()
    model = mlp_model(remat=True)
    test = jax.make_jaxpr(steps.test)(model.states, (x, y, None), None, 0).jaxpr
    assert _remats(test) == 0


def test_remat_trains_exactly_as_without_it():
    x, y = digits(128)
    plain, remat = mlp_model(), mlp_model(remat=True)
    for model in (plain, remat):
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(
        jax.tree.leaves(plain.states.net_params),
        jax.tree.leaves(remat.states.net_params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _sequential(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return eqx.nn.Sequential(
        [
            eqx.nn.Linear(64, 32, key=k1),
            eqx.nn.BatchNorm(32, axis_name="batch", mode="batch"),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Dropout(0.3),
            eqx.nn.Linear(32, 10, key=k2),
        ]
    )


def test_remat_with_dropout_keys_and_batchnorm_state():
    x, y = digits(96)
    results = []
    for remat in (False, True):
        model = elegy.Model(
            module=_sequential(),
            loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
            optimizer=optax.sgd(0.1),
            remat=remat,
        )
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        results.append(model)
    for key in ("net_params", "net_states"):
        for a, b in zip(
            jax.tree.leaves(results[0].states[key]),
            jax.tree.leaves(results[1].states[key]),
            strict=True,
        ):
            # The recomputed BatchNorm statistics differ in the last bit (1e-8 after one step).
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
