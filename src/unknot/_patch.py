"""`patch`: make the stdlib's blocking APIs fiber-aware, so unmodified libraries run concurrently.

Everything `patch` changes is listed in `PATCH_TABLE`, one row per stdlib attribute, grouped by
the keyword argument that turns the group off. Three mechanisms, applied in this order:

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

`threading.Thread` stays a real OS thread: the locks `patch` installs are *hybrid* (see
`unknot._hybrid`), correct when fibers and threads share them, so libraries that start
background threads keep working unchanged, CPU-bound threads keep running in parallel with the
hub, and `to_thread` keeps meaning a real thread. Joining a thread from a fiber waits
cooperatively. `threading.local` becomes fiber-local (a fiber is a thread of control for the code
that uses it).
"""

from __future__ import annotations

import importlib
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
        if type(getcurrent()) is Fiber and self.is_alive():
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
    return [
        "socket",
        "socketpair",
        "fromfd",
        "create_connection",
        "create_server",
        "getfqdn",
    ]


def _dns_names() -> list[str]:
    return ["getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"]


# group -> list of (stdlib module, attribute, where the replacement comes from)
# The source is "module:attr" for a name in an unknot module, or a callable building the value.
PATCH_TABLE: dict[str, list[tuple[str, str, Any]]] = {
    "socket": [("socket", n, f"unknot.socket:{n}") for n in _socket_names()],
    "dns": [("socket", n, f"unknot.socket:{n}") for n in _dns_names()],
    "ssl": [
        ("ssl", "SSLSocket", "unknot.ssl:SSLSocket"),
        ("ssl", "SSLContext.sslsocket_class", "unknot.ssl:SSLSocket"),
    ],
    "select": [
        ("select", "select", "unknot.select:select"),
        ("select", "poll", "unknot.select:poll"),
        # Libraries that pick the best poller must not find the ones we cannot make
        # cooperative; they fall back to poll/select, which we can.
        ("select", "epoll", None),
        ("select", "kqueue", None),
        ("select", "devpoll", None),
        ("selectors", "DefaultSelector", "unknot.selectors:DefaultSelector"),
        ("selectors", "SelectSelector", "unknot.selectors:SelectSelector"),
        ("selectors", "PollSelector", "unknot.selectors:PollSelector"),
        ("selectors", "EpollSelector", "unknot.selectors:DefaultSelector"),
    ],
    "time": [("time", "sleep", "unknot.time:sleep")],
    "subprocess": [
        ("subprocess", n, f"unknot.subprocess:{n}")
        for n in (
            "Popen",
            "call",
            "check_call",
            "check_output",
            "run",
            "getoutput",
            "getstatusoutput",
        )
    ],
    "threading": [
        ("threading", "Lock", "unknot._hybrid:allocate_lock"),
        ("threading", "_allocate_lock", "unknot._hybrid:allocate_lock"),
        ("threading", "RLock", "unknot._hybrid:RLock"),
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
) -> None:
    """Make the stdlib fiber-aware: blocking calls in fibers then suspend only that fiber.

    Each keyword turns one group of `PATCH_TABLE` off (``patch(subprocess=False)``). Calling
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


def _rebind_loaded_modules(replacements: dict[int, tuple[Any, Any]]) -> None:
    """Point module globals that still hold an original at its replacement (import order)."""
    if not replacements:
        return
    for name, module in list(sys.modules.items()):
        if module is None or name == "unknot" or name.startswith("unknot."):
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
    """Undo `patch` (including the rebinding of module globals)."""
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
    """Whether `patch` is in effect (for ``group``, one of `PATCH_TABLE`'s keys, if given)."""
    return bool(_patched_groups) if group is None else group in _patched_groups
