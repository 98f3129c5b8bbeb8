"""Run every example script with `--quick` (a few training steps) in its own interpreter.

This checks that the examples still run against the library as it is, not their full-run
quality (docs/examples.md lists the measured full-run results). Each script must exit
cleanly with warnings as errors, end by printing its metric as `<name>: <number>`, and
write its PNG files (if it makes any) into the `--out` folder it is given.

The selected scripts start together, as many at a time as there are CPU cores, when the
first of these tests runs; each test then waits for its own script.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
_METRIC = re.compile(r"^[^:]+: (?P<value>[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\b")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Examples that fail for a known reason outside them; each entry says why.
KNOWN_FAILURES: dict[str, str] = {}


def _params(scripts: list[Path]) -> list[object]:
    return [
        pytest.param(p, marks=pytest.mark.xfail(reason=KNOWN_FAILURES[p.name], strict=False))
        if p.name in KNOWN_FAILURES
        else p
        for p in scripts
    ]


def _makes_files(script: Path) -> bool:
    return '"--out"' in script.read_text()


def _run_quick(script: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-W", "error", str(script), "--quick"]
    if _makes_files(script):
        command += ["--out", str(folder / "out")]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def quick_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Path, tuple[Path, Future[subprocess.CompletedProcess[str]]]]]:
    """Start the quick run of every selected example; map each script to its working
    folder and the future of its finished process."""
    selected = [
        item.callspec.params["script"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_example_runs_quick"
        and item.path == Path(__file__)
    ]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        runs = {}
        for script in selected:
            folder = tmp_path_factory.mktemp(script.stem)
            runs[script] = (folder, pool.submit(_run_quick, script, folder))
        yield runs
        for _, future in runs.values():
            future.cancel()


def test_every_example_is_listed_in_the_docs() -> None:
    table = (ROOT / "docs" / "examples.md").read_text()
    assert EXAMPLES, "no examples found"
    missing = [p.name for p in EXAMPLES if f"examples/{p.name}" not in table]
    assert not missing, f"docs/examples.md does not list {missing}"


@pytest.mark.parametrize("script", _params(EXAMPLES), ids=lambda p: p.name)
def test_example_runs_quick(
    script: Path, quick_runs: dict[Path, tuple[Path, Future[subprocess.CompletedProcess[str]]]]
) -> None:
    folder, future = quick_runs[script]
    result = future.result()
    assert result.returncode == 0, (
        f"{script.name} failed:\n{result.stdout}\n{result.stderr[-6000:]}"
    )

    lines = result.stdout.strip().splitlines()
    assert lines, f"{script.name} printed nothing"
    match = _METRIC.match(lines[-1])
    assert match, f"{script.name}'s last line is not '<metric>: <number>': {lines[-1]!r}"
    assert math.isfinite(float(match.group("value")))

    if _makes_files(script):
        images = sorted((folder / "out").glob("*.png"))
        assert images, f"{script.name} wrote no PNG into its --out folder"
        for image in images:
            assert image.read_bytes()[:8] == _PNG_MAGIC, f"{image.name} is not a PNG"
