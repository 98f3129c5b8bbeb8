"""Prediction throughput of an exported model against `model.predict`, side by side in
one process.

For each network and batch size, three loops predict the same rows (scikit-learn's digits
tiled to `--rows`), taking turns within each repeat after a warm-up call each
(compilation excluded):

- `predict`: `model.predict(x, batch_size=b)`, which dispatches batch after batch and
  fetches the predictions once at the end;
- `load_exported`: the loaded export called once per batch of `b` rows, as a server
  answers requests: each call checks its input and returns numpy, so it waits for its
  batch;
- `plain`: the docs' plain `jax.export` path (`jax.jit(exported.call)` with the weights
  from `weights.npz`), dispatched per batch and fetched once at the end like `predict`:
  the artifact's own speed.

Each ratio is that loop's throughput / predict's, per repeat, then the median (range in
brackets): above 1 it is faster.

    python benchmarks/bench_export.py                  # 5 repeats, about a minute on 2 CPU cores
    python benchmarks/bench_export.py --quick          # smoke run; the numbers mean nothing
    python benchmarks/bench_export.py --json out.json  # also write every measurement
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
from sklearn.datasets import load_digits

import eqx_elegy as elegy

NETWORKS: dict[str, Callable[[], eqx.Module]] = {
    "small 64-32-10": lambda: eqx.nn.MLP(64, 10, 32, 1, key=jax.random.key(0)),
    "medium 64-256-256-10": lambda: eqx.nn.MLP(64, 10, 256, 2, key=jax.random.key(0)),
}


def rows(n: int) -> np.ndarray:
    x = (load_digits().data / 16).astype(np.float32)
    return np.tile(x, (-(-n // len(x)), 1))[:n]


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()  # both return numpy: the device work is done when they return
    return time.perf_counter() - start


def measure(name: str, x: np.ndarray, batch: int, repeats: int, folder: Path) -> dict[str, Any]:
    model = elegy.Model(module=NETWORKS[name]())
    model.init(x[:batch])
    model.export(folder / f"{name.split()[0]}-{batch}")
    served = elegy.load_exported(folder / f"{name.split()[0]}-{batch}")

    def predict() -> Any:
        return model.predict(x, batch_size=batch)

    def exported() -> Any:
        return [served(x[i : i + batch]) for i in range(0, len(x), batch)]

    call = jax.jit(served.exported.call)
    weights = jax.device_put(dict(np.load(folder / f"{name.split()[0]}-{batch}" / "weights.npz")))

    def plain() -> Any:
        return jax.device_get([call(weights, x[i : i + batch]) for i in range(0, len(x), batch)])

    loops = {"predict": predict, "load_exported": exported, "plain": plain}
    for fn in loops.values():  # compile every batch shape
        fn()
    # On a GPU, XLA runs float32 matrix products in TF32 by default, with kernels that
    # may differ between the two programs: agreement to ~1e-3 there, ~1e-6 on CPU.
    tolerance = 1e-5 if jax.default_backend() == "cpu" else 2e-3
    np.testing.assert_allclose(np.concatenate(exported()), predict(), atol=tolerance)
    runs: dict[str, list[float]] = {label: [] for label in loops}
    order = list(loops.items())
    for r in range(repeats):
        for label, fn in order[r % 3 :] + order[: r % 3]:  # rotate who goes first
            runs[label].append(len(x) / timed(fn))
    ratios = {
        label: [a / p for a, p in zip(runs[label], runs["predict"], strict=True)]
        for label in ("load_exported", "plain")
    }
    return {
        "rows_per_s": {k: statistics.median(v) for k, v in runs.items()},
        "ratio": {k: statistics.median(v) for k, v in ratios.items()},
        "ratio_range": {k: [min(v), max(v)] for k, v in ratios.items()},
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, 1 repeat")
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--batches", default="32,256,4096", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write every measurement to this file")
    args = parser.parse_args()
    n, batches, repeats = args.rows, [int(b) for b in args.batches.split(",")], args.repeats
    if args.quick:
        n, batches, repeats = 256, [32, 256], 1
    x = rows(n)
    load = os.getloadavg()[0]
    print(f"jax {jax.__version__} on {jax.default_backend()}, {n} rows, 1-min load {load:.1f}")
    print(
        f"{'network':22} {'batch':>6} {'predict rows/s':>15} {'load_exported':>14} "
        f"{'x predict':>18} {'plain':>11} {'x predict':>18}"
    )
    results: dict[str, dict[int, Any]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in NETWORKS:
            for batch in batches:
                r = measure(name, x, batch, repeats, Path(scratch))
                results.setdefault(name, {})[batch] = r
                cells = [f"{name:22} {batch:6d} {r['rows_per_s']['predict']:15,.0f}"]
                for label, width in (("load_exported", 14), ("plain", 11)):
                    lo, hi = r["ratio_range"][label]
                    ratio = f"{r['ratio'][label]:.2f} ({lo:.2f}-{hi:.2f})"
                    cells.append(f"{r['rows_per_s'][label]:{width},.0f} {ratio:>18}")
                print(" ".join(cells))
    print(f"1-min load at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": n, "results": results}, indent=1))


if __name__ == "__main__":
    main()
