"""Every ```python block in README.md and docs/**/*.md runs, each in its own subprocess.

A block is a complete script: it must run to completion by itself (exit status 0) within
BLOCK_TIMEOUT seconds. The blocks run in parallel, a few at a time, so the whole suite takes
about as long as the slowest block.

An HTML comment on the line right before the opening fence changes how a block is run
(directives separated by ``;``)::

    <!-- no-run -->               not run at all (use sparingly: previews, servers that never stop)
    <!-- requires: uvloop -->     skipped unless ``import uvloop`` would work (a comma-separated
                                  list of modules and python>=X.Y is allowed)
    <!-- requires: python>=3.12 -->  skipped on older Pythons
    <!-- pytest -->               the block is a test module: run it with ``python -m pytest``

The module also checks that docs/reference.md documents every public name and that relative
links between the documents resolve.
"""

from __future__ import annotations

import concurrent.futures
import errno
import importlib.util
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import unknot

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK_TIMEOUT = 20.0
PARALLEL = max(4, 2 * (os.cpu_count() or 1))

MARKER = re.compile(r"^\s*<!--\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    directives: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def skip_reason(self) -> str | None:
        for d in self.directives:
            if d == "no-run":
                return "marked <!-- no-run -->"
            if d.startswith("requires:"):
                for need in (n.strip() for n in d.split(":", 1)[1].split(",")):
                    if need.startswith("python>="):
                        version = need[len("python>=") :]
                        if sys.version_info < tuple(int(x) for x in version.split(".")):
                            return f"needs Python {version}"
                    elif not _importable(need):
                        return f"needs {need}"
        return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def extract_blocks(path: Path) -> list[Block]:
    blocks = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() in ("```python", "```py"):
            start = i
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            if j == len(lines):
                raise AssertionError(f"{path}:{start + 1}: unterminated code block")
            directives: list[str] = []
            k = start - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            m = MARKER.match(lines[k]) if k >= 0 else None
            if m:
                directives = [d.strip() for d in m.group(1).split(";") if d.strip()]
            indent = len(lines[start]) - len(lines[start].lstrip())
            code = "\n".join(line[indent:] for line in lines[start + 1 : j]) + "\n"
            blocks.append(Block(path, start + 1, code, directives))
            i = j + 1
        else:
            i += 1
    return blocks


BLOCKS = [b for path in DOCS for b in extract_blocks(path)]


def _run(block: Block, workdir: Path) -> subprocess.CompletedProcess[str]:
    stem = re.sub(r"\W+", "_", block.id)
    if "pytest" in block.directives:
        script = workdir / f"test_{stem}.py"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
        cmd += ["-p", "no:hypothesispytest"]  # a slow plugin to load, and not needed here
    else:
        script = workdir / f"{stem}.py"
        cmd = [sys.executable, str(script)]
    script.write_text(block.code)
    proc = _popen(cmd, workdir)
    try:
        out, err = proc.communicate(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n[timed out after {BLOCK_TIMEOUT}s]"
        return subprocess.CompletedProcess(cmd, -1, out, err)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


_spawn_lock = threading.Lock()


def _popen(cmd: list[str], workdir: Path) -> subprocess.Popen[str]:
    # One process start at a time, and a retry: in some sandboxes a vfork()ed child's exec fails
    # with EFAULT ("Bad address") while other threads of this process are busy.
    for attempt in range(5):
        try:
            with _spawn_lock:
                return subprocess.Popen(
                    cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
        except OSError as e:
            if e.errno != errno.EFAULT or attempt == 4:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Start every selected, runnable block at once (PARALLEL at a time); map id -> future."""
    wanted = {
        item.callspec.params["block"].id
        for item in request.session.items
        if getattr(item, "callspec", None) is not None and "block" in item.callspec.params
    }
    pool = concurrent.futures.ThreadPoolExecutor(PARALLEL)
    workdir = tmp_path_factory.mktemp("doc-blocks")
    futures = {
        b.id: pool.submit(_run, b, workdir)
        for b in BLOCKS
        if b.id in wanted and b.skip_reason() is None
    }
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_block_runs(block: Block, results) -> None:
    reason = block.skip_reason()
    if reason:
        pytest.skip(reason)
    proc = results[block.id].result()
    assert proc.returncode == 0, (
        f"{block.id} failed (exit status {proc.returncode})\n"
        f"--- code ---\n{block.code}--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}"
    )


def test_docs_have_blocks() -> None:
    assert len(BLOCKS) > 50
    assert all((ROOT / "docs" / name).exists() for name in ("index.md", "reference.md"))


def _reference_headings() -> str:
    text = (ROOT / "docs" / "reference.md").read_text()
    return "\n".join(line for line in text.splitlines() if line.startswith("#"))


@pytest.mark.parametrize("name", [*unknot.__all__, "testing.MockClock"])
def test_reference_documents_every_public_name(name: str) -> None:
    pattern = rf"^#+ .*`unknot\.{re.escape(name)}\b"
    assert re.search(pattern, _reference_headings(), re.M), (
        f"docs/reference.md: no heading for {name}"
    )


LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub generates for the headings of a Markdown file."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#+ (.*)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    for target, anchor in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        where = f"{path.relative_to(ROOT)}: link ({target}#{anchor})"
        file = (path.parent / target) if target else path
        assert file.exists(), f"{where}: no such file"
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file), f"{where}: no such heading"


def test_patching_chapter_lists_every_patch_table_row() -> None:
    """The table in docs/tutorial/03-patching.md has one row per `PATCH_TABLE` (and
    `DRIVER_INTEGRATIONS`) entry, in the right group, and no other rows."""
    from unknot._patch import DRIVER_INTEGRATIONS, PATCH_TABLE

    text = (ROOT / "docs" / "tutorial" / "03-patching.md").read_text()
    documented = re.findall(r"^\| `(\w+)` \| `([\w.]+)` \|", text, re.M)
    expected = [
        (group, f"{row.module}.{row.attr}") for group, rows in PATCH_TABLE.items() for row in rows
    ]
    expected += [("drivers", f"{hook.module}.{hook.attr}") for hook in DRIVER_INTEGRATIONS]
    assert sorted(documented) == sorted(expected)
