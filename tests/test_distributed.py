"""DataParallel and FSDP on the test session's 8 CPU devices: the same numbers as
single-device training, the promised layouts, no recompiles, and clear errors."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import eqx_elegy as elegy

BATCH = 16
N = 70  # 4 full batches and a last one of 6: split over 2 devices, replicated over 4


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data[:N] / 16).astype(np.float32), digits.target[:N].astype(np.int32)


def mlp_model() -> elegy.Model:
    return elegy.Model(
        module=eqx.nn.MLP(64, 10, 16, 1, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-2),
    )


@pytest.fixture(scope="module")
def reference(data: tuple[np.ndarray, np.ndarray]) -> tuple[elegy.Model, dict[str, Any]]:
    model = mlp_model()
    history = model.fit(*data, batch_size=BATCH, epochs=2, verbose=0)
    return model, history.history


@contextlib.contextmanager
def counting_compiles() -> Iterator[list[str]]:
    """The XLA compilations that happen inside the block, as a growing list."""
    events: list[str] = []

    def listener(event: str, duration_secs: float, **kwargs: str | int) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


class CompilesPerEpoch(elegy.callbacks.Callback):
    def __init__(self, events: list[str]):
        self.events = events
        self.per_epoch: list[int] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.start = len(self.events)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.per_epoch.append(len(self.events) - self.start)


def assert_trees_close(actual: Any, expected: Any) -> None:
    a, b = jax.tree.leaves(actual), jax.tree.leaves(expected)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5)


def spec(array: jax.Array) -> P:
    sharding = array.sharding
    assert isinstance(sharding, jax.sharding.NamedSharding)
    return sharding.spec


@pytest.mark.parametrize("devices", [1, 2, 4])
@pytest.mark.parametrize("kind", ["data_parallel", "fsdp"])
def test_matches_single_device_training(
    kind: str, devices: int, data: Any, reference: tuple[elegy.Model, dict[str, Any]]
) -> None:
    chosen = jax.devices()[:devices]
    strategy = (
        elegy.DataParallel(chosen) if kind == "data_parallel" else elegy.FSDP(chosen, min_size=0)
    )
    model = mlp_model().distributed(strategy)
    with counting_compiles() as events:
        counter = CompilesPerEpoch(events)
        history = model.fit(*data, batch_size=BATCH, epochs=2, verbose=0, callbacks=[counter])
    expected, expected_history = reference
    assert_trees_close(model.states.net_params, expected.states.net_params)
    assert_trees_close(model.states.optimizer_states, expected.states.optimizer_states)
    np.testing.assert_allclose(history.history["loss"], expected_history["loss"], rtol=1e-5)
    assert counter.per_epoch[0] > 0 and counter.per_epoch[1] == 0

    weight = model.states.net_params.layers[0].weight  # (16, 64)
    moment = model.states.optimizer_states[0].mu.layers[0].weight
    assert set(weight.sharding.device_set) == set(chosen)
    sharded = kind == "fsdp" and devices > 1
    assert spec(weight) == spec(moment) == (P(None, "data") if sharded else P())
    bias = model.states.net_params.layers[1].bias  # (10,): divides over 2 devices, not 4
    assert spec(bias) == (P("data") if sharded and devices == 2 else P())


def test_evaluate_and_predict_match(
    data: Any, reference: tuple[elegy.Model, dict[str, Any]]
) -> None:
    expected, _ = reference
    model = expected.distributed(elegy.FSDP(jax.devices()[:4], min_size=0))
    assert spec(model.states.net_params.layers[0].weight) == P(None, "data")
    logs = model.evaluate(*data, batch_size=BATCH, verbose=0)
    expected_logs = expected.evaluate(*data, batch_size=BATCH, verbose=0)
    assert logs.keys() == expected_logs.keys()
    for name, value in expected_logs.items():
        assert logs[name] == pytest.approx(value, rel=1e-5)
    np.testing.assert_allclose(
        model.predict(data[0], batch_size=BATCH),
        expected.predict(data[0], batch_size=BATCH),
        rtol=1e-5,
        atol=1e-5,
    )


def test_distributed_returns_a_placed_copy(data: Any) -> None:
    model = mlp_model()
    model.init(*data)
    before = jax.tree.map(np.asarray, model.states.net_params)
    strategy = elegy.DataParallel(jax.devices()[:2])
    copy = model.distributed(strategy)
    assert model.strategy is None and copy.strategy is strategy
    assert copy.initialized
    for leaf in jax.tree.leaves(copy.states):
        assert len(leaf.sharding.device_set) == 2
    copy.fit(*data, batch_size=BATCH, epochs=1, verbose=0)
    assert_trees_close(model.states.net_params, before)  # the original is untouched


def test_steps_per_execution_shards_the_batch_axis(
    data: Any, reference: tuple[elegy.Model, dict[str, Any]]
) -> None:
    strategy = elegy.DataParallel(jax.devices()[:4])
    x = np.zeros((3, 8, 5), np.float32)
    placed_x, placed_y = strategy.put_batch((x, np.zeros((3, 8), np.int32)), stacked=True)
    assert spec(placed_x) == spec(placed_y) == P(None, "data")
    assert placed_x.addressable_shards[0].data.shape == (3, 2, 5)

    model = mlp_model().distributed(strategy)
    model.fit(*data, batch_size=BATCH, epochs=2, verbose=0, steps_per_execution=2)
    assert_trees_close(model.states.net_params, reference[0].states.net_params)


def test_put_batch_splits_only_divisible_batches() -> None:
    strategy = elegy.DataParallel(jax.devices()[:4])
    batch = ({"a": np.ones((8, 3), np.float32), "b": np.ones(8, np.int32)}, None, None)
    x, y, sw = strategy.put_batch(batch)
    assert y is None and sw is None
    assert spec(x["a"]) == spec(x["b"]) == P("data")
    assert x["a"].addressable_shards[0].data.shape == (2, 3)
    uneven = strategy.put_batch((np.ones((6, 3), np.float32), np.ones(6, np.int32), None))
    assert spec(uneven[0]) == spec(uneven[1]) == P()
    with pytest.raises(ValueError, match=re.escape("different batch sizes [6, 8]")):
        strategy.put_batch((np.ones((8, 3)), np.ones(6), None))


class BNNet(eqx.Module):
    linear: eqx.nn.Linear
    norm: eqx.nn.BatchNorm

    def __init__(self, key: jax.Array):
        self.linear = eqx.nn.Linear(4, 3, key=key)
        self.norm = eqx.nn.BatchNorm(3, axis_name="batch", momentum=0.5, mode="batch")

    def __call__(self, x: jax.Array, state: eqx.nn.State) -> tuple[jax.Array, eqx.nn.State]:
        return self.norm(self.linear(x), state)


def test_batchnorm_statistics_are_global() -> None:
    # Each device's quarter of a batch has its own offset, so per-device statistics
    # would differ from the batch's: only synchronised statistics match one device.
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    x += np.repeat(np.arange(4, dtype=np.float32) * 3, 8)[:, None]
    y = np.random.default_rng(1).normal(size=(32, 3)).astype(np.float32)

    def make() -> elegy.Model:
        return elegy.Model(
            module=BNNet(jax.random.key(0)),
            loss=elegy.losses.MeanSquaredError(),
            optimizer=optax.sgd(0.1),
        )

    single = make()
    single.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    model = make().distributed(elegy.DataParallel(jax.devices()[:4]))
    model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    assert_trees_close(model.states.net_states, single.states.net_states)
    assert_trees_close(model.states.net_params, single.states.net_params)

    # The running mean after one step with momentum 0.5 is half the global batch mean.
    one = make().distributed(elegy.DataParallel(jax.devices()[:4]))
    one.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, steps_per_epoch=1)
    linear = jax.vmap(make().module.linear)(jnp.asarray(x))
    running_means = [
        np.asarray(leaf)
        for leaf in jax.tree.leaves(one.states.net_states)
        if np.shape(leaf) == (3,)
    ]
    np.testing.assert_allclose(
        running_means[0], 0.5 * np.asarray(linear).mean(axis=0), rtol=1e-5, atol=1e-6
    )


def test_fsdp_rules_on_a_2d_mesh(data: Any, reference: tuple[elegy.Model, dict[str, Any]]) -> None:
    rules = {r"layers\[0\]\.weight$": P("model", "data"), r"layers\[1\]\.bias$": P()}
    strategy = elegy.FSDP(jax.devices()[:4], min_size=0, model_parallel=2, rules=rules)
    assert dict(strategy.mesh.shape) == {"data": 2, "model": 2}
    model = mlp_model().distributed(strategy)
    model.fit(*data, batch_size=BATCH, epochs=2, verbose=0)
    assert_trees_close(model.states.net_params, reference[0].states.net_params)
    params = model.states.net_params
    assert spec(params.layers[0].weight) == P("model", "data")
    assert spec(model.states.optimizer_states[0].nu.layers[0].weight) == P("model", "data")
    assert spec(params.layers[1].bias) == P()
    assert spec(params.layers[1].weight) == P(None, "data")  # (10, 16): no rule, largest axis


def test_fsdp_min_size_and_indivisible_axes_stay_replicated() -> None:
    strategy = elegy.FSDP(jax.devices()[:4])
    assert strategy.param_spec("net_params.w", (256, 128)) == P("data")
    assert strategy.param_spec("net_params.w", (16, 64)) == P()  # under min_size=2**14
    assert elegy.FSDP(jax.devices()[:4], min_size=0).param_spec("x", (10, 6)) == P()
    assert elegy.FSDP(jax.devices()[:4], min_size=0).param_spec("x", (10, 12)) == P(None, "data")
    assert elegy.FSDP(jax.devices()[:1], min_size=0).param_spec("x", (8, 8)) == P()


def test_gather_to_host_reassembles_sharded_states(data: Any) -> None:
    model = mlp_model().distributed(elegy.FSDP(jax.devices()[:4], min_size=0))
    model.init(*data)
    host = elegy.gather_to_host(model.states)
    assert isinstance(host.net_params.layers[0].weight, np.ndarray)
    assert_trees_close(host.net_params, model.states.net_params)
    assert jnp.issubdtype(host.rng.key.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(
        jax.random.key_data(host.rng.key), jax.random.key_data(model.states.rng.key)
    )


def test_single_process_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "JAX_COORDINATOR_ADDRESS",
        "JAX_NUM_PROCESSES",
        "JAX_PROCESS_ID",
        "SLURM_NTASKS",
        "OMPI_COMM_WORLD_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)
    assert elegy.initialize_distributed() is False
    assert elegy.is_main_process() is True
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES must be an integer, got 'two'"):
        elegy.initialize_distributed()


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: elegy.DataParallel([]), ValueError, "devices=...) is empty"),
        (lambda: elegy.DataParallel(["cpu"]), TypeError, "element of type str"),
        (lambda: elegy.DataParallel("cpu"), TypeError, "sequence of jax devices"),
        (lambda: elegy.DataParallel(jax.devices()[:1] * 2), ValueError, "more than once"),
        (lambda: elegy.DataParallel(process_local=1), TypeError, "must be a bool"),  # type: ignore[arg-type]
        (lambda: elegy.FSDP(min_size=-1), ValueError, "min_size=...) must be >= 0"),
        (lambda: elegy.FSDP(jax.devices()[:4], model_parallel=3), ValueError, "must divide"),
        (lambda: elegy.FSDP(rules={"(": P()}), ValueError, "not a valid regular expression"),
        (lambda: elegy.FSDP(rules={"w": ("data",)}), TypeError, "a jax.sharding.Partition"),  # type: ignore[arg-type]
        (lambda: elegy.FSDP(rules={"w": P("tensor")}), ValueError, "names mesh axis 'tensor'"),
        (lambda: elegy.FSDP(rules=[("w",)]), TypeError, "(pattern, spec) pairs"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_are_explained(make: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        make()


def test_bad_rule_shapes_and_strategies_are_explained(data: Any) -> None:
    strategy = elegy.FSDP(jax.devices()[:4], rules={r"layers\[1\]\.bias": P("data")})
    with pytest.raises(ValueError, match=re.escape("splits an axis of size 10 of net_params")):
        mlp_model().distributed(strategy)
    strategy = elegy.FSDP(jax.devices()[:4], rules={r"layers\[1\]\.bias": P(None, "data")})
    with pytest.raises(ValueError, match=re.escape("has 2 entries but net_params.layers[1].bias")):
        mlp_model().distributed(strategy)
    with pytest.raises(TypeError, match="takes a distribution strategy such as"):
        mlp_model().distributed("data_parallel")  # type: ignore[arg-type]


def test_save_and_load_sharded_states(data: Any, tmp_path: Any) -> None:
    strategy = elegy.FSDP(jax.devices()[:4], min_size=0)
    model = mlp_model().distributed(strategy)
    model.init(*data)
    assert spec(model.states.net_params.layers[0].weight) == P(None, "data")
    model.save(tmp_path / "ckpt")
    restored = mlp_model().distributed(strategy)
    restored.init(*data)
    restored.load(tmp_path / "ckpt")
    assert_trees_close(restored.states.net_params, model.states.net_params)
    assert restored.evaluate(*data, verbose=0) == model.evaluate(*data, verbose=0)
    assert spec(restored.states.net_params.layers[0].weight) == P(None, "data")


@pytest.mark.parametrize("strategy", [elegy.DataParallel(), elegy.FSDP(min_size=0)])
def test_evaluation_carries_only_the_metrics(data, strategy):
    # The parameters and optimizer state a test step passes through untouched are read
    # in place, not carried (which would hold a second copy of them during evaluation).
    from eqx_elegy._flat import flatten_states_on_host
    from eqx_elegy._jit import carried_leaves

    x, y = data
    model = mlp_model().distributed(strategy)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    buffers, layout = flatten_states_on_host(model.states, pack=False)
    batch = (x[:BATCH], y[:BATCH], None)
    args = (batch, None, np.zeros(2, np.int32))
    carried = carried_leaves(model.jit_step(), "test_step", layout, buffers, args)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(model.states)]
    assert {paths[i].split("'")[1] for i in carried.indices} == {"metrics_states"}
    logs = model.evaluate(x, y, batch_size=BATCH, verbose=0)
    reference = mlp_model()
    reference.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert logs == pytest.approx(reference.evaluate(x, y, batch_size=BATCH, verbose=0), rel=1e-5)
