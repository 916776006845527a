"""`EpollHub`: the fast path. Edge-triggered epoll, each fiber fd registered once. Linux only.

A fiber-owned fd is registered once, edge-triggered, for both directions, and never touched again
until it is closed. Because a fiber always tries the syscall before waiting, an edge that fires
with nobody waiting is harmless. Waiting fibers are woken straight from the event list.
"""

from __future__ import annotations

import select
import selectors
from collections.abc import Callable
from typing import Any

from ._hub import FdWait
from ._selector_hub import POLLING_FILES, HubSelector

POLLING_FILES.add(__file__)
_EV_READ = selectors.EVENT_READ
_EV_WRITE = selectors.EVENT_WRITE


class EpollHub(HubSelector, selectors.EpollSelector):
    """The fast path: edge-triggered epoll, fiber fds registered once. Linux only."""

    _ET_MASK = (
        select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLPRI | select.EPOLLET
    )
    _READ = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP | select.EPOLLPRI
    _WRITE = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP
    # After these no further edge is promised for data already queued (a FIN behind the last
    # data; a read stopping at TCP's urgent mark): readiness hints are turned off for the fd.
    _HANGUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR | select.EPOLLPRI

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        selectors.EpollSelector.__init__(self)
        self._hub_init(clock, edge_triggered=True)

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        self._refuse_fiber_fd(self._fileobj_lookup(fileobj))
        return selectors.EpollSelector.register(self, fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        timeout = self._compute_timeout(timeout)
        poll_timeout = -1.0 if timeout is None else timeout
        max_ev = len(self._fd_to_key) + len(self.fds) or 1
        try:
            events = self._selector.poll(poll_timeout, max_ev)
        except InterruptedError:
            events = []
        except BaseException as e:
            self._signal_handler_raised(e)
            events = []
        out = []
        fds = self.fds
        fd_to_key = self._fd_to_key
        ready = self.ready.append
        hangup, read, write = self._HANGUP, self._READ, self._WRITE
        for fd, ev in events:
            rec = fds.get(fd)
            if rec is not None:
                # INLINED-COPY-BEGIN(fd-wake): Hub._fd_event with Hub.wake inlined (reader
                # first, then writer), plus the readiness hints. No _notify: the fibers run in
                # _after_poll below. ``_wake_value`` is not set: it is None whenever a fiber
                # parks (whoever resumes a fiber clears it).
                if ev & hangup:
                    rec.hints = False  # no edge will follow: always try the syscall from now on
                if ev & read:
                    rec.readable = True
                    f = rec.reader
                    if f is not None and f._parked:
                        f._parked = 0
                        ready(f)
                if ev & write:
                    rec.writable = True
                    f = rec.writer
                    if f is not None and f._parked:
                        f._parked = 0
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
                self._check_not_asyncio(fd, self._fd_to_key)
                try:
                    epoll.register(fd, self._ET_MASK)
                except FileExistsError:
                    epoll.modify(fd, self._ET_MASK)
                except PermissionError:
                    return False  # regular files cannot be polled; they are always ready
                rec.armed = True
                self.fds[fd] = rec  # (re)claim the fd number for this record
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

    def _drop(self, rec: FdWait) -> None:
        if self.fds.get(rec.fd) is rec:
            del self.fds[rec.fd]

