"""The typecheck suite: pyright and mypy accept typecheck/accept/, report exactly the
marked errors of typecheck/reject/, and are clean on eqx_elegy/ and on the code of
README.md and docs/ under the configuration docs/typing.md gives users; the runner
notices a vanished or changed expected error; and the accept programs also run."""

import importlib.util
import json
import runpy
import shutil
import sys
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def verdicts() -> tuple[list[Any], str]:
    """One run of every checker over the suite, the package and the docs (in parallel)."""
    return runner.check()


def _is_page(finding: Any) -> bool:
    return finding.file.endswith(".md")


def test_suite_and_package_verdicts(verdicts: tuple[list[Any], str]) -> None:
    findings, summary = verdicts
    findings = [f for f in findings if not _is_page(f)]
    assert not findings, "\n".join(map(str, findings))
    accept, reject = (len(list((SUITE / kind).glob("*.py"))) for kind in ("accept", "reject"))
    assert accept >= 6 and reject >= 6
    assert f"{accept} accept and {reject} reject files" in summary  # every file was checked


def test_docs_code_type_checks_under_the_documented_configuration(
    verdicts: tuple[list[Any], str],
) -> None:
    """Every ```python block of README.md and docs/*.md, page by page, passes pyright and
    mypy run as docs/typing.md tells users to (its toml block is the whole configuration):
    no `import-untyped` for optax or scikit-learn, no `load_digits().data` typed as a tuple."""
    findings, summary = verdicts
    with_code = [p for p in runner.documents() if "```python" in p.read_text()]
    assert len(with_code) >= 10 and f"and {len(with_code)} doc pages" in summary
    findings = [f for f in findings if _is_page(f)]
    assert not findings, "\n".join(map(str, findings))


def test_fenced_keeps_markdown_line_numbers() -> None:
    text = "# T\n```python\na = 1\n```\ntext\n```bash\nls\n```\n```python\nb = a\n```\n"
    assert runner.fenced(text, "python").splitlines() == [
        *["", "", "a = 1", "", "", "", "", "", ""],
        "b = a",
        "",
    ]
    assert runner.fenced(text, "bash").splitlines()[6] == "ls"
    with pytest.raises(ValueError, match="unclosed code fence"):
        runner.fenced("```python\nx = 1\n", "python")


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
    # Docs: a page with an error on markdown line 5, and a configuration without mypy's.
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        '# Read me\n\n```python\nfrom typing import Any\nvalue: int = "a"\n```\n'
    )
    (tmp_path / "docs" / "typing.md").write_text(
        '```toml\n[tool.pyright]\ntypeCheckingMode = "standard"\n```\n\n```python\nn: int = 1\n```\n'
    )
    findings, summary = runner.check(suite, package=False, docs=tmp_path)
    assert "and 2 doc pages" in summary
    assert {(f.tool, f.file, f.line, f.code) for f in findings if f.file.endswith(".md")} == {
        ("pyright", "README.md", 5, "reportAssignmentType"),
        ("mypy", "README.md", 5, "assignment"),
        ("runner", "docs/typing.md", 1, "config"),
    }
    findings = [f for f in findings if not f.file.endswith(".md")]
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
