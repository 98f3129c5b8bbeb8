import inspect
from typing import Any

import equinox as eqx
import jax
import numpy as np
import pytest

import eqx_elegy as elegy
from eqx_elegy._injection import INJECTABLE
from eqx_elegy._steps import run_step


def test_unknown_parameter_rejected_at_class_creation():
    with pytest.raises(TypeError) as info:

        class Bad(elegy.Model):
            def test_step(self, x, labels, states) -> elegy.TestStep:
                raise AssertionError

    message = str(info.value)
    assert "Bad.test_step" in message and "'labels'" in message
    for name in INJECTABLE:
        assert name in message


def test_positional_only_rejected():
    with pytest.raises(TypeError, match="positional-only"):

        class Bad(elegy.Model):
            def pred_step(self, x, /, states) -> elegy.PredStep:
                raise AssertionError


def test_inject_passes_only_named_parameters():
    class Probe(elegy.Model):
        def pred_step(self, states, x):
            return x, states

        def test_step(self, **kwargs: Any):
            return sorted(kwargs)

    probe = Probe(check_types=False)
    out = run_step(probe, "pred_step", x=1, states=2, y_true=3, training=True)
    assert out == (1, 2)
    assert run_step(probe, "test_step", x=1, rng=2) == ["rng", "x"]


def test_default_steps_show_their_real_signature():
    params = list(inspect.signature(elegy.Model.pred_step).parameters)
    assert params == ["self", "x", "states", "initializing", "training"]
    assert list(inspect.signature(elegy.Model.init_step).parameters)[1:] == [
        "x",
        "y_true",
        "sample_weight",
        "class_weight",
        "states",
        "rng",
    ]


class Doubler(elegy.Model):
    """Calls the default pred_step the ways a user's override does."""

    def pred_step(self, x, states, training):
        y_pred, states = super().pred_step(x, states, training=training, rng=None)
        return 2 * y_pred, states


def test_a_default_step_binds_positional_and_ignores_unused_injectable_names():
    module = eqx.nn.Linear(3, 2, key=jax.random.key(0))
    x = np.ones((4, 3), np.float32)
    model = Doubler(module=module)
    np.testing.assert_allclose(model.predict(x), 2 * jax.vmap(module)(x), rtol=1e-6)
    y_pred, _ = elegy.Model(module=module).pred_step(x, model.states)  # flags default False
    np.testing.assert_allclose(y_pred, jax.vmap(module)(x), rtol=1e-6)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((1, 2, False, False, 5), {}, r"Model.pred_step takes 4 positional arguments \(x, "),
        ((1,), {"x": 1}, "Model.pred_step got multiple values for argument 'x'"),
        ((), {"labels": 1}, "Model.pred_step got an unexpected keyword argument 'labels'"),
    ],
)
def test_a_default_step_called_wrongly_says_how(args, kwargs, message):
    model = elegy.Model(module=eqx.nn.Linear(3, 2, key=jax.random.key(0)))
    with pytest.raises(TypeError, match=message):
        model.pred_step(*args, **kwargs)


def test_every_step_kind_is_a_method_and_every_compiled_kind_a_jit_steps_field():
    from eqx_elegy._steps import KINDS

    for name, kind in KINDS.items():
        assert callable(getattr(elegy.Model, name)) and kind.name == name
    compiled = {kind.compiled for kind in KINDS.values()} - {None}
    assert compiled == set(elegy.JitSteps._fields) - {"jit"}


def test_a_step_that_is_no_plain_function_is_called_on_the_instance():
    class Jitted(elegy.Model):
        @eqx.filter_jit
        def pred_step(self, x, states):
            return 2 * x, states

    states = elegy.States(net_params=1)
    y_pred, out = run_step(Jitted(check_types=False), "pred_step", x=np.ones(2), states=states)
    np.testing.assert_allclose(y_pred, [2.0, 2.0])
    assert out.net_params == 1


def test_signature_errors_in_full():
    with pytest.raises(TypeError) as info:

        class Positional(elegy.Model):
            def pred_step(self, x, /, states) -> elegy.PredStep:
                raise AssertionError

    assert str(info.value) == (
        "Positional.pred_step: parameter 'x' is positional-only; step parameters are "
        "injected by name, so remove the '/'."
    )
    with pytest.raises(TypeError) as info:

        class AfterStar(elegy.Model):
            def pred_step(self, *args, labels) -> elegy.PredStep:
                raise AssertionError

    assert str(info.value) == (
        "AfterStar.pred_step asks for parameter 'labels', which cannot be injected. Valid "
        "names: x, y_true, y_pred, sample_weight, class_weight, states, initializing, "
        "training, rng."
    )


def test_a_step_taking_kwargs_gets_the_instance_and_every_value():
    class Kwargs(elegy.Model):
        def test_step(self, **kwargs: Any):
            return type(self).__name__, sorted(kwargs)

    assert run_step(Kwargs(check_types=False), "test_step", x=1, rng=2) == ("Kwargs", ["rng", "x"])
