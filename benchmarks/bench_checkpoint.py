"""How long a save every epoch holds up training: native (synchronous) against orbax
(asynchronous), through `ModelCheckpoint`.

Three arms take turns within each repeat (the order rotates between repeats): a fit with
no checkpoint, one with `ModelCheckpoint(path)` (the native format, written before the
callback returns) and one with `ModelCheckpoint(path, backend="orbax")` (the arrays are
copied off the devices, the files written in the background). Each fit runs `--epochs`
epochs with a save at each epoch's end; the first epoch (compilation, orbax's first use)
is left out.

- **blocked ms/save**: how long the checkpoint callback's `on_epoch_end` takes, read by
  a callback before it (once the epoch's parameters are computed) and one after it:
  the time the training loop stands still for each save. Median over epochs and repeats.
- **orbax/native**: orbax's blocked time over native's, per repeat (paired), median.
- **epoch ratio**: the arm's median epoch time (end to end, save included) over the
  no-checkpoint arm's in the same repeat: the whole cost, including the background
  writing competing with training for the CPU.
- **end wait**: how long the end of the fit waits for the last save (orbax: the write
  still in flight; native: nothing).

Workloads: `bench_fit.py`'s medium MLP (64-256-256-10 on digits, 16,384 rows, batch 64;
its states with Adam are about 1 MiB) and a wide one (64-2048-2048-10, 2,048 rows, about
52 MiB of states), where writing takes long enough for the background to matter.

    python benchmarks/bench_checkpoint.py            # 5 repeats, a few minutes on 2 CPU cores
    python benchmarks/bench_checkpoint.py --quick    # smoke run in seconds; numbers meaningless
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import optax

# Benchmark the checkout this file lives in, not whatever copy of eqx_elegy is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fit import BATCH, WORKLOADS, load_data  # noqa: E402

import eqx_elegy as elegy  # noqa: E402

ARMS = ("none", "native", "orbax")
SHAPES = {  # workload: (width, depth, rows)
    "medium": (256, 2, 16_384),
    "wide": (2048, 2, 2_048),
}


class Clock(elegy.callbacks.Callback):
    """Reads the clock at each epoch's end, once the epoch's parameters are computed; one
    placed before the checkpoint and one after it time the save between them."""

    reads_states_per_batch = False

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[float] = []

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        jax.block_until_ready(self.model.states.net_params)
        self.ends.append(time.perf_counter())


def make_model(width: int, depth: int) -> elegy.Model:
    return elegy.Model(
        module=eqx.nn.MLP(64, 10, width, depth, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-3),
    )


def run_arm(arm: str, workload: str, data: Any, epochs: int, root: Path) -> dict[str, float]:
    """One fit of `epochs` epochs: its median epoch time after the first, the median time
    the save blocked the loop, and how long the fit's end waited after the last epoch
    (all seconds)."""
    width, depth, _ = SHAPES[workload]
    model = make_model(width, depth)
    before, after = Clock(), Clock()
    callbacks: list[Any] = [before]
    if arm != "none":
        path = root / f"{workload}-{arm}"
        callbacks.append(elegy.callbacks.ModelCheckpoint(path, backend=arm))
    callbacks.append(after)
    model.fit(
        data.x, data.y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
        callbacks=callbacks,
    )  # fmt: skip
    end = time.perf_counter()
    ends = after.ends
    return {
        "epoch_s": statistics.median(b - a for a, b in zip(ends, ends[1:], strict=False)),
        "blocked_s": statistics.median(
            b - a for a, b in zip(before.ends[1:], ends[1:], strict=True)
        ),
        "end_wait_s": end - ends[-1],
    }


def compare(workload: str, repeats: int, epochs: int, rows: int | None) -> dict[str, Any]:
    rows = rows or SHAPES[workload][2]
    data = load_data(rows, WORKLOADS["medium"])
    root = Path(tempfile.mkdtemp(prefix="bench_checkpoint-"))
    try:
        for arm in ARMS:  # warm-up: imports (orbax takes seconds), first compilations
            run_arm(arm, workload, data, 2, root)
        runs: list[dict[str, dict[str, float]]] = []
        for repeat in range(repeats):
            order = ARMS[repeat % 3 :] + ARMS[: repeat % 3]
            runs.append({arm: run_arm(arm, workload, data, epochs, root) for arm in order})
    finally:
        shutil.rmtree(root)
    out: dict[str, Any] = {"workload": workload, "rows": rows, "steps": rows // BATCH}
    for arm in ARMS:
        out[f"{arm}_epoch_s"] = statistics.median(r[arm]["epoch_s"] for r in runs)
        out[f"{arm}_end_wait_s"] = statistics.median(r[arm]["end_wait_s"] for r in runs)
    for arm in ("native", "orbax"):
        blocked = [r[arm]["blocked_s"] for r in runs]
        ratio = [r[arm]["epoch_s"] / r["none"]["epoch_s"] for r in runs]
        out[f"{arm}_blocked_ms"] = 1e3 * statistics.median(blocked)
        out[f"{arm}_blocked_ms_range"] = (1e3 * min(blocked), 1e3 * max(blocked))
        out[f"{arm}_epoch_ratio"] = statistics.median(ratio)
    paired = [r["orbax"]["blocked_s"] / r["native"]["blocked_s"] for r in runs]
    out["orbax_over_native"] = statistics.median(paired)
    out["orbax_over_native_range"] = (min(paired), max(paired))
    out["runs"] = runs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run; numbers meaningless")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4, help="per fit, the first not timed")
    parser.add_argument("--workloads", default="medium,wide", help="e.g. medium")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    repeats, epochs = (1, 3) if args.quick else (args.repeats, args.epochs)
    print(
        f"{jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, 1-min load "
        f"{os.getloadavg()[0]:.1f}; {repeats} repeats, {epochs} epochs per fit, a save per epoch"
    )
    print(
        f"{'workload':<8} {'steps':>5} {'epoch, no save':>14} {'native blocked':>15} "
        f"{'ratio':>6} {'orbax blocked':>14} {'ratio':>6} {'orbax/native':>12} {'end wait':>9}"
    )
    results = []
    for workload in args.workloads.split(","):
        row = compare(workload, repeats, epochs, BATCH * 4 if args.quick else None)
        results.append(row)
        print(
            f"{workload:<8} {row['steps']:>5} {row['none_epoch_s'] * 1e3:>11.1f} ms "
            f"{row['native_blocked_ms']:>12.1f} ms {row['native_epoch_ratio']:>6.2f} "
            f"{row['orbax_blocked_ms']:>11.1f} ms {row['orbax_epoch_ratio']:>6.2f} "
            f"{row['orbax_over_native']:>12.2f} {row['orbax_end_wait_s'] * 1e3:>6.0f} ms"
        )
    print(f"1-min load at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
