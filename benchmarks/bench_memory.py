"""Memory held after models are dropped: fresh small models are fitted, evaluated and
used to predict, then deleted; the process's resident memory (RSS) must not grow with
their number.

Each model compiles its own steps, so every cache the library keeps for a model
(compiled functions, flat states, its History) must go when the model goes. A leak
shows as growth proportional to the number of models, and as models still reachable
after `del` and `gc.collect()`.

The RSS is read after each tenth model, after `gc.collect()` and glibc's
`malloc_trim(0)`, which hands the heap's free pages back to the system: that is the
memory the process still holds, and the target (growth <= 50 MB) is judged on it.
`--no-trim` reads the RSS without the trim: glibc keeps the pages freed while the first
models compiled and ran for later allocations, so that figure rises by about 70 MB over
the first ten models (jax 0.10, CPU) and then stays flat; a leak would make it climb.

`--hand` runs the same work as a hand-written `jax.jit` + optax loop instead, to show
what JAX itself keeps.

    python benchmarks/bench_memory.py                # 100 models, fails above 50 MB growth
    python benchmarks/bench_memory.py --no-trim      # the RSS as `ps` shows it
    python benchmarks/bench_memory.py --models 20    # a shorter run
    python benchmarks/bench_memory.py --hand         # the hand-written loop, for comparison
    python benchmarks/bench_memory.py --json out.json

This is a measurement, not a timed test: it takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax
from sklearn.datasets import load_digits

# Measure the checkout this file lives in, not whatever copy of eqx_elegy is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eqx_elegy as elegy  # noqa: E402

BATCH = 64


def rss_mb() -> float:
    """The resident set size of this process, in MB (10^6 bytes; Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmRSS in /proc/self/status (this benchmark needs Linux)")


def _malloc_trim() -> Callable[[], Any] | None:
    """glibc's `malloc_trim(0)`, or None where the C library has none (e.g. musl)."""
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    return None if trim is None else (lambda: trim(0))


def held_mb(trim: Callable[[], Any] | None) -> float:
    """The RSS in MB after a garbage collection and, given `trim`, `malloc_trim(0)`."""
    gc.collect()
    if trim is not None:
        trim()
    return rss_mb()


def use_one_model(seed: int, x: np.ndarray, y: np.ndarray) -> weakref.ref[Any]:
    """Build, fit, evaluate and predict with a fresh model; return a weak reference to it."""
    model = elegy.Model(
        module=eqx.nn.MLP(64, 10, 32, 1, key=jax.random.key(seed)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-3),
    )
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    model.evaluate(x, y, batch_size=BATCH, verbose=0)
    model.predict(x, batch_size=BATCH)
    return weakref.ref(model)


def use_one_hand_loop(seed: int, x: np.ndarray, y: np.ndarray) -> weakref.ref[Any]:
    """The same work written by hand: fresh jitted train, evaluate and predict functions
    for a fresh MLP; returns a weak reference to the module."""
    module = eqx.nn.MLP(64, 10, 32, 1, key=jax.random.key(seed))
    params, static = eqx.partition(module, eqx.is_array)
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)

    def forward(p: Any, xb: jax.Array) -> jax.Array:
        return jax.vmap(eqx.combine(p, static))(xb)

    def loss(p: Any, xb: jax.Array, yb: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(forward(p, xb), yb).mean()

    @jax.jit
    def train(p: Any, s: Any, xb: jax.Array, yb: jax.Array) -> tuple[Any, Any, jax.Array]:
        value, grads = jax.value_and_grad(loss)(p, xb, yb)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    evaluate, predict = jax.jit(loss), jax.jit(forward)
    starts = range(0, len(x) - BATCH + 1, BATCH)
    for i in starts:
        params, opt_state, _ = train(params, opt_state, x[i : i + BATCH], y[i : i + BATCH])
    jax.block_until_ready([evaluate(params, x[i : i + BATCH], y[i : i + BATCH]) for i in starts])
    jax.block_until_ready([predict(params, x[i : i + BATCH]) for i in starts])
    return weakref.ref(module)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", type=int, default=100, help="models to build and drop (100)")
    p.add_argument("--warmup", type=int, default=3, help="models before the baseline (3)")
    p.add_argument("--limit-mb", type=float, default=50.0, help="allowed RSS growth (50)")
    p.add_argument("--no-trim", action="store_true", help="read the RSS without malloc_trim")
    p.add_argument("--hand", action="store_true", help="a hand-written jax.jit + optax loop")
    p.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = p.parse_args(argv)

    data = load_digits()
    x = (data.data[:512] / 16.0).astype(np.float32)
    y = data.target[:512].astype(np.int32)
    use = use_one_hand_loop if args.hand else use_one_model
    trim = None if args.no_trim else _malloc_trim()
    if trim is None and not args.no_trim:
        print("no malloc_trim in this C library: the RSS is read without it")

    for seed in range(args.warmup):  # imports, jax's own caches, the first compiles
        use(seed, x, y)
    baseline = held_mb(trim)
    start = time.perf_counter()
    alive: list[weakref.ref[Any]] = []
    trace = []
    for i in range(args.models):
        alive.append(use(args.warmup + i, x, y))
        if (i + 1) % 10 == 0 or i + 1 == args.models:
            trace.append((i + 1, round(held_mb(trim) - baseline, 1)))
            print(f"after {i + 1:4d} models: RSS {trace[-1][1]:+8.1f} MB", flush=True)
    growth = held_mb(trim) - baseline
    survivors = sum(ref() is not None for ref in alive)
    report = {
        "loop": "hand-written jax.jit + optax" if args.hand else "eqx_elegy",
        "malloc_trim": trim is not None,
        "models": args.models,
        "baseline_rss_mb": round(baseline, 1),
        "growth_mb": round(growth, 1),
        "growth_per_model_mb": round(growth / args.models, 3),
        "models_still_alive": survivors,
        "seconds": round(time.perf_counter() - start, 1),
        "trace": trace,
        "jax": jax.__version__,
    }
    print(json.dumps(report, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    ok = growth <= args.limit_mb and survivors == 0
    print(
        f"{'PASS' if ok else 'FAIL'}: {args.models} models, RSS growth {growth:.1f} MB "
        f"(limit {args.limit_mb:g}{'' if trim else ', untrimmed'}), {survivors} still alive"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
