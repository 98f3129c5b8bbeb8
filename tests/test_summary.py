"""`Model.summary` and the default `summary_step`: rows per submodule, output shapes from
tracing, parameter counts checked against counts made here with `jax.tree_util`."""

from __future__ import annotations

import io
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from rich.console import Console

import eqx_elegy as elegy
from eqx_elegy import SummaryRow


def n_trainable(tree) -> tuple[int, int]:
    leaves = [a for a in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(a)]
    return sum(a.size for a in leaves), sum(a.size * a.dtype.itemsize for a in leaves)


def n_all(tree) -> tuple[int, int]:
    leaves = [a for a in jax.tree_util.tree_leaves(tree) if hasattr(a, "shape")]
    return sum(a.size for a in leaves), sum(a.size * a.dtype.itemsize for a in leaves)


def by_path(rows: list[SummaryRow]) -> dict[str, SummaryRow]:
    return {row.path: row for row in rows}


def number_after(text: str, label: str) -> int:
    match = re.search(rf"{label}: ([\d,]+)", text)
    assert match, text
    return int(match.group(1).replace(",", ""))


X64 = np.zeros((3, 64), np.float32)


def test_mlp_rows_and_totals():
    mlp = eqx.nn.MLP(64, 10, 32, 2, key=jax.random.key(0))
    model = elegy.Model(module=mlp, optimizer=optax.adam(1e-3))
    rows = model.summary_step(X64, model.states)
    assert [(r.path, r.type, r.depth) for r in rows] == [
        ("", "MLP", 0),
        ("layers[0]", "Linear", 1),
        ("layers[1]", "Linear", 1),
        ("layers[2]", "Linear", 1),
    ]
    rows_by = by_path(rows)
    assert rows_by[""].output == "float32[3, 10]"
    assert rows_by["layers[0]"].output == "float32[3, 32]"
    assert rows_by["layers[2]"].output == "float32[3, 10]"
    for i in range(3):
        row = rows_by[f"layers[{i}]"]
        assert (row.trainable, row.trainable_bytes) == n_trainable(mlp.layers[i])
        assert (row.non_trainable, row.non_trainable_bytes) == (0, 0)
    assert (rows_by[""].trainable, rows_by[""].trainable_bytes) == n_trainable(mlp)

    text = model.summary(X64, return_string=True)
    total, _ = n_trainable(mlp)
    assert total == 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    assert number_after(text, "Total parameters") == total
    assert number_after(text, "trainable") == total
    assert number_after(text, "non-trainable") == 0
    opt = optax.adam(1e-3).init(eqx.filter(mlp, eqx.is_inexact_array))
    assert number_after(text, "Optimizer state") == n_all(opt)[0] == 2 * total + 1
    assert "float32[3, 32]" in text and "layers[1]" in text


def test_cnn_sequential_conv_pool_linear():
    k1, k2 = jax.random.split(jax.random.key(1))
    net = eqx.nn.Sequential(
        [
            eqx.nn.Conv2d(1, 4, 3, padding=1, key=k1),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.MaxPool2d(2, 2),
            eqx.nn.Lambda(jnp.ravel),
            eqx.nn.Linear(4 * 4 * 4, 10, key=k2),
        ]
    )
    model = elegy.Model(module=net)
    x = np.zeros((5, 1, 8, 8), np.float32)
    rows = by_path(model.summary_step(x, model.states))
    assert rows[""].type == "Sequential" and rows[""].output == "float32[5, 10]"
    assert (rows["layers[0]"].type, rows["layers[0]"].output) == ("Conv2d", "float32[5, 4, 8, 8]")
    assert (rows["layers[2]"].type, rows["layers[2]"].output) == (
        "MaxPool2d",
        "float32[5, 4, 4, 4]",
    )
    assert rows["layers[3]"].output == "float32[5, 64]"
    assert (rows["layers[4]"].type, rows["layers[4]"].output) == ("Linear", "float32[5, 10]")
    assert rows["layers[0]"].trainable == n_trainable(net.layers[0])[0] == 4 * 9 + 4
    assert rows["layers[2]"].trainable == 0
    assert rows[""].trainable == n_trainable(net)[0]


class BNNet(eqx.Module):
    linear: eqx.nn.Linear
    bn: eqx.nn.BatchNorm
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.linear = eqx.nn.Linear(6, 8, key=k1)
        self.bn = eqx.nn.BatchNorm(8, axis_name="batch", mode="batch")
        self.head = eqx.nn.Linear(8, 2, key=k2)

    def __call__(self, x, state):
        h, state = self.bn(self.linear(x), state)
        return self.head(h), state


def test_batchnorm_state_counts_as_non_trainable():
    net = BNNet(jax.random.key(2))
    state = eqx.nn.State(net)
    model = elegy.Model(module=net, optimizer=optax.sgd(0.1))
    x = np.zeros((4, 6), np.float32)
    rows = by_path(model.summary_step(x, model.states))
    assert set(rows) == {"", "linear", "bn", "head"}  # the StateIndex handles are no rows
    assert rows["bn"].output == "(float32[4, 8], State)"
    assert rows[""].output == "float32[4, 2]"
    state_count, state_bytes = n_all(state)
    assert state_count == 8 + 8 + 1  # running mean, running variance, batch counter
    assert (rows["bn"].non_trainable, rows["bn"].non_trainable_bytes) == (state_count, state_bytes)
    assert rows["bn"].trainable == n_trainable(eqx.nn.delete_init_state(net).bn)[0] == 16
    assert (rows[""].non_trainable, rows["linear"].non_trainable) == (state_count, 0)

    text = model.summary(x, return_string=True)
    assert number_after(text, "non-trainable") == state_count
    params = n_trainable(eqx.nn.delete_init_state(net))[0]  # without BatchNorm's initial state
    assert number_after(text, "Total parameters") == params + state_count


class Encoder(eqx.Module):
    mlp: eqx.nn.MLP

    def __call__(self, x):
        return self.mlp(x)


class Twin(eqx.Module):
    encoder: Encoder
    heads: dict
    unused: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.encoder = Encoder(eqx.nn.MLP(5, 4, 6, 1, key=k1))
        self.heads = {"a": eqx.nn.Linear(4, 3, key=k2), "b": eqx.nn.Linear(4, "scalar", key=k3)}
        self.unused = eqx.nn.Linear(2, 2, key=k4)

    def __call__(self, x):
        h = self.encoder(x)
        return {"a": self.heads["a"](h), "b": self.heads["b"](h)}, (h, self.encoder(x))


def test_nested_modules_dict_and_tuple_outputs_and_depth():
    net = Twin(jax.random.key(3))
    model = elegy.Model(module=net)
    x = np.zeros((2, 5), np.float32)
    rows = by_path(model.summary_step(x, model.states))
    assert rows[""].output == (
        "({'a': float32[2, 3], 'b': float32[2]}, (float32[2, 4], float32[2, 4]))"
    )
    assert rows["encoder"].depth == 1 and rows["encoder.mlp"].depth == 2
    assert rows["encoder.mlp.layers[1]"].depth == 3
    assert rows["encoder"].output == "float32[2, 4] (x2 calls)"
    assert rows["encoder.mlp.layers[0]"].output == "float32[2, 6] (x2 calls)"
    assert rows["heads['a']"].output == "float32[2, 3]"
    assert rows["heads['b']"].output == "float32[2]"
    assert rows["unused"].output == ""  # never called
    assert rows["encoder"].trainable == n_trainable(net.encoder)[0]
    assert rows[""].trainable == n_trainable(net)[0]

    shallow = model.summary(x, depth=1, return_string=True)
    deep = model.summary(x, depth=3, return_string=True)
    assert "encoder" in shallow and "encoder.mlp" not in shallow
    assert "encoder.mlp.layers[1]" in deep
    root_only = model.summary(x, depth=0, return_string=True)
    assert "(root)" in root_only and "heads" not in root_only


def test_shapes_come_from_tracing_not_real_data():
    class TracerOnly(eqx.Module):
        linear: eqx.nn.Linear

        def __call__(self, x):
            assert isinstance(x, jax.core.Tracer), "summary ran the network on real data"
            return self.linear(x)

    model = elegy.Model(module=TracerOnly(eqx.nn.Linear(3, 2, key=jax.random.key(0))))
    before = model.states
    rows = by_path(model.summary_step(np.ones((7, 3), np.float32), model.states))
    assert rows["linear"].output == "float32[7, 2]"
    assert model.states is before


def test_without_vmap_shapes_are_as_called():
    class Batched(eqx.Module):
        linear: eqx.nn.Linear

        def __call__(self, x):
            return jax.vmap(self.linear)(x)

    model = elegy.Model(module=Batched(eqx.nn.Linear(3, 2, key=jax.random.key(0))), vmap=False)
    rows = by_path(model.summary_step(np.ones((7, 3), np.float32), model.states))
    assert rows[""].output == "float32[7, 2]"
    assert rows["linear"].output == "float32[2]"  # one example, inside the module's own vmap
    assert "batch dimension" not in model.summary(np.ones((7, 3)), return_string=True)


class LowLevel(elegy.Model):
    def pred_step(self, x, states, initializing) -> elegy.PredStep:
        if initializing:
            params = {
                "w": jnp.zeros((4, 3)),
                "b": jnp.zeros((3,)),
                "scale": jnp.ones((), jnp.int32),
            }
        else:
            params = states.net_params
        return x @ params["w"] + params["b"], states.update(net_params=params)


def test_low_level_model_rows_from_net_params():
    model = LowLevel(optimizer=optax.adam(1e-3))
    x = np.zeros((2, 4), np.float32)
    assert model.states.net_params is None
    text = model.summary(x, return_string=True)  # shapes via pred_step(initializing=True)
    assert model.states.net_params is None and model.states.optimizer_states is None
    assert number_after(text, "Total parameters") == 12 + 3 + 1
    assert number_after(text, "non-trainable") == 1
    assert number_after(text, "Optimizer state") == 1 + 2 * (12 + 3 + 1)  # count, mu, nu

    params = {"w": jnp.ones((4, 3)), "b": jnp.ones((3,)), "scale": jnp.ones((), jnp.int32)}
    model = eqx.tree_at(lambda m: m.states, model, model.states.update(net_params=params))
    rows = by_path(model.summary_step(x, model.states))
    assert (rows[""].type, rows[""].output) == ("LowLevel", "float32[2, 3]")
    assert (rows["['w']"].type, rows["['w']"].trainable) == ("float32[4, 3]", 12)
    assert (rows["['scale']"].trainable, rows["['scale']"].non_trainable) == (0, 1)
    assert rows[""].trainable == n_trainable(params)[0] == 15


def test_model_without_module_or_pred_step_says_what_to_do():
    class OnlyTest(elegy.Model):
        def test_step(self, x, y_true, states) -> elegy.TestStep:
            return jnp.zeros(()), {}, states

    with pytest.raises(TypeError, match=r"OnlyTest\.summary.*no module.*pred_step"):
        OnlyTest().summary(np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match=r"OnlyTest\.predict.*no module.*pred_step"):
        OnlyTest().predict(np.zeros((2, 3), np.float32))


def test_summary_step_override_is_formatted():
    class Custom(elegy.Model):
        def summary_step(self, x, states) -> list[SummaryRow]:
            return [SummaryRow("body", "Custom", "float32[1]", 5, 20, 1, 4, depth=1)]

    text = Custom().summary(np.zeros((1, 2)), return_string=True)
    assert "body" in text and "Custom" in text and "5 (20 B)" in text and "1 (4 B)" in text

    class Wrong(elegy.Model):
        def summary_step(self, x) -> list[SummaryRow]:
            return "rows"  # type: ignore[return-value]

    with pytest.raises(TypeError, match=r"Wrong\.summary_step must return a list of"):
        Wrong().summary(np.zeros((1, 2)))


def test_print_fn_console_and_narrow_terminal():
    model = elegy.Model(module=eqx.nn.MLP(64, 10, 32, 2, key=jax.random.key(0)))
    lines: list[str] = []
    assert model.summary(X64, print_fn=lines.append) is None
    assert len(lines) == 1 and "layers[2]" in lines[0] and "Total parameters" in lines[0]
    assert "\x1b[" not in lines[0]  # plain text for logging

    out = io.StringIO()
    narrow = Console(file=out, width=44, color_system=None)
    assert model.summary(X64, console=narrow) is None
    printed = out.getvalue()
    assert max(len(line) for line in printed.splitlines()) <= 44
    assert "Linear" in printed and number_after(printed, "Total parameters") == 3466

    text = model.summary(X64, return_string=True, console=narrow)
    assert max(len(line) for line in text.splitlines()) <= 44


def test_bad_arguments():
    model = elegy.Model(module=eqx.nn.Linear(2, 2, key=jax.random.key(0)))
    with pytest.raises(ValueError, match="depth must be an int >= 0"):
        model.summary(np.zeros((1, 2)), depth=-1)
    with pytest.raises(ValueError, match="summary needs x"):
        model.summary(None)


def test_make_with_state_pair():
    net, state = eqx.nn.make_with_state(BNNet)(jax.random.key(2))
    model = elegy.Model(module=net, module_state=state)
    rows = by_path(model.summary_step(np.zeros((4, 6), np.float32), model.states))
    assert rows["bn"].non_trainable == n_all(state)[0] == 17
    assert rows[""].trainable == n_trainable(net)[0]
