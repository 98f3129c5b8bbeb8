"""The benchmark scripts run end to end (their `--quick` smoke mode): timings mean nothing
there, but every row that can run must produce them, so a change that breaks a loop or a
script shows up in the suite rather than at the next measurement."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_fit_quick_produces_every_row(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, "benchmarks/bench_fit.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    report = json.loads(out.read_text())
    for workload, rows in report["results"].items():
        skipped = report["skipped"].get(workload, {})
        for loop in ("jit fed numpy", "scan floor", "eqx_elegy spe=1", "eqx_elegy spe=32"):
            assert loop not in skipped, skipped
            (run,) = rows[loop]
            assert run["first_epoch_s"] > 0 and run["steady_us_per_step"] > 0
        for rows in report["evaluate_predict"][workload].values():
            assert all(r["evaluate"] > 0 and r["predict"] > 0 for r in rows)


def test_bench_progbar_quick_runs():
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_progbar.py", "--quick"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "verbose" in result.stdout


def test_bench_remat_quick_measures_both_settings(tmp_path):
    out = tmp_path / "remat.json"
    subprocess.run(
        [sys.executable, "benchmarks/bench_remat.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"remat=False", "remat=True"}
    assert all(row["temp_mib"] > 0 and row["step_ms"] > 0 for row in results.values())


def test_bench_export_quick_measures_both_sides(tmp_path):
    out = tmp_path / "export.json"
    subprocess.run(
        [sys.executable, "benchmarks/bench_export.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"small 64-32-10", "medium 64-256-256-10"}
    for rows in report["results"].values():
        assert set(rows) == {"32", "256"}
        for r in rows.values():
            assert all(r["rows_per_s"][k] > 0 for k in ("predict", "load_exported", "plain"))
            assert r["ratio"]["load_exported"] > 0 and r["ratio"]["plain"] > 0


def test_bench_population_quick_times_both_sides(tmp_path):
    out = tmp_path / "population.json"
    subprocess.run(
        [sys.executable, "benchmarks/bench_population.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    report = json.loads(out.read_text())
    assert [row["workload"] for row in report["speed"]] == ["small", "medium"]
    for row in report["speed"]:
        assert row["population_s"] > 0 and row["sequential_s"] > 0
        assert row["ratio"] == row["population_s"] / row["sequential_s"]
    assert set(report["rss_mib"]) == {"1", "8", "32"}
    assert all(r["peak"] >= r["growth"] > 0 for r in report["rss_mib"].values())


def test_bench_memory_counts_growth_and_survivors(tmp_path):
    out = tmp_path / "memory.json"
    args = ["--models", "2", "--warmup", "1", "--json", str(out)]
    for extra in ([], ["--hand", "--no-trim"]):
        result = subprocess.run(
            [sys.executable, "benchmarks/bench_memory.py", *args, *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        report = json.loads(out.read_text())
        assert report["models"] == 2 and report["models_still_alive"] == 0
        assert report["malloc_trim"] == (extra == [])
        assert [n for n, _ in report["trace"]] == [2]
        verdict = "PASS" if report["growth_mb"] <= 50 else "FAIL"
        assert result.stdout.splitlines()[-1].startswith(f"{verdict}: 2 models")
