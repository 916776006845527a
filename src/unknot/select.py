"""Cooperative `select`: a drop-in mirror of the stdlib module whose waits suspend only a fiber.

Every name of the stdlib module is here. `select`, `poll` objects and `epoll` objects wait
cooperatively in a fiber and are the stdlib's everywhere else (threads, the hub, asyncio
callbacks).

How a fiber waits: the stdlib call is first made with a zero timeout. That single syscall also
checks the arguments, so bad file descriptors and bad arguments raise exactly the stdlib's
errors (timeouts are checked by the same rules CPython applies), and ready fds are returned at
once. If none is ready, the fiber waits on the hub for the first of the fds to become readable
or writable (`Hub.wait_fds`; an epoll object waits on its own fd, readable when any of its fds
has an event), then polls again with a zero timeout, until something is ready or the timeout
expires. Results are therefore always the stdlib's own, computed by the stdlib.

A call with a timeout other than 0 is, as a socket's blocking call, a cancellation point even
when something is ready at once, and a fiber whose calls never wait lets the others run after a
streak of them (`Hub.IO_STREAK_MAX`).

Limits of the cooperative wait (the results stay exact; only how soon the fiber notices):

* conditions the hub does not watch (``select``'s exceptional list ``xlist``, a `poll`
  registration without POLLIN/POLLOUT such as POLLPRI alone) are polled again every
  `BUSY_POLL` seconds (fds another fiber already waits on in the same direction are watched:
  the fibers queue, `Hub.wait_fds`);
* ``poll`` objects refuse two concurrent ``poll()`` calls with ``RuntimeError`` as the stdlib
  does; ``epoll`` objects allow them, as the stdlib does.

The module is also callable: ``unknot.select(*operations, timeout=None)`` is the channel
`select` of `unknot._channel` (Concurrent ML choice over channel operations), so the public name
``unknot.select`` serves both purposes whatever the import order.
"""

from __future__ import annotations

import errno as _errno
import select as _stdlib
import sys as _sys
import types as _types
from select import *  # noqa: F403 - this module mirrors the whole stdlib module
from typing import Any, Self

from greenlet import getcurrent

from . import _channel
from ._sockio import entry as _io_entry
from .lowlevel import TIMED_OUT, Fiber
from .time import _time_arg

# The stdlib's own objects, captured before unknot.patch() can replace them in the select module.
_std_select = _stdlib.select
_std_poll: Any = getattr(_stdlib, "poll", None)
_std_epoll: Any = getattr(_stdlib, "epoll", None)

#: Seconds between polls of what the hub cannot watch for a fiber (see the module docstring).
BUSY_POLL = 0.05

_INT_MAX = 2**31 - 1
_INT_MIN = -(2**31)
_POLL_READ = getattr(_stdlib, "POLLIN", 1) | getattr(_stdlib, "POLLRDNORM", 0)
_POLL_WRITE = getattr(_stdlib, "POLLOUT", 4) | getattr(_stdlib, "POLLWRNORM", 0)
_DEFAULT_POLL_MASK = (
    getattr(_stdlib, "POLLIN", 1) | getattr(_stdlib, "POLLPRI", 2) | getattr(_stdlib, "POLLOUT", 4)
)
_DEFAULT_EPOLL_MASK = (
    getattr(_stdlib, "EPOLLIN", 1)
    | getattr(_stdlib, "EPOLLPRI", 2)
    | getattr(_stdlib, "EPOLLOUT", 4)
)


def _fiber() -> Fiber | None:
    f = getcurrent()
    return f if type(f) is Fiber else None


def _fileno(obj: Any) -> int:
    """The fd of ``obj`` as select() sees it (already validated by a stdlib call)."""
    return obj if isinstance(obj, int) else int(obj.fileno())


def _sequence(seq: Any) -> list[Any] | tuple[Any, ...]:
    if type(seq) is list or type(seq) is tuple:
        return seq
    try:
        return list(seq)
    except TypeError:
        raise TypeError("arguments 1-3 must be sequences") from None


def _ms_timeout(timeout: Any, unit_ns: int) -> float | None:
    """A poll/epoll timeout (in ``unit_ns``) as seconds, None for "forever"; stdlib errors."""
    if timeout is None:
        return None
    seconds = _time_arg(timeout, unit_ns, "timeout must be an integer or None")
    ms = seconds * 1000
    if not _INT_MIN <= ms <= _INT_MAX:
        raise OverflowError("timeout is too large")
    if seconds >= 0:
        return seconds
    # epoll rounds milliseconds up: a timeout above -1 ms becomes 0 (poll's rounds away from 0)
    return 0.0 if unit_ns == 10**9 and ms > -1 else None


def _wait_loop(
    f: Fiber,
    seconds: float | None,
    poll_now: Any,
    reads: Any,
    writes: Any,
    unwatched: bool,
) -> Any:
    """Wait until ``poll_now()`` returns something true, or ``seconds`` pass (then return it)."""
    hub = f.hub
    deadline = None if seconds is None else hub.time() + seconds
    while True:
        if deadline is None:
            remaining = None
        else:
            remaining = deadline - hub.time()
            if remaining <= 0:
                return poll_now()
        try:
            if unwatched and (remaining is None or remaining > BUSY_POLL):
                hub.wait_fds(f, reads, writes, BUSY_POLL, BUSY_POLL)
            elif hub.wait_fds(f, reads, writes, remaining, BUSY_POLL) is TIMED_OUT:
                return poll_now()
        except OSError as e:
            if e.errno != _errno.EBADF:
                raise  # not about our fds: a signal handler's TimeoutError, say
            # An fd was closed while we waited (an unknot socket wakes its waiters with EBADF):
            # the stdlib call tells what the stdlib would say about it (EBADF, POLLNVAL...).
            ready = poll_now()
            if ready:
                return ready
            hub.park(f, BUSY_POLL if remaining is None else min(BUSY_POLL, remaining))
            continue
        ready = poll_now()
        if ready:
            return ready


def select(rlist: Any, wlist: Any, xlist: Any, timeout: Any = None, /) -> Any:
    """As `select.select`; in a fiber, wait cooperatively. Returns the stdlib's three lists."""
    f = _fiber()
    if f is None:
        return _std_select(rlist, wlist, xlist, timeout)
    seconds = None
    if timeout is not None:
        seconds = _time_arg(timeout, 10**9, "timeout must be a float or None")
        if seconds < 0:
            raise ValueError("timeout must be non-negative")
    rlist, wlist, xlist = _sequence(rlist), _sequence(wlist), _sequence(xlist)
    if seconds != 0:
        # A call that may wait is a cancellation point and a step of the hub's fairness rule
        # (as a socket's blocking call): a fiber looping on fds that are always ready still
        # lets the others run. A zero timeout never waits and is not counted.
        _io_entry(f.hub)
    ready = _std_select(rlist, wlist, xlist, 0)
    if ready[0] or ready[1] or ready[2] or seconds == 0:
        return ready

    def poll_now() -> Any:
        r = _std_select(rlist, wlist, xlist, 0)
        return r if r[0] or r[1] or r[2] else None

    reads = [_fileno(o) for o in rlist]
    writes = [_fileno(o) for o in wlist]
    return _wait_loop(f, seconds, poll_now, reads, writes, bool(xlist)) or ([], [], [])


if _std_poll is not None:

    class poll:
        """A cooperative `select.poll` object: ``poll()`` suspends only the calling fiber.

        ``register``, ``modify`` and ``unregister`` are the stdlib's (same arguments, same
        errors); ``poll(timeout)`` takes milliseconds (None or negative: wait forever).
        """

        __slots__ = ("_poll", "_masks", "_running")

        def __init__(self) -> None:
            self._poll = _std_poll()
            self._masks: dict[int, int] = {}
            self._running = False

        def register(self, fd: Any, eventmask: int = _DEFAULT_POLL_MASK, /) -> None:
            """Watch ``fd`` for the events in ``eventmask`` (or update its mask)."""
            self._poll.register(fd, eventmask)
            self._masks[_fileno(fd)] = eventmask

        def modify(self, fd: Any, eventmask: int, /) -> None:
            """Change the events watched for a registered ``fd``."""
            self._poll.modify(fd, eventmask)
            self._masks[_fileno(fd)] = eventmask

        def unregister(self, fd: Any, /) -> None:
            """Stop watching ``fd`` (KeyError if it was not registered)."""
            self._poll.unregister(fd)
            self._masks.pop(_fileno(fd), None)

        def poll(self, timeout: Any = None, /) -> list[tuple[int, int]]:
            """As ``select.poll().poll``: a list of ``(fd, events)``; cooperative in a fiber."""
            f = _fiber()
            if f is None:
                return self._poll.poll(timeout)
            seconds = _ms_timeout(timeout, 10**6)
            if self._running:
                raise RuntimeError("concurrent poll() invocation")
            if seconds != 0:
                _io_entry(f.hub)  # (as in select)
            ready = self._poll.poll(0)
            if ready or seconds == 0:
                return ready
            reads = [fd for fd, m in self._masks.items() if m & _POLL_READ]
            writes = [fd for fd, m in self._masks.items() if m & _POLL_WRITE]
            unwatched = any(not m & (_POLL_READ | _POLL_WRITE) for m in self._masks.values())
            self._running = True
            try:
                result: list[tuple[int, int]] = _wait_loop(
                    f, seconds, lambda: self._poll.poll(0), reads, writes, unwatched
                )
            finally:
                self._running = False
            return result


if _std_epoll is not None:

    class epoll:
        """A cooperative `select.epoll` object: ``poll()`` suspends only the calling fiber.

        Every other method is the stdlib's. In a fiber, ``poll`` waits on the hub for this
        epoll's own fd, which is readable whenever one of its registered fds has an event.
        """

        __slots__ = ("_epoll", "__weakref__")

        def __init__(self, sizehint: int = -1, flags: int = 0) -> None:
            self._epoll = _std_epoll(sizehint, flags)

        @classmethod
        def fromfd(cls, fd: int, /) -> Self:
            """An epoll object around an existing epoll fd."""
            self = cls.__new__(cls)
            self._epoll = _std_epoll.fromfd(fd)
            return self

        @property
        def closed(self) -> bool:
            """True once the epoll object is closed."""
            return bool(self._epoll.closed)

        def close(self) -> None:
            """Close the epoll fd."""
            self._epoll.close()

        def fileno(self) -> int:
            """The epoll fd."""
            return int(self._epoll.fileno())

        def register(self, fd: Any, eventmask: int = _DEFAULT_EPOLL_MASK) -> None:
            """Register ``fd`` with the events in ``eventmask``."""
            self._epoll.register(fd, eventmask)

        def modify(self, fd: Any, eventmask: int) -> None:
            """Change the events of a registered ``fd``."""
            self._epoll.modify(fd, eventmask)

        def unregister(self, fd: Any) -> None:
            """Remove ``fd`` from the epoll set."""
            self._epoll.unregister(fd)

        def poll(self, timeout: Any = None, maxevents: int = -1) -> list[tuple[int, int]]:
            """As ``select.epoll().poll``: ``timeout`` in seconds (None or negative: forever)."""
            f = _fiber()
            if f is None:
                return self._epoll.poll(timeout, maxevents)
            seconds = _ms_timeout(timeout, 10**9)
            if seconds != 0:
                _io_entry(f.hub)  # (as in select)
            ready = self._epoll.poll(0, maxevents)
            if ready or seconds == 0:
                return ready
            result: list[tuple[int, int]] = _wait_loop(
                f,
                seconds,
                lambda: self._epoll.poll(0, maxevents),
                (self._epoll.fileno(),),
                (),
                False,
            )
            return result

        def __enter__(self) -> Self:
            self._epoll.__enter__()
            return self

        def __exit__(self, *args: Any) -> None:
            self._epoll.__exit__(*args)

        def __repr__(self) -> str:
            return f"<unknot.select.epoll fd={self._epoll.fileno() if not self.closed else -1}>"


class _SelectModule(_types.ModuleType):
    """The type of `unknot.select`: the select module, callable as the channel `select`."""

    def __call__(self, *operations: Any, timeout: float | None = None) -> Any:
        return _channel.select(*operations, timeout=timeout)


_SelectModule.__call__.__doc__ = _channel.select.__doc__
_sys.modules[__name__].__class__ = _SelectModule
