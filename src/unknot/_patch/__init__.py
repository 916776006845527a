"""`patch`: make the stdlib's blocking APIs fiber-aware, so unmodified libraries run concurrently.

Everything `patch` changes is listed in `PATCH_TABLE` (`unknot._patch._table`), one row per
stdlib attribute, grouped by the keyword argument that turns the group off, and in
`DRIVER_INTEGRATIONS` for third-party drivers. Four mechanisms, applied in this order:

1. **Module attributes.** ``socket.socket``, ``time.sleep``, ``threading.Lock`` ... are replaced
   by unknot's versions, so code that looks them up at call time (``import socket;
   socket.socket()``) gets the cooperative one.
2. **Class attributes**, for objects that may already exist: ``ssl.SSLContext.sslsocket_class``
   is set on the class, so contexts created before `patch` also produce cooperative sockets.
3. **Rebinding.** Import order must not matter: a module imported earlier may hold the original
   in its globals (``from socket import socket``, ``from time import sleep``). `patch` walks
   every loaded module and rebinds such globals to the replacements. (Objects created before
   `patch`, such as an already-open socket or a lock allocated at import time, stay what they
   are: run your program with ``python -m unknot`` to patch before anything else is imported.)

4. **Driver integrations** (`DRIVER_INTEGRATIONS`, keyword ``drivers``). Some drivers wait in C
   code on a file descriptor of their own (psycopg 3's ``wait_c``), which no stdlib patch reaches;
   where such a driver offers a Python hook, `patch` fills it with a cooperative version from
   `unknot._patch._drivers`. A driver already imported is fixed at once; one imported later is
   fixed by an import hook (a `sys.meta_path` finder) right after its module has run.

The same import hook applies the *lazy* rows of `PATCH_TABLE`, whose modules `patch` does not
import (``concurrent.futures.process`` would load multiprocessing into every patched program):
when the program imports one, right after it has run.

`threading.Thread` stays a real OS thread: the locks `patch` installs are *hybrid* (see
`unknot._patch._hybrid`), correct when fibers and threads share them, so libraries that start
background threads keep working unchanged, CPU-bound threads keep running in parallel with the
hub, and `to_thread` keeps meaning a real thread. Joining a thread from a fiber waits
cooperatively. `threading.local` becomes fiber-local (a fiber is a thread of control for the code
that uses it).
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any, Never, cast

if TYPE_CHECKING:
    import importlib.abc

from ._table import DELETE, DRIVER_INTEGRATIONS, PATCH_TABLE, DriverHook, PatchRow, Source

_MISSING = object()
# (namespace object, attribute, original value or _MISSING) for every change, to undo them.
_undo: list[tuple[Any, str, Any]] = []
_patched_groups: set[str] = set()
# The lazy rows of the groups patched whose module the program has not imported yet.
_lazy_rows: list[PatchRow] = []


def _target(module_name: str, attr: str) -> tuple[Any, str]:
    obj: Any = importlib.import_module(module_name)
    *path, last = attr.split(".")
    for part in path:
        obj = getattr(obj, part)
    return obj, last


def _set(namespace: Any, attr: str, value: Any) -> None:
    if isinstance(namespace, dict):
        _undo.append((namespace, attr, namespace.get(attr, _MISSING)))
        namespace[attr] = value
        return
    _undo.append((namespace, attr, namespace.__dict__.get(attr, _MISSING)))
    if value is _MISSING:
        if attr in namespace.__dict__:
            delattr(namespace, attr)
    else:
        setattr(namespace, attr, value)


def patch(
    *,
    socket: bool = True,
    dns: bool = True,
    ssl: bool = True,
    select: bool = True,
    time: bool = True,
    subprocess: bool = True,
    threading: bool = True,
    queue: bool = True,
    drivers: bool = True,
    **other: Never,
) -> None:
    """Make the stdlib fiber-aware: blocking calls in fibers then suspend only that fiber.

    Each keyword turns one group of `PATCH_TABLE` off (``patch(subprocess=False)``);
    ``drivers=False`` leaves the hooks of `DRIVER_INTEGRATIONS` (psycopg) alone. Calling
    `patch` again is harmless; `unpatch` undoes it. Outside fibers, everything patched behaves
    as the stdlib does, so threads and code that never runs in a fiber are unaffected.

    Any other keyword is a `TypeError`; one of gevent's ``patch_all`` keywords (``thread``,
    ``os``, ``signal``, ``aggressive``...) gets a message naming unknot's equivalent. Type
    checkers see those keywords typed ``Never``, so a misspelt group (``patch(sockets=False)``)
    or a gevent keyword is an error before the program runs too.
    """
    if other:
        raise TypeError(_unknown_keyword_message(next(iter(other))))
    wanted = {
        "socket": socket,
        "dns": dns,
        "ssl": ssl,
        "select": select,
        "time": time,
        "subprocess": subprocess,
        "threading": threading,
        "queue": queue,
    }
    replacements: dict[int, tuple[Any, Any]] = {}
    for group, enabled in wanted.items():
        if not enabled or group in _patched_groups:
            continue
        for row in PATCH_TABLE[group]:
            if row.lazy and row.module not in sys.modules:
                _lazy_rows.append(row)  # applied when the program imports its module
            else:
                _apply(row, replacements)
        _patched_groups.add(group)
    _rebind_loaded_modules(replacements)
    if drivers and "drivers" not in _patched_groups:
        _integrate_drivers()
        _patched_groups.add("drivers")
    if _lazy_rows or "drivers" in _patched_groups:
        _install_import_hook()


def _apply(row: PatchRow, replacements: dict[int, tuple[Any, Any]]) -> None:
    """Apply ``row``; note its original and replacement in ``replacements`` for rebinding."""
    namespace, name = _target(row.module, row.attr)
    original = namespace.__dict__.get(name, _MISSING)
    if original is _MISSING:
        return  # not on this platform or version (e.g. no kqueue on Linux)
    value = row.resolve()
    if value is DELETE:
        value = _MISSING
    if original is value:
        return
    _set(namespace, name, value)
    if value is not _MISSING and "." not in row.attr:
        replacements[id(original)] = (original, value)


#: gevent's ``monkey.patch_all`` keywords that `patch` does not have, and what to use instead.
GEVENT_KEYWORDS = {
    "thread": "unknot's is threading=...: threads stay OS threads, and patch() makes their "
    "locks hybrid (fiber- and thread-safe) and threading.local fiber-local",
    "os": "unknot's is subprocess=...: it installs unknot.os.waitpid, wait, wait3, wait4 and "
    "waitid in os (pidfd waits, no SIGCHLD handler) along with unknot.subprocess's Popen; fork "
    "needs no patch (a child forked in a fiber keeps only that fiber)",
    "signal": "signals stay with the event loop: install handlers with "
    "asyncio.get_running_loop().add_signal_handler(...) (the hub is an asyncio loop)",
    "aggressive": "unknot has no equivalent: select=True already makes select, poll and epoll "
    "cooperative and removes only the pollers it cannot (kqueue, devpoll)",
    "Event": "unknot's is threading=...: threading.Event is built on the patched hybrid locks",
    "sys": "unknot has no equivalent: stdin/stdout/stderr are left alone (gevent patches them "
    "only on request); read a pipe or tty cooperatively with unknot.os.read",
    "builtins": "unknot has no equivalent (gevent's only patches Python 2's __import__ lock); "
    "for files, unknot.open runs file I/O on the thread pool",
    "contextvars": "unknot has no equivalent, nor needs one: every fiber starts with a copy of "
    "its spawner's contextvars, and ContextVar works unchanged",
}
GEVENT_KEYWORDS["contextvar"] = GEVENT_KEYWORDS["contextvars"]


def _unknown_keyword_message(name: str) -> str:
    """The `TypeError` message for ``patch(name=...)``, pointing gevent users to unknot's way."""
    hint = GEVENT_KEYWORDS.get(name)
    if hint is None:
        return f"patch() got an unexpected keyword argument {name!r}"
    return f"patch() has no {name!r} keyword (that is gevent's): {hint}"


def _rebind_loaded_modules(replacements: dict[int, tuple[Any, Any]], skip: Any = None) -> None:
    """Point module globals that still hold an original at its replacement (import order).

    ``skip``: a module left alone (a driver whose hook was just filled keeps the other names
    of its original, such as psycopg's ``wait_c``).
    """
    if not replacements:
        return
    for name, module in list(sys.modules.items()):
        if module is None or module is skip or name == "unknot" or name.startswith("unknot."):
            continue  # unknot keeps the originals it builds on
        if name in sys.builtin_module_names or str(getattr(module, "__file__", "")).endswith(
            (".so", ".pyd")
        ):
            continue  # C modules change only through explicit PATCH_TABLE rows
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            hit = replacements.get(id(value))
            if hit is not None and hit[0] is value and not key.startswith("__"):
                _set(namespace, key, hit[1])


def unpatch() -> None:
    """Undo `patch` (including the rebinding of module globals and the driver integrations)."""
    global _import_hook
    if _import_hook is not None:
        try:
            sys.meta_path.remove(_import_hook)
        except ValueError:
            pass
        _import_hook = None
    _lazy_rows.clear()
    # unknot's replacements still in place, and the originals they replaced.
    originals: dict[int, tuple[Any, Any]] = {}
    while _undo:
        namespace, attr, original = _undo.pop()
        if isinstance(namespace, dict):
            current = namespace.get(attr, _MISSING)
            if original is _MISSING:
                namespace.pop(attr, None)
            else:
                namespace[attr] = original
        else:
            current = namespace.__dict__.get(attr, _MISSING)
            if original is _MISSING:
                if attr in namespace.__dict__:
                    delattr(namespace, attr)
            else:
                setattr(namespace, attr, original)
        if original is not _MISSING and _is_unknots(current):
            originals[id(current)] = (current, original)
    _unbind_stdlib_copies(originals)
    _patched_groups.clear()


def _is_unknots(value: Any) -> bool:
    module = getattr(value, "__module__", None)
    return isinstance(module, str) and (module == "unknot" or module.startswith("unknot."))


def _unbind_stdlib_copies(originals: dict[int, tuple[Any, Any]]) -> None:
    """Point the globals of standard-library modules that still hold a replacement at its
    original: modules imported while patched copied it (``multiprocessing.pool``'s ``from
    .connection import wait``, ``multiprocessing.connection``'s ``_WaitSelector =
    selectors.PollSelector``), and no rebinding recorded that. (Other modules are left alone:
    a copy cannot be told from a deliberate ``from unknot.time import sleep``.)"""
    if not originals:
        return
    stdlib = sys.stdlib_module_names
    for name, module in list(sys.modules.items()):
        if module is None or name.partition(".")[0] not in stdlib:
            continue
        if name in sys.builtin_module_names or str(getattr(module, "__file__", "")).endswith(
            (".so", ".pyd")
        ):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            hit = originals.get(id(value))
            if hit is not None and hit[0] is value and not key.startswith("__"):
                namespace[key] = hit[1]


def is_patched(group: str | None = None) -> bool:
    """Whether `patch` is in effect (for ``group``, one of `PATCH_TABLE`'s keys or
    ``"drivers"``, if given).

    Any other ``group`` is a `ValueError` (one of gevent's module names, such as ``"thread"``,
    gets a message naming unknot's group): a misspelt check must not quietly answer False."""
    if group is None:
        return bool(_patched_groups)
    if group not in PATCH_TABLE and group != "drivers":
        hint = GEVENT_KEYWORDS.get(group)
        if hint is not None:
            raise ValueError(f"is_patched() has no group {group!r} (that is gevent's): {hint}")
        known = ", ".join(repr(name) for name in [*PATCH_TABLE, "drivers"])
        raise ValueError(f"is_patched() has no group {group!r}; the groups are {known}")
    return group in _patched_groups


def _integrate_module(module: Any) -> None:
    """Apply the `DRIVER_INTEGRATIONS` rows for ``module`` (just imported, or already loaded)."""
    replacements: dict[int, tuple[Any, Any]] = {}
    for hook in DRIVER_INTEGRATIONS:
        if hook.module != module.__name__:
            continue
        original = module.__dict__.get(hook.attr, _MISSING)
        if original is _MISSING or hasattr(original, "__unknot_original__"):
            continue  # not in this version of the driver, or integrated already
        value = hook.build(module, original)
        _set(module, hook.attr, value)
        replacements[id(original)] = (original, value)
    _rebind_loaded_modules(replacements, skip=module)  # ``from psycopg.waiting import wait``


def _on_import(module: Any) -> None:
    """``module`` was just imported while patched: apply its lazy rows and integrations."""
    name = module.__name__
    rows = [row for row in _lazy_rows if row.module == name]
    if rows:
        _lazy_rows[:] = [row for row in _lazy_rows if row.module != name]
        replacements: dict[int, tuple[Any, Any]] = {}
        for row in rows:
            _apply(row, replacements)
        _rebind_loaded_modules(replacements)
    if "drivers" in _patched_groups:
        _integrate_module(module)


class _PatchingLoader:
    """Wraps a watched module's loader: runs the module, then `_on_import`.

    (A loader by its methods, not a subclass of `importlib.abc.Loader`: importing that module
    loads `importlib.resources` and `pathlib`, a fifth of unknot's own import time.)"""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        if _import_hook is not None:  # still patched
            _on_import(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, get_source, is_package...
        return getattr(self._loader, name)


class _ImportHook:
    """A `sys.meta_path` finder that catches the import of a module with a pending lazy row or
    a driver module of `DRIVER_INTEGRATIONS`, and hands it a `_PatchingLoader`; it finds
    nothing itself."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if not _watched(fullname):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = cast("importlib.abc.Loader", _PatchingLoader(spec.loader))
            return spec
        return None


def _watched(fullname: str) -> bool:
    """Whether importing ``fullname`` must be followed by `_on_import`."""
    if any(row.module == fullname for row in _lazy_rows):
        return True
    return "drivers" in _patched_groups and any(
        hook.module == fullname for hook in DRIVER_INTEGRATIONS
    )


_import_hook: _ImportHook | None = None


def _install_import_hook() -> None:
    global _import_hook
    if _import_hook is None:
        _import_hook = _ImportHook()
        sys.meta_path.insert(0, _import_hook)


def _integrate_drivers() -> None:
    """Integrate the drivers already imported (the import hook catches the others)."""
    for module_name in dict.fromkeys(hook.module for hook in DRIVER_INTEGRATIONS):
        module = sys.modules.get(module_name)
        if module is not None:
            _integrate_module(module)


__all__ = [
    "DRIVER_INTEGRATIONS",
    "PATCH_TABLE",
    "DriverHook",
    "PatchRow",
    "Source",
    "is_patched",
    "patch",
    "unpatch",
]
