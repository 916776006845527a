"""Driver integrations: cooperative replacements for the waits of libraries that bypass sockets.

Most drivers block in Python socket calls, which `unknot.patch` makes cooperative. A few wait in
C code on a file descriptor they own, where no patch of the stdlib can reach; some of those offer
a Python hook instead. `unknot._patch.DRIVER_INTEGRATIONS` lists the hooks `patch` fills with the
functions here (applied whether the driver is imported before or after `patch`).

psycopg 3
    Every blocking operation of a ``psycopg.Connection`` runs a generator (non-blocking libpq
    calls) under ``psycopg.waiting.wait`` (queries) or ``psycopg.waiting.wait_conn`` (connecting,
    cancelling); the default ``wait`` is ``wait_c``, a C loop over ``poll``. The replacements
    below drive the same generators but wait for the connection's fd on the hub, so only the
    calling fiber waits. Outside fibers (threads, code before `unknot.run`) they call the
    original. Differences from psycopg's own loops: no periodic wake-up every ``interval``
    seconds (its purpose, noticing Ctrl-C, is the hub's job), and cancelling the fiber leaves
    the query running on the server, as with any other interrupted wait (``conn.cancel()``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from greenlet import getcurrent

from .._mirror import POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, poll_fd
from ..lowlevel import TIMED_OUT, Fiber, Hub

_monotonic = time.monotonic

_READ = 1  # psycopg's Wait.R / Ready.R (selectors.EVENT_READ)
_WRITE = 2  # Wait.W / Ready.W (selectors.EVENT_WRITE)


def _ready_now(fd: int, wanted: int) -> int:
    """Which of ``wanted`` (a `_READ`/`_WRITE` mask) ``fd`` is ready for right now."""
    ev = poll_fd(fd, bool(wanted & _READ), bool(wanted & _WRITE))
    if ev & POLLNVAL:
        raise OSError(9, "Bad file descriptor")
    ready = 0
    if ev & (POLLIN | POLLHUP | POLLERR):
        ready |= _READ & wanted
    if ev & (POLLOUT | POLLHUP | POLLERR):
        ready |= _WRITE & wanted
    return ready


def wait_fd_events(f: Fiber, fd: int, wanted: int, timeout: float | None) -> int:
    """Suspend fiber ``f`` until ``fd`` is ready for any of ``wanted``; the ready mask (0: timeout).

    For fds unknot does not own: watched (level-triggered) only while the fiber waits.
    """
    ready = _ready_now(fd, wanted)
    if ready:
        return ready
    hub: Hub = f.hub
    if wanted != _READ | _WRITE:
        if hub.wait_raw_fd(f, fd, wanted == _WRITE, timeout) is TIMED_OUT:
            return 0
        return _ready_now(fd, wanted) or wanted  # woken by an event: trust it if poll disagrees
    if hub.wait_fds(f, (fd,), (fd,), timeout) is TIMED_OUT:  # both directions at once
        return 0
    return _ready_now(fd, wanted) or wanted


# -- psycopg 3 ---------------------------------------------------------------------------------


def psycopg_wait(waiting: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
    """A cooperative ``psycopg.waiting.wait`` (``original`` runs outside fibers)."""

    def wait(gen: Any, fileno: int, interval: float = 0.0, timeout: float | None = None) -> Any:
        f = getcurrent()
        if type(f) is not Fiber:
            return original(gen, fileno, interval=interval, timeout=timeout)
        return _psycopg_drive(waiting, f, gen, fileno, interval, timeout)

    return _replacing(original, wait)


def psycopg_wait_conn(waiting: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
    """A cooperative ``psycopg.waiting.wait_conn`` (the fd may change while connecting)."""

    def wait_conn(gen: Any, interval: float = 0.0, timeout: float | None = None) -> Any:
        f = getcurrent()
        if type(f) is not Fiber:
            return original(gen, interval=interval, timeout=timeout)
        return _psycopg_drive(waiting, f, gen, None, interval, timeout)

    return _replacing(original, wait_conn)


def _psycopg_drive(
    waiting: ModuleType,
    f: Fiber,
    gen: Any,
    fileno: int | None,
    interval: float | None,
    timeout: float | None,
) -> Any:
    """Run the psycopg generator ``gen`` to its end, fiber ``f`` waiting on the hub.

    With ``fileno`` None, ``gen`` yields ``(fileno, wait)`` pairs (``wait_conn``: the fd may
    change while connecting); otherwise it yields the wait alone, for ``fileno``.
    """
    if interval is None:
        raise ValueError("indefinite wait not supported anymore")
    deadline = None if timeout is None else _monotonic() + timeout
    try:
        step = next(gen)
        while True:
            fd, s = step if fileno is None else (fileno, step)
            left = None if deadline is None else max(0.0, deadline - _monotonic())
            ready = wait_fd_events(f, fd, int(s), left)
            if not ready and fileno is not None:  # (psycopg's wait checks, its wait_conn not)
                waiting._check_fd_closed(fd)
            step = gen.send(ready)
            if deadline is not None and _monotonic() >= deadline:
                raise waiting.e._WaitTimeout("wait timeout expired")
    except StopIteration as ex:
        return ex.value


def _replacing(original: Callable[..., Any], fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, documented and marked as the cooperative replacement of ``original``."""
    fn.__doc__ = f"Cooperative in fibers (unknot); elsewhere {original.__name__}."
    fn.__unknot_original__ = original  # type: ignore[attr-defined]
    return fn
