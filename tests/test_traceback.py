"""Errors lead to the user's code (issue 23, point 6): an error leaving `fit` and the other
public methods shows the user's frames only, as `eqx_elegy.StepOutputError`, without
JAX's note; a user's step called directly checks its output too (eagerly, under
`jax.jit`/`eqx.filter_jit`, or decorated with `eqx.filter_jit`), once per call and not at
all with `check_types=False`; and the message ends at the step's `return` line."""

import copy
import inspect
import pickle
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import counting_output_checks

import eqx_elegy as elegy
import eqx_elegy._steps
from eqx_elegy._injection import call_plan
from eqx_elegy._steps import defined_at

X = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
PACKAGE = str(Path(elegy.__file__).parent)


class Linear(elegy.Model):
    """A linear regression whose parameters start at zero."""

    def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
        params = (
            {"w": jnp.zeros((x.shape[-1], 1)), "b": jnp.zeros((1,))}
            if initializing
            else states.net_params
        )
        loss = jnp.mean((x @ params["w"] + params["b"] - y_true) ** 2)
        return loss, {"mse": loss}, states.update(net_params=params)


class BadLinear(Linear):
    """The newcomer's step: it forgot its logs."""

    def test_step(self, x, y_true, states, initializing):
        loss, _, states = super().test_step(x, y_true, states, initializing)
        return loss, states


class JitBadLinear(Linear):
    @eqx.filter_jit
    def test_step(self, x, y_true, states, initializing):
        loss, _, states = super().test_step(x, y_true, states, initializing)
        return loss, states


class Flat(elegy.Model):
    """Predictions without the batch dimension."""

    def pred_step(self, x, states) -> elegy.PredStep:
        return jnp.mean(x, axis=0), states


def _return_line(cls: type, method: str) -> int:
    """The line of the one `return` of `cls.method`: the last line of its source."""
    lines, first = inspect.getsourcelines(inspect.unwrap(getattr(cls, method)))
    return first + len(lines) - 1


BAD_MESSAGE = (
    "eqx_elegy.StepOutputError: BadLinear.test_step must return elegy.TestStep (loss, logs, "
    "states), but it returned a tuple of 2, not a tuple of 3. It returned: "
    "tuple(float32[], States). BadLinear.test_step returned it at "
    f"{__file__}:{_return_line(BadLinear, 'test_step')}.\n"
)


def _frames(error: BaseException) -> list[traceback.FrameSummary]:
    return traceback.extract_tb(error.__traceback__)


def _library_frames(error: BaseException) -> list[str]:
    """The frames of eqx_elegy and jax in `error`'s traceback (equinox's bound-method
    frame, above the entry point, cannot be removed from inside it)."""
    return [
        f"{frame.filename}:{frame.lineno}"
        for frame in _frames(error)
        if frame.filename.startswith(PACKAGE) or "/jax/" in frame.filename
    ]


ENTRY_POINTS: dict[str, Callable[[elegy.Model], Any]] = {
    "fit": lambda model: model.fit(X, Y, batch_size=8, verbose=0),
    "evaluate": lambda model: model.evaluate(X, Y, batch_size=8, verbose=0),
    "train_on_batch": lambda model: model.train_on_batch(X[:8], Y[:8]),
    "test_on_batch": lambda model: model.test_on_batch(X[:8], Y[:8]),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_bad_step_shows_the_users_frames_only(entry: str) -> None:
    with pytest.raises(elegy.StepOutputError) as caught:
        ENTRY_POINTS[entry](BadLinear(optimizer=optax.sgd(0.1)))
    shown = "".join(traceback.format_exception(caught.value))
    # Before: 36 library frames and JAX's note below the message.
    assert shown.endswith(BAD_MESSAGE), shown
    assert "JAX has removed its internal frames" not in shown
    assert _library_frames(caught.value) == []
    frames = _frames(caught.value)
    assert (
        frames[0].filename == __file__
        and frames[0].name == "test_a_bad_step_shows_the_users_frames_only"
    )
    assert len(frames) <= 3  # this test, the lambda that calls the method, equinox's call


def test_predict_with_a_bad_pred_step_shows_the_users_frames_only() -> None:
    with pytest.raises(elegy.StepOutputError, match="y_pred is float32") as caught:
        Flat().predict(X, batch_size=8)
    assert _library_frames(caught.value) == []
    assert str(caught.value).endswith(
        f"returned it at {__file__}:{_return_line(Flat, 'pred_step')}."
    )


def test_an_error_raised_in_the_users_step_keeps_the_step_frame() -> None:
    class Raises(Linear):
        def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
            if x.shape[-1] != 4:
                raise ValueError("this step wants 4 features")
            return super().test_step(x, y_true, states, initializing)

    with pytest.raises(ValueError, match="wants 4 features") as caught:
        Raises(optimizer=optax.sgd(0.1)).fit(X, Y, batch_size=8, verbose=0)
    assert _library_frames(caught.value) == []
    names = [frame.name for frame in _frames(caught.value)]
    assert names[0] == "test_an_error_raised_in_the_users_step_keeps_the_step_frame"
    assert names[-1] == "test_step"  # the `raise` line of the step


def test_a_step_called_by_the_users_step_is_named_with_the_callers_line() -> None:
    class CallsIt(BadLinear):
        def grad_step(self, x, y_true, states, initializing) -> elegy.GradStep:
            loss, _, new = self.test_step(x, y_true, states, initializing)  # type: ignore[misc]
            return loss, {}, new, jax.tree.map(jnp.zeros_like, new.net_params)

    with pytest.raises(elegy.StepOutputError, match="BadLinear.test_step must return") as caught:
        CallsIt(optimizer=optax.sgd(0.1)).fit(X, Y, batch_size=8, verbose=0)
    assert _library_frames(caught.value) == []
    assert "grad_step" in [frame.name for frame in _frames(caught.value)]


def test_jax_traceback_filtering_off_keeps_every_frame() -> None:
    jax.config.update("jax_traceback_filtering", "off")
    try:
        with pytest.raises(elegy.StepOutputError) as caught:
            BadLinear().evaluate(X, Y, batch_size=8, verbose=0)
    finally:
        jax.config.update("jax_traceback_filtering", "auto")
    assert any(frame.startswith(PACKAGE) for frame in _library_frames(caught.value))


DIRECT_CALLS: dict[str, Callable[[elegy.Model], Any]] = {
    "eager": lambda model: model.test_step(X, Y, model.states, True),
    "jax.jit": lambda model: jax.jit(lambda m: m.test_step(X, Y, m.states, True))(model),
    "eqx.filter_jit": lambda model: eqx.filter_jit(lambda m: m.test_step(X, Y, m.states, True))(
        model
    ),
    "through the class": lambda model: type(model).test_step(model, X, Y, model.states, True),
}


@pytest.mark.parametrize("call", list(DIRECT_CALLS))
def test_a_direct_call_checks_the_output(call: str) -> None:
    # Before: the bad step returned its 2-tuple silently.
    with pytest.raises(elegy.StepOutputError) as caught:
        DIRECT_CALLS[call](BadLinear())
    assert traceback.format_exception_only(caught.value)[0] == BAD_MESSAGE
    assert not any(frame.startswith(PACKAGE) for frame in _library_frames(caught.value))


@pytest.mark.parametrize("call", list(DIRECT_CALLS))
def test_a_direct_call_of_a_filter_jit_step_checks_the_output(call: str) -> None:
    with pytest.raises(elegy.StepOutputError, match="JitBadLinear.test_step must return"):
        DIRECT_CALLS[call](JitBadLinear())


@pytest.mark.parametrize("call", list(DIRECT_CALLS))
def test_check_types_false_skips_the_direct_check(call: str) -> None:
    loss, states = DIRECT_CALLS[call](BadLinear(check_types=False))
    assert float(loss) == pytest.approx(float(np.mean(Y**2)), rel=1e-5)
    assert isinstance(states, elegy.States)


@pytest.mark.parametrize("call", list(DIRECT_CALLS))
def test_a_good_step_called_directly_returns_its_output(call: str) -> None:
    loss, logs, states = DIRECT_CALLS[call](Linear())
    assert float(loss) == pytest.approx(float(np.mean(Y**2)), rel=1e-5)
    assert float(logs["mse"]) == float(loss)
    assert states.net_params["w"].shape == (3, 1)


def test_other_step_kinds_are_checked_directly_with_their_arguments() -> None:
    model = Flat()
    with pytest.raises(elegy.StepOutputError, match="without the batch dimension 8 of x"):
        model.pred_step(X[:8], model.states)

    class ForgotBias(Linear):
        def grad_step(self, x, y_true, states, initializing) -> elegy.GradStep:
            loss, logs, new = self.test_step(x, y_true, states, initializing)
            return loss, logs, new, {"w": jnp.zeros((3, 1))}

    params = {"w": jnp.zeros((3, 1)), "b": jnp.zeros((1,))}
    states = elegy.States(net_params=params)
    with pytest.raises(elegy.StepOutputError, match=r"missing grads\['b'\]"):
        ForgotBias().grad_step(X[:8], Y[:8], states, False)


class Doubled(elegy.Model):
    """A step that calls the default one (`super().test_step`), and counts its runs."""

    runs: ClassVar[list[int]] = []

    def test_step(self, x, y_true, states, initializing, training) -> elegy.TestStep:
        self.runs.append(1)
        loss, logs, states = super().test_step(
            x, y_true, states=states, initializing=initializing, training=training
        )
        return 2 * loss, logs, states


def test_each_call_of_a_step_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_output_checks(monkeypatch)
    Doubled.runs.clear()
    model = Doubled(
        module=eqx.nn.Linear(3, 1, key=jax.random.key(0)),
        loss=elegy.losses.MeanSquaredError(),
        optimizer=optax.sgd(0.01),
    )
    model.fit(X, Y, batch_size=8, epochs=2, verbose=0)
    model.evaluate(X, Y, batch_size=8, verbose=0)
    # Run by the loops (by `run_step`, never through the wrapper): once per trace.
    assert len(Doubled.runs) >= 2 and calls.count("test_step") == len(Doubled.runs)
    calls.clear()
    Doubled.runs.clear()
    model.test_step(
        X[:8], Y[:8], model.states, False, False
    )  # directly: checked by its wrapper, once
    assert calls == ["pred_step", "test_step"] and len(Doubled.runs) == 1
    jitted = eqx.filter_jit(lambda m, x, y: m.test_step(x, y, m.states, False, False))
    jitted(model, X[:8], Y[:8])
    jitted(model, X[8:16], Y[8:16])  # compiled: neither the step nor the check runs again
    assert calls == ["pred_step", "test_step"] * 2 and len(Doubled.runs) == 2


def test_the_wrapper_keeps_what_tools_read() -> None:
    step = BadLinear.test_step
    original = inspect.unwrap(step)
    assert step.__name__ == "test_step" and step.__qualname__ == "BadLinear.test_step"
    assert list(inspect.signature(step).parameters) == [
        "self",
        "x",
        "y_true",
        "states",
        "initializing",
    ]
    assert original.__code__.co_filename == __file__
    assert defined_at(BadLinear, "test_step") == f"{__file__}:{original.__code__.co_firstlineno}"
    assert call_plan(BadLinear, "test_step") == (
        original,
        ("x", "y_true", "states", "initializing"),
    )
    assert inspect.unwrap(JitBadLinear.test_step.__wrapped__).__code__.co_filename == __file__
    assert BadLinear._overridden() == frozenset({"test_step"})


def test_a_step_with_several_returns_is_named_by_its_def_line() -> None:
    class TwoReturns(Linear):
        def test_step(self, x, y_true, states, initializing):
            loss, _, states = super().test_step(x, y_true, states, initializing)
            if initializing:
                return loss, states
            return loss, {}, states

    line = inspect.unwrap(TwoReturns.test_step).__code__.co_firstlineno
    with pytest.raises(elegy.StepOutputError) as caught:
        TwoReturns().evaluate(X, Y, batch_size=8, verbose=0)
    assert str(caught.value).endswith(f"TwoReturns.test_step is defined at {__file__}:{line}.")


def test_a_model_with_wrapped_steps_pickles_copies_and_updates() -> None:
    model = Linear()  # (optax's optimizers are closures, which do not pickle)
    model.init(X[:8], Y[:8])
    states = model.states
    for other in (
        pickle.loads(pickle.dumps(model)),
        copy.deepcopy(model),
        eqx.tree_at(lambda m: m.states, model, states),
    ):
        loss, _, _ = other.test_step(X, Y, states, False)
        expected = model.evaluate(X, Y, batch_size=32, verbose=0)["mse"]
        np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_a_population_of_a_model_with_a_wrapped_step_trains() -> None:
    population = elegy.Population(Linear(optimizer=optax.sgd(0.1)), size=2)
    history = population.fit(X, Y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    mse = np.asarray(history.history["mse"])
    assert mse.shape == (2, 2) and np.all(mse[1] < mse[0])
    with pytest.raises(elegy.StepOutputError) as caught:
        elegy.Population(BadLinear(optimizer=optax.sgd(0.1)), size=2).fit(
            X, Y, batch_size=8, verbose=0
        )
    assert _library_frames(caught.value) == []
