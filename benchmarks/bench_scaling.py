"""Weak-scaling benchmark of `DataParallel` and `FSDP`: per-device throughput and scaling
efficiency of `Model.fit` from 1 to N devices.

The batch per device is fixed, so the global batch grows with the device count; ideal
scaling keeps the examples per second per device constant. Efficiency on n devices is
(per-device throughput on n) / (per-device throughput on 1). Each configuration first
runs one epoch to compile, then times `--epochs` epochs of `--steps` steps of `fit`
itself (host batching, transfers, the compiled step and the end-of-epoch log fetch).

    python benchmarks/bench_scaling.py                        # all GPUs (or CPU devices)
    python benchmarks/bench_scaling.py --devices 1,2,4,8 --strategy fsdp --width 4096
    python benchmarks/bench_scaling.py --cpu-devices 8        # simulate 8 devices on CPU

On CPU the "devices" share the machine's cores, so efficiency there measures overhead,
not speed-up; run it on a multi-GPU host for real numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", default=None, help="device counts, e.g. 1,2,4,8")
    parser.add_argument("--strategy", choices=["dp", "fsdp", "both"], default="both")
    parser.add_argument("--per-device-batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--width", type=int, default=1024, help="hidden width of the MLP")
    parser.add_argument("--depth", type=int, default=4, help="hidden layers of the MLP")
    parser.add_argument("--steps", type=int, default=50, help="steps per timed epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (best is kept)")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--cpu-devices", type=int, default=None, help="simulated CPU devices")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    return parser.parse_args()


def _model(args: argparse.Namespace) -> Any:
    import equinox as eqx
    import jax
    import optax

    import eqx_elegy as elegy

    return elegy.Model(
        module=eqx.nn.MLP(args.features, 10, args.width, args.depth, key=jax.random.key(0)),
        loss=elegy.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optax.adam(1e-3),
    )


def _throughput(args: argparse.Namespace, strategy: Any, devices: int) -> float:
    """Examples per second of `fit` with `strategy` (best of `args.epochs` epochs)."""
    import numpy as np

    batch = args.per_device_batch * devices
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * args.steps, args.features)).astype(np.float32)
    y = rng.integers(0, 10, size=batch * args.steps).astype(np.int32)
    model = _model(args).distributed(strategy)
    fit = dict(
        batch_size=batch, verbose=0, shuffle=False, steps_per_execution=args.steps_per_execution
    )
    model.fit(x, y, epochs=1, **fit)  # compiles
    best = float("inf")
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        model.fit(x, y, epochs=epoch + 1, initial_epoch=epoch, **fit)
        best = min(best, time.perf_counter() - start)
    return batch * args.steps / best


def main() -> None:
    args = _parse()
    import jax

    if args.cpu_devices:
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    import eqx_elegy as elegy

    available = jax.devices()
    if args.devices:
        counts = [int(c) for c in args.devices.split(",")]
    else:
        counts = [2**i for i in range(len(available).bit_length()) if 2**i <= len(available)]
    if max(counts) > len(available):
        raise SystemExit(f"--devices asks for {max(counts)} devices; {len(available)} available.")
    kinds = ["dp", "fsdp"] if args.strategy == "both" else [args.strategy]
    print(
        f"{available[0].platform} x{len(available)} ({available[0].device_kind}); MLP "
        f"{args.features}-{args.width}x{args.depth}-10, {args.per_device_batch} examples per "
        f"device per step, {args.steps} steps per epoch"
    )
    print(
        f"{'strategy':>8} {'devices':>7} {'examples/s':>12} {'per device':>12} {'efficiency':>10}"
    )
    results: list[dict[str, Any]] = []
    for kind in kinds:
        base = None
        for n in counts:
            devices = available[:n]
            strategy = elegy.DataParallel(devices) if kind == "dp" else elegy.FSDP(devices)
            total = _throughput(args, strategy, n)
            per_device = total / n
            base = base or per_device
            row = dict(
                strategy=kind,
                devices=n,
                examples_per_s=total,
                per_device=per_device,
                efficiency=per_device / base,
            )
            results.append(row)
            print(f"{kind:>8} {n:>7} {total:>12.0f} {per_device:>12.0f} {row['efficiency']:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
