"""Run every example script with `--quick` (a few training steps) in its own interpreter.

This checks that the examples still run against the library as it is, not their full-run
quality (docs/examples.md lists the measured full-run results). Each script must exit
cleanly with warnings as errors, end by printing its metric as `<name>: <number>`, and
write its PNG files (if it makes any) into the `--out` folder it is given.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
_METRIC = re.compile(r"^[^:]+: (?P<value>[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\b")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_every_example_is_listed_in_the_docs() -> None:
    table = (ROOT / "docs" / "examples.md").read_text()
    assert EXAMPLES, "no examples found"
    missing = [p.name for p in EXAMPLES if f"examples/{p.name}" not in table]
    assert not missing, f"docs/examples.md does not list {missing}"


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_quick(script: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-W", "error", str(script), "--quick"]
    out = tmp_path / "out"
    makes_files = '"--out"' in script.read_text()
    if makes_files:
        command += ["--out", str(out)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MPLBACKEND"] = "Agg"
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (
        f"{script.name} failed:\n{result.stdout}\n{result.stderr[-6000:]}"
    )

    lines = result.stdout.strip().splitlines()
    assert lines, f"{script.name} printed nothing"
    match = _METRIC.match(lines[-1])
    assert match, f"{script.name}'s last line is not '<metric>: <number>': {lines[-1]!r}"
    assert math.isfinite(float(match.group("value")))

    if makes_files:
        images = sorted(out.glob("*.png"))
        assert images, f"{script.name} wrote no PNG into --out {out}"
        for image in images:
            assert image.read_bytes()[:8] == _PNG_MAGIC, f"{image.name} is not a PNG"
