"""Data sources: every kind trains to the array path's parameters; prefetch threads end;
bad input gets a clear error."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import equinox as eqx
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

import eqx_elegy as elegy
from eqx_elegy import data

_digits = load_digits()
X = (_digits.data[:256] / 16).astype(np.float32)
Y = _digits.target[:256].astype(np.int32)
BATCH = 32
STEPS = len(X) // BATCH
EPOCHS = 2


def batch_list() -> list[tuple[np.ndarray, np.ndarray]]:
    return [(X[i : i + BATCH], Y[i : i + BATCH]) for i in range(0, len(X), BATCH)]


def cycle() -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """An infinite generator over the batches, in order."""
    while True:
        yield from batch_list()


_MODEL = elegy.Model(
    module=eqx.nn.MLP(64, 10, 16, 1, key=jax.random.key(0)),
    loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
    optimizer=optax.adam(1e-2),
)


def mlp_model() -> elegy.Model:
    """The digits MLP with fresh states. One instance, reset, serves every test so that
    its compiled steps are reused (compiling dominates these tests' time)."""
    _MODEL.reset()
    return _MODEL


def params(model: elegy.Model) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(model.states.net_params)]


def assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, atol=1e-6, rtol=0)


def live_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("eqx_elegy")]


@pytest.fixture(scope="module")
def reference() -> list[np.ndarray]:
    """Parameters after the array path: 2 epochs of 8 batches of 32, no shuffle."""
    model = mlp_model()
    model.fit(X, Y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    return params(model)


# ---------------------------------------------------------------- sources that train


class ReIterable:
    """An unsized iterable whose `iter` starts a fresh pass."""

    def __iter__(self) -> Iterator[Any]:
        return iter(batch_list())


class Batches(data.Sequence):
    def __init__(self, workers: int = 0):
        super().__init__(workers=workers)
        self.epochs_ended = 0

    def __len__(self) -> int:
        return STEPS

    def __getitem__(self, index: int) -> Any:
        time.sleep(0.001 * (index % 3))  # out-of-order completion across worker threads
        return X[index * BATCH : (index + 1) * BATCH], Y[index * BATCH : (index + 1) * BATCH]

    def on_epoch_end(self) -> None:
        self.epochs_ended += 1


class DuckSequence:
    """`__len__` and `__getitem__` only, like a Keras PyDataset."""

    def __len__(self) -> int:
        return STEPS

    def __getitem__(self, index: int) -> Any:
        return batch_list()[index]


class Rows:
    """A grain random-access data source of single examples."""

    def __len__(self) -> int:
        return len(X)

    def __getitem__(self, index: int) -> Any:
        return X[index], Y[index]


def grain_map() -> Any:
    return grain.MapDataset.source(Rows()).batch(BATCH)


def grain_loader() -> Any:
    return grain.DataLoader(
        data_source=Rows(),
        sampler=grain.samplers.IndexSampler(len(X), shuffle=False, num_epochs=1, seed=0),
        operations=[grain.transforms.Batch(BATCH)],
        worker_count=0,
    )


SOURCES = {
    "generator": lambda: dict(x=cycle(), steps_per_epoch=STEPS),
    "iterator": lambda: dict(x=iter(batch_list() * EPOCHS), steps_per_epoch=STEPS),
    "reiterable": lambda: dict(x=ReIterable()),
    "sequence": lambda: dict(x=Batches(), shuffle=False),
    "sequence_threads": lambda: dict(x=Batches(workers=3), shuffle=False),
    "duck_sequence": lambda: dict(x=DuckSequence(), shuffle=False),
    "grain_map_dataset": lambda: dict(x=grain_map()),
    "grain_iter_dataset": lambda: dict(x=grain_map().to_iter_dataset()),
    "grain_data_loader": lambda: dict(x=grain_loader()),
    "synchronous": lambda: dict(x=data.IterableAdapter(cycle(), steps=STEPS, prefetch_size=0)),
}


@pytest.mark.parametrize("source", list(SOURCES))
def test_each_source_trains_like_arrays(source: str, reference: list[np.ndarray]) -> None:
    model = mlp_model()
    history = model.fit(**SOURCES[source](), epochs=EPOCHS, verbose=0)
    assert history.epoch == [0, 1]
    assert_same(params(model), reference)
    assert live_threads() == []


def test_torch_dataloader_trains_like_arrays(reference: list[np.ndarray]) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    dataset = TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))
    model = mlp_model()
    model.fit(DataLoader(dataset, batch_size=BATCH, shuffle=False), epochs=EPOCHS, verbose=0)
    assert_same(params(model), reference)


def test_sequence_calls_on_epoch_end_and_stops_its_workers() -> None:
    sequence = Batches(workers=3)
    mlp_model().fit(sequence, epochs=3, shuffle=False, verbose=0)
    assert sequence.epochs_ended == 3
    assert live_threads() == []


def test_steps_per_execution_with_a_generator() -> None:
    model = mlp_model()
    model.fit(
        X, Y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, steps_per_execution=3, verbose=0
    )
    expected = params(model)
    model = mlp_model()
    model.fit(cycle(), steps_per_epoch=STEPS, epochs=EPOCHS, steps_per_execution=3, verbose=0)
    assert_same(params(model), expected)


class DictInput(eqx.Module):
    mlp: eqx.nn.MLP

    def __call__(self, x: dict[str, jax.Array]) -> jax.Array:
        return self.mlp(jnp.concatenate([x["left"], x["right"]]))


def test_pytree_batches_with_sample_weight() -> None:
    def model() -> elegy.Model:
        return elegy.Model(
            module=DictInput(eqx.nn.MLP(64, 10, 16, 1, key=jax.random.key(0))),
            loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
            optimizer=optax.adam(1e-2),
        )

    x = {"left": X[:, :32], "right": X[:, 32:]}
    w = np.linspace(0.5, 1.5, len(X), dtype=np.float32)
    expected = model()
    expected.fit(x, Y, sample_weight=w, batch_size=BATCH, shuffle=False, verbose=0)

    def batches() -> Iterator[Any]:
        for i in range(0, len(X), BATCH):
            part = slice(i, i + BATCH)
            yield {"left": X[part, :32], "right": X[part, 32:]}, Y[part], w[part]

    trained = model()
    trained.fit(batches(), steps_per_epoch=STEPS, verbose=0)
    assert_same(params(trained), params(expected))


def test_predict_and_evaluate_on_generators() -> None:
    model = mlp_model()
    model.fit(X, Y, batch_size=BATCH, shuffle=False, verbose=0)
    sizes = [50, 50, 50, 50, 56]  # uneven batches, concatenated in order

    def inputs() -> Iterator[np.ndarray]:
        start = 0
        for n in sizes:
            yield X[start : start + n]
            start += n

    np.testing.assert_allclose(model.predict(inputs()), model.predict(X), atol=1e-6)
    np.testing.assert_allclose(model.predict(inputs(), steps=2), model.predict(X[:100]), atol=1e-6)
    by_source = model.evaluate(iter(batch_list()), verbose=0)
    by_arrays = model.evaluate(X, Y, batch_size=BATCH, verbose=0)
    assert by_source["loss"] == pytest.approx(by_arrays["loss"], abs=1e-6)


def test_validation_from_any_source_with_freq_and_steps() -> None:
    xv, yv = X[:96], Y[:96]

    def fit(validation: dict[str, Any]) -> dict[str, list[float]]:
        model = mlp_model()
        history = model.fit(
            cycle(), steps_per_epoch=4, epochs=4, validation_freq=2, verbose=0, **validation
        )
        return history.history

    arrays = fit(dict(validation_data=(xv, yv), validation_batch_size=16))
    assert len(arrays["loss"]) == 4 and len(arrays["val_loss"]) == 2  # epochs 1 and 3
    pieces = [(xv[i : i + 16], yv[i : i + 16]) for i in range(0, 96, 16)]
    for validation in (
        dict(validation_data=iter(pieces * 2), validation_steps=6),
        dict(validation_data=grain.MapDataset.source(pieces)),
        dict(validation_data=DuckValidation(pieces)),
        dict(validation_data=(xv, yv), validation_batch_size=16, validation_steps=6),
    ):
        assert fit(validation)["val_loss"] == pytest.approx(arrays["val_loss"], abs=1e-6)
    # validation_steps cut the passes short: the first 2 batches only.
    short = fit(dict(validation_data=(xv, yv), validation_batch_size=16, validation_steps=2))
    first_two = fit(dict(validation_data=(xv[:32], yv[:32]), validation_batch_size=16))
    assert short["val_loss"] == pytest.approx(first_two["val_loss"], abs=1e-6)


class DuckValidation:
    def __init__(self, pieces: list[Any]):
        self.pieces = pieces

    def __len__(self) -> int:
        return len(self.pieces)

    def __getitem__(self, index: int) -> Any:
        return self.pieces[index]


def test_generator_running_out_stops_fit_with_a_warning() -> None:
    model = mlp_model()
    with pytest.warns(UserWarning, match="ran out in epoch 2 after 2 of 3 steps") as caught:
        history = model.fit(iter(batch_list()), steps_per_epoch=3, epochs=5, verbose=0)
    assert caught[0].filename == __file__  # it names the line that called fit
    assert history.epoch == [0, 1, 2]
    trained = params(model)
    model = mlp_model()
    model.fit(X, Y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    assert_same(trained, params(model))  # all 8 batches, once


# ---------------------------------------------------------------- errors and threads


class Boom(Exception):
    pass


def failing_source() -> Iterator[Any]:
    for i, batch in enumerate(cycle()):
        if i == 3:
            raise Boom("bad record 3")
        yield batch


def test_generator_error_surfaces_with_its_traceback() -> None:
    model = mlp_model()
    with pytest.raises(Boom, match="bad record 3") as info:
        model.fit(failing_source(), steps_per_epoch=STEPS, verbose=0)
    names = [frame.name for frame in traceback.extract_tb(info.tb)]
    assert "failing_source" in names
    assert live_threads() == []
    trained = params(model)  # the model keeps the 3 completed steps
    model = mlp_model()
    model.fit(X, Y, batch_size=BATCH, steps_per_epoch=3, shuffle=False, verbose=0)
    assert_same(trained, params(model))


class StopAt(elegy.callbacks.Callback):
    def __init__(self, step: int, interrupt: bool = False):
        super().__init__()
        self.step, self.interrupt = step, interrupt

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if batch == self.step:
            if self.interrupt:
                raise KeyboardInterrupt
            self.model.stop_training = True


@pytest.mark.parametrize("source", ["generator", "sequence_threads", "grain_data_loader"])
def test_early_stop_leaves_no_thread(source: str) -> None:
    closed = []

    def watched() -> Iterator[Any]:
        try:
            yield from cycle()
        finally:
            closed.append(True)

    kwargs = SOURCES[source]()
    if source == "generator":
        kwargs["x"] = watched()
    history = mlp_model().fit(**kwargs, epochs=3, callbacks=[StopAt(2)], verbose=0)
    assert history.epoch == [0]
    assert live_threads() == []
    if source == "generator":
        assert not closed  # stopping reads no further, but does not close the user's generator


def test_keyboard_interrupt_leaves_no_thread() -> None:
    with pytest.raises(KeyboardInterrupt):
        mlp_model().fit(
            Batches(workers=2), shuffle=False, callbacks=[StopAt(1, interrupt=True)], verbose=0
        )
    assert live_threads() == []

    def interrupted() -> Iterator[Any]:
        yield batch_list()[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mlp_model().fit(interrupted(), steps_per_epoch=4, verbose=0)
    assert live_threads() == []


def test_infinite_sources_need_steps() -> None:
    with pytest.raises(ValueError, match="x is infinite .* pass steps_per_epoch"):
        mlp_model().fit(grain_map().repeat(None), verbose=0)
    with pytest.raises(ValueError, match="validation_data is a generator.*validation_steps"):
        mlp_model().fit(cycle(), steps_per_epoch=2, validation_data=cycle(), verbose=0)


def test_inconsistent_structures_show_both() -> None:
    def source() -> Iterator[Any]:
        yield X[:BATCH], Y[:BATCH]
        yield X[:BATCH], Y[:BATCH], np.ones(BATCH, np.float32)

    with pytest.raises(ValueError, match="different structures") as info:
        mlp_model().fit(source(), steps_per_epoch=2, verbose=0)
    message = str(info.value)
    assert "x=float32[32,64], y=int32[32], sample_weight=None" in message
    assert "x=float32[32,64], y=int32[32], sample_weight=float32[32]" in message
    assert live_threads() == []


def test_bad_batches() -> None:
    model = mlp_model()
    fresh = params(model)
    with pytest.raises(
        ValueError, match=r"x batch 0 has parts of different lengths \(x \[32\], y \[31\]"
    ):
        model.fit(iter([(X[:32], Y[:31])]), steps_per_epoch=1, verbose=0)
    with pytest.raises(ValueError, match="x is empty: an iterator"):
        model.fit(iter([]), steps_per_epoch=1, verbose=0)
    with pytest.raises(ValueError, match="x is empty: a generator"):
        model.predict(x for x in [])
    with pytest.raises(ValueError, match=r"x is empty: len\(x\) is 0"):
        model.fit(EmptySequence(), verbose=0)
    with pytest.raises(ValueError, match="tuple of 4 elements"):
        model.fit(iter([(X, Y, Y, Y)]), steps_per_epoch=1, verbose=0)
    with pytest.raises(ValueError, match="x batch 0: y is a scalar.*DataLoader"):
        model.fit(DuckRows(), verbose=0)
    with pytest.raises(ValueError, match="fit needs labels, but the data source yields"):
        model.fit(iter([X[:32]]), steps_per_epoch=1, verbose=0)
    with pytest.raises(TypeError, match="x batch 0: y is a string"):
        model.fit(iter([(X, "labels")]), steps_per_epoch=1, verbose=0)
    assert_same(params(model), fresh)  # nothing ran


class EmptySequence(data.Sequence):
    def __len__(self) -> int:
        return 0

    def __getitem__(self, index: int) -> Any:
        raise IndexError(index)


class DuckRows:
    """Single examples by index, as a torch Dataset gives (no batch dimension)."""

    def __len__(self) -> int:
        return len(X)

    def __getitem__(self, index: int) -> Any:
        return X[index], Y[index]


def test_arguments_that_only_apply_to_arrays() -> None:
    model = mlp_model()
    with pytest.raises(ValueError, match="y must not be given when x is a generator"):
        model.fit(cycle(), Y, steps_per_epoch=2, verbose=0)
    with pytest.raises(ValueError, match="batch_size must not be given when x is a generator"):
        model.fit(cycle(), batch_size=8, steps_per_epoch=2, verbose=0)
    with pytest.raises(ValueError, match="sample_weight must not be given when x is an iterable"):
        model.fit(ReIterable(), sample_weight=np.ones(len(X)), verbose=0)
    with pytest.raises(ValueError, match="validation_batch_size must not be given"):
        model.fit(X, Y, validation_data=DuckValidation([]), validation_batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="validation_split works only with array data"):
        model.fit(ReIterable(), validation_split=0.5, verbose=0)
    with pytest.raises(TypeError, match="tuple of 1"):
        model.fit(X, Y, validation_data=(X,), verbose=0)


def test_many_batch_shapes_warn() -> None:
    model = mlp_model()
    model.fit(X, Y, batch_size=BATCH, verbose=0)
    source = (X[:n] for n in range(1, data.MAX_SHAPES + 2))
    with pytest.warns(UserWarning, match="more than 8 distinct batch shapes"):
        model.predict(source)


# ---------------------------------------------------------------- prefetch itself


def chunks(n: int | None, produced: list[int], closed: list[bool]) -> Iterator[data.Chunk]:
    try:
        i = 0
        while n is None or i < n:
            produced.append(i)
            yield data.Chunk((np.full((2,), i, np.float32), None, None), 1, False)
            i += 1
    finally:
        closed.append(True)


def test_prefetch_is_bounded_and_closes_its_source() -> None:
    produced: list[int] = []
    closed: list[bool] = []
    stream = data.prefetch(chunks(None, produced, closed), size=3)
    assert isinstance(stream, data.Prefetcher)
    assert next(stream).batch[0][0] == 0
    time.sleep(0.2)  # let the thread fill the queue
    assert len(produced) <= 1 + 3 + 1  # taken + queued + one waiting to be queued
    del stream
    assert closed == [True]
    assert live_threads() == []


def test_prefetch_applies_put_in_order() -> None:
    stream = data.prefetch(
        chunks(20, [], []), put=lambda b, stacked: jax.tree.map(jnp.asarray, b), size=2
    )
    values = [c.batch[0] for c in stream]
    assert all(isinstance(v, jax.Array) for v in values)
    assert [float(v[0]) for v in values] == list(range(20))
    assert live_threads() == []


def test_prefetch_synchronous_on_cpu_for_arrays() -> None:
    source = chunks(3, [], [])
    assert data.prefetch(source) is source  # size None: no thread on CPU
    adapter = data.adapter_for(X, Y, batch_size=BATCH)
    assert isinstance(adapter, data.ArrayAdapter) and adapter.prefetch_size is None
    assert data.adapter_for(cycle(), steps=2).prefetch_size == 2


def test_prefetch_moves_batches_to_the_device_on_an_accelerator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    stream = data.prefetch(chunks(3, [], []))  # size None: a thread and device_put there
    assert isinstance(stream, data.Prefetcher)
    values = [c.batch[0] for c in stream]
    assert all(isinstance(v, jax.Array) for v in values)
    assert [float(v[0]) for v in values] == [0.0, 1.0, 2.0]


class _Ids(elegy.Model):
    """Logs the first value of each batch: with x holding example (or batch) ids, the
    order in which the loop reads the data."""

    def train_step(self, x, states) -> elegy.TrainStep:
        return {"id": x[0, 0]}, states


def _orders(x: Any, epochs: int = 3, **kwargs: Any) -> list[list[int]]:
    orders: list[list[int]] = []

    class Record(elegy.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            orders.append([])

        def on_train_batch_end(self, batch, logs=None):
            orders[-1].append(int(logs["id"]))

    # epoch_logs="last": each batch's own id, not the mean of the epoch's so far.
    _Ids(seed=kwargs.pop("seed", 0), epoch_logs="last").fit(
        x, epochs=epochs, verbose=0, callbacks=[Record()], **kwargs
    )
    return orders


def _check_shuffled(orders: list[list[int]], n: int) -> None:
    for order in orders:
        assert sorted(order) == list(range(n))  # every example once per epoch
    assert orders[0] != list(range(n))
    assert len({tuple(order) for order in orders}) == len(orders)  # a new order each epoch


def test_array_shuffling_is_new_each_epoch_and_a_function_of_seed_and_epoch() -> None:
    x = np.arange(12, dtype=np.float32)[:, None]
    orders = _orders(x, batch_size=1, shuffle=True)
    _check_shuffled(orders, 12)
    assert _orders(x, batch_size=1, shuffle=True) == orders
    assert _orders(x, batch_size=1, shuffle=True, seed=5) != orders
    assert _orders(x, epochs=2, batch_size=1, shuffle=True, initial_epoch=1) == orders[1:2]
    assert _orders(x, batch_size=1, shuffle=False) == [list(range(12))] * 3


@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_shuffled_arrays_come_in_the_order_of_the_epochs_permutation(steps_per_execution) -> None:
    # Every batch and chunk holds exactly the rows of numpy's permutation for the seed and
    # the epoch, however the rows are gathered; 23 rows in batches of 4 end with 3.
    n, b = 23, 4
    x = {"a": np.arange(n, dtype=np.float32)[:, None] * [1, -1], "b": np.arange(n) * 10}
    y, weight = np.arange(n, dtype=np.int32) % 3, np.linspace(0, 1, n, dtype=np.float32)
    adapter = data.ArrayAdapter(x, y, weight, batch_size=b, shuffle=True, seed=7)
    for epoch in (0, 1, 0):
        order = np.random.default_rng([7, epoch]).permutation(n)
        got = []
        for chunk in adapter.chunks(epoch, steps_per_execution):
            unstacked = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), chunk.batch)
            got.append(unstacked if chunk.stacked else chunk.batch)
        expected = jax.tree.map(lambda a, order=order: a[order], (x, y, weight))
        joined = jax.tree.map(lambda *parts: np.concatenate(parts), *got)
        jax.tree.map(np.testing.assert_array_equal, joined, expected)
        assert [len(batch[1]) for batch in adapter.batches(epoch)] == [4] * 5 + [3]
    first = jax.tree.map(
        lambda a: a[np.random.default_rng([7, 0]).permutation(n)[:b]], (x, y, weight)
    )
    jax.tree.map(np.testing.assert_array_equal, adapter.first_batch(), first)


class _IdBatches(data.Sequence):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> np.ndarray:
        return np.full((2, 1), index, np.float32)


def test_sequence_shuffle_permutes_its_batches_each_epoch() -> None:
    orders = _orders(_IdBatches(), shuffle=True)
    _check_shuffled(orders, 8)
    assert _orders(_IdBatches(), shuffle=False) == [list(range(8))] * 3


def test_finite_generator_without_steps_per_epoch_is_read_to_its_end() -> None:
    # Keras: the epoch ends when the generator runs out.
    model = mlp_model()
    history = model.fit((batch for batch in batch_list()), epochs=1, verbose=0)
    assert history.epoch == [0]
    trained = params(model)
    model = mlp_model()
    model.fit(X, Y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    assert_same(trained, params(model))  # all 8 batches, once
    # A later epoch that gets no batch stops training, with a warning that says why.
    model = mlp_model()
    message = "gave no batch for epoch 1, so fit stopped after epoch 0"
    with pytest.warns(UserWarning, match=message):
        history = model.fit(iter(batch_list()), epochs=3, verbose=0)
    assert history.epoch == [0]
    assert_same(trained, params(model))


def test_a_list_of_batches_is_a_source() -> None:
    model = mlp_model()
    history = model.fit(batch_list(), epochs=2, validation_data=batch_list()[:2], verbose=0)
    assert len(history.history["val_loss"]) == 2
    trained = params(model)
    logs = model.evaluate(batch_list(), verbose=0)
    predictions = model.predict(batch_list())
    model = mlp_model()
    reference = model.fit(
        X, Y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
        validation_data=(X[:64], Y[:64]), validation_batch_size=BATCH,
    )  # fmt: skip
    assert_same(trained, params(model))  # a pass over the list each epoch, in order
    for name, values in reference.history.items():
        assert history.history[name] == pytest.approx(values, abs=1e-6)
    assert logs == pytest.approx(model.evaluate(X, Y, batch_size=BATCH, verbose=0), abs=1e-6)
    np.testing.assert_allclose(predictions, model.predict(X), atol=1e-6)
    # With y given, a list of tuples is a pytree of inputs, as before.
    assert data.is_source(batch_list()) and not data.is_source(batch_list(), Y)


def test_steps_beyond_the_batches_of_arrays_or_a_sequence_warn() -> None:
    steps: list[int] = []
    count = elegy.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: steps.append(b))
    message = (
        r"steps_per_epoch=100 is more than the 8 batches of x \(256 examples in batches of "
        r"32\). An epoch reads x once, so it runs 8 steps"
    )
    with pytest.warns(UserWarning, match=message):
        mlp_model().fit(X, Y, batch_size=BATCH, epochs=2, steps_per_epoch=100, callbacks=[count])
    assert steps == [*range(8), *range(8)]
    with pytest.warns(
        UserWarning, match=r"steps_per_epoch=10 is more than the 8 batches of x \(len\(x\) is 8\)"
    ):
        _orders(_IdBatches(), epochs=1, steps_per_epoch=10)
    with pytest.warns(UserWarning, match=r"steps=9 is more than the 8 batches of x") as caught:
        mlp_model().evaluate(X, Y, batch_size=BATCH, steps=9, verbose=0)
    assert caught[0].filename == __file__
