"""Prefetch: a generator with a slow host transform, fed to `fit` with and without the
background thread.

Each batch costs `--host-ms` of host work (`sleep`: waiting, as on I/O; `numpy`: CPU
work on the host, which competes with XLA for the cores), and the train step of the MLP
costs about as much on the device. Without prefetch the steady time per step is their
sum; with it the two overlap and the step costs about max(host, device).

    python benchmarks/bench_prefetch.py [--host-ms 1.0] [--width 512] [--repeats 5]

Prints the host time per batch, the device time per step (the same model on in-memory
arrays), and the steady time per step with and without prefetch (medians over repeats,
interleaved; each timed fit runs on already compiled steps).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax
from sklearn.datasets import load_digits

import eqx_elegy as elegy


def make_data(batch: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    reps = -(-batch * steps // len(digits.data))
    x = np.tile((digits.data / 16).astype(np.float32), (reps, 1))[: batch * steps]
    y = np.tile(digits.target.astype(np.int32), reps)[: batch * steps]
    return x, y


def host_work(kind: str, seconds: float) -> Callable[[np.ndarray], np.ndarray]:
    """A transform that takes about `seconds` per batch on the host."""
    if kind == "sleep":

        def sleep(x: np.ndarray) -> np.ndarray:
            time.sleep(seconds)
            return x

        return sleep

    noise = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)

    def spin(x: np.ndarray) -> np.ndarray:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            noise @ noise  # numpy work: holds a core, releases the GIL in BLAS
        return x

    return spin


def batches(
    x: np.ndarray, y: np.ndarray, batch: int, work: Callable[[np.ndarray], np.ndarray]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    while True:
        for i in range(0, len(x), batch):
            yield work(x[i : i + batch]), y[i : i + batch]


def model(width: int) -> elegy.Model:
    return elegy.Model(
        module=eqx.nn.MLP(64, 10, width, 2, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-3),
    )


def per_step(fit: Callable[[], Any], steps: int) -> float:
    start = time.perf_counter()
    fit()  # fit fetches the epoch's logs at its end: the device work is done
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host-ms", type=float, default=1.0)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kinds", default="sleep,numpy")
    args = parser.parse_args()
    steps, batch = args.steps, args.batch
    x, y = make_data(batch, steps)
    net = model(args.width)
    net.fit(x, y, batch_size=batch, shuffle=False, epochs=1, verbose=0)  # compile

    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}; MLP 64-{args.width}-"
        f"{args.width}-10, batch {batch}, {steps} steps per timed fit, median of "
        f"{args.repeats}"
    )
    for kind in args.kinds.split(","):
        work = host_work(kind, args.host_ms / 1e3)
        runs: dict[str, list[float]] = {"host": [], "device": [], "without": [], "with": []}
        for _ in range(args.repeats):
            source = batches(x, y, batch, work)
            start = time.perf_counter()
            for _ in range(steps):
                next(source)
            runs["host"].append((time.perf_counter() - start) / steps * 1e3)
            runs["device"].append(
                per_step(lambda: net.fit(x, y, batch_size=batch, shuffle=False, verbose=0), steps)
            )
            sync = elegy.data.IterableAdapter(
                batches(x, y, batch, work), steps=steps, prefetch_size=0
            )
            runs["without"].append(per_step(lambda s=sync: net.fit(s, verbose=0), steps))
            ahead = elegy.data.IterableAdapter(batches(x, y, batch, work), steps=steps)
            runs["with"].append(per_step(lambda a=ahead: net.fit(a, verbose=0), steps))
        ms = {name: statistics.median(values) for name, values in runs.items()}
        paired = zip(runs["host"], runs["device"], runs["without"], runs["with"], strict=True)
        ratios = [(w / (h + d), p / max(h, d)) for h, d, w, p in paired]
        print(f"\nhost transform: {kind}, {args.host_ms} ms requested")
        print(f"  host work per batch        {ms['host']:7.3f} ms")
        print(f"  device step (arrays)       {ms['device']:7.3f} ms")
        print(
            f"  sum / max                  {ms['host'] + ms['device']:7.3f} / "
            f"{max(ms['host'], ms['device']):.3f} ms"
        )
        print(f"  generator, no prefetch     {ms['without']:7.3f} ms/step")
        print(
            f"  generator, prefetch        {ms['with']:7.3f} ms/step  "
            f"({ms['without'] / ms['with']:.2f}x faster)"
        )
        print(
            "  median paired ratios: no prefetch / (host + device) "
            f"{statistics.median(r[0] for r in ratios):.2f}, prefetch / max(host, device) "
            f"{statistics.median(r[1] for r in ratios):.2f}"
        )


if __name__ == "__main__":
    main()
