"""Run-time checks of step outputs: the message of each mismatch, and that the check runs
only while a step is traced (so it costs nothing per compiled step) and not at all with
`check_types=False`."""

import functools
import inspect
import re
import traceback

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import counting_output_checks

import eqx_elegy as elegy
import eqx_elegy._steps
from eqx_elegy._steps import (
    batch_size_of,
    check_output,
    defined_at,
    describe,
    require_predictor,
    run_step,
)

X = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)


class Linear(elegy.Model):
    """A well-behaved linear regression; the subclasses below each break one thing."""

    def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
        params = (
            {"w": jnp.zeros((x.shape[-1], 1)), "b": jnp.zeros((1,))}
            if initializing
            else states.net_params
        )
        y_pred = x @ params["w"] + params["b"]
        loss = jnp.mean((y_pred - y_true) ** 2)
        return loss, {"mse": loss}, states.update(net_params=params)


def _fit(model: elegy.Model, epochs: int = 1) -> elegy.History:
    return model.fit(X, Y, batch_size=8, epochs=epochs, verbose=0, shuffle=False)


def _raises(message_parts: list[str]) -> pytest.RaisesExc:
    pattern = ".*".join(re.escape(part) for part in message_parts)
    return pytest.raises(elegy.StepOutputError, match=re.compile(pattern, re.DOTALL))


def test_a_good_model_trains() -> None:
    history = _fit(Linear(optimizer=optax.sgd(0.1)), epochs=3)
    assert history.history["mse"][-1] < 0.5 * history.history["mse"][0]


def test_loss_with_a_batch_dimension() -> None:
    class PerExampleLoss(Linear):
        def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
            loss, logs, states = super().test_step(x, y_true, states, initializing)
            return jnp.mean((x - y_true) ** 2, axis=-1), logs, states

    with _raises(
        [
            "PerExampleLoss.test_step must return elegy.TestStep (loss, logs, states)",
            "its loss is float32[8], not a scalar float array",
            "reduce it with jnp.mean or jnp.sum",
            "It returned: tuple(float32[8], dict with keys ['mse'], States)",
        ]
    ):
        _fit(PerExampleLoss(optimizer=optax.sgd(0.1)))


def test_integer_loss() -> None:
    class CountingLoss(Linear):
        def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
            _, logs, states = super().test_step(x, y_true, states, initializing)
            return jnp.sum(x > 0), logs, states

    with _raises(["CountingLoss.test_step", "elegy.TestStep", "its loss is int32[]"]):
        CountingLoss().evaluate(X, Y, batch_size=8, verbose=0)


def test_log_that_is_not_a_scalar() -> None:
    class VectorLog(Linear):
        def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
            loss, logs, states = super().test_step(x, y_true, states, initializing)
            return loss, {**logs, "errors": jnp.abs(x - y_true)}, states

    with _raises(
        [
            "VectorLog.test_step must return elegy.TestStep",
            "its log 'errors' is float32[8, 3], not a scalar",
            "dict with keys ['mse', 'errors']",
        ]
    ):
        _fit(VectorLog(optimizer=optax.sgd(0.1)))


def test_grads_with_a_missing_leaf() -> None:
    class ForgotBias(Linear):
        def grad_step(self, x, y_true, states, initializing) -> elegy.GradStep:
            if initializing:  # the parameters do not exist yet
                return super().grad_step(x=x, y_true=y_true, states=states, initializing=True)

            def loss_fn(params):
                loss, logs, new = self.test_step(
                    x, y_true, states.update(net_params=params), initializing
                )
                return loss, (logs, new)

            (loss, (logs, new)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                states.net_params
            )
            return loss, logs, new, {"w": grads["w"]}

    model = ForgotBias(optimizer=optax.sgd(0.1))
    with _raises(
        [
            "ForgotBias.grad_step must return elegy.GradStep (loss, logs, states, grads)",
            "its grads do not have the leaves of states.net_params (missing grads['b'])",
        ]
    ):
        _fit(model)


def test_grads_with_a_wrong_shape() -> None:
    class TransposedGrads(Linear):
        def grad_step(self, x, y_true, states, initializing) -> elegy.GradStep:
            loss, logs, new = self.test_step(x, y_true, states, initializing)
            grads = jax.tree.map(jnp.zeros_like, new.net_params)
            return loss, logs, new, {**grads, "w": grads["w"].T}

    model = TransposedGrads(optimizer=optax.sgd(0.1))
    with _raises(
        [
            "TransposedGrads.grad_step must return elegy.GradStep",
            "grads['w'] is float32[1, 3] while states.net_params['w'] is float32[3, 1]",
        ]
    ):
        _fit(model)


def test_y_pred_without_the_batch_dimension() -> None:
    class MeanPrediction(elegy.Model):
        def pred_step(self, x, states) -> elegy.PredStep:
            return jnp.mean(x, axis=0), states

    with _raises(
        [
            "MeanPrediction.pred_step must return elegy.PredStep (y_pred, states)",
            "y_pred is float32[3], without the batch dimension 8 of x in front",
        ]
    ):
        MeanPrediction().predict(X, batch_size=8)


def test_y_pred_leaf_of_a_pytree_is_named() -> None:
    class TwoHeads(elegy.Model):
        def pred_step(self, x, states) -> elegy.PredStep:
            return {"full": x, "pooled": jnp.mean(x)}, states

    with _raises(["TwoHeads.pred_step", "y_pred['pooled'] is float32[]"]):
        TwoHeads().predict(X, batch_size=8)


def test_wrong_tuple_length_and_states() -> None:
    class NoLogs(Linear):
        def test_step(self, x, y_true, states, initializing):
            loss, _, states = super().test_step(x, y_true, states, initializing)
            return loss, states

    with _raises(["NoLogs.test_step must return elegy.TestStep", "it returned a tuple of 2"]):
        NoLogs().evaluate(X, Y, batch_size=8, verbose=0)

    class ParamsAsStates(Linear):
        def test_step(self, x, y_true, states, initializing):
            loss, logs, states = super().test_step(x, y_true, states, initializing)
            return loss, logs, states.net_params

    with _raises(["ParamsAsStates.test_step", "its states element is dict with keys ['w', 'b']"]):
        ParamsAsStates().evaluate(X, Y, batch_size=8, verbose=0)


def test_check_types_false_turns_the_check_off() -> None:
    class ShapedLoss(Linear):
        def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
            loss, logs, states = super().test_step(x, y_true, states, initializing)
            return jnp.reshape(loss, (1,)), logs, states

    with _raises(["ShapedLoss.test_step", "its loss is float32[1]"]):
        ShapedLoss().evaluate(X, Y, batch_size=8, verbose=0)
    logs = ShapedLoss(check_types=False).evaluate(X, Y, batch_size=8, verbose=0)
    # The parameters start at zero, and a user's own log is averaged over the batches.
    assert logs["mse"] == pytest.approx(float(np.mean(Y**2)), rel=1e-5)


def test_check_runs_only_while_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_output_checks(monkeypatch)
    per_epoch: list[int] = []

    class Count(elegy.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None) -> None:
            per_epoch.append(len(calls))

    model = Linear(optimizer=optax.sgd(0.1))
    model.fit(X, Y, batch_size=8, epochs=3, verbose=0, callbacks=[Count()], shuffle=False)
    # 4 steps an epoch, 3 epochs: the checks ran in the first epoch's traces only.
    assert per_epoch[0] > 0 and per_epoch == [per_epoch[0]] * 3
    assert {"train_step", "grad_step", "test_step"} <= set(calls)
    traced = len(calls)
    model.evaluate(X, Y, batch_size=8, verbose=0)
    after_first_evaluate = len(calls)
    model.evaluate(X, Y, batch_size=8, verbose=0)
    assert after_first_evaluate > traced and len(calls) == after_first_evaluate


def test_check_types_false_never_calls_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_output_checks(monkeypatch)
    model = Linear(optimizer=optax.sgd(0.1), check_types=False)
    history = _fit(model, epochs=2)
    model.evaluate(X, Y, batch_size=8, verbose=0)
    assert calls == [] and len(history.history["mse"]) == 2


def test_describe() -> None:
    assert describe(jnp.zeros((2, 3), jnp.float32)) == "float32[2, 3]"
    assert describe(np.zeros((), np.int64)) == "numpy int64[]"
    assert describe(3.0) == "float 3.0"
    assert describe((jnp.zeros(()), {"a": 1})) == "tuple(float32[], dict with keys ['a'])"
    assert describe(elegy.States()) == "States"


def test_check_output_accepts_what_the_aliases_allow() -> None:
    states = elegy.States()
    loss = jnp.zeros((), jnp.float32)
    logs = {"a": jnp.ones(()), "b": 1.0, "c": np.float32(2.0), "d": np.ones((), np.int32)}
    check_output("M", "test_step", "TestStep", (loss, logs, states))
    params = {"w": jnp.ones((2, 2)), "b": None}
    check_output("M", "grad_step", "GradStep", (loss, logs, states, params), net_params=params)
    check_output("M", "pred_step", "PredStep", ({"y": jnp.ones((4, 2))}, states), batch_size=4)
    check_output("M", "train_step", "TrainStep", (logs, states))
    check_output("M", "init_step", "InitStep", states)
    with _raises(["M.init_step must return elegy.InitStep (states)", "its states element is dict"]):
        check_output("M", "init_step", "InitStep", {"net_params": None})


def test_the_compiled_step_is_the_same_without_the_check() -> None:
    """The check only inspects values while tracing, so it adds nothing to the program
    that runs each step: the lowered train step is identical either way."""
    programs = []
    for check_types in (True, False):
        model = Linear(optimizer=optax.sgd(0.1), check_types=check_types)
        model.init(X[:8], Y[:8])
        lowered = jax.jit(model.jit_step().train).lower(
            model.states, (X[:8], Y[:8], None), None, 0, 0
        )
        programs.append(lowered.as_text())
    assert "stablehlo" in programs[0] and programs[0] == programs[1]


def test_grads_with_a_wrong_dtype() -> None:
    class HalfGrads(Linear):
        def grad_step(self, x, y_true, states, initializing) -> elegy.GradStep:
            loss, logs, new = self.test_step(x, y_true, states, initializing)
            grads = jax.tree.map(jnp.zeros_like, new.net_params)
            return loss, logs, new, {**grads, "b": grads["b"].astype(jnp.bfloat16)}

    model = HalfGrads(optimizer=optax.sgd(0.1))
    with _raises(
        [
            "HalfGrads.grad_step must return elegy.GradStep",
            "grads['b'] is bfloat16[1] while states.net_params['b'] is float32[1]",
        ]
    ):
        _fit(model)


class BadLinear(Linear):
    """Issue 23, point 6: the newcomer's step that forgot its logs."""

    def test_step(self, x, y_true, states, initializing):
        loss, _, states = super().test_step(x, y_true, states, initializing)
        return loss, states


def test_output_error_shows_as_eqx_elegy_and_names_the_file_and_line() -> None:
    with pytest.raises(elegy.StepOutputError) as caught:
        BadLinear().evaluate(X, Y, batch_size=8, verbose=0)
    # A traceback's last line names the class by its module: the public one.
    shown = traceback.format_exception_only(caught.value)[0]
    assert shown.startswith(
        "eqx_elegy.StepOutputError: BadLinear.test_step must return elegy.TestStep "
        "(loss, logs, states), but it returned a tuple of 2, not a tuple of 3."
    )
    # The step's one `return` statement, two lines below its `def`.
    line = inspect.unwrap(BadLinear.test_step).__code__.co_firstlineno + 2
    assert str(caught.value).endswith(
        f"It returned: tuple(float32[], States). BadLinear.test_step returned it at "
        f"{__file__}:{line}."
    )


def test_defined_at_finds_user_steps_through_decorators_and_not_library_ones() -> None:
    class Jitted(Linear):
        @eqx.filter_jit
        def test_step(self, x, y_true, states, initializing) -> elegy.TestStep:
            return super().test_step(x, y_true, states, initializing)

    line = inspect.unwrap(Jitted.test_step.__wrapped__).__code__.co_firstlineno
    assert defined_at(Jitted, "test_step") == f"{__file__}:{line}"
    assert defined_at(Jitted, "train_step") is None  # the library's default
    assert defined_at(elegy.Model, "test_step") is None


def test_describe_cuts_long_containers_and_names_other_types() -> None:
    six = tuple(range(6))
    assert describe(six) == "tuple(int 0, int 1, int 2, int 3, int 4, int 5)"
    assert describe([*six, 6]) == "list(int 0, int 1, int 2, int 3, int 4, int 5, ...)"
    keys = {f"k{i}": i for i in range(9)}
    assert describe(keys) == "dict with keys ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7']"
    assert describe("text") == "str" and describe(None) == "NoneType"


def test_check_output_messages_in_full() -> None:
    """The whole message of each check, called directly (no model, no fit)."""
    states = elegy.States()
    loss = jnp.zeros((), jnp.float32)
    with pytest.raises(elegy.StepOutputError) as caught:
        check_output("M", "train_step", "TrainStep", ([loss], states))
    assert str(caught.value) == (
        "M.train_step must return elegy.TrainStep (logs, states), but its logs are a list, "
        "not a mapping from names to scalars. It returned: tuple(list(float32[]), States)."
    )
    with pytest.raises(elegy.StepOutputError) as caught:
        check_output("M", "train_step", "TrainStep", ({"v": jnp.ones(2)}, states))
    assert str(caught.value) == (
        "M.train_step must return elegy.TrainStep (logs, states), but its log 'v' is "
        "float32[2], not a scalar: each log holds one number (reduce it, e.g. with jnp.mean). "
        "It returned: tuple(dict with keys ['v'], States)."
    )


def test_grads_message_lists_five_missing_and_the_unexpected_leaves() -> None:
    params = {f"p{i}": jnp.zeros(()) for i in range(7)}
    grads = {"p6": jnp.zeros(()), "q": jnp.zeros(())}
    with pytest.raises(elegy.StepOutputError) as caught:
        check_output(
            "M",
            "grad_step",
            "GradStep",
            (jnp.zeros(()), {}, elegy.States(), grads),
            net_params=params,
        )
    assert str(caught.value) == (
        "M.grad_step must return elegy.GradStep (loss, logs, states, grads), but its grads do "
        "not have the leaves of states.net_params (missing grads['p0'], grads['p1'], "
        "grads['p2'], grads['p3'], grads['p4']; unexpected grads['q']); return one gradient "
        "per parameter, e.g. from jax.grad w.r.t. states.net_params. "
        "It returned: tuple(float32[], dict with keys [], States, dict with keys ['p6', 'q'])."
    )


def test_grads_of_leaves_that_are_not_arrays() -> None:
    """A parameter held as a Python number has no shape or dtype; its gradient as a number
    matches it, and an array gradient does not."""
    step = (jnp.zeros(()), {}, elegy.States())
    check_output("M", "grad_step", "GradStep", (*step, {"s": 0.5}), net_params={"s": 1.0})
    with _raises(["grads['s'] is float32[] while states.net_params['s'] is float 1.0"]):
        check_output(
            "M", "grad_step", "GradStep", (*step, {"s": jnp.zeros(())}), net_params={"s": 1.0}
        )


def test_check_output_messages_for_the_tuple_states_loss_and_location() -> None:
    states = elegy.States()
    with pytest.raises(elegy.StepOutputError) as caught:
        check_output(
            "M",
            "test_step",
            "TestStep",
            [1.0, {}, states],
            where=lambda: "returned it at steps.py:7",
        )
    assert str(caught.value) == (
        "M.test_step must return elegy.TestStep (loss, logs, states), but it returned not a "
        "tuple, not a tuple of 3. It returned: list(float 1.0, dict with keys [], States). "
        "M.test_step returned it at steps.py:7."
    )
    with pytest.raises(elegy.StepOutputError) as caught:
        check_output(
            "M",
            "test_step",
            "TestStep",
            (jnp.ones(2), {}, states),
            where=lambda: "returned it at s.py:1",
        )
    assert str(caught.value) == (
        "M.test_step must return elegy.TestStep (loss, logs, states), but its loss is "
        "float32[2], not a scalar float array (Float[Array, '']): reduce it with jnp.mean or "
        "jnp.sum, and compute it in a float dtype. It returned: tuple(float32[2], dict with "
        "keys [], States). M.test_step returned it at s.py:1."
    )
    # A bad states element is reported even when y_pred is fine.
    with _raises(["M.pred_step", "its states element is dict with keys ['a']"]):
        check_output("M", "pred_step", "PredStep", (jnp.ones((4, 2)), {"a": 1}), batch_size=4)


def test_y_pred_leaf_that_is_not_an_array() -> None:
    with _raises(["y_pred['a'] is float 1.0, without the batch dimension 4 of x in front"]):
        check_output("M", "pred_step", "PredStep", ({"a": 1.0}, elegy.States()), batch_size=4)


def test_batch_size_of() -> None:
    assert batch_size_of({"a": jnp.zeros((5, 2)), "b": jnp.zeros((5,))}) == 5
    for x in ({}, jnp.zeros(()), [1.0]):
        with pytest.raises(ValueError) as caught:
            batch_size_of(x)
        assert str(caught.value) == "x must contain arrays with a leading batch dimension."


def test_require_predictor() -> None:
    require_predictor(elegy.Model(module=eqx.nn.Linear(3, 1, key=jax.random.key(0))), "predict")

    class Predicts(elegy.Model):
        def pred_step(self, x, states) -> elegy.PredStep:
            return x, states

    require_predictor(Predicts(), "predict")
    with pytest.raises(TypeError) as caught:
        require_predictor(Linear(), "predict")
    assert str(caught.value) == (
        "Linear.predict needs predictions, but the model has no module and does not override "
        "pred_step: pass Model(module=...) or override pred_step."
    )


def test_defined_at_of_a_step_that_is_no_function() -> None:
    class Odd:
        test_step = functools.partial(print)

    assert defined_at(Odd, "test_step") is None


def test_y_pred_keeps_no_batch_dimension_without_vmap() -> None:
    """With `vmap=False` the step sees the whole batch and may reduce over it."""

    class Pooled(elegy.Model):
        def pred_step(self, x, states) -> elegy.PredStep:
            return jnp.mean(x), states

    y_pred, _ = run_step(Pooled(vmap=False), "pred_step", x=X[:8], states=elegy.States())
    assert y_pred.shape == ()
    with _raises(["Pooled.pred_step", "y_pred is float32[], without the batch dimension 8"]):
        run_step(Pooled(), "pred_step", x=X[:8], states=elegy.States())
