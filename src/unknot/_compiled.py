"""Which build runs: the modules compiled with mypyc, or their pure-Python sources.

`setup.py` compiles the modules listed in `MODULES` with mypyc where it can (see
docs/compiled.md); each compiled module is an extension (``_hub.cpython-311-x86_64-linux-gnu.so``)
installed beside its ``.py`` source, and Python's import system prefers the extension. This
module decides, once, before any of them is imported (``unknot/__init__.py`` imports it first):

* the compiled modules run when every one of them is present, none is older than its source, and
  the environment variable ``UNKNOT_PURE`` is unset (or empty, or ``0``);
* otherwise every listed module is imported from its ``.py`` source, through a finder put first
  on ``sys.meta_path``. All or none: the compiled modules call each other directly in C, so a
  mix of the two would hold two copies of the same classes.

In the compiled build a finder there gives the extensions a loader that also returns their
``.py`` sources, for the lines of tracebacks (`_ExtensionWithSource`).

A compiled module older than its source (an in-place build, then an edit) is not used: a
`RuntimeWarning` says so and the sources run. `unknot.compiled` tells which build runs.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import operator
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

#: The modules setup.py compiles (dotted names; their sources are under src/).
MODULES = (
    "unknot._core._timers",
    "unknot._core._deadlock",
    "unknot._core._parking",
    "unknot._core._hub",
    "unknot._core._selector_hub",
    "unknot._core._io_epoll",
    # The sockets' blocking calls (issue 13): recv, sendall and their entry.
    "unknot._sockio",
    # The HTTP server's request path (issue 13): the sans-I/O protocol layer, the request and
    # the per-connection loop.
    "unknot.http._protocol._events",
    "unknot.http._protocol._state",
    "unknot.http._protocol._writer",
    "unknot.http._protocol._reader",
    "unknot.http._protocol._request_reader",
    "unknot.http._protocol._response_reader",
    "unknot.http._protocol._connection",
    "unknot.http._protocol._server_conn",
    "unknot.http._protocol._client_conn",
    "unknot.http._message",
    "unknot.http._conn",
)

#: A compiled module counts as older than its source only past this many seconds (installing
#: a wheel writes the two files a moment apart, in either order).
_STALE_AFTER = 2.0

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _paths(name: str) -> tuple[str, list[str]]:
    """The source of module ``name`` and the extension files that may stand for it."""
    base = os.path.join(os.path.dirname(_PACKAGE_DIR), *name.split("."))
    return base + ".py", [base + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES]


def _compiled_available() -> tuple[bool, str]:
    """Whether every listed module has an up-to-date extension, and if not, why."""
    for name in MODULES:
        source, candidates = _paths(name)
        built = [p for p in candidates if os.path.exists(p)]
        if not built:
            return False, f"{name} is not compiled"
        if os.path.exists(source) and os.path.getmtime(source) > (
            os.path.getmtime(built[0]) + _STALE_AFTER
        ):
            return False, f"{built[0]} is older than {source}"
    return True, ""


class _SourceFinder:
    """Finds the listed modules as their ``.py`` sources, never as compiled extensions."""

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name not in MODULES:
            return None
        source, _ = _paths(name)
        return importlib.util.spec_from_file_location(name, source)


class _ExtensionWithSource(importlib.machinery.ExtensionFileLoader):
    """A compiled module's loader that also gives the module's source, the ``.py`` file
    installed beside the extension: `linecache` asks a module's loader for its source first
    and stops there if it has none, so tracebacks through compiled code would show no lines."""

    def exec_module(self, module: ModuleType) -> None:
        super().exec_module(module)
        module.__loader__ = self  # (linecache asks ``__loader__`` before ``__spec__.loader``)

    def get_source(self, fullname: str) -> str | None:  # type: ignore[override]
        source, _ = _paths(fullname)
        try:
            with open(source, encoding="utf-8") as file:
                return file.read()
        except OSError:
            return None


class _CompiledFinder:
    """Finds the listed modules as Python's own path finder does (their compiled extensions),
    with `_ExtensionWithSource` as the loader."""

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name not in MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        loader = spec.loader if spec is not None else None
        if spec is not None and type(loader) is importlib.machinery.ExtensionFileLoader:
            spec.loader = _ExtensionWithSource(loader.name, loader.path)
        return spec


def _choose() -> bool:
    """Decide which build runs (see the module docstring); True for the compiled one."""
    if os.environ.get("UNKNOT_PURE", "") not in ("", "0"):
        compiled = False
    else:
        compiled, why = _compiled_available()
        if not compiled and "older than" in why:
            warnings.warn(
                f"unknot runs its pure-Python modules: {why} (rebuild, or reinstall, to run the "
                "compiled ones)",
                RuntimeWarning,
                stacklevel=3,
            )
    if not compiled and not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())
    if compiled and not any(isinstance(f, _CompiledFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CompiledFinder())
    return compiled


#: True when the compiled modules run (see the module docstring).
COMPILED = _choose()


def nbio() -> ModuleType | None:
    """`unknot._nbio`, the one extension written in C (src/unknot/_nbio.c: the TCP sockets'
    ``read`` and ``write`` keeping the GIL, the epoll hub's ``epoll_wait``), when the compiled
    build runs and the extension imports; None in the pure build, or where it is missing (the
    callers then use ``os.read``, ``os.write`` and ``select.epoll.poll``)."""
    if not COMPILED:
        return None
    try:
        return importlib.import_module("unknot._nbio")
    except ImportError:
        return None


def slot_reader(name: str) -> Callable[[Any], Any]:
    """``getattr(obj, name)`` as a callable for the compiled hot paths: `unknot._nbio.slot`,
    one C load for a type that keeps ``name`` in a ``__slots__`` member, where compiled code
    would make a generic attribute access (about 160 instructions: the objects whose slots
    the hub reads, fibers and sockets, derive from C types, so mypyc cannot lay them out). In
    the pure build, ``operator.attrgetter(name)``."""
    n = nbio()
    return operator.attrgetter(name) if n is None else n.slot(name)


def slot_writer(cls: type, name: str) -> Callable[[Any, Any], None]:
    """``setattr(obj, name, value)`` as a callable, the writing twin of `slot_reader`
    (``unknot._nbio.slot(name, 1)``). In the pure build, the ``__set__`` of ``cls``'s
    member ``name``."""
    n = nbio()
    if n is None:
        setter: Callable[[Any, Any], None] = getattr(cls, name).__set__
        return setter
    return n.slot(name, 1)


def slot_swapper(cls: type, name: str) -> Callable[[Any, Any], Any]:
    """Set ``obj.name`` to ``value`` and return the value it replaced, in one call: the
    swapping twin of `slot_reader` (``unknot._nbio.slot(name, 2)``). In the pure build, the
    read and the ``__set__`` of ``cls``'s member ``name``, one after the other."""
    n = nbio()
    if n is not None:
        swapper: Callable[[Any, Any], Any] = n.slot(name, 2)
        return swapper
    read = operator.attrgetter(name)
    write = getattr(cls, name).__set__

    def swap(obj: Any, value: Any) -> Any:
        old = read(obj)
        write(obj, value)
        return old

    return swap
