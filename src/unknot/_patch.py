"""`patch`: make the stdlib's blocking APIs fiber-aware, so unmodified libraries run concurrently.

Everything `patch` changes is listed in `PATCH_TABLE`, one row per stdlib attribute, grouped by
the keyword argument that turns the group off, and in `DRIVER_INTEGRATIONS` for third-party
drivers. Four mechanisms, applied in this order:

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
   `unknot._drivers`. A driver already imported is fixed at once; one imported later is fixed by
   an import hook (a `sys.meta_path` finder) right after its module has run.

`threading.Thread` stays a real OS thread: the locks `patch` installs are *hybrid* (see
`unknot._hybrid`), correct when fibers and threads share them, so libraries that start
background threads keep working unchanged, CPU-bound threads keep running in parallel with the
hub, and `to_thread` keeps meaning a real thread. Joining a thread from a fiber waits
cooperatively. `threading.local` becomes fiber-local (a fiber is a thread of control for the code
that uses it).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

from greenlet import getcurrent

from ._fiber import Fiber

_ORIGINAL_JOIN: Callable[..., Any] = threading.Thread.join


def _thread_join(original: Callable[..., Any]) -> Callable[..., Any]:
    def join(self: threading.Thread, timeout: float | None = None) -> None:
        # (Joining the current thread: the stdlib's join raises at once; a worker would wait.)
        if (
            type(getcurrent()) is Fiber
            and self.is_alive()
            and self is not threading.current_thread()
        ):
            from ._threads import to_thread

            return to_thread(original, self, timeout)
        return original(self, timeout)

    join.__doc__ = original.__doc__
    return join


def _fiber_local_class() -> type:
    """`threading.local` with one namespace per fiber: the stdlib's pure-Python implementation
    (``_threading_local``), loaded privately with "current thread" meaning "current greenlet"."""
    spec = importlib.util.find_spec("_threading_local")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from ._hybrid import RLock

    module.current_thread = getcurrent  # type: ignore[attr-defined]
    module.RLock = RLock  # type: ignore[attr-defined]
    local: type = module.local
    return local


def _socket_names() -> list[str]:
    # Not create_connection, create_server and getfqdn: the stdlib's own look up socket(),
    # getaddrinfo() and gethostbyaddr() in the socket module when called, so once these are
    # replaced they are cooperative as they are (and a later mock of socket.socket still
    # applies, as CPython's test_socket expects). unknot.socket has copies bound to its names.
    return ["socket", "socketpair", "fromfd"]


def _dns_names() -> list[str]:
    return ["getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"]


# group -> list of (stdlib module, attribute, where the replacement comes from)
# The source is "module:attr" for a name in an unknot module, or a callable building the value.
PATCH_TABLE: dict[str, list[tuple[str, str, Any]]] = {
    "socket": [("socket", n, f"unknot.socket:{n}") for n in _socket_names()],
    "dns": [("socket", n, f"unknot.socket:{n}") for n in _dns_names()],
    "ssl": [
        # Every context (also one created before patching) wraps sockets in unknot's
        # SSLSocket. The name ssl.SSLSocket stays the stdlib class (which unknot's subclasses):
        # the stdlib's own SSLSocket._create looks it up as a module global.
        ("ssl", "SSLContext.sslsocket_class", "unknot.ssl:SSLSocket"),
    ],
    "select": [
        ("select", "select", "unknot.select:select"),
        ("select", "poll", "unknot.select:poll"),
        # epoll objects wait cooperatively on their own fd (one hub registration for all).
        ("select", "epoll", "unknot.select:epoll"),
        # Pollers we cannot make cooperative are hidden, so libraries that pick the best
        # poller fall back to poll/select, which we can (none of these exist on Linux).
        ("select", "kqueue", None),
        ("select", "devpoll", None),
        ("selectors", "DefaultSelector", "unknot.selectors:DefaultSelector"),
        ("selectors", "SelectSelector", "unknot.selectors:SelectSelector"),
        ("selectors", "PollSelector", "unknot.selectors:PollSelector"),
        ("selectors", "EpollSelector", "unknot.selectors:EpollSelector"),
        ("selectors", "KqueueSelector", None),
        ("selectors", "DevpollSelector", None),
    ],
    "time": [("time", "sleep", "unknot.time:sleep")],
    # Only Popen: the stdlib's run, call, check_call, check_output, getoutput and
    # getstatusoutput look Popen (and run, check_output) up in the subprocess module when
    # called, so they use unknot's, and a later mock of subprocess.Popen still applies.
    "subprocess": [("subprocess", "Popen", "unknot.subprocess:Popen")],
    "threading": [
        # The class (threading.Lock is one on Python 3.13: `Lock | None`, isinstance).
        ("threading", "Lock", "unknot._hybrid:Lock"),
        ("threading", "_allocate_lock", "unknot._hybrid:allocate_lock"),
        # threading.RLock stays the stdlib's function (its argument deprecation warning on
        # 3.13 included), which makes a _CRLock.
        ("threading", "_CRLock", "unknot._hybrid:RLock"),
        ("threading", "local", _fiber_local_class),
        ("threading", "Thread.join", lambda: _thread_join(_ORIGINAL_JOIN)),
        ("_thread", "allocate_lock", "unknot._hybrid:allocate_lock"),
        ("_thread", "allocate", "unknot._hybrid:allocate_lock"),
        ("_thread", "RLock", "unknot._hybrid:RLock"),
        ("_thread", "_local", _fiber_local_class),
    ],
    "queue": [("queue", "SimpleQueue", lambda: queue._PySimpleQueue)],  # type: ignore[attr-defined]
}

_MISSING = object()
# (namespace object, attribute, original value or _MISSING) for every change, to undo them.
_undo: list[tuple[Any, str, Any]] = []
_patched_groups: set[str] = set()


def _resolve(source: Any) -> Any:
    if source is None or callable(source):
        return source() if source is not None else _MISSING
    module_name, _, attr = source.partition(":")
    return getattr(importlib.import_module(module_name), attr)


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
) -> None:
    """Make the stdlib fiber-aware: blocking calls in fibers then suspend only that fiber.

    Each keyword turns one group of `PATCH_TABLE` off (``patch(subprocess=False)``);
    ``drivers=False`` leaves the hooks of `DRIVER_INTEGRATIONS` (psycopg) alone. Calling
    `patch` again is harmless; `unpatch` undoes it. Outside fibers, everything patched behaves
    as the stdlib does, so threads and code that never runs in a fiber are unaffected.
    """
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
        for module_name, attr, source in PATCH_TABLE[group]:
            namespace, name = _target(module_name, attr)
            original = namespace.__dict__.get(name, _MISSING)
            if original is _MISSING:
                continue  # not on this platform or version (e.g. no kqueue on Linux)
            value = _resolve(source)
            if original is value:
                continue
            _set(namespace, name, value)
            if original is not _MISSING and value is not _MISSING and "." not in attr:
                replacements[id(original)] = (original, value)
        _patched_groups.add(group)
    _rebind_loaded_modules(replacements)
    if drivers and "drivers" not in _patched_groups:
        _integrate_drivers()
        _patched_groups.add("drivers")


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
    while _undo:
        namespace, attr, original = _undo.pop()
        if isinstance(namespace, dict):
            if original is _MISSING:
                namespace.pop(attr, None)
            else:
                namespace[attr] = original
        elif original is _MISSING:
            if attr in namespace.__dict__:
                delattr(namespace, attr)
        else:
            setattr(namespace, attr, original)
    _patched_groups.clear()


def is_patched(group: str | None = None) -> bool:
    """Whether `patch` is in effect (for ``group``, one of `PATCH_TABLE`'s keys or
    ``"drivers"``, if given)."""
    return bool(_patched_groups) if group is None else group in _patched_groups


# -- Driver integrations -------------------------------------------------------------------------
#
# Drivers that block in C code on a file descriptor of their own bypass the patched socket
# module. Those that expose a Python hook get a cooperative one: one row per hook, as
# (module, attribute, factory). ``factory(module, original)`` builds the replacement; it is
# imported from `unknot._drivers` only when the driver's module is loaded. Replacements call the
# original outside fibers, so a driver imported while patched stays correct after `unpatch`.

DRIVER_INTEGRATIONS: list[tuple[str, str, str]] = [
    # psycopg 3: Connection runs every operation through waiting.wait / waiting.wait_conn,
    # looked up at call time; the default wait is wait_c, a C poll loop.
    ("psycopg.waiting", "wait", "unknot._drivers:psycopg_wait"),
    ("psycopg.waiting", "wait_conn", "unknot._drivers:psycopg_wait_conn"),
]


def _integrate_module(module: Any) -> None:
    """Apply the `DRIVER_INTEGRATIONS` rows for ``module`` (just imported, or already loaded)."""
    replacements: dict[int, tuple[Any, Any]] = {}
    for module_name, attr, source in DRIVER_INTEGRATIONS:
        if module_name != module.__name__:
            continue
        original = module.__dict__.get(attr, _MISSING)
        if original is _MISSING or hasattr(original, "__unknot_original__"):
            continue  # not in this version of the driver, or integrated already
        value = _resolve(source)(module, original)
        _set(module, attr, value)
        replacements[id(original)] = (original, value)
    _rebind_loaded_modules(replacements, skip=module)  # ``from psycopg.waiting import wait``


class _IntegratingLoader(importlib.abc.Loader):
    """Wraps a driver module's loader: runs the module, then applies its integrations."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        if _import_hook is not None:  # still patched
            _integrate_module(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, get_source, is_package...
        return getattr(self._loader, name)


class _DriverImportHook:
    """A `sys.meta_path` finder that catches the import of a driver module listed in
    `DRIVER_INTEGRATIONS` and hands it an `_IntegratingLoader`; it finds nothing itself."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if not any(row[0] == fullname for row in DRIVER_INTEGRATIONS):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _IntegratingLoader(spec.loader)
            return spec
        return None


_import_hook: _DriverImportHook | None = None


def _integrate_drivers() -> None:
    """Integrate the drivers already imported; catch the imports of the others."""
    global _import_hook
    for module_name in dict.fromkeys(row[0] for row in DRIVER_INTEGRATIONS):
        module = sys.modules.get(module_name)
        if module is not None:
            _integrate_module(module)
    if _import_hook is None:
        _import_hook = _DriverImportHook()
        sys.meta_path.insert(0, _import_hook)
