from typing import Any

import pytest

import eqx_elegy as elegy
from eqx_elegy._injection import INJECTABLE, inject


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
    class Probe:
        def pred_step(self, states, x):
            return x, states

        def test_step(self, **kwargs: Any):
            return sorted(kwargs)

    assert inject(Probe(), "pred_step", x=1, states=2, y_true=3, training=True) == (1, 2)
    assert inject(Probe(), "test_step", x=1, rng=2) == ["rng", "x"]
