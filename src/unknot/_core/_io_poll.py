"""Level-triggered hubs over ``poll(2)`` and ``select(2)``: the portable path.

Interest is registered only while a fiber waits. This is the path for BSD, macOS and Windows'
selector loop; choose it on Linux with ``UNKNOT_SELECTOR=poll`` or ``UNKNOT_SELECTOR=select``.
"""

from __future__ import annotations

import selectors
from collections.abc import Callable
from typing import Any

from ._hub import FdWait
from ._selector_hub import POLLING_FILES, HubSelector

POLLING_FILES.add(__file__)
_EV_READ = selectors.EVENT_READ
_EV_WRITE = selectors.EVENT_WRITE


class SelectorHub(HubSelector):
    """Level-triggered hub over any stdlib selector class (``poll`` or ``select``).

    A fiber's interest is registered as an ordinary selector key (data = its `FdWait`) only
    while it waits.
    """

    _base: Any = None
    # provided by the stdlib selector class each subclass also derives from
    _fd_to_key: dict[int, selectors.SelectorKey]
    _fileobj_lookup: Callable[[Any], int]

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
            if not rec.persistent:
                self._drop(rec)
        elif rec.armed and mask != rec.events:
            self._base.modify(self, rec.fd, mask, rec)
            rec.events = mask

    def _disarm(self, rec: FdWait) -> None:
        rec.armed = False
        try:
            self._base.unregister(self, rec.fd)
        except (KeyError, ValueError, OSError):
            pass

    def close(self) -> None:
        """The stdlib selector's ``close`` (the loop's close). Fibers still queued on an fd will
        not run on this hub again: their queues go (as `EpollHub.close`)."""
        self._drop_queues()
        self._base.close(self)

    def _reset_backend_after_fork(self) -> None:
        """See `HubSelector._reset_backend_after_fork`. poll and select keep no kernel object
        (the parent's registrations are in this process's memory only): the stdlib selector's
        state starts afresh."""
        self._base.__init__(self)
        self._reset_fd_records_after_fork()


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
