"""What the progress bar costs: `fit(verbose=1)` and `verbose=2` against `verbose=0`, per step.

Elegy's progress bar synchronised with the device on every step; eqx_elegy's must not. This
times eqx_elegy's `fit` at each verbosity on the small MLP (dispatch-bound, so any per-step host
work shows), with Keras 3 at the same verbosities for reference, interleaved over repeats in one
process. Rows whose library cannot be imported or fails are skipped with the reason printed.

    python benchmarks/bench_progbar.py             # 5 repeats, about a minute
    python benchmarks/bench_progbar.py --quick     # smoke run, numbers meaningless

The bars draw to the terminal while they are timed; how much they cost depends on whether
stdout is a terminal (rich redraws a live bar) or a file or pipe (it does not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Import the shared harness as `benchmarks.bench_fit`, however this file was started.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_fit import (
    BATCH,
    WORKLOADS,
    Loop,
    elegy_fit,
    fmt,
    keras_fit,
    median,
    paired_ratio,
    run_benchmark,
)

VERBOSITIES = (0, 1, 2)
LIBRARIES = {"eqx_elegy": elegy_fit, "keras": keras_fit}


def loops() -> list[Loop]:
    return [
        Loop(f"{lib} verbose={v}", lib, make(1, v))
        for lib, make in LIBRARIES.items()
        for v in VERBOSITIES
    ]


def markdown(report: dict) -> str:
    lines = [
        f"{report['config']['repeats']} interleaved repeats; steps/epoch: "
        + ", ".join(f"{k} {n}" for k, n in report["config"]["steps_per_epoch"].items()),
        "",
        "| workload | fit | µs/step median (min–max) | × verbose=0 |",
        "|---|---|--:|--:|",
    ]
    for wl_name, by_loop in report["results"].items():
        for lib in LIBRARIES:
            quiet = by_loop.get(f"{lib} verbose=0", [])
            for v in VERBOSITIES:
                recs = by_loop.get(f"{lib} verbose={v}", [])
                if not recs:
                    continue
                us = [rec["steady_us_per_step"] for rec in recs]
                ratio = paired_ratio(recs, quiet, "steady_us_per_step")
                lines.append(
                    f"| {wl_name} | {lib} verbose={v} | {median(us):.0f} "
                    f"({min(us):.0f}–{max(us):.0f}) | {fmt(ratio, '.2f')} |"
                )
    skips = [
        f"- {wl_name} / {name}: {reason}"
        for wl_name, by_name in report["skipped"].items()
        for name, reason in by_name.items()
    ]
    if skips:
        lines += ["", "Skipped:", *skips]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, help="interleaved repeats (default 5)")
    p.add_argument("--epochs", type=int, help="steady epochs after the first (default 3)")
    p.add_argument("--workloads", default="small", help=f"subset of {','.join(WORKLOADS)}")
    p.add_argument("--rows", type=int, help="training rows (default 16384)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 repeat, 1 steady epoch, 512 rows, where those options are not given",
    )
    args = p.parse_args(argv)
    for name, full, quick in [("repeats", 5, 1), ("epochs", 3, 1), ("rows", None, 512)]:
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.eval, args.eval_calls = False, 1
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown or not args.workloads:
        p.error(f"--workloads: unknown or empty {unknown}; choose from {', '.join(WORKLOADS)}")
    for flag, value, least in [
        ("--repeats", args.repeats, 1),
        ("--epochs", args.epochs, 1),
        ("--rows", BATCH if args.rows is None else args.rows, BATCH),
    ]:
        if value < least:
            p.error(f"{flag} must be at least {least}, got {value}")
    if args.rows is not None and args.rows % BATCH:
        p.error(f"--rows must be a multiple of the batch size {BATCH}, got {args.rows}")
    return args


def main(argv: list[str] | None = None) -> dict:
    report = run_benchmark(parse_args(argv), loops())
    print()
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
