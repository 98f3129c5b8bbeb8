"""A Population of N models against N sequential fits, and its memory as N grows.

On `bench_fit.py`'s small and medium workloads (digits tiled to 16,384 rows, batch 64, no
shuffling), one epoch of `elegy.Population` of 8 members (seeds 0-7, 8 learning rates of
an `optax.inject_hyperparams(optax.adam)`) against one epoch of each of the 8 same models
fitted one after the other. Each is timed after a first epoch that compiles, and the two
take turns within each repeat; the ratio is population / sequential, from the medians of
one run. Then the peak RSS of a fresh process that builds a Population of N members of the
medium workload and trains it one epoch, for N = 1, 8, 32, and its growth over the RSS
before the Population was built (JAX and the data are not the Population's).

    python benchmarks/bench_population.py            # 3 repeats, a few minutes on 2 CPU cores
    python benchmarks/bench_population.py --quick    # smoke run in seconds; numbers meaningless
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import optax

# Benchmark the checkout this file lives in, not whatever copy of eqx_elegy is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fit import BATCH, WORKLOADS, PeakRSS, load_data  # noqa: E402

import eqx_elegy as elegy  # noqa: E402

MEMBERS = 8
RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]


def make_model(workload: str, seed: int, rate: float = 1e-3) -> elegy.Model:
    return elegy.Model(
        module=WORKLOADS[workload].make_module(jax.random.key(seed)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.inject_hyperparams(optax.adam)(learning_rate=rate),
        seed=seed,
    )


def fit_epoch(model: Any, data: Any) -> tuple[float, float]:
    """Wall-clock and process CPU seconds for one epoch of `fit` (the device's work
    included). CPU time is the steadier measure on a machine shared with other jobs."""
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(data.x, data.y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    jax.block_until_ready(model.states.net_params)
    return time.perf_counter() - start, time.process_time() - cpu


def compare(workload: str, rows: int, repeats: int) -> dict[str, Any]:
    data = load_data(rows, WORKLOADS[workload])
    population = elegy.Population(
        lambda seed: make_model(workload, seed), hyperparams={"learning_rate": RATES}
    )
    models = [make_model(workload, seed, rate) for seed, rate in enumerate(RATES)]
    fit_epoch(population, data)  # compiles
    for model in models:
        fit_epoch(model, data)
    together, apart = [], []
    for _ in range(repeats):
        together.append(fit_epoch(population, data))
        times = [fit_epoch(model, data) for model in models]
        apart.append((sum(t[0] for t in times), sum(t[1] for t in times)))
    pop, seq = (statistics.median(t[0] for t in runs) for runs in (together, apart))
    pop_cpu, seq_cpu = (statistics.median(t[1] for t in runs) for runs in (together, apart))
    return {
        "workload": workload,
        "steps": data.steps,
        "population_s": pop,
        "sequential_s": seq,
        "ratio": pop / seq,
        "population_cpu_s": pop_cpu,
        "sequential_cpu_s": seq_cpu,
        "cpu_ratio": pop_cpu / seq_cpu,
    }


def peak_rss(members: int, rows: int) -> tuple[float, float]:
    """The peak RSS (MiB) of a fresh process that builds a Population of `members` and
    trains it one epoch, and how far it rose above the RSS before the Population."""
    command = [sys.executable, __file__, "--rss-child", str(members), "--rows", str(rows)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    peak, growth = out.strip().splitlines()[-1].split()
    return float(peak), float(growth)


def rss_child(members: int, rows: int) -> None:
    data = load_data(rows, WORKLOADS["medium"])
    jax.block_until_ready(jax.numpy.zeros(1) + 1)  # JAX's own start-up is not the Population's
    meter = PeakRSS()
    meter.start()
    population = elegy.Population(lambda seed: make_model("medium", seed), size=members)
    fit_epoch(population, data)
    print(meter.peak_mib(), meter.growth_mib())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run; numbers meaningless")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=16_384)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--workloads", default="small,medium", help="e.g. medium")
    parser.add_argument("--no-rss", action="store_true", help="skip the memory runs")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child is not None:
        rss_child(args.rss_child, args.rows)
        return
    rows, repeats = (BATCH * 8, 1) if args.quick else (args.rows, args.repeats)

    print(f"one epoch, {MEMBERS} members, median of {repeats}")
    print(
        f"{'workload':<8} {'steps':>5} {'population':>11} {'8 sequential':>13} {'ratio':>6}"
        f" {'CPU: population':>16} {'8 sequential':>13} {'ratio':>6}"
    )
    results: dict[str, Any] = {"speed": [], "rss_mib": {}}
    for workload in args.workloads.split(","):
        row = compare(workload, rows, repeats)
        results["speed"].append(row)
        print(
            f"{workload:<8} {row['steps']:>5} {row['population_s']:>10.3f}s "
            f"{row['sequential_s']:>12.3f}s {row['ratio']:>6.2f}"
            f" {row['population_cpu_s']:>15.3f}s {row['sequential_cpu_s']:>12.3f}s"
            f" {row['cpu_ratio']:>6.2f}"
        )
    if not args.no_rss:
        print("a fresh process building a Population and training it one epoch (medium workload)")
        print(f"{'members':>7} {'peak RSS':>9} {'growth':>8}")
        for members in (1, 8, 32):
            peak, growth = peak_rss(members, rows)
            results["rss_mib"][members] = {"peak": peak, "growth": growth}
            print(f"{members:>7} {peak:>5.0f} MiB {growth:>4.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
