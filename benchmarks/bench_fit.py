"""Side-by-side timings of training loops: eqx_elegy `fit` against hand-written JAX and Keras 3.

Every loop trains the same network on the same data (scikit-learn's digits tiled to 16,384
rows for the MLPs and the CNN; for the transformer, windows of the Python standard library's own
source as a character-level language model; batch 64, adam(1e-3), softmax cross-entropy on
integer labels) in one process, and the loops take turns within each repeat so that slow phases
of a noisy machine hit all of them alike. Rows whose library cannot be imported or fails are skipped with the reason printed.

    python benchmarks/bench_fit.py                 # 5 repeats, about 15 minutes on 2 CPU cores
    python benchmarks/bench_fit.py --quick         # seconds-long smoke run, numbers meaningless
    python benchmarks/bench_fit.py --json out.json # also write every measurement

See benchmarks/README.md for what each row and column means.
"""

from __future__ import annotations

import os

# Keras picks its backend once, when it is first imported; this benchmark is about JAX.
os.environ["KERAS_BACKEND"] = "jax"

import argparse
import dataclasses
import functools
import gc
import importlib.metadata
import itertools
import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

# Benchmark the checkout this file lives in, not whatever copy of eqx_elegy is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 64
NAN = float("nan")
LEARNING_RATE = 1e-3


# --------------------------------------------------------------------------- workloads


class ConvNet(eqx.Module):
    """A small conv net for one 1x8x8 digit: two 3x3 convolutions, a 2x2 max-pool, a linear head."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    pool: eqx.nn.MaxPool2d
    head: eqx.nn.Linear

    def __init__(self, key: jax.Array):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(1, 16, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(16, 32, 3, padding=1, key=k2)
        self.pool = eqx.nn.MaxPool2d(2, 2)
        self.head = eqx.nn.Linear(32 * 4 * 4, 10, key=k3)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jax.nn.relu(self.conv1(x))
        x = jax.nn.relu(self.conv2(x))
        return self.head(self.pool(x).reshape(-1))


def _keras_mlp(keras: Any, width: int, depth: int) -> Any:
    layers = [keras.Input((64,))]
    layers += [keras.layers.Dense(width, activation="relu") for _ in range(depth)]
    layers.append(keras.layers.Dense(10))
    return keras.Sequential(layers)


def _keras_cnn(keras: Any) -> Any:
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


# The character-level language model: byte tokens (ASCII), a context of 64, width 64.
VOCAB, CONTEXT, WIDTH, HEADS, LAYERS = 128, 64, 64, 4, 2


class _Block(eqx.Module):
    """A pre-norm transformer block: causal self-attention, then a 64-256-64 GELU MLP."""

    norm1: eqx.nn.LayerNorm
    attention: eqx.nn.MultiheadAttention
    norm2: eqx.nn.LayerNorm
    up: eqx.nn.Linear
    down: eqx.nn.Linear

    def __init__(self, key: jax.Array):
        k1, k2, k3 = jax.random.split(key, 3)
        self.norm1 = eqx.nn.LayerNorm(WIDTH)
        biases = dict.fromkeys(
            ("use_query_bias", "use_key_bias", "use_value_bias", "use_output_bias"), True
        )
        self.attention = eqx.nn.MultiheadAttention(HEADS, WIDTH, **biases, key=k1)
        self.norm2 = eqx.nn.LayerNorm(WIDTH)
        self.up = eqx.nn.Linear(WIDTH, 4 * WIDTH, key=k2)
        self.down = eqx.nn.Linear(4 * WIDTH, WIDTH, key=k3)

    def __call__(self, h: jax.Array) -> jax.Array:
        causal = jnp.tril(jnp.ones((h.shape[0], h.shape[0]), bool))
        a = jax.vmap(self.norm1)(h)
        h = h + self.attention(a, a, a, mask=causal)
        m = jax.vmap(lambda v: self.down(jax.nn.gelu(self.up(self.norm2(v)), approximate=False)))
        return h + m(h)


class CharTransformer(eqx.Module):
    """A decoder-only transformer for one context of byte tokens: token and position
    embeddings, `LAYERS` blocks, a final norm and a linear head (logits per position)."""

    embed: eqx.nn.Embedding
    position: jax.Array
    blocks: tuple[_Block, ...]
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear

    def __init__(self, key: jax.Array):
        k1, k2, k3, *ks = jax.random.split(key, 3 + LAYERS)
        self.embed = eqx.nn.Embedding(VOCAB, WIDTH, key=k1)
        self.position = 0.02 * jax.random.normal(k2, (CONTEXT, WIDTH))
        self.blocks = tuple(_Block(k) for k in ks)
        self.norm = eqx.nn.LayerNorm(WIDTH)
        self.head = eqx.nn.Linear(WIDTH, VOCAB, key=k3)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        h = jax.vmap(self.embed)(tokens) + self.position
        for block in self.blocks:
            h = block(h)
        return jax.vmap(lambda v: self.head(self.norm(v)))(h)


def _keras_transformer(keras: Any) -> Any:
    """The same transformer in Keras 3 (functional API)."""

    class AddPosition(keras.layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.position = self.add_weight(
                shape=tuple(input_shape[1:]), initializer=keras.initializers.RandomNormal(0.02)
            )

        def call(self, x: Any) -> Any:
            return x + self.position

    tokens = keras.Input((CONTEXT,), dtype="int32")
    h = AddPosition()(keras.layers.Embedding(VOCAB, WIDTH)(tokens))
    for _ in range(LAYERS):
        a = keras.layers.LayerNormalization()(h)
        a = keras.layers.MultiHeadAttention(HEADS, WIDTH // HEADS)(a, a, use_causal_mask=True)
        h = keras.layers.Add()([h, a])
        m = keras.layers.LayerNormalization()(h)
        m = keras.layers.Dense(4 * WIDTH, activation="gelu")(m)
        h = keras.layers.Add()([h, keras.layers.Dense(WIDTH)(m)])
    logits = keras.layers.Dense(VOCAB)(keras.layers.LayerNormalization()(h))
    return keras.Model(tokens, logits)


@dataclasses.dataclass(frozen=True)
class Workload:
    """One network, in its equinox form (maps one example) and its Keras form (maps a batch)."""

    name: str
    description: str
    make_module: Callable[[jax.Array], eqx.Module]
    make_keras: Callable[[Any], Any]
    # Shape of one example for equinox (channels first) and for Keras (channels last).
    eqx_shape: tuple[int, ...]
    keras_shape: tuple[int, ...]
    rows: int  # default training rows, a multiple of BATCH
    # The data: digits (the default) or the transformer's text.
    load: Callable[[int, Workload], Data] = lambda rows, wl: load_digits_data(rows, wl)


WORKLOADS = {
    w.name: w
    for w in [
        Workload(
            "small",
            "MLP 64-32-10",
            lambda key: eqx.nn.MLP(64, 10, 32, depth=1, key=key),
            functools.partial(_keras_mlp, width=32, depth=1),
            (64,),
            (64,),
            16_384,
        ),
        Workload(
            "medium",
            "MLP 64-256-256-10",
            lambda key: eqx.nn.MLP(64, 10, 256, depth=2, key=key),
            functools.partial(_keras_mlp, width=256, depth=2),
            (64,),
            (64,),
            16_384,
        ),
        Workload(
            "cnn",
            "conv3x3(16)-conv3x3(32)-maxpool2-dense(10) on 1x8x8",
            ConvNet,
            _keras_cnn,
            (1, 8, 8),
            (8, 8, 1),
            # Fewer rows: a step costs ~20x the small MLP's, and XLA:CPU runs this channels-first
            # conv ~20x slower inside a loop body (jax-ml/jax#12868), which the scan rows hit.
            2_048,
        ),
        Workload(
            "transformer",
            f"decoder-only transformer, {LAYERS} layers, width {WIDTH}, {HEADS} heads, "
            f"context {CONTEXT}, {VOCAB} byte tokens",
            CharTransformer,
            _keras_transformer,
            (CONTEXT,),
            (CONTEXT,),
            # Fewer rows: on CPU a step costs about as much as 1,000 small-MLP steps.
            1_024,
            load=lambda rows, wl: load_text_data(rows),
        ),
    ]
}


@dataclasses.dataclass(frozen=True)
class Data:
    x: np.ndarray  # equinox layout
    x_keras: np.ndarray  # Keras layout
    y: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.y) // BATCH  # rows are a multiple of BATCH: no partial batch

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(0, len(self.y), BATCH):
            yield self.x[i : i + BATCH], self.y[i : i + BATCH]


def load_data(rows: int, workload: Workload) -> Data:
    """The workload's data, `rows` examples."""
    return workload.load(rows, workload)


def load_text_data(rows: int) -> Data:
    """Next-character prediction on the standard library's own source (every Python
    installation has it): the ASCII bytes of its top-level modules, in name order, cut
    into `rows` consecutive windows of `CONTEXT + 1` bytes; `x` is a window's first
    `CONTEXT` bytes, `y` its last `CONTEXT` (int32 tokens < `VOCAB`)."""
    need = rows * (CONTEXT + 1)
    chunks, size = [], 0
    for path in sorted(Path(os.__file__).parent.glob("*.py")):
        text = np.frombuffer(path.read_bytes(), np.uint8)
        chunks.append(text[text < VOCAB])
        size += len(chunks[-1])
        if size >= need:
            break
    tokens = np.concatenate(chunks)
    reps = -(-need // len(tokens))
    windows = np.tile(tokens, reps)[:need].astype(np.int32).reshape(rows, CONTEXT + 1)
    x, y = np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])
    return Data(x=x, x_keras=x, y=y)


def load_digits_data(rows: int, workload: Workload) -> Data:
    """Digits as float32 in [0, 1] and int32 labels, tiled to `rows` rows."""
    features, labels = load_digits(return_X_y=True)
    reps = -(-rows // len(labels))
    x = np.tile(np.asarray(features, np.float32) / 16.0, (reps, 1))[:rows]
    y = np.tile(np.asarray(labels, np.int32), reps)[:rows]
    # The 64 features are the 8x8 image in row-major order, so one reshape gives either layout.
    return Data(
        x=np.ascontiguousarray(x.reshape(rows, *workload.eqx_shape)),
        x_keras=np.ascontiguousarray(x.reshape(rows, *workload.keras_shape)),
        y=np.ascontiguousarray(y),
    )


def mean_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


# --------------------------------------------------------------------------- memory


class PeakRSS:
    """Peak resident set size of this process while one row runs, and its growth over the
    row's start.

    Linux lets a process reset its own high-water mark (VmHWM) to the current RSS by writing
    "5" to /proc/self/clear_refs, which gives a per-row peak. Where that is not allowed the
    fallback is `resource.getrusage` maxrss, the peak of the whole process so far, and no growth.
    """

    def __init__(self) -> None:
        try:
            self._reset()
            self.per_row = True
            self.method = "per-row peak RSS of the process (VmHWM, reset before each row)"
        except OSError:
            self.per_row = False
            self.method = "process-wide peak RSS so far (getrusage ru_maxrss)"
        self._start_mib = NAN

    @staticmethod
    def _reset() -> None:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    @staticmethod
    def _status_mib(field: str) -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise OSError(f"no {field} in /proc/self/status")

    def start(self) -> None:
        if self.per_row:
            self._reset()
            self._start_mib = self._status_mib("VmRSS")

    def peak_mib(self) -> float:
        if self.per_row:
            return self._status_mib("VmHWM")
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def growth_mib(self) -> float:
        """How far the peak rose above the RSS at the row's start (NaN without per-row peaks)."""
        return self.peak_mib() - self._start_mib


# --------------------------------------------------------------------------- training loops


@dataclasses.dataclass
class Timing:
    first_epoch_s: float  # compile + first epoch, from a freshly built network
    steady_epoch_s: list[float]  # each later epoch, ended by a device sync


def _clock(t0: float, run_epoch: Callable[[], object], epochs: int) -> Timing:
    """Run `epochs` epochs; `run_epoch` must return only once the device is done."""
    run_epoch()
    first = time.perf_counter() - t0
    steady = []
    for _ in range(epochs - 1):
        t = time.perf_counter()
        run_epoch()
        steady.append(time.perf_counter() - t)
    return Timing(first, steady)


def _train_step(static: Any, optimizer: optax.GradientTransformation) -> Callable:
    """The step a JAX user writes by hand: arrays in, arrays out, the module's static part closed over."""

    def step(params, opt_state, x, y):
        def loss_fn(p):
            return mean_cross_entropy(jax.vmap(eqx.combine(p, static))(x), y)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def hand_jit(feed: str) -> Callable[[Workload, Data, int, jax.Array], Timing]:
    """`jax.jit` with (params, opt_state) donated; batches fed by `jax.device_put` or as numpy."""

    def run(wl: Workload, data: Data, epochs: int, key: jax.Array) -> Timing:
        module = wl.make_module(key)
        t0 = time.perf_counter()
        params, static = eqx.partition(module, eqx.is_inexact_array)
        optimizer = optax.adam(LEARNING_RATE)
        opt_state = optimizer.init(params)
        # A new function object each call, so each repeat traces and compiles afresh.
        step = jax.jit(_train_step(static, optimizer), donate_argnums=(0, 1))

        def run_epoch():
            nonlocal params, opt_state
            for xb, yb in data.batches():
                if feed == "device_put":
                    xb, yb = jax.device_put((xb, yb))
                params, opt_state, _ = step(params, opt_state, xb, yb)
            return jax.block_until_ready(params)

        return _clock(t0, run_epoch, epochs)

    return run


def filter_jit(wl: Workload, data: Data, epochs: int, key: jax.Array) -> Timing:
    """`eqx.filter_jit(donate="all")` taking the whole module and opt_state; numpy batches."""
    module = wl.make_module(key)
    t0 = time.perf_counter()
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(eqx.filter(module, eqx.is_inexact_array))

    @eqx.filter_jit(donate="all")
    def step(model, opt_state, x, y):
        def loss_fn(m):
            return mean_cross_entropy(jax.vmap(m)(x), y)

        loss, grads = eqx.filter_value_and_grad(loss_fn)(model)
        updates, opt_state = optimizer.update(
            grads, opt_state, eqx.filter(model, eqx.is_inexact_array)
        )
        return eqx.apply_updates(model, updates), opt_state, loss

    def run_epoch():
        nonlocal module, opt_state
        for xb, yb in data.batches():
            module, opt_state, _ = step(module, opt_state, xb, yb)
        return jax.block_until_ready(module)

    return _clock(t0, run_epoch, epochs)


def scan_floor(wl: Workload, data: Data, epochs: int, key: jax.Array) -> Timing:
    """The compute floor: one compiled call per epoch, `lax.scan` over batches already on device."""
    module = wl.make_module(key)
    xs = data.x.reshape(data.steps, BATCH, *data.x.shape[1:])
    ys = data.y.reshape(data.steps, BATCH, *data.y.shape[1:])
    xs, ys = jax.block_until_ready(jax.device_put((xs, ys)))
    t0 = time.perf_counter()
    params, static = eqx.partition(module, eqx.is_inexact_array)
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(params)
    step = _train_step(static, optimizer)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def epoch_fn(params, opt_state, xs, ys):
        def body(carry, batch):
            params, opt_state, loss = step(*carry, *batch)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (xs, ys))
        return params, opt_state, losses

    def run_epoch():
        nonlocal params, opt_state
        params, opt_state, _ = epoch_fn(params, opt_state, xs, ys)
        return jax.block_until_ready(params)

    return _clock(t0, run_epoch, epochs)


def _callback_timing(t0: float, ends: list[float]) -> Timing:
    return Timing(ends[0] - t0, [b - a for a, b in itertools.pairwise(ends)])


def _epoch_clock(base: type, block: Callable[[], object], ends: list[float]) -> Any:
    """A callback (of `base`, Keras' or eqx_elegy's) that syncs and records each epoch's end."""

    class EpochClock(base):  # type: ignore[misc, valid-type]
        def on_epoch_end(self, epoch, logs=None):
            block()
            ends.append(time.perf_counter())

    return EpochClock()


def keras_fit(
    steps_per_execution: int, verbose: int = 0
) -> Callable[[Workload, Data, int, jax.Array], Timing]:
    """Keras 3 (JAX backend) `fit` on the equivalent Sequential model; one `fit` call for all epochs."""

    def run(wl: Workload, data: Data, epochs: int, key: jax.Array) -> Timing:
        import keras

        net = wl.make_keras(keras)
        ends: list[float] = []
        clock = _epoch_clock(
            keras.callbacks.Callback,
            lambda: jax.block_until_ready([v.value for v in net.variables]),
            ends,
        )
        t0 = time.perf_counter()
        net.compile(
            optimizer=keras.optimizers.Adam(LEARNING_RATE),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            steps_per_execution=steps_per_execution,
        )
        net.fit(
            data.x_keras,
            data.y,
            batch_size=BATCH,
            epochs=epochs,
            verbose=verbose,
            shuffle=False,
            callbacks=[clock],
        )
        return _callback_timing(t0, ends)

    return run


def elegy_fit(
    steps_per_execution: int | None, verbose: int = 0
) -> Callable[[Workload, Data, int, jax.Array], Timing]:
    """eqx_elegy `fit`, through the high-level Model(module=...) path; one `fit` call for all
    epochs. `steps_per_execution=None` is what `fit` gets without the flag: the model's
    default, "auto"."""

    def run(wl: Workload, data: Data, epochs: int, key: jax.Array) -> Timing:
        import eqx_elegy as elegy

        module = wl.make_module(key)
        ends: list[float] = []
        t0 = time.perf_counter()
        model = elegy.Model(
            module=module,
            loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
            optimizer=optax.adam(LEARNING_RATE),
        )
        clock = _epoch_clock(
            elegy.callbacks.Callback, lambda: jax.block_until_ready(model.states), ends
        )
        model.fit(
            data.x,
            data.y,
            batch_size=BATCH,
            epochs=epochs,
            verbose=verbose,
            shuffle=False,
            steps_per_execution=steps_per_execution,
            callbacks=[clock],
        )
        return _callback_timing(t0, ends)

    return run


@dataclasses.dataclass(frozen=True)
class Loop:
    name: str
    library: str  # the import a row needs beyond jax/equinox/optax, or "" for none
    run: Callable[[Workload, Data, int, jax.Array], Timing]


HAND_LOOPS = ("jit+device_put", "jit fed numpy")
EVAL_ROW = "eqx_elegy evaluate/predict"
FLOOR = "scan floor"
DEFAULT_FIT = "eqx_elegy fit"  # no steps_per_execution flag: the default
LOOPS = {
    loop.name: loop
    for loop in [
        Loop("jit+device_put", "", hand_jit("device_put")),
        Loop("jit fed numpy", "", hand_jit("numpy")),
        Loop("filter_jit", "", filter_jit),
        Loop(FLOOR, "", scan_floor),
        Loop("keras spe=1", "keras", keras_fit(1)),
        Loop("keras spe=32", "keras", keras_fit(32)),
        Loop(DEFAULT_FIT, "eqx_elegy", elegy_fit(None)),
        Loop("eqx_elegy spe=1", "eqx_elegy", elegy_fit(1)),
        Loop("eqx_elegy spe=32", "eqx_elegy", elegy_fit(32)),
    ]
}


# --------------------------------------------------------------------------- evaluate / predict


def _time_calls(call: Callable[[], object], calls: int) -> float:
    """Median seconds of `calls` calls after one warm-up (compile) call."""
    call()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def hand_eval(wl: Workload, data: Data, calls: int, key: jax.Array) -> dict[str, float]:
    """Hand-written jitted evaluate (loss summed on device, one fetch) and predict loops."""
    params, static = eqx.partition(wl.make_module(key), eqx.is_inexact_array)

    @functools.partial(jax.jit, donate_argnums=(0,))
    def eval_step(total, params, x, y):
        logits = jax.vmap(eqx.combine(params, static))(x)
        return total + optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()

    @jax.jit
    def pred_step(params, x):
        return jax.vmap(eqx.combine(params, static))(x)

    def evaluate():
        total = jnp.zeros((), jnp.float32)
        for xb, yb in data.batches():
            total = eval_step(total, params, xb, yb)
        return float(total) / len(data.y)

    def predict():
        return np.concatenate(jax.device_get([pred_step(params, xb) for xb, _ in data.batches()]))

    return {"evaluate": _time_calls(evaluate, calls), "predict": _time_calls(predict, calls)}


def elegy_eval(wl: Workload, data: Data, calls: int, key: jax.Array) -> dict[str, float]:
    """eqx_elegy `evaluate` and `predict` on a model that has taken a few training steps."""
    import eqx_elegy as elegy

    model = elegy.Model(
        module=wl.make_module(key),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(LEARNING_RATE),
    )
    model.fit(data.x[:BATCH], data.y[:BATCH], batch_size=BATCH, epochs=1, verbose=0)

    def evaluate():
        return model.evaluate(data.x, data.y, batch_size=BATCH, verbose=0)

    def predict():
        return jax.tree.map(np.asarray, model.predict(data.x, batch_size=BATCH))

    return {"evaluate": _time_calls(evaluate, calls), "predict": _time_calls(predict, calls)}


# --------------------------------------------------------------------------- harness


def import_errors(libraries: set[str]) -> dict[str, str]:
    """Import each optional library up front (so no row pays for it); map failures to reasons."""
    errors = {}
    for lib in libraries:
        try:
            __import__(lib)
        except Exception as e:  # noqa: BLE001 - any failure means the row cannot run
            errors[lib] = f"{type(e).__name__}: {e}"
    return errors


def _reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"[:200]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, Any]:
    prefixes = ("OPENBLAS", "OMP_", "MKL", "XLA", "JAX", "TF_", "NVPL", "KERAS")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        # Other processes on the machine skew every row; a 1-minute load above the core count says so.
        "loadavg_1min": os.getloadavg()[0],
        "device": str(jax.devices()[0]),
        "versions": {
            d: _version(d) for d in ["jax", "jaxlib", "equinox", "optax", "keras", "numpy"]
        },
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(prefixes)},
    }


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else NAN


def run_benchmark(args: argparse.Namespace, loops: list[Loop]) -> dict[str, Any]:
    """Time `loops` on `args.workloads`, interleaved over `args.repeats`; also evaluate/predict."""
    workloads = [WORKLOADS[w] for w in args.workloads]
    libraries = {loop.library for loop in loops if loop.library}
    env = environment()  # before any row runs, so its load average is the machine's, not ours
    errors = import_errors(libraries | ({"eqx_elegy"} if args.eval else set()))
    memory = PeakRSS()
    data = {wl.name: load_data(args.rows or wl.rows, wl) for wl in workloads}
    epochs = args.epochs + 1  # one first epoch (with compile), then the steady ones
    # results[workload][loop] -> per-repeat records; skipped[workload][loop] -> reason
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        wl.name: {loop.name: [] for loop in loops} for wl in workloads
    }
    evals: dict[str, dict[str, list[dict[str, float]]]] = {
        wl.name: {"hand": [], "eqx_elegy": []} for wl in workloads
    }
    skipped: dict[str, dict[str, str]] = {wl.name: {} for wl in workloads}

    def skip(wl: Workload, name: str, reason: str) -> None:
        skipped[wl.name][name] = reason
        print(f"  skip {wl.name} / {name}: {reason}", flush=True)

    for wl in workloads:
        for loop in loops:
            if loop.library in errors:
                skip(wl, loop.name, f"cannot import {loop.library}: {errors[loop.library]}")
        if args.eval and "eqx_elegy" in errors:
            skip(wl, EVAL_ROW, f"cannot import eqx_elegy: {errors['eqx_elegy']}")

    for r in range(args.repeats):
        print(f"repeat {r + 1}/{args.repeats}", flush=True)
        # Rotate the order each repeat so that no loop always runs first or last.
        order = loops[r % len(loops) :] + loops[: r % len(loops)]
        for wl in workloads:
            key = jax.random.key(r)
            for loop in order:
                if loop.name in skipped[wl.name]:
                    continue
                gc.collect()
                memory.start()
                try:
                    timing = loop.run(wl, data[wl.name], epochs, key)
                except Exception as e:  # noqa: BLE001 - report and go on with the other rows
                    skip(wl, loop.name, _reason(e))
                    continue
                us = median(timing.steady_epoch_s) / data[wl.name].steps * 1e6
                results[wl.name][loop.name].append(
                    {
                        "repeat": r,
                        "first_epoch_s": timing.first_epoch_s,
                        "steady_us_per_step": us,
                        "steady_epoch_s": timing.steady_epoch_s,
                        "peak_rss_mib": memory.peak_mib(),
                        "rss_growth_mib": memory.growth_mib(),
                    }
                )
                print(
                    f"  {wl.name:6} {loop.name:17} first epoch {timing.first_epoch_s:7.3f} s"
                    f"  steady {us:8.1f} µs/step",
                    flush=True,
                )
            if not args.eval:
                continue
            # Alternate which of the two goes first.
            for lib in ["hand", "eqx_elegy"][:: 1 if r % 2 == 0 else -1]:
                if lib == "eqx_elegy" and EVAL_ROW in skipped[wl.name]:
                    continue
                gc.collect()
                try:
                    times = (hand_eval if lib == "hand" else elegy_eval)(
                        wl, data[wl.name], args.eval_calls, key
                    )
                except Exception as e:  # noqa: BLE001
                    if lib == "hand":
                        raise
                    skip(wl, EVAL_ROW, _reason(e))
                else:
                    evals[wl.name][lib].append({"repeat": r, **times})

    loadavg_end = os.getloadavg()[0]
    return {
        "config": {
            "batch_size": BATCH,
            "steps_per_epoch": {name: d.steps for name, d in data.items()},
            "steady_epochs": args.epochs,
            "repeats": args.repeats,
            "memory": memory.method,
        },
        "environment": {**env, "loadavg_1min_end": loadavg_end},
        "results": results,
        "evaluate_predict": evals,
        "skipped": skipped,
    }


def paired_ratio(rows: list[dict], refs: list[dict], field: str) -> float:
    """Median over repeats of row/reference, pairing the two within each repeat."""
    ref_by_repeat = {ref["repeat"]: ref[field] for ref in refs}
    return median(
        [
            row[field] / ref_by_repeat[row["repeat"]]
            for row in rows
            if row["repeat"] in ref_by_repeat
        ]
    )


def summarise(report: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Per workload and loop: medians and the paired ratios the table shows."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for wl_name, by_loop in report["results"].items():
        # The hand-written baseline of each repeat is the faster of the two jit loops in that repeat.
        hand: dict[int, dict[str, float]] = {}
        for name in HAND_LOOPS:
            for rec in by_loop.get(name, []):
                best = hand.setdefault(rec["repeat"], {"repeat": rec["repeat"]})
                for field in ("steady_us_per_step", "first_epoch_s"):
                    best[field] = min(best.get(field, rec[field]), rec[field])
        hand_recs = list(hand.values())
        floor = by_loop.get(FLOOR, [])
        summary[wl_name] = {}
        for name, recs in by_loop.items():
            if not recs:
                continue
            us = [rec["steady_us_per_step"] for rec in recs]
            summary[wl_name][name] = {
                "first_epoch_s": median([rec["first_epoch_s"] for rec in recs]),
                "us_per_step": median(us),
                "us_per_step_min": min(us),
                "us_per_step_max": max(us),
                "x_hand": paired_ratio(recs, hand_recs, "steady_us_per_step"),
                "x_hand_first_epoch": paired_ratio(recs, hand_recs, "first_epoch_s"),
                "x_floor": paired_ratio(recs, floor, "steady_us_per_step"),
                "peak_rss_mib": median([rec["peak_rss_mib"] for rec in recs]),
                "rss_growth_mib": median([rec["rss_growth_mib"] for rec in recs]),
            }
    return summary


def targets(report: dict[str, Any], summary: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Issue 21's targets, each as measured / limit, where measured: the default `fit`
    against the compute floor (against the hand-written loop on the CNN, whose scan
    floor is not a floor on CPU), `steps_per_execution=32` on the small MLP, compile +
    first epoch, evaluate and predict against hand-written loops, and peak memory."""
    lines = []
    for wl_name, by_loop in summary.items():
        fit, evals = by_loop.get(DEFAULT_FIT, {}), report["evaluate_predict"].get(wl_name)
        if wl_name == "cnn":
            checks = [("fit × hand jit", fit.get("x_hand", NAN), 1.05)]
        else:
            limit = 1.3 if wl_name == "small" else 1.1
            checks = [("fit × scan floor", fit.get("x_floor", NAN), limit)]
        if wl_name == "small":
            spe32 = by_loop.get("eqx_elegy spe=32", {})
            checks.append(("fit spe=32 × scan floor", spe32.get("x_floor", NAN), 1.15))
        checks.append(("fit compile + 1st epoch × hand", fit.get("x_hand_first_epoch", NAN), 1.3))
        for call in ("evaluate", "predict"):
            ratio = paired_ratio(evals["eqx_elegy"], evals["hand"], call) if evals else NAN
            checks.append((f"{call} × hand", ratio, 1.0))
        hand_rss = by_loop.get("jit fed numpy", {}).get("peak_rss_mib", NAN)
        checks.append(("fit peak RSS × hand", fit.get("peak_rss_mib", NAN) / hand_rss, 1.1))
        for name, value, limit in checks:
            verdict = "not measured" if value != value else ("met" if value <= limit else "MISSED")
            lines.append(f"- {wl_name}: {name} {fmt(value, '.2f')} ≤ {limit}: {verdict}")
    return lines


def fmt(x: float, spec: str) -> str:
    return "–" if x != x else format(x, spec)  # NaN (no reference measured) prints as a dash


def markdown(report: dict[str, Any], summary: dict[str, dict[str, dict[str, float]]]) -> str:
    cfg, env = report["config"], report["environment"]
    v = env["versions"]
    lines = [
        f"batch {cfg['batch_size']}, steps/epoch: "
        f"{', '.join(f'{k} {n}' for k, n in cfg['steps_per_epoch'].items())}; adam(1e-3); "
        f"{cfg['repeats']} interleaved repeats, "
        f"steady = median of {cfg['steady_epochs']} later epochs; "
        f"ratios are medians of per-repeat ratios; memory: {cfg['memory']}.",
        f"{env['device']}, {env['cpu_count']} CPUs (1-min load average {env['loadavg_1min']:.1f} "
        f"at start, {env['loadavg_1min_end']:.1f} at end), Python {env['python']}, jax {v['jax']}, "
        f"equinox {v['equinox']}, optax {v['optax']}, keras {v['keras']}; "
        f"env: {', '.join(f'{k}={val}' for k, val in env['env'].items()) or 'none set'}",
        "",
        "| workload | loop | compile + 1st epoch (s) | µs/step median (min–max) "
        "| × hand jit | 1st epoch × hand | × scan floor | peak RSS MiB (+ over row start) |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for wl_name, by_loop in summary.items():
        for name, s in by_loop.items():
            lines.append(
                f"| {wl_name} | {name} | {s['first_epoch_s']:.2f} "
                f"| {s['us_per_step']:.0f} ({s['us_per_step_min']:.0f}–{s['us_per_step_max']:.0f}) "
                f"| {fmt(s['x_hand'], '.2f')} | {fmt(s['x_hand_first_epoch'], '.2f')} "
                f"| {fmt(s['x_floor'], '.2f')} | {s['peak_rss_mib']:.0f} "
                f"(+{fmt(s['rss_growth_mib'], '.0f')}) |"
            )
    eval_lines = []
    for wl_name, by_lib in report["evaluate_predict"].items():
        hand, ours = by_lib["hand"], by_lib["eqx_elegy"]
        if not hand:  # --no-eval
            continue
        for call in ("evaluate", "predict"):
            per_batch = 1e6 / cfg["steps_per_epoch"][wl_name]
            hand_us = median([rec[call] for rec in hand]) * per_batch
            ours_us = median([rec[call] for rec in ours]) * per_batch
            ratio = paired_ratio(ours, hand, call)
            eval_lines.append(
                f"| {wl_name} | {call} | {hand_us:.0f} | {fmt(ours_us, '.0f')} "
                f"| {fmt(ratio, '.2f')} |"
            )
    if eval_lines:
        lines += [
            "",
            "| workload | call | hand jit µs/batch | eqx_elegy µs/batch | × hand |",
            "|---|---|--:|--:|--:|",
            *eval_lines,
        ]
    goals = targets(report, summary)
    if goals:
        lines += ["", "Targets of issue 21 (medians of paired per-repeat ratios):", *goals]
    skips = [
        f"- {wl_name} / {name}: {reason}"
        for wl_name, by_name in report["skipped"].items()
        for name, reason in by_name.items()
    ]
    if skips:
        lines += ["", "Skipped:", *skips]
    return "\n".join(lines)


# Option defaults for a full run and for --quick; rows None means each workload's own.
FULL = {"repeats": 5, "epochs": 3, "rows": None, "eval_calls": 3, "workloads": ",".join(WORKLOADS)}
QUICK = {"repeats": 1, "epochs": 1, "rows": 512, "eval_calls": 1, "workloads": "small"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, help="interleaved repeats (default 5)")
    p.add_argument("--epochs", type=int, help="steady epochs after the first (default 3)")
    p.add_argument(
        "--rows",
        type=int,
        help="training rows for every workload (default: "
        + ", ".join(f"{w.name} {w.rows}" for w in WORKLOADS.values())
        + ")",
    )
    p.add_argument(
        "--workloads", help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)"
    )
    p.add_argument(
        "--loops", default=",".join(LOOPS), help=f"comma-separated subset of: {', '.join(LOOPS)}"
    )
    p.add_argument(
        "--eval-calls", type=int, help="timed evaluate/predict calls per repeat (default 3)"
    )
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip evaluate/predict")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 repeat, 512 rows, 1 steady epoch, 1 eval call and the small\n"
        "workload, where those options are not given",
    )
    p.add_argument("--json", type=Path, help="also write all measurements to this file")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.loops = [name for name in args.loops.split(",") if name]
    for flag, chosen, valid in [
        ("--workloads", args.workloads, WORKLOADS),
        ("--loops", args.loops, LOOPS),
    ]:
        unknown = [c for c in chosen if c not in valid]
        if unknown or not chosen:
            p.error(f"{flag}: unknown or empty {unknown}; choose from {', '.join(valid)}")
    for flag, value, least in [
        ("--repeats", args.repeats, 1),
        ("--epochs", args.epochs, 1),
        ("--eval-calls", args.eval_calls, 1),
        ("--rows", BATCH if args.rows is None else args.rows, BATCH),
    ]:
        if value < least:
            p.error(f"{flag} must be at least {least}, got {value}")
    if args.rows is not None and args.rows % BATCH:
        p.error(f"--rows must be a multiple of the batch size {BATCH}, got {args.rows}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    report = run_benchmark(args, [LOOPS[name] for name in args.loops])
    summary = report["summary"] = summarise(report)
    print()
    print(markdown(report, summary))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"\nwrote {args.json}")
    return report


if __name__ == "__main__":
    main()
