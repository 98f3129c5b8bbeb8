"""The typecheck suite: pyright and mypy accept typecheck/accept/, report exactly the
marked errors of typecheck/reject/, and are clean on eqx_elegy/; the runner notices a
vanished or changed expected error; and the accept programs also run."""

import importlib.util
import json
import runpy
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "typecheck"

_spec = importlib.util.spec_from_file_location("typecheck_runner", SUITE / "run.py")
assert _spec is not None and _spec.loader is not None
runner = importlib.util.module_from_spec(_spec)
sys.modules["typecheck_runner"] = runner
_spec.loader.exec_module(runner)

pytestmark = pytest.mark.skipif(
    shutil.which("pyright", path=str(Path(sys.executable).parent)) is None
    or shutil.which("mypy", path=str(Path(sys.executable).parent)) is None,
    reason="pyright and mypy come with the test extra",
)


def test_suite_and_package_verdicts() -> None:
    findings, summary = runner.check()
    assert not findings, "\n".join(map(str, findings))
    accept, reject = (len(list((SUITE / kind).glob("*.py"))) for kind in ("accept", "reject"))
    assert accept >= 6 and reject >= 6
    assert f"{accept} accept and {reject} reject files" in summary  # every file was checked


def test_runner_reports_vanished_changed_and_unexpected_errors(tmp_path: Path) -> None:
    """A miniature suite (no jax, so it checks fast) with one of each failure."""
    suite = tmp_path / "suite"
    (suite / "accept").mkdir(parents=True)
    (suite / "reject").mkdir()
    shutil.copy(SUITE / "pyrightconfig.json", suite)
    files = {
        "accept/has_error.py": 'value: int = "a"\n',
        "accept/carries_ignore.py": 'value: int = "a"  # type: ignore[assignment]\n',
        "reject/still_fails.py": (
            'value: int = "a"  # type: ignore[assignment]  '
            "# pyright: ignore[reportAssignmentType]\n"
        ),
        "reject/was_fixed.py": (
            "value: int = 1  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]\n"
        ),
        "reject/other_error.py": (
            'value: int = "a"  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]\n'
        ),
        "reject/unmarked.py": "value: int = 1\n",
    }
    for name, text in files.items():
        (suite / name).write_text(text)
    findings, _ = runner.check(suite, package=False)
    got = {(f.tool, Path(f.file).name, f.code) for f in findings}
    assert got == {
        ("pyright", "has_error.py", "reportAssignmentType"),
        ("mypy", "has_error.py", "assignment"),
        ("runner", "carries_ignore.py", "marker"),
        ("pyright", "carries_ignore.py", "reportAssignmentType"),
        ("pyright", "was_fixed.py", "reportUnnecessaryTypeIgnoreComment"),
        ("mypy", "was_fixed.py", "unused-ignore"),
        ("pyright", "other_error.py", "reportAssignmentType"),
        ("pyright", "other_error.py", "reportUnnecessaryTypeIgnoreComment"),
        ("mypy", "other_error.py", "assignment"),
        ("mypy", "other_error.py", "unused-ignore"),
        ("runner", "unmarked.py", "marker"),
    }, "\n".join(map(str, findings))


def test_pyright_config_reads_only_pyright_markers() -> None:
    config = json.loads((SUITE / "pyrightconfig.json").read_text())
    assert config["enableTypeIgnoreComments"] is False
    assert config["reportUnnecessaryTypeIgnoreComment"] == "error"
    assert config["reportIncompatibleMethodOverride"] == "error"
    assert config["typeCheckingMode"] == "standard"


@pytest.mark.parametrize("path", sorted((SUITE / "accept").glob("*.py")), ids=lambda p: p.name)
def test_accept_programs_run(path: Path) -> None:
    runpy.run_path(str(path), run_name="__main__")
