"""``python -m unknot script.py [args]``: run an unmodified script patched, as the root fiber.

Also ``python -m unknot -m package.module [args]``. `unknot.patch` is applied before the script
(or anything it imports) is loaded, so even objects created at import time are cooperative.

A script written for unknot calls ``unknot.run(main)`` itself. Run this way it is already in
the root fiber of a running hub, so that call runs ``main`` right there, in the script's fiber,
and returns its result (cancelling, on the way out, the fibers ``main`` left running), instead
of refusing to start a loop inside a loop. Other nested uses of `unknot.run` are still refused.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import importlib.util
import io
import os
import pkgutil
import sys
import types
from typing import Any

USAGE = "usage: python -m unknot [-m module | script.py] [args...]"


def _install_main(**attributes: Any) -> types.ModuleType:
    """A new ``__main__`` module, installed in `sys.modules` for good (as CPython's own is: the
    program's classes stay picklable, and ``import __main__`` finds it, after its body ends)."""
    module = types.ModuleType("__main__")
    module.__dict__.update({"__builtins__": builtins, "__cached__": None, **attributes})
    sys.modules["__main__"] = module
    return module


def run_script(path: str) -> None:
    """Run the script at ``path`` as ``__main__`` (in the root fiber `main` starts), as
    ``python script.py`` does: its ``__file__`` absolute, its module ``__main__`` until exit.
    A directory or zip file runs its ``__main__.py``."""
    path = os.path.abspath(path)
    if pkgutil.get_importer(path) is not None:  # a directory or zip file: a sys.path entry
        spec = importlib.machinery.PathFinder.find_spec("__main__", [path])
        if spec is None or spec.loader is None:
            raise SystemExit(f"{sys.executable}: can't find '__main__' module in {path!r}")
        _run_spec(spec, "__main__")
        return
    try:
        with io.open_code(path) as f:
            code = pkgutil.read_code(f)  # a compiled .pyc, or None
    except OSError as e:
        print(
            f"{sys.executable}: can't open file {path!r}: [Errno {e.errno}] {e.strerror}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    if code is None:
        with io.open_code(path) as f:
            code = compile(f.read(), path, "exec", dont_inherit=True)
        loader: Any = importlib.machinery.SourceFileLoader("__main__", path)
    else:
        loader = importlib.machinery.SourcelessFileLoader("__main__", path)
    module = _install_main(__file__=path, __loader__=loader)
    exec(code, module.__dict__)


def run_module(name: str) -> None:
    """Run the module ``name`` as ``__main__``, as ``python -m name`` would (a package runs its
    ``__main__`` submodule)."""
    try:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations is not None:
            if name == "__main__" or name.endswith(".__main__"):
                raise ImportError("Cannot use package as __main__ module")
            package, spec = name, importlib.util.find_spec(name + ".__main__")
            if spec is None:
                raise ImportError(
                    f"No module named {package}.__main__; "
                    f"{package!r} is a package and cannot be directly executed"
                )
        if spec is None or spec.loader is None:
            raise ImportError(f"No module named {name}")
    except ImportError as e:
        raise SystemExit(f"{sys.executable}: {e}") from None
    sys.argv[0] = spec.origin or name
    _run_spec(spec, spec.name)


def _run_spec(spec: importlib.machinery.ModuleSpec, name: str) -> None:
    loader: Any = spec.loader
    code = loader.get_code(name)
    if code is None:
        raise SystemExit(f"{sys.executable}: no code object available for {name}")
    module = _install_main(
        __file__=spec.origin,
        __cached__=spec.cached,
        __loader__=loader,
        __package__=spec.parent,
        __spec__=spec,
    )
    exec(code, module.__dict__)


# `unknot.run` called from the root fiber of these functions runs its function in place
# (unknot._core._loop.HOSTS_RUN: the attribute's name is the contract between the two modules).
for _fn in (run_script, run_module):
    setattr(_fn, "__unknot_hosts_run__", True)  # noqa: B010 - a dunder attribute on a function
del _fn


def main(argv: list[str]) -> int:
    """Patch, then run the script or module named in ``argv`` as the root fiber."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    import unknot

    unknot.patch()
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        unknot.run(run_module, argv[1])
    else:
        sys.argv = argv
        path = os.path.abspath(argv[0])
        is_script = pkgutil.get_importer(path) is None  # else a directory or zip file
        sys.path[0] = os.path.dirname(path) if is_script else path
        unknot.run(run_script, argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
