"""What the progress display costs: `fit(verbose=1)` and `verbose=2` against `verbose=0`.

Elegy's progress bar synchronised with the device on every step (Elegy issue #141);
eqx_elegy's ProgbarLogger reads the logs only when it redraws (a few times a second). This
times `fit` on the dispatch-bound small MLP of the speed benchmark (64-32-10 on scikit-learn's
digits tiled to 16,384 rows, batch 64, adam(1e-3)), where any per-step host work shows, in
one process with one model (its steps compile once, before timing). Each repeat runs every
setting once, in a rotating order, and the figure is the median over repeats of the ratio
of a setting's µs/step to verbose=0's in the same repeat (the target is <= 1.03). Wall-clock
time is the figure that counts; process CPU time (all threads) is printed too, since on a
machine shared with other work it is far less noisy (but it does not see time spent
waiting for the device).

Settings:
- `verbose=0`: no progress callback (the baseline);
- `verbose=1 (stdout)`: the default ProgbarLogger on stdout, which draws a live bar on a
  terminal and prints one line per epoch otherwise (a file, a pipe, CI);
- `verbose=1 (bar)`: a ProgbarLogger on a console forced to act as a terminal (writing to
  memory), so the live bar is drawn and the logs fetched at every redraw whatever stdout is;
- `verbose=2`: one line per epoch.

    python benchmarks/bench_progbar.py               # 21 repeats of 2 epochs, ~1 minute
    python benchmarks/bench_progbar.py --quick       # smoke run, numbers meaningless
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax
from rich.console import Console
from sklearn.datasets import load_digits

# Benchmark the checkout this file lives in, not whatever copy of eqx_elegy is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eqx_elegy as elegy  # noqa: E402
from eqx_elegy import LazyLogs  # noqa: E402
from eqx_elegy.callbacks import Callback, CallbackList, History, ProgbarLogger  # noqa: E402

BATCH = 64
ROWS = 16_384


def digits(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (64 features in [0, 1]), tiled to `rows` rows."""
    x, y = load_digits(return_X_y=True)
    reps = -(-rows // len(x))
    x, y = (np.asarray(x) / 16.0).astype(np.float32), np.asarray(y).astype(np.int32)
    return np.tile(x, (reps, 1))[:rows], np.tile(y, reps)[:rows]


def small_mlp() -> elegy.Model:
    return elegy.Model(
        module=eqx.nn.MLP(64, 10, 32, 1, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=elegy.metrics.Accuracy(),
        optimizer=optax.adam(1e-3),
    )


def settings() -> dict[str, Callable[[], tuple[int, list[Callback]]]]:
    """Each setting's `(verbose, callbacks)`, built fresh for every fit."""
    return {
        "verbose=0": lambda: (0, []),
        "verbose=1 (stdout)": lambda: (1, []),
        "verbose=1 (bar)": lambda: (
            1,
            [ProgbarLogger(console=Console(file=io.StringIO(), force_terminal=True, width=160))],
        ),
        "verbose=2": lambda: (2, []),
    }


def time_fit(
    model: elegy.Model, x: Any, y: Any, epochs: int, make: Callable[[], Any]
) -> tuple[float, float]:
    """Wall-clock and process-CPU µs per training step of one `fit` of `epochs` epochs."""
    verbose, callbacks = make()
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=verbose, callbacks=callbacks)
    jax.block_until_ready(model.states)
    steps = epochs * (len(x) // BATCH)
    return (
        (time.perf_counter() - start) * 1e6 / steps,
        (time.process_time() - cpu) * 1e6 / steps,
    )


def hook_cost(model: elegy.Model, x: Any, y: Any, epochs: int) -> float:
    """µs per step that the progress bar adds on the host, timed alone: what the loop does
    for it per step (a clock read; the bar's batch-end hook when a redraw is due, with a
    lazy mapping of real device logs) and at each epoch's start and end, with the bar drawn
    on a terminal console at its normal rate."""
    bar = ProgbarLogger(console=Console(file=io.StringIO(), force_terminal=True, width=160))
    steps = len(x) // BATCH
    params = {"epochs": epochs, "steps": steps, "verbose": 1}
    callbacks = CallbackList([History(), bar], model, params)
    tick = callbacks.throttled("on_train_batch_end")
    assert tick is not None and not callbacks.wants("on_train_batch_end")
    logs = model.evaluate(x[:BATCH], y[:BATCH], batch_size=BATCH, verbose=0)
    device_logs = {name: jax.numpy.asarray(value) for name, value in logs.items()}
    start = time.perf_counter()
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        for step in range(steps):
            if time.perf_counter() >= tick.next:
                tick(step, LazyLogs(device_logs))
        tick(steps - 1, LazyLogs(device_logs))
        callbacks.on_epoch_end(epoch, logs)
    return (time.perf_counter() - start) * 1e6 / (epochs * steps)


def row(name: str, values: list[float], base: list[float]) -> str:
    ratios = [v / b for v, b in zip(values, base, strict=True)]
    return (
        f"| {name} | {statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f}) "
        f"| {statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) |"
    )


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Run the benchmark and print its tables; returns the wall-clock µs/step per setting."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=21, help="paired repeats (default 21)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed fit (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, 1,024 rows")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.epochs < 1:
        parser.error("--repeats and --epochs must be at least 1")
    rows, repeats, epochs = (1024, 1, 1) if args.quick else (ROWS, args.repeats, args.epochs)

    x, y = digits(rows)
    model = small_mlp()
    timed = settings()
    for make in timed.values():  # compile, and warm every path, before timing
        time_fit(model, x, y, 1, make)

    wall: dict[str, list[float]] = {name: [] for name in timed}
    cpu: dict[str, list[float]] = {name: [] for name in timed}
    names = list(timed)
    load_before = os.getloadavg()[0]
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            w, c = time_fit(model, x, y, epochs, timed[name])
            wall[name].append(w)
            cpu[name].append(c)
    load_after = os.getloadavg()[0]

    print(
        f"\nsmall MLP 64-32-10, {rows} rows, batch {BATCH}, {rows // BATCH} steps/epoch, "
        f"{epochs} epochs per fit, {repeats} paired repeats; device {jax.devices()[0].platform}, "
        f"{os.cpu_count()} CPUs, load average {load_before:.1f} -> {load_after:.1f}"
    )
    for title, results in (("wall-clock", wall), ("process CPU time", cpu)):
        print(f"\n| setting | {title} µs/step, median (min–max) | × verbose=0, paired |")
        print("|---|--:|--:|")
        for name, values in results.items():
            print(row(name, values, results["verbose=0"]))
    hooks = statistics.median(hook_cost(model, x, y, epochs) for _ in range(repeats))
    step = statistics.median(wall["verbose=0"])
    print(
        f"\nProgress hooks timed alone (bar drawn): {hooks:.2f} µs/step, "
        f"{100 * hooks / step:.2f}% of verbose=0's {step:.0f} µs/step"
    )
    return wall


if __name__ == "__main__":
    main()
