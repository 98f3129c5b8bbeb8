"""Prediction throughput of an exported model (`elegy.load_exported`) against
`model.predict`, side by side in one process.

For each network and batch size, both predict the same rows (scikit-learn's digits tiled
to `--rows`): `model.predict(x, batch_size=b)`, and the loaded export called once per
batch of `b` rows (as a server answering requests would; each call returns numpy). The
two take turns within each repeat, after a warm-up call each (compilation excluded).
The ratio is exported throughput / predict throughput, per repeat, then the median:
above 1 the export is faster.

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

    for fn in (predict, exported):  # compile every batch shape
        fn()
    np.testing.assert_allclose(np.concatenate(exported()), predict(), atol=1e-5)
    runs: dict[str, list[float]] = {"predict": [], "exported": []}
    for r in range(repeats):
        order = [("predict", predict), ("exported", exported)]
        for label, fn in order if r % 2 == 0 else order[::-1]:
            runs[label].append(len(x) / timed(fn))
    ratios = [e / p for e, p in zip(runs["exported"], runs["predict"], strict=True)]
    return {
        "rows_per_s": {k: statistics.median(v) for k, v in runs.items()},
        "ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
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
        f"{'network':22} {'batch':>6} {'predict rows/s':>15} {'exported rows/s':>16} {'ratio':>6}"
    )
    results: dict[str, dict[int, Any]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in NETWORKS:
            for batch in batches:
                r = measure(name, x, batch, repeats, Path(scratch))
                results.setdefault(name, {})[batch] = r
                lo, hi = r["ratio_range"]
                print(
                    f"{name:22} {batch:6d} {r['rows_per_s']['predict']:15,.0f} "
                    f"{r['rows_per_s']['exported']:16,.0f} {r['ratio']:6.2f} ({lo:.2f}-{hi:.2f})"
                )
    print(f"1-min load at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": n, "results": results}, indent=1))


if __name__ == "__main__":
    main()
