"""Before/after timings of two checkouts of eqx_elegy: `bench_fit.py` run as alternating
separate processes (before, after, after, before, ...), then for each eqx_elegy row the
median over the pairs of the per-pair ratio after/before.

Pairing cancels most of a shared machine's drift: each ratio compares two runs that ran
next to each other. The hand-written loops run in both processes too, so the "x hand"
rows (eqx_elegy's time over the faster hand-written loop of the same process) show
whether a change is eqx_elegy's or the machine's.

    python benchmarks/compare_checkouts.py BEFORE_DIR AFTER_DIR --pairs 8 --out /tmp/ab
    python benchmarks/compare_checkouts.py /tmp/base . --pairs 2 -- --workloads small

BEFORE_DIR and AFTER_DIR are checkouts (e.g. `git worktree add /tmp/base <commit>`); each
runs its own `benchmarks/bench_fit.py` against its own package. Arguments after `--` go
to `bench_fit.py`. Finished runs in `--out` are kept, so an interrupted comparison resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

LOOPS = "jit fed numpy,jit+device_put,scan floor,eqx_elegy fit,eqx_elegy spe=1,eqx_elegy spe=32"
ELEGY = ("eqx_elegy fit", "eqx_elegy spe=1", "eqx_elegy spe=32")
HAND = ("jit fed numpy", "jit+device_put")
Key = tuple[str, str, str]


def run(checkout: Path, out: Path, extra: list[str]) -> None:
    """One `bench_fit.py --repeats 1` process of `checkout`, its report written to `out`."""
    command = [sys.executable, "benchmarks/bench_fit.py", "--repeats", "1", "--loops", LOOPS]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    result = subprocess.run(
        [*command, "--json", str(out), *extra],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
    )
    out.with_suffix(".log").write_text(result.stdout + result.stderr)
    if result.returncode:
        raise SystemExit(f"{checkout}: bench_fit.py failed:\n{result.stderr[-2000:]}")


def measures(report: dict[str, Any]) -> dict[Key, float]:
    """The eqx_elegy rows of one report: time per step (and over the hand-written loop and
    the scan floor), first epoch, peak RSS, evaluate and predict seconds."""
    found: dict[Key, float] = {}
    for workload, loops in report["results"].items():
        hand = min(loops[h][0]["steady_us_per_step"] for h in HAND if loops.get(h))
        floor = loops["scan floor"][0]["steady_us_per_step"]
        for loop in ELEGY:
            if loops.get(loop):
                row = loops[loop][0]
                step = row["steady_us_per_step"]
                found[workload, loop, "us/step"] = step
                found[workload, loop, "x hand"] = step / hand
                found[workload, loop, "x floor"] = step / floor
                found[workload, loop, "1st epoch s"] = row["first_epoch_s"]
                found[workload, loop, "peak RSS MiB"] = row["peak_rss_mib"]
        calls = report.get("evaluate_predict", {}).get(workload, {})
        if calls.get("eqx_elegy"):
            for call in ("evaluate", "predict"):
                seconds = calls["eqx_elegy"][0][call]
                found[workload, call, "s"] = seconds
                found[workload, call, "x hand"] = seconds / calls["hand"][0][call]
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--pairs", type=int, default=8, help="before/after process pairs (8)")
    p.add_argument("--out", type=Path, default=Path("compare-checkouts"), help="reports")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = p.parse_args(argv[:cut]), argv[cut + 1 :]
    args.out.mkdir(parents=True, exist_ok=True)
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    for pair in range(args.pairs):
        order = list(sides) if pair % 2 == 0 else list(sides)[::-1]
        for side in order:
            out = args.out / f"{side}{pair}.json"
            if not out.exists():
                print(f"pair {pair}: {side}", flush=True)
                run(sides[side], out, extra)
    reports = {
        side: [
            measures(json.loads((args.out / f"{side}{i}.json").read_text()))
            for i in range(args.pairs)
        ]
        for side in sides
    }
    print(f"{args.pairs} pairs; medians; the last column is the median of the per-pair ratios")
    print("| workload | row | measure | before | after | after/before |")
    print("|---|---|---|--:|--:|--:|")
    for key in reports["before"][0]:
        if all(key in r for r in reports["after"]):
            before = [r[key] for r in reports["before"]]
            after = [r[key] for r in reports["after"]]
            ratio = statistics.median(a / b for a, b in zip(after, before, strict=True))
            print(
                f"| {' | '.join(key)} | {statistics.median(before):.4g} | "
                f"{statistics.median(after):.4g} | {ratio:.3f} |"
            )


if __name__ == "__main__":
    main()
