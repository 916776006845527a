"""Compile the benchmarks' C helpers on demand (and, `build_mypyc`, a benchmark module).

Sources live in ``benchmarks/loadgen/``; binaries go to ``benchmarks/.build/`` (gitignored) and
are rebuilt whenever the source is newer than the binary. Compilation writes to a temporary name
and renames, so two harnesses building at once never run a half-written binary.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
SOURCE_DIR = BENCH_DIR / "loadgen"
BUILD_DIR = BENCH_DIR / ".build"
CFLAGS = ["-O2", "-Wall", "-Wextra"]


class BuildError(RuntimeError):
    """The C compiler is missing or rejected a source file."""


def compiler() -> str:
    """The C compiler to use: ``$CC`` if set, else ``cc``."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise BuildError(f"no C compiler: {cc!r} is not on PATH (set CC)")
    return cc


def compiler_version() -> str:
    """The compiler's first ``--version`` line, for the report."""
    try:
        out = subprocess.run(
            [compiler(), "--version"], capture_output=True, text=True, timeout=10, check=True
        )
    except (BuildError, OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({exc})"
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def build(name: str) -> Path:
    """Return the path of binary ``name``, compiling ``loadgen/<name>.c`` if it is stale."""
    source = SOURCE_DIR / f"{name}.c"
    binary = BUILD_DIR / name
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    BUILD_DIR.mkdir(exist_ok=True)
    tmp = binary.with_name(f".{name}.{os.getpid()}.tmp")
    cmd = [compiler(), *CFLAGS, "-o", str(tmp), str(source)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"{' '.join(cmd)} failed:\n{result.stderr}")
    os.replace(tmp, binary)
    return binary


def build_mypyc(name: str) -> types.ModuleType:
    """Module ``benchmarks/<name>.py`` compiled with mypyc for the running Python (built in
    ``.build/<name>-<tag>/`` when the source is newer than the extension), imported.

    BuildError if mypyc is not installed or the compilation fails (unknot's compiled build
    needs the same: mypy, which ships mypyc, and a C compiler)."""
    source = BENCH_DIR / f"{name}.py"
    out = BUILD_DIR / f"{name}-{sys.implementation.cache_tag}"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    extension = out / f"{name}{suffix}"
    if not extension.exists() or extension.stat().st_mtime < source.stat().st_mtime:
        compiler()  # (a clear error without one)
        out.mkdir(parents=True, exist_ok=True)
        # Built in a directory of its own, then renamed: a second harness building at once
        # never imports a half-written extension.
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            shutil.copy(source, Path(tmp) / source.name)
            cmd = [sys.executable, "-m", "mypyc", source.name]
            result = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
            built = Path(tmp) / extension.name
            if result.returncode != 0 or not built.exists():
                raise BuildError(f"{' '.join(cmd)} failed:\n{result.stdout}{result.stderr}")
            os.replace(built, extension)
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(out))
