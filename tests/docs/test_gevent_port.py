"""The gevent porting guide: its example programs run, and its table names real things.

examples/gevent_port/ holds three gevent programs and their unknot ports. Each unknot version
runs here and must print the expected lines; each gevent version runs too when gevent is
installed (skipped, with the reason, otherwise), and must print exactly what its port prints.

docs/gevent.md is checked as well: every `unknot.X` named in backticks must resolve (planned
names are written without backticks), every `gevent.X` must exist in the installed gevent, and
the porting table must mention every public name of the gevent modules in GEVENT_MODULES.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORT_DIR = ROOT / "examples" / "gevent_port"
GUIDE = ROOT / "docs" / "gevent.md"
TIMEOUT = 30.0
HAVE_GEVENT = importlib.util.find_spec("gevent") is not None
needs_gevent = pytest.mark.skipif(not HAVE_GEVENT, reason="gevent is not installed")


@dataclass
class Program:
    name: str  # examples/gevent_port/<name>_gevent.py and <name>_unknot.py
    expected: list[str]
    args: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return " ".join([self.name, *self.args])


PROGRAMS = [
    Program(
        "crawler",
        [
            "fetched 60 pages, 410 bytes",
            "first: page 0, last: page 59",
            "most requests at once: 20",
            "faster than one at a time: True",
        ],
    ),
    Program(
        "pipeline",
        [
            "all jobs done: False",
            "done 19 of 20 jobs, sum of squares 2301",  # 0..19 squared, without 13
            "missing: [13]",
        ],
    ),
    Program(
        "pipeline",
        ["all jobs done: True", "done 20 of 20 jobs, sum of squares 2470", "missing: []"],
        args=["--none-stuck"],
    ),
    Program(
        "chat",
        [
            "ann heard: bob: bye, bob: hello, cat: bye, cat: hello",
            "bob heard: ann: bye, ann: hello, cat: bye, cat: hello",
            "cat heard: ann: bye, ann: hello, bob: bye, bob: hello",
            "members left after stop: 0",
        ],
    ),
]


def run_program(script: Path, args: list[str]) -> list[str]:
    """Run one example with this interpreter (unknot's sources on its path); its output lines."""
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=PORT_DIR,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.returncode == 0, f"{script.name} exited {proc.returncode}\n{proc.stderr}"
    assert not proc.stderr.strip(), f"{script.name} wrote to stderr:\n{proc.stderr}"
    return proc.stdout.splitlines()


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.id)
def test_unknot_version(program: Program) -> None:
    lines = run_program(PORT_DIR / f"{program.name}_unknot.py", program.args)
    assert lines == program.expected


@needs_gevent
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.id)
def test_gevent_version_prints_the_same(program: Program) -> None:
    gevent_lines = run_program(PORT_DIR / f"{program.name}_gevent.py", program.args)
    assert gevent_lines == program.expected
    assert gevent_lines == run_program(PORT_DIR / f"{program.name}_unknot.py", program.args)


def test_every_program_is_tested_and_paired() -> None:
    scripts = {p.name for p in PORT_DIR.glob("*.py")}
    names = {p.name for p in PROGRAMS}
    assert scripts == {f"{n}_{side}.py" for n in names for side in ("gevent", "unknot")}


def test_guide_links_every_program() -> None:
    text = GUIDE.read_text()
    for script in sorted(PORT_DIR.glob("*.py")):
        assert f"](../examples/gevent_port/{script.name})" in text, f"no link to {script.name}"


# --- the porting table ---------------------------------------------------------------------

# The gevent modules whose every public name the guide must mention. A module can be covered
# as a whole by writing `gevent.<module>.*` in the guide (with the reason in its row).
GEVENT_MODULES = [
    "gevent",
    "gevent.greenlet",
    "gevent.pool",
    "gevent.queue",
    "gevent.event",
    "gevent.lock",
    "gevent.timeout",
    "gevent.monkey",
    "gevent.server",
    "gevent.baseserver",
    "gevent.pywsgi",
    "gevent.select",
    "gevent.selectors",
    "gevent.subprocess",
    "gevent.threadpool",
    "gevent.local",
    "gevent.hub",
    "gevent.backdoor",
    "gevent.signal",
    "gevent.os",
    "gevent.fileobject",
    "gevent.resolver.thread",
    "gevent.exceptions",
    "gevent.util",
    "gevent.events",
    "gevent.threading",
    "gevent.thread",
    "gevent.time",
    "gevent.contextvars",
    "gevent.core",
    "gevent.ares",
]
# gevent.socket and gevent.ssl mirror the stdlib: only their names the stdlib lacks count.
STDLIB_MIRRORS = {"gevent.socket": "socket", "gevent.ssl": "ssl"}


def _inline_code(text: str) -> list[str]:
    """The `inline code` spans of a Markdown text, outside fenced blocks."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", prose)


def _dotted_names(prefix: str) -> set[str]:
    pattern = re.compile(rf"(?<![\w.]){prefix}(?:\.(?:\w+|\*))+")
    return {m for span in _inline_code(GUIDE.read_text()) for m in pattern.findall(span)}


def _resolve(dotted: str) -> object:
    """The object a dotted name refers to, importing submodules as needed."""
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[: i + 1]))
    return obj


UNKNOT_NAMES = sorted(n for n in _dotted_names("unknot") if not n.endswith(".*"))


def test_guide_cites_unknot_names() -> None:
    assert len(UNKNOT_NAMES) > 60


@pytest.mark.parametrize("name", UNKNOT_NAMES)
def test_unknot_name_in_guide_resolves(name: str) -> None:
    try:
        _resolve(name)
    except (AttributeError, ImportError) as e:
        raise AssertionError(f"docs/gevent.md cites `{name}`, which does not exist: {e}") from e


@needs_gevent
def test_gevent_names_in_guide_exist() -> None:
    missing = []
    for name in sorted(_dotted_names("gevent")):
        try:
            _resolve(name.removesuffix(".*"))
        except (AttributeError, ImportError):
            missing.append(name)
    assert not missing, f"docs/gevent.md cites gevent names that do not exist: {missing}"


def _public_names(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_") and n not in ("os", "sys")]
    if module_name in STDLIB_MIRRORS:
        stdlib = importlib.import_module(STDLIB_MIRRORS[module_name])
        names = [n for n in names if not hasattr(stdlib, n)]
    return [n for n in names if not n.startswith("_")]


@needs_gevent
@pytest.mark.parametrize("module_name", [*GEVENT_MODULES, *STDLIB_MIRRORS])
def test_table_covers_every_public_gevent_name(module_name: str) -> None:
    cited = _dotted_names("gevent")
    if f"{module_name}.*" in cited:
        return
    missing = [n for n in _public_names(module_name) if f"{module_name}.{n}" not in cited]
    if module_name != "gevent":  # gevent.X re-exported at the top counts for its module too
        top = importlib.import_module("gevent")
        module = importlib.import_module(module_name)
        missing = [
            n
            for n in missing
            if not (f"gevent.{n}" in cited and getattr(top, n, None) is getattr(module, n))
        ]
    assert not missing, f"docs/gevent.md: no row for {[f'{module_name}.{n}' for n in missing]}"
