"""Freezing parameters with `trainable=` and gradient accumulation with optax.MultiSteps:
frozen leaves bitwise unchanged, not differentiated (checked in the step's jaxpr), without
optimizer state and skipped by regularizers; k accumulated batches equal one step on
their union."""

import equinox as eqx
import jax
import numpy as np
import optax
import pytest
from helpers import digits, mlp, mlp_model

import eqx_elegy as elegy


def _last_layer_only(module):
    spec = jax.tree.map(lambda _: False, module)
    return eqx.tree_at(
        lambda m: m.layers[1], spec, replace=jax.tree.map(lambda _: True, module.layers[1])
    )


def _loss():
    return elegy.losses.SparseCategoricalCrossentropy(from_logits=True)


def _frozen_model(**kwargs):
    module = mlp()
    kwargs.setdefault("optimizer", optax.adam(1e-2))
    return elegy.Model(module=module, loss=_loss(), trainable=_last_layer_only(module), **kwargs)


def _shapes(tree):
    return sorted(tuple(a.shape) for a in jax.tree.leaves(tree) if hasattr(a, "shape"))


def test_frozen_leaves_are_bitwise_unchanged_and_have_no_optimizer_state():
    x, y = digits(128)
    model = _frozen_model()
    first = model.module.layers[0]
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    layers = model.states.net_params.layers
    np.testing.assert_array_equal(np.asarray(layers[0].weight), np.asarray(first.weight))
    np.testing.assert_array_equal(np.asarray(layers[0].bias), np.asarray(first.bias))
    assert not np.array_equal(
        np.asarray(layers[1].weight), np.asarray(model.module.layers[1].weight)
    )
    # adam keeps mu and nu for the last layer alone (plus its step count).
    assert _shapes(model.states.optimizer_states) == [(), (10,), (10,), (10, 32), (10, 32)]


def test_frozen_training_equals_a_hand_written_partial_update():
    x, y = digits(64)
    model = _frozen_model(optimizer=optax.sgd(0.5))
    params = model.states.net_params
    model.train_on_batch(x, y)

    def loss_fn(p):
        logits = jax.vmap(eqx.combine(p, model.module))(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = jax.grad(loss_fn)(params)
    expected_last = jax.tree.map(lambda p, g: p - 0.5 * g, params.layers[1], grads.layers[1])
    got = model.states.net_params
    for a, b in zip(jax.tree.leaves(got.layers[1]), jax.tree.leaves(expected_last), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves(got.layers[0]), jax.tree.leaves(params.layers[0]), strict=True):
        np.testing.assert_array_equal(a, b)


def _output_shapes(jaxpr):
    """The shapes of the values computed in `jaxpr` and the jaxprs nested in it, other
    than constants (the zeros grad_step reports as a frozen leaf's gradient)."""
    shapes = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name != "broadcast_in_dim":
            shapes.extend(tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape"))
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    shapes.extend(_output_shapes(inner))
    return shapes


def _train_step_shapes(model, x, y):
    steps = model.jit_step()
    batch = (x, y, None)
    return _output_shapes(jax.make_jaxpr(steps.train)(model.states, batch, None, 0, 0).jaxpr)


def test_frozen_weights_are_not_differentiated_in_the_compiled_step():
    """The first layer's weight is (32, 64): its gradient, and an optimizer update of it,
    would be values of that shape. Training it computes such values; frozen, none is."""
    x, y = digits(16)
    assert (32, 64) in _train_step_shapes(mlp_model(), x, y)
    assert (32, 64) not in _train_step_shapes(_frozen_model(), x, y)
    assert (10, 32) in _train_step_shapes(_frozen_model(), x, y)


def test_callable_filter_trains_the_matrices_only():
    x, y = digits(64)
    model = mlp_model(trainable=lambda leaf: leaf.ndim == 2)
    biases = [np.asarray(layer.bias) for layer in model.module.layers]
    model.fit(x, y, batch_size=32, verbose=0)
    for layer, bias in zip(model.states.net_params.layers, biases, strict=True):
        np.testing.assert_array_equal(np.asarray(layer.bias), bias)


def test_regularizers_skip_frozen_parameters_unless_asked():
    x, y = digits(32)
    module = mlp()
    last = module.layers[1]
    expected = 0.1 * float(np.sum(np.square(last.weight)) + np.sum(np.square(last.bias)))
    everything = 0.1 * sum(
        float(np.sum(np.square(a)))
        for a in jax.tree.leaves(eqx.filter(module, eqx.is_inexact_array))
    )
    for include_frozen, value in ((False, expected), (True, everything)):
        model = elegy.Model(
            module=module,
            loss=[_loss(), elegy.regularizers.L2(0.1, include_frozen=include_frozen)],
            trainable=_last_layer_only(module),
            optimizer=optax.sgd(0.1),
        )
        assert model.test_on_batch(x, y)["l2_loss"] == pytest.approx(value, rel=1e-5)


def test_summary_counts_frozen_parameters_as_non_trainable():
    x, _ = digits(4)
    text = _frozen_model().summary(x[:1], return_string=True)
    assert "trainable: 330" in text  # the last layer: 10 * 32 + 10
    assert "non-trainable: 2,080" in text or "non-trainable: 2080" in text
    assert "frozen by trainable=: 2,080" in text or "frozen by trainable=: 2080" in text


def test_bad_trainable_filters_are_clear_errors():
    with pytest.raises(ValueError, match="trainable= selects none of the module's parameters"):
        mlp_model(trainable=lambda leaf: False)
    with pytest.raises(ValueError, match="trainable= must be a filter over the module"):
        mlp_model(trainable=[True, False, True])


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_multisteps_equals_one_step_on_the_union_of_its_batches(steps_per_execution):
    x, y = digits(256)
    accumulated = mlp_model(optimizer=optax.MultiSteps(optax.adam(1e-2), every_k_schedule=4))
    accumulated.fit(
        x,
        y,
        batch_size=32,
        epochs=2,
        shuffle=False,
        verbose=0,
        steps_per_execution=steps_per_execution,
    )
    large = mlp_model(optimizer=optax.adam(1e-2))
    large.fit(x, y, batch_size=128, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(
        jax.tree.leaves(accumulated.states.net_params),
        jax.tree.leaves(large.states.net_params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(
        np.asarray(large.states.net_params.layers[0].weight), np.asarray(mlp().layers[0].weight)
    )


def test_multisteps_of_an_injected_optimizer_logs_its_learning_rate():
    x, y = digits(64)
    inner = optax.inject_hyperparams(optax.sgd)(learning_rate=0.05)
    model = mlp_model(optimizer=optax.MultiSteps(inner, every_k_schedule=2))
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert history.history["learning_rate"] == pytest.approx([0.05, 0.05])
