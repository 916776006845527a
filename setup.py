"""unknot's build: the hot-path modules compiled with mypyc where possible, pure Python otherwise.

The project's metadata is in pyproject.toml; this file only adds the optional extensions (see
docs/compiled.md). The modules listed in ``src/unknot/_compiled.py`` (``MODULES``) are compiled
from their own ``.py`` sources with mypyc; the sources are installed too and are the fallback.

Compiling is the default where a working C compiler is found (``build_backend.no_compiler``):

* ``UNKNOT_REQUIRE_COMPILED=1``: a failed compilation is an error (CI's compiled run,
  ``make wheels``).
* ``UNKNOT_PURE_BUILD=1``: build no extension, whatever else is set (editable installs are
  always pure: the build backend sets it for them).
* ``UNKNOT_COMPILE``: the former opt-in, accepted and ignored.

Without a C compiler, without mypy, or when mypyc refuses the sources, the install goes on in pure
Python with a message on stderr and no error.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from build_backend import no_compiler  # noqa: E402 - found through the line above


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _say(message: str) -> None:
    print(f"unknot setup.py: {message}", file=sys.stderr)


def _give_up(message: str) -> None:
    if _flag("UNKNOT_REQUIRE_COMPILED"):
        raise SystemExit(f"unknot setup.py: {message} (and UNKNOT_REQUIRE_COMPILED is set)")
    _say(f"{message}: installing the pure-Python modules only")


def compiled_modules() -> list[str]:
    """``MODULES`` of src/unknot/_compiled.py, read without importing unknot."""
    tree = ast.parse((HERE / "src" / "unknot" / "_compiled.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "MODULES" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise RuntimeError("src/unknot/_compiled.py has no MODULES")


class optional_build_ext(build_ext):
    """Builds every extension or none: the modules share one C library, so a partial build
    would not import. Any failure removes what was built and leaves the pure install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError, no compiler (DistutilsExecError...)
            for ext in self.extensions:
                path = Path(self.get_ext_fullpath(ext.name))
                if path.exists():
                    path.unlink()
            self.extensions = []
            _give_up(f"the C extensions could not be built ({type(exc).__name__}: {exc})")

    def get_outputs(self) -> list[str]:
        return [p for p in super().get_outputs() if os.path.exists(p)] if self.extensions else []


def _from_here(path: str) -> str:
    """A path mypycify gave (absolute, or relative to src/ where it ran) relative to the
    checkout when it is inside it: setuptools takes the sources relative to setup.py."""
    full = (Path(path) if os.path.isabs(path) else HERE / "src" / path).resolve()
    return os.path.relpath(full, HERE) if full.is_relative_to(HERE) else path


def extensions() -> list[Any]:
    if {"egg_info", "dist_info", "sdist"} & set(sys.argv[1:]):
        return []  # metadata or a source archive: nothing is compiled (nor is mypy there yet)
    if _flag("UNKNOT_PURE_BUILD"):
        _say("UNKNOT_PURE_BUILD is set: installing the pure-Python modules only")
        return []
    why = no_compiler()
    if why is not None:
        _give_up(why)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        _give_up(f"mypyc is not available ({exc})")
        return []
    # The modules are named to mypyc relative to src/ ("unknot/http/_conn.py"), from there: that
    # is the file name a compiled frame records, which linecache then finds on sys.path (the
    # installed source beside the extension), so that tracebacks show the source lines. mypy's
    # settings and cache stay those of the checkout; the C files are written to build/ there,
    # and the extensions name them relative to it (the directory setuptools builds from).
    paths = [name.replace(".", "/") + ".py" for name in compiled_modules()]
    # (A cache of its own: run from src/, mypy names the files unlike a run from the checkout.)
    cache = HERE / ".mypy_cache" / "mypyc-build"
    options = [f"--config-file={HERE / 'pyproject.toml'}", f"--cache-dir={cache}"]
    cwd = os.getcwd()
    os.chdir(HERE / "src")
    try:
        compiled = list(
            mypycify(
                [*options, *paths],
                opt_level="3",
                group_name="unknot",
                target_dir=str(HERE / "build"),
            )
        )
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error in the sources
        _give_up(f"mypyc could not compile the sources ({type(exc).__name__}: {exc})")
        return []
    finally:
        os.chdir(cwd)
    for ext in compiled:
        ext.sources = [_from_here(p) for p in ext.sources]
        ext.include_dirs = [_from_here(p) for p in ext.include_dirs]
        ext.depends = [_from_here(p) for p in ext.depends]
    # The one extension written in C (src/unknot/_nbio.c): the TCP sockets' recv and send
    # keeping the GIL, the epoll hub's epoll_wait. Built with the mypyc modules or not at all
    # (optional_build_ext).
    return [*compiled, Extension("unknot._nbio", ["src/unknot/_nbio.c"])]


setup(ext_modules=extensions(), cmdclass={"build_ext": optional_build_ext})
