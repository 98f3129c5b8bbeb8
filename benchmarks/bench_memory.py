"""Memory held after models are dropped: fresh small models are fitted, evaluated and
used to predict, then deleted; the process's resident memory (RSS) must not grow with
their number.

Each model compiles its own steps, so every cache the library keeps for a model
(compiled functions, flat states, its History) must go when the model goes. A leak
shows as growth proportional to the number of models, and as models still reachable
after `del` and `gc.collect()`.

    python benchmarks/bench_memory.py                # 100 models, fails above 50 MB growth
    python benchmarks/bench_memory.py --models 20    # a shorter run
    python benchmarks/bench_memory.py --json out.json

This is a measurement, not a timed test: it takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import weakref
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax
from sklearn.datasets import load_digits

# Measure the checkout this file lives in, not whatever copy of eqx_elegy is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eqx_elegy as elegy  # noqa: E402


def rss_mb() -> float:
    """The resident set size of this process, in MB (10^6 bytes; Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmRSS in /proc/self/status (this benchmark needs Linux)")


def use_one_model(seed: int, x: np.ndarray, y: np.ndarray) -> weakref.ref[elegy.Model]:
    """Build, fit, evaluate and predict with a fresh model; return a weak reference to it."""
    model = elegy.Model(
        module=eqx.nn.MLP(64, 10, 32, 1, key=jax.random.key(seed)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-3),
    )
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    model.evaluate(x, y, batch_size=64, verbose=0)
    model.predict(x, batch_size=64)
    return weakref.ref(model)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", type=int, default=100, help="models to build and drop (100)")
    p.add_argument("--warmup", type=int, default=3, help="models before the baseline (3)")
    p.add_argument("--limit-mb", type=float, default=50.0, help="allowed RSS growth (50)")
    p.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = p.parse_args(argv)

    data = load_digits()
    x = (data.data[:512] / 16.0).astype(np.float32)
    y = data.target[:512].astype(np.int32)

    for seed in range(args.warmup):  # imports, jax's own caches, the first compiles
        use_one_model(seed, x, y)
    gc.collect()
    baseline = rss_mb()
    start = time.perf_counter()
    alive: list[weakref.ref[elegy.Model]] = []
    trace = []
    for i in range(args.models):
        alive.append(use_one_model(args.warmup + i, x, y))
        if (i + 1) % 10 == 0 or i + 1 == args.models:
            gc.collect()
            trace.append((i + 1, round(rss_mb() - baseline, 1)))
            print(f"after {i + 1:4d} models: RSS {trace[-1][1]:+8.1f} MB", flush=True)
    gc.collect()
    growth = rss_mb() - baseline
    survivors = sum(ref() is not None for ref in alive)
    report = {
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
        f"(limit {args.limit_mb:g}), {survivors} still alive"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
