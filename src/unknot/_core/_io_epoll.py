"""`EpollHub`: the fast path. Edge-triggered epoll, each fiber fd registered once. Linux only.

A fiber-owned fd is registered once, edge-triggered, for both directions, and never touched again
until it is closed. Because a fiber always tries the syscall before waiting, an edge that fires
with nobody waiting is harmless. Waiting fibers are woken straight from the event list.

asyncio's own registrations go to a stdlib `selectors.EpollSelector` over the same epoll object,
which the hub holds and forwards to (rather than deriving from it, so that the hub can be a
compiled class: see docs/compiled.md).
"""

from __future__ import annotations

import errno
import select
import selectors
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

from ._hub import _NBIO, FdWait, _unpark
from ._native import mypyc_attr
from ._selector_hub import POLLING_FILES, HubSelector

POLLING_FILES.add(__file__)
# The stdlib's selector class, taken when unknot is imported, before any `unknot.patch()`: the
# patch puts its cooperative `unknot.selectors.EpollSelector` (over a cooperative
# `unknot.select.epoll`) in the stdlib modules, whose wait would only add a Python layer under
# every loop iteration here (and a frame the blocking detector cannot tell from a blocked hub).
_STD_EPOLL_SELECTOR: Final = selectors.EpollSelector
_EV_READ: Final = selectors.EVENT_READ
_EV_WRITE: Final = selectors.EVENT_WRITE
_ET_MASK: Final = (
    select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLPRI | select.EPOLLET
)
_READ: Final = (
    select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP | select.EPOLLPRI
)
_WRITE: Final = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP
# What EPOLL_CTL_MOD says for a registration whose file is gone (`EpollHub._registration_lost`).
_LOST: Final = (errno.ENOENT, errno.EBADF, errno.EPERM)
# After these no further edge is promised for data already queued (a FIN behind the last
# data; a read stopping at TCP's urgent mark): readiness hints are turned off for the fd.
_HANGUP: Final = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR | select.EPOLLPRI
# select.epoll.poll's twin in the compiled build, `unknot._nbio.epoll_wait` (src/unknot/_nbio.c):
# the same (fd, events) tuples, made without Py_BuildValue. None in the pure build. (`_NBIO`: the
# hub module's, `unknot._compiled.nbio()`.)
_EPOLL_WAIT: Final = None if _NBIO is None else _NBIO.epoll_wait
# The compiled build's way to run signal handlers right after the wait, as the pure build's next
# bytecode does (src/unknot/_nbio.c, check_signals): None in the pure build.
_CHECK_SIGNALS: Final = None if _NBIO is None else _NBIO.check_signals


@mypyc_attr(allow_interpreted_subclasses=True)
class EpollHub(HubSelector):
    """The fast path: edge-triggered epoll, fiber fds registered once. Linux only."""

    #: asyncio's registrations (a stdlib selector over the same epoll object as the fibers').
    _sel: selectors.EpollSelector
    #: The epoll object, and the stdlib selector's table of asyncio's fds.
    _selector: select.epoll
    _fd_to_key: dict[int, selectors.SelectorKey]

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._sel = _STD_EPOLL_SELECTOR()
        self._selector = self._sel._selector  # type: ignore[attr-defined]
        self._fd_to_key = self._sel._fd_to_key  # type: ignore[attr-defined]
        self._hub_init(clock, edge_triggered=True)

    # The selector asyncio sees: its calls go to the stdlib selector.

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        """`selectors.BaseSelector.register`, refused for an fd a fiber waits on."""
        self._refuse_fiber_fd(self._sel._fileobj_lookup(fileobj))  # type: ignore[attr-defined]
        return self._sel.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        """`selectors.BaseSelector.unregister`."""
        return self._sel.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        """`selectors.BaseSelector.modify`."""
        return self._sel.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        """`selectors.BaseSelector.get_key`."""
        return self._sel.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        """`selectors.BaseSelector.get_map`."""
        return self._sel.get_map()

    def fileno(self) -> int:
        """The epoll object's fd."""
        return self._sel.fileno()

    def close(self) -> None:
        """`selectors.BaseSelector.close`: closes the epoll object (the loop's close). Fibers
        still queued on an fd will not run on this hub again: their queues go."""
        self._drop_queues()
        self._sel.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        timeout = self._compute_timeout(timeout)
        poll_timeout = -1.0 if timeout is None else timeout
        max_ev = len(self._fd_to_key) + len(self.fds) or 1
        # (The fds typed Any: compiled, an int would be unboxed, then boxed again for the
        # lookup, a new object; epoll_wait's are the table's own keys, found by identity. The
        # cast keeps mypy from narrowing ``events`` to a union, which mypyc unpacks generically.)
        events: list[tuple[Any, int]]
        try:
            if _EPOLL_WAIT is None:
                events = cast("list[tuple[Any, int]]", self._selector.poll(poll_timeout, max_ev))
            else:
                # (fileno() raises ValueError on a closed epoll object, as poll() does.)
                events = _EPOLL_WAIT(self._selector.fileno(), poll_timeout, max_ev)
        except InterruptedError:
            events = []
        except BaseException as e:
            self._signal_handler_raised(e)
            events = []
        if _CHECK_SIGNALS is not None:
            # A signal that did not interrupt the wait (sent to another thread; Ctrl-C made by
            # `_thread.interrupt_main`) has its handler run here, before any fiber is woken, so
            # that the root fiber takes Ctrl-C in the wait it is parked in. (The pure build runs
            # it at the first bytecode after the wait, inside the ``try`` above.) The events are
            # kept: an edge-triggered event is not reported twice.
            try:
                _CHECK_SIGNALS()
            except BaseException as e:
                self._signal_handler_raised(e)
        out = []
        fds = self.fds
        fd_to_key = self._fd_to_key
        ready = self.ready.append
        for fd, ev in events:
            rec = fds.get(fd)
            if rec is not None:
                # INLINED-COPY-BEGIN(fd-wake): Hub._fd_event with Hub.wake inlined (reader
                # first, then writer), plus the readiness hints. No _notify: the fibers run in
                # _after_poll below. ``_wake_value`` is not set: it is None whenever a fiber
                # parks (a resumed fiber clears its own).
                if ev & _HANGUP:
                    rec.hints = False  # no edge will follow: always try the syscall from now on
                if ev & _READ:
                    rec.readable = True
                    f = rec.reader
                    if f is not None and _unpark(f):
                        ready(f)
                if ev & _WRITE:
                    rec.writable = True
                    f = rec.writer
                    if f is not None and _unpark(f):
                        ready(f)
                # INLINED-COPY-END(fd-wake)
                continue
            key = fd_to_key.get(fd)
            if key is not None:
                mask = 0
                if ev & ~select.EPOLLIN:
                    mask |= _EV_WRITE
                if ev & ~select.EPOLLOUT:
                    mask |= _EV_READ
                out.append((key, mask & key.events))
        self._after_poll(bool(events))
        return out

    def _arm(self, rec: FdWait) -> bool:
        epoll = self._selector
        fd = rec.fd
        if rec.persistent:
            if not rec.armed:
                if fd < 0:  # (forgotten: `Hub._forget_if_stale` with the socket still open)
                    raise OSError(errno.EBADF, "the file descriptor was closed")
                self._check_not_asyncio(fd, self._fd_to_key)
                try:
                    epoll.register(fd, _ET_MASK)
                except FileExistsError:
                    epoll.modify(fd, _ET_MASK)
                except PermissionError:
                    return False  # regular files cannot be polled; they are always ready
                rec.armed = True
                self.fds[rec.fdobj] = rec  # (re)claim the fd number for this record
            return True
        mask = (select.EPOLLIN if rec.reader else 0) | (select.EPOLLOUT if rec.writer else 0)
        if rec.armed:
            if mask != rec.events:
                epoll.modify(fd, mask)
        else:
            self._check_not_asyncio(fd, self._fd_to_key)
            try:
                epoll.register(fd, mask)
            except PermissionError:
                self._drop(rec)
                return False
            rec.armed = True
        rec.events = mask
        return True

    def _after_wait(self, rec: FdWait) -> None:
        mask = (select.EPOLLIN if rec.reader else 0) | (select.EPOLLOUT if rec.writer else 0)
        if mask == 0:
            if rec.armed:
                self._disarm(rec)
            self._drop(rec)
        elif rec.armed and mask != rec.events:
            self._selector.modify(rec.fd, mask)
            rec.events = mask

    def _disarm(self, rec: FdWait) -> None:
        rec.armed = False
        try:
            self._selector.unregister(rec.fd)
        except (OSError, ValueError):
            pass  # already closed: the kernel dropped it

    def _registration_lost(self, rec: FdWait) -> bool:
        """See `Hub._registration_lost`: one ``EPOLL_CTL_MOD`` with the record's own mask.

        epoll keys a registration by the file and the number: once the socket's file is closed
        the kernel drops it, and MOD on the number, whatever file has it now, fails with ENOENT
        (EBADF: nothing has the number; EPERM: a regular file has it). For a live registration
        it changes nothing but re-arms the edge (an event comes if the fd is ready: a spurious
        wake-up at most). (asyncio's registrations share the epoll object, but none can be under
        the number: registering it drops an idle record, and one with waiters refuses it.)"""
        try:
            self._selector.modify(rec.fd, _ET_MASK)
        except OSError as e:
            if e.errno in _LOST:
                return True
            raise
        return False

    def _reset_backend_after_fork(self) -> None:
        """See `HubSelector._reset_backend_after_fork`: a new epoll object. The child's copy
        of the parent's is closed, which leaves the parent's interest set as it is (an
        ``epoll_ctl`` on the copy would change it)."""
        old = self._selector
        self._sel = selectors.EpollSelector()
        self._selector = self._sel._selector  # type: ignore[attr-defined]
        self._fd_to_key = self._sel._fd_to_key  # type: ignore[attr-defined]
        old.close()
        self._reset_fd_records_after_fork()

    def _close_after_fork(self) -> None:
        self._selector.close()
