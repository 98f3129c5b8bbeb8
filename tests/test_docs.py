"""Run the Python code blocks of the documentation, so that the docs cannot rot.

Each markdown file (docs/*.md and README.md) runs as one program: its ```python blocks in
order, in one namespace, in a fresh interpreter whose working directory is a temporary
folder, with warnings as errors. A block preceded by a `<!-- no-test -->` line is skipped
(for code that cannot run here, e.g. a multi-host launch). Tracebacks point at the
markdown file and line. The selected files start together, as many at a time as there
are CPU cores, when the first of these tests runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_MARKER = "<!-- no-test -->"
_FENCE = re.compile(r"^```(\w*)\s*$")

# Pages that fail for a known reason outside the page's own code; each entry says why.
KNOWN_FAILURES: dict[str, str] = {}

# Executes the blocks; compiled with the markdown file's name and line offsets so that a
# failure reads `File "docs/x.md", line 42`.
_RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
with open(sys.argv[1]) as f:
    blocks = json.load(f)
for path, line, code in blocks:
    exec(compile("\\n" * (line - 1) + code, path, "exec"), namespace)
"""


def code_blocks(text: str) -> list[tuple[int, str, bool]]:
    """The ```python blocks of a markdown text: (first code line, code, skipped)."""
    blocks: list[tuple[int, str, bool]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        language = match.group(1)
        previous = next((s.strip() for s in reversed(lines[:i]) if s.strip()), "")
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if end == len(lines):
            raise ValueError(f"unclosed code fence opened at line {i + 1}")
        if language == "python":
            blocks.append((i + 2, "\n".join(lines[i + 1 : end]) + "\n", previous == SKIP_MARKER))
        i = end + 1
    return blocks


def _documents() -> list[Path]:
    files = sorted((ROOT / "docs").glob("*.md"))
    readme = ROOT / "README.md"
    return [*files, readme] if readme.exists() else files


def _params(docs: list[Path]) -> list[object]:
    out: list[object] = []
    for doc in docs:
        reason = KNOWN_FAILURES.get(doc.relative_to(ROOT).as_posix())
        marks = [] if reason is None else [pytest.mark.xfail(reason=reason, strict=False)]
        out.append(pytest.param(doc, marks=marks))
    return out


def test_code_blocks_parser() -> None:
    text = "\n".join(
        [
            "# Title",
            "```python",
            "a = 1",
            "```",
            "<!-- no-test -->",
            "",
            "```python",
            "launch()",
            "```",
            "```bash",
            "ls",
            "```",
            "```python",
            "b = a",
            "```",
        ]
    )
    assert code_blocks(text) == [
        (3, "a = 1\n", False),
        (8, "launch()\n", True),
        (14, "b = a\n", False),
    ]
    with pytest.raises(ValueError, match="unclosed code fence opened at line 1"):
        code_blocks("```python\nx = 1\n")


def test_skip_marker_is_used_sparingly() -> None:
    blocks = [b for doc in _documents() for b in code_blocks(doc.read_text())]
    skipped = sum(1 for *_, skip in blocks if skip)
    assert len(blocks) > 20
    assert skipped <= len(blocks) // 5, f"{skipped} of {len(blocks)} blocks are marked no-test"


def _run_doc(doc: Path, folder: Path) -> subprocess.CompletedProcess[str] | None:
    rel = doc.relative_to(ROOT).as_posix()
    blocks = [(rel, line, code) for line, code, skip in code_blocks(doc.read_text()) if not skip]
    if not blocks:
        return None
    script = folder / "blocks.json"
    script.write_text(json.dumps(blocks))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("JAX_NUM_CPU_DEVICES", "8")  # as tests/conftest.py, for the distributed page
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", _RUNNER, str(script)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def doc_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Path, Future[subprocess.CompletedProcess[str] | None]]]:
    """Start running every selected document, as many at a time as there are CPU cores;
    map each to the future of its finished process (None: nothing to run)."""
    selected = [
        item.callspec.params["doc"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_doc_runs" and item.path == Path(__file__)
    ]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        runs = {
            doc: pool.submit(_run_doc, doc, tmp_path_factory.mktemp(doc.stem)) for doc in selected
        }
        yield runs
        for future in runs.values():
            future.cancel()


@pytest.mark.parametrize("doc", _params(_documents()), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_doc_runs(
    doc: Path, doc_runs: dict[Path, Future[subprocess.CompletedProcess[str] | None]]
) -> None:
    rel = doc.relative_to(ROOT).as_posix()
    result = doc_runs[doc].result()
    if result is None:
        pytest.skip(f"{rel} has no runnable python blocks")
    assert result.returncode == 0, (
        f"{rel} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
