"""Fiber-aware selectors: the hub as the selector of an asyncio event loop.

asyncio calls ``selector.select(timeout)`` once per loop iteration. Our select

1. shortens the timeout if fibers are ready or a fiber timer is due (and, under a `MockClock`,
   jumps virtual time instead of sleeping);
2. polls the OS;
3. wakes the fibers waiting on the fds that fired, straight from the event list: no asyncio
   Handle, no callback;
4. fires due fiber timers and runs the ready fibers;
5. returns asyncio's own events, so transports, servers and ``add_reader`` keep working.

Two backends:

* `EpollHub` (Linux default): a fiber-owned fd is registered once, edge-triggered, for both
  directions, and never touched again until it is closed. Because a fiber always tries the
  syscall before waiting, an edge that fires with nobody waiting is harmless.
* `SelectorHub`: level-triggered, interest registered only while a fiber waits, over ``poll`` or
  ``select``. The portable path (BSD, macOS, Windows' selector loop); choose it on Linux with
  ``UNKNOT_SELECTOR=poll`` or ``UNKNOT_SELECTOR=select``.

asyncio's own registrations stay level-triggered in the same kernel object.
"""

from __future__ import annotations

import math
import os
import select
import selectors
from collections.abc import Callable
from typing import Any

from ._hub import FdWait, Hub

# Where the hub's poll runs: frames of other files in its traceback are a signal handler's.
_POLLING_FILES = (__file__, selectors.__file__)
_EV_READ = selectors.EVENT_READ
_EV_WRITE = selectors.EVENT_WRITE


class _HubSelector(Hub):
    """What both backends add to a stdlib selector: the timeout rules and the post-poll work."""

    _jump_to: float | None = None
    mock_clock: Any = None
    # provided by the stdlib selector class each backend also derives from
    _fd_to_key: dict[int, selectors.SelectorKey]
    _selector: Any
    _fileobj_lookup: Callable[[Any], int]

    def _compute_timeout(self, timeout: float | None) -> float | None:
        loop = self.loop
        busy = self.ready or self.calls
        if busy or (loop is not None and loop._ready):  # type: ignore[attr-defined]
            return 0
        deadline = self.next_deadline()
        if deadline is not None:
            wait = max(0.0, deadline - self.time())
            timeout = wait if timeout is None else min(timeout, wait)
        if timeout is None:
            root = self.root
            if root is not None and not self._others_can_wake():
                grace = self._deadlock_grace()
                if grace is not None:
                    return grace
                self._report_deadlock()
                return 0
            return None
        mock = self.mock_clock
        if mock is not None and timeout > 0:
            real = mock.real_timeout(timeout)
            if mock.autojump_threshold < real:
                self._jump_to = self.time() + timeout
                real = mock.autojump_threshold
            return None if real == math.inf else real
        return timeout

    def _after_poll(self, had_events: bool) -> None:
        jump_to = self._jump_to
        if jump_to is not None:
            self._jump_to = None
            if not had_events and jump_to > self.time():
                self.mock_clock.jump(jump_to - self.time())
        if self.timers:
            self._expire_timers()
        if self.kbi_pending:
            self._deliver_keyboard_interrupt()
        if self.ready or self.calls:
            self._run_ready()

    def _deliver_keyboard_interrupt(self) -> None:
        root = self.root
        if root is None or root.done():
            raise self.take_interrupt()
        if root._parked in (1, 3):  # a wait that can take an exception
            self.throw(root, self.take_interrupt())
        # otherwise the root is about to run: it raises at its next blocking call

    def _signal_handler_raised(self, exc: BaseException) -> None:
        """The poll was interrupted by a signal whose Python handler raised ``exc``.

        Without unknot the handler would have run in the main thread's blocking call and the
        exception come out of it (``signal.alarm`` timeouts rely on that): it goes to the root
        fiber, like Ctrl-C. An exception the poll itself raised (no handler frame in its
        traceback) is re-raised: the hub cannot go on.
        """
        # The only Python code that can run inside the C poll call is a signal handler.
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename in _POLLING_FILES:
            tb = tb.tb_next
        root = self.root
        if root is None or root.done() or (tb is None and not isinstance(exc, KeyboardInterrupt)):
            raise exc
        self.interrupt = exc.with_traceback(tb)
        self.kbi_pending = True

    def _check_not_asyncio(self, fd: int, key_map: Any) -> None:
        if fd in key_map:
            raise RuntimeError(
                f"fd {fd} is watched by the asyncio loop (add_reader/add_writer or a transport); "
                "a fiber cannot wait on it at the same time"
            )

    def _refuse_fiber_fd(self, fd: int) -> None:
        """asyncio wants to watch ``fd``: allowed only if no fiber is waiting on it."""
        rec = self.fds.get(fd)
        if rec is None:
            return
        if rec.reader is not None or rec.writer is not None:
            raise RuntimeError(
                f"fd {fd} is being waited on by a fiber; asyncio cannot watch it at the same time"
            )
        del self.fds[fd]
        if rec.armed:
            self._disarm(rec)


class EpollHub(_HubSelector, selectors.EpollSelector):
    """The fast path: edge-triggered epoll, fiber fds registered once. Linux only."""

    edge_triggered = True
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
        self._hub_init(clock)

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
                # `Hub.wake` inlined (the fibers run in _after_poll below: no notify needed)
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


class SelectorHub(_HubSelector):
    """Level-triggered hub over any stdlib selector class (``poll`` or ``select``).

    A fiber's interest is registered as an ordinary selector key (data = its `FdWait`) only
    while it waits.
    """

    _base: Any = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        # Our own fiber registrations come here too: SelectSelector.modify re-registers.
        if type(data) is not FdWait:
            self._refuse_fiber_fd(self._fileobj_lookup(fileobj))
        return self._base.register(self, fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        timeout = self._compute_timeout(timeout)
        try:
            events = self._base.select(self, timeout)
        except BaseException as e:
            self._signal_handler_raised(e)
            events = []
        out = []
        for key, ev in events:
            rec = key.data
            if type(rec) is FdWait:
                self._fd_event(rec, bool(ev & _EV_READ), bool(ev & _EV_WRITE))
            else:
                out.append((key, ev))
        self._after_poll(bool(events))
        return out

    def _arm(self, rec: FdWait) -> bool:
        mask = (_EV_READ if rec.reader else 0) | (_EV_WRITE if rec.writer else 0)
        if rec.armed:
            if mask != rec.events:
                self._base.modify(self, rec.fd, mask, rec)
        else:
            self._check_not_asyncio(rec.fd, self._fd_to_key)
            self._base.register(self, rec.fd, mask, rec)
            rec.armed = True
        rec.events = mask
        return True

    def _after_wait(self, rec: FdWait) -> None:
        mask = (_EV_READ if rec.reader else 0) | (_EV_WRITE if rec.writer else 0)
        if mask == 0:
            if rec.armed:
                self._disarm(rec)
            if not rec.persistent and self.fds.get(rec.fd) is rec:
                del self.fds[rec.fd]
        elif rec.armed and mask != rec.events:
            self._base.modify(self, rec.fd, mask, rec)
            rec.events = mask

    def _disarm(self, rec: FdWait) -> None:
        rec.armed = False
        try:
            self._base.unregister(self, rec.fd)
        except (KeyError, ValueError, OSError):
            pass


class PollHub(SelectorHub, selectors.PollSelector):
    """Level-triggered hub over ``poll(2)``."""

    _base = selectors.PollSelector

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        selectors.PollSelector.__init__(self)
        self._hub_init(clock)


class SelectHub(SelectorHub, selectors.SelectSelector):
    """Level-triggered hub over ``select(2)`` (the only choice on Windows)."""

    _base = selectors.SelectSelector

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        selectors.SelectSelector.__init__(self)
        self._hub_init(clock)


BACKENDS: dict[str, type[_HubSelector]] = {"poll": PollHub, "select": SelectHub}
if hasattr(select, "epoll"):
    BACKENDS["epoll"] = EpollHub


def make_hub_selector(clock: Callable[[], float] | None = None) -> _HubSelector:
    """A hub selector: ``$UNKNOT_SELECTOR`` (epoll, poll, select) or the best available."""
    name = os.environ.get("UNKNOT_SELECTOR", "").strip().lower()
    if not name:
        name = "epoll" if "epoll" in BACKENDS else "poll" if hasattr(select, "poll") else "select"
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"UNKNOT_SELECTOR={name!r} is not available here; choose one of {sorted(BACKENDS)}"
        ) from None
    return cls(clock)  # type: ignore[call-arg]
