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

So is every ```python block of README.md and docs/*.md, as a user would check code copied
from them: each page becomes one program (its blocks in order, at their markdown line
numbers, the way tests/test_docs.py runs them), checked in a folder whose pyproject.toml is
the configuration docs/typing.md tells users to write, and nothing else. Errors point at
the markdown file and line; errors inside the package itself are left to the package
check, as a checker ignores them in an installed package.

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
# The page that gives users their checker configuration, in its ```toml block.
CONFIG_PAGE = Path("docs", "typing.md")

# Ignores an accept file may carry: (file name, pyright rule). The Elegy docs' example
# passes `np.prod(...)` (a numpy integer) where jax's annotations want `int`.
ALLOWED_ACCEPT_IGNORES = {("linear_classifier.py", "reportArgumentType")}

_MYPY_MARKER = re.compile(r"#\s*type:\s*ignore(\[[^\]]*\])?")
_PYRIGHT_MARKER = re.compile(r"#\s*pyright:\s*ignore(\[([^\]]*)\])?")
_FENCE = re.compile(r"^```(\w*)\s*$")
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


_MYPY_FLAGS = ("--no-pretty", "--no-color-output", "--no-error-summary", "--hide-error-context")


def _mypy_command(*files: str) -> list[str]:
    config = ("--config-file", str(ROOT / "pyproject.toml"))
    return [sys.executable, "-m", "mypy", *config, *_MYPY_FLAGS, *files]


def _parse_mypy(stdout: str, returncode: int, base: Path, cwd: Path = ROOT) -> list[Finding]:
    """mypy's errors, with file names relative to `base` (mypy's are relative to `cwd`)."""
    findings = []
    for line in stdout.splitlines():
        match = _MYPY_LINE.match(line)
        if match and match["severity"] == "error":
            findings.append(
                Finding(
                    "mypy",
                    _relative(str(cwd / match["file"]), base),
                    int(match["line"]),
                    match["code"] or "-",
                    match["message"],
                )
            )
    if returncode not in (0, 1) or (returncode == 1 and not findings):
        findings.append(Finding("mypy", "-", 0, "crash", f"mypy failed: {stdout[-2000:]}"))
    return findings


def documents(root: Path = ROOT) -> list[Path]:
    """The markdown pages whose code users copy: README.md and docs/*.md."""
    readme = root / "README.md"
    return [*([readme] if readme.exists() else []), *sorted((root / "docs").glob("*.md"))]


def fenced(text: str, language: str) -> str:
    """The ```language blocks of a markdown text, every other line blanked, so that line
    N of the result is line N of the page."""
    out: list[str] = []
    inside: bool | None = None  # None: outside any fence; else whether it is `language`
    for line in text.splitlines():
        match = _FENCE.match(line)
        if inside is None and match is not None:
            inside = match.group(1) == language
            out.append("")
        elif inside is not None and line.startswith("```"):
            inside = None
            out.append("")
        else:
            out.append(line if inside else "")
    if inside is not None:
        raise ValueError(f"unclosed code fence in a {language} page")
    return "\n".join(out) + "\n"


def _program_name(page: Path, root: Path) -> str:
    """A module name for a page's program: `docs/getting-started.md` -> `docs_getting_started.py`
    (a page named like a standard module, e.g. typing.md, must not shadow it)."""
    stem = page.relative_to(root).with_suffix("").as_posix()
    return re.sub(r"\W", "_", stem).lower() + ".py"


def _write_doc_programs(folder: Path, root: Path) -> tuple[dict[str, str], list[Finding]]:
    """Write each page's program and the documented configuration into `folder`; map each
    program's file name to its page. A finding if the configuration is not documented."""
    config = fenced((root / CONFIG_PAGE).read_text(), "toml").strip()
    (folder / "pyproject.toml").write_text(config + "\n")
    missing = [
        Finding("runner", CONFIG_PAGE.as_posix(), 1, "config", f"no {table} section")
        for table in ("[tool.mypy]", "[tool.pyright]")
        if table not in config
    ]
    pages: dict[str, str] = {}
    for page in documents(root):
        program = fenced(page.read_text(), "python")
        if program.strip():
            name = _program_name(page, root)
            (folder / name).write_text(program)
            pages[name] = page.relative_to(root).as_posix()
    return pages, missing


def _doc_findings(findings: list[Finding], pages: dict[str, str]) -> list[Finding]:
    """The findings in the pages' programs, renamed to their pages."""
    return [
        Finding(f.tool, pages[Path(f.file).name], f.line, f.code, f.message)
        if Path(f.file).name in pages
        else f
        for f in findings
        if Path(f.file).name in pages or f.code == "crash"
    ]


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


def check(
    suite: Path = SUITE, *, package: bool = True, docs: Path | None = ROOT
) -> tuple[list[Finding], str]:
    """Run the checkers; return the findings (empty when all is as expected) and a summary.
    `docs`: the folder whose README.md and docs/*.md code is checked, or None."""
    findings, expected = _marker_findings(suite)
    folders = [str(suite / "accept"), str(suite / "reject")]
    jobs: dict[str, tuple[subprocess.Popen[str], Path]] = {}

    def start(name: str, command: list[str], cwd: Path, **env: str) -> None:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        jobs[name] = (process, cwd)

    start("pyright-suite", _pyright_command("-p", str(suite / "pyrightconfig.json")), ROOT)
    mypy_files = [*(["eqx_elegy"] if package else []), *folders]
    start("mypy", _mypy_command(*mypy_files), ROOT, MYPYPATH=str(ROOT))
    if package:
        start("pyright-package", _pyright_command("eqx_elegy"), ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        pages: dict[str, str] = {}
        if docs is not None:
            folder = Path(tmp).resolve()
            pages, missing = _write_doc_programs(folder, docs)
            findings += missing
            # As a user runs them, plus this checkout on the path. mypy keeps its cache
            # apart from the package check's, whose configuration differs.
            start("pyright-docs", _pyright_command("-p", str(folder)), folder, PYTHONPATH=str(ROOT))
            cache = str(ROOT / ".mypy_cache" / "docs")
            docs_mypy = [sys.executable, "-m", "mypy", "--cache-dir", cache, *_MYPY_FLAGS]
            start("mypy-docs", [*docs_mypy, *pages], folder, MYPYPATH=str(ROOT))
        for name, (process, cwd) in jobs.items():
            stdout, _ = process.communicate()
            if name.startswith("pyright"):
                found = _parse_pyright(stdout, cwd)
            else:
                found = _parse_mypy(stdout, process.returncode, cwd, cwd)
            findings += _doc_findings(found, pages) if name.endswith("-docs") else found
    accept = len(list((suite / "accept").glob("*.py")))
    reject = len(list((suite / "reject").glob("*.py")))
    checked = [
        *(["eqx_elegy/"] if package else []),
        *([f"{len(pages)} doc pages"] if docs is not None else []),
    ]
    summary = (
        f"{accept} accept and {reject} reject files, {expected} marked errors"
        f"{''.join(f' and {c}' for c in checked)}: checked with pyright and mypy"
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
    parser.add_argument("--no-docs", action="store_true", help="do not check the docs' code")
    parser.add_argument("--explain", action="store_true", help="show the reject files' errors")
    args = parser.parse_args(argv)
    for tool in ("pyright", "mypy"):
        if shutil.which(tool, path=str(Path(sys.executable).parent)) is None:
            print(f"{tool} is not installed next to {sys.executable}: pip install '.[test]'")
            return 2
    if args.explain:
        print(explain(args.suite.resolve()))
        return 0
    findings, summary = check(
        args.suite.resolve(), package=not args.no_package, docs=None if args.no_docs else ROOT
    )
    for finding in findings:
        print(finding)
    print(f"{'FAILED' if findings else 'OK'}: {summary}; {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
