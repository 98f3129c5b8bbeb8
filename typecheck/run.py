"""Run pyright and mypy over the typecheck suite and the package, and judge the verdicts.

`accept/` holds user programs both checkers must pass. `reject/` holds programs with
errors they must report; each expected error is marked on its line, for mypy with
`# type: ignore[code]` and for pyright with `# pyright: ignore[rule]`. mypy runs with
`warn_unused_ignores` and pyright with `reportUnnecessaryTypeIgnoreComment` (and
`enableTypeIgnoreComments` off, so each checker reads only its own marker). A marker whose
error has disappeared, or changed code, is then itself an error: a clean run means every
expected error is still reported, under the expected code, and no other error is.

The package itself (`eqx_elegy/`) is checked too: pyright with the project's settings and
mypy with `pyproject.toml`'s.

    python typecheck/run.py             # exit status 1 and a list of findings on failure
    python typecheck/run.py --explain   # the errors each reject file gets without its markers
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = Path(__file__).resolve().parent

# Ignores an accept file may carry: (file name, pyright rule). The Elegy docs' example
# passes `np.prod(...)` (a numpy integer) where jax's annotations want `int`.
ALLOWED_ACCEPT_IGNORES = {("linear_classifier.py", "reportArgumentType")}

_MYPY_MARKER = re.compile(r"#\s*type:\s*ignore(\[[^\]]*\])?")
_PYRIGHT_MARKER = re.compile(r"#\s*pyright:\s*ignore(\[([^\]]*)\])?")
_MYPY_LINE = re.compile(
    r"^(?P<file>[^:\n]+):(?P<line>\d+): (?P<severity>error|note): (?P<message>.*?)"
    r"(?:  \[(?P<code>[a-z0-9-]+)\])?$"
)


@dataclass(frozen=True)
class Finding:
    """One error reported by a checker (or by the runner's own marker check)."""

    tool: str
    file: str
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.tool}] {self.message} [{self.code}]"


def _relative(path: str, base: Path) -> str:
    resolved = Path(path).resolve()
    return str(resolved.relative_to(base)) if resolved.is_relative_to(base) else str(resolved)


def _pyright_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable, *args]


def _parse_pyright(stdout: str, base: Path) -> list[Finding]:
    try:
        report = json.loads(stdout[stdout.index("{") :])
    except ValueError:
        return [Finding("pyright", "-", 0, "crash", f"unreadable pyright output: {stdout[-2000:]}")]
    return [
        Finding(
            "pyright",
            _relative(d["file"], base),
            d["range"]["start"]["line"] + 1,
            d.get("rule", "-"),
            d["message"].replace("\n", " "),
        )
        for d in report["generalDiagnostics"]
        if d["severity"] == "error"
    ]


def _mypy_command(*files: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--no-pretty",
        "--no-color-output",
        "--no-error-summary",
        "--hide-error-context",
        *files,
    ]


def _parse_mypy(stdout: str, returncode: int, base: Path) -> list[Finding]:
    findings = []
    for line in stdout.splitlines():
        match = _MYPY_LINE.match(line)
        if match and match["severity"] == "error":
            findings.append(
                Finding(
                    "mypy",
                    _relative(str(ROOT / match["file"]), base),
                    int(match["line"]),
                    match["code"] or "-",
                    match["message"],
                )
            )
    if returncode not in (0, 1) or (returncode == 1 and not findings):
        findings.append(Finding("mypy", "-", 0, "crash", f"mypy failed: {stdout[-2000:]}"))
    return findings


def _marker_findings(suite: Path) -> tuple[list[Finding], int]:
    """Check the markers themselves: every reject file has some of each kind, every
    marker names its code or rule, and accept files carry only the allowed ignores."""
    findings: list[Finding] = []
    expected = 0

    def add(path: Path, line: int, message: str) -> None:
        findings.append(Finding("runner", _relative(str(path), ROOT), line, "marker", message))

    for folder in ("accept", "reject"):
        for path in sorted((suite / folder).glob("*.py")):
            mypy_markers = pyright_markers = 0
            for number, text in enumerate(path.read_text().splitlines(), start=1):
                for match in _MYPY_MARKER.finditer(text):
                    mypy_markers += 1
                    if folder == "accept":
                        add(path, number, "accept files may not carry `# type: ignore`")
                    elif not match.group(1):
                        add(path, number, "`# type: ignore` must name the expected mypy code")
                for match in _PYRIGHT_MARKER.finditer(text):
                    pyright_markers += 1
                    rules = (match.group(2) or "").replace(" ", "").split(",")
                    if not match.group(1):
                        add(path, number, "`# pyright: ignore` must name the expected rule")
                    elif folder == "accept" and any(
                        (path.name, rule) not in ALLOWED_ACCEPT_IGNORES for rule in rules
                    ):
                        add(path, number, f"ignore of {rules} is not allowed in an accept file")
            if folder == "reject":
                expected += mypy_markers + pyright_markers
                if not mypy_markers and not pyright_markers:
                    add(path, 1, "a reject file must mark the errors it expects")
    return findings, expected


def check(suite: Path = SUITE, *, package: bool = True) -> tuple[list[Finding], str]:
    """Run the checkers; return the findings (empty when all is as expected) and a summary."""
    findings, expected = _marker_findings(suite)
    folders = [str(suite / "accept"), str(suite / "reject")]
    jobs: dict[str, tuple[subprocess.Popen[str], Path]] = {}

    def start(name: str, command: list[str], cwd: Path, env_path: str | None = None) -> None:
        env = None if env_path is None else {**os.environ, "MYPYPATH": env_path}
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        jobs[name] = (process, cwd)

    start("pyright-suite", _pyright_command("-p", str(suite / "pyrightconfig.json")), ROOT)
    mypy_files = [*(["eqx_elegy"] if package else []), *folders]
    start("mypy", _mypy_command(*mypy_files), ROOT, env_path=str(ROOT))
    if package:
        start("pyright-package", _pyright_command("eqx_elegy"), ROOT)
    for name, (process, _) in jobs.items():
        stdout, _ = process.communicate()
        if name.startswith("pyright"):
            findings += _parse_pyright(stdout, ROOT)
        else:
            findings += _parse_mypy(stdout, process.returncode, ROOT)
    accept = len(list((suite / "accept").glob("*.py")))
    reject = len(list((suite / "reject").glob("*.py")))
    summary = (
        f"{accept} accept and {reject} reject files, {expected} marked errors"
        f"{' and eqx_elegy/' if package else ''}: checked with pyright and mypy"
    )
    return findings, summary


_STRIP = re.compile(r"\s*#\s*(type|pyright):\s*ignore(\[[^\]]*\])?")


def explain(suite: Path = SUITE) -> str:
    """The errors pyright and mypy give for each reject file with its markers removed."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "reject"
        folder.mkdir()
        sources: dict[str, list[str]] = {}
        for path in sorted((suite / "reject").glob("*.py")):
            text = path.read_text()
            sources[path.name] = text.splitlines()
            (folder / path.name).write_text(
                "\n".join(_STRIP.sub("", t) for t in sources[path.name])
            )
        config = json.loads((suite / "pyrightconfig.json").read_text())
        config.update(include=["reject"], extraPaths=[str(ROOT)])
        (Path(tmp) / "pyrightconfig.json").write_text(json.dumps(config))
        pyright = subprocess.run(
            _pyright_command("-p", str(Path(tmp) / "pyrightconfig.json")),
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        mypy = subprocess.run(
            _mypy_command(str(folder)),
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "MYPYPATH": str(ROOT)},
        )
        base = Path(tmp).resolve()
        findings = _parse_pyright(pyright.stdout, base) + _parse_mypy(
            mypy.stdout, mypy.returncode, base
        )
    out = []
    for name, lines in sources.items():
        out.append(f"## reject/{name}")
        for finding in sorted(
            (f for f in findings if f.file.endswith(name)), key=lambda f: (f.line, f.tool)
        ):
            code = _STRIP.sub("", lines[finding.line - 1]).strip()
            out.append(f"  line {finding.line}: {code}")
            out.append(f"    {finding.tool} [{finding.code}]: {finding.message}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=SUITE, help="folder with accept/, reject/")
    parser.add_argument("--no-package", action="store_true", help="do not check eqx_elegy/")
    parser.add_argument("--explain", action="store_true", help="show the reject files' errors")
    args = parser.parse_args(argv)
    for tool in ("pyright", "mypy"):
        if shutil.which(tool, path=str(Path(sys.executable).parent)) is None:
            print(f"{tool} is not installed next to {sys.executable}: pip install '.[test]'")
            return 2
    if args.explain:
        print(explain(args.suite.resolve()))
        return 0
    findings, summary = check(args.suite.resolve(), package=not args.no_package)
    for finding in findings:
        print(finding)
    print(f"{'FAILED' if findings else 'OK'}: {summary}; {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
