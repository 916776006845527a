"""Fibers on an event loop that is not unknot's (stock asyncio, uvloop): the slow, portable path.

There is no selector to hook into, so the hub is driven with the loop's public API: ready fibers
run from a ``call_soon`` callback, timers are ``call_at`` handles, and a waiting fiber's fd is
watched with ``add_reader``/``add_writer`` only while it waits. Correct, but every wait costs
loop callbacks and ``epoll_ctl`` calls; the design brief measured it at about a quarter of the
fast path's throughput.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from greenlet import getcurrent

from ._hub import FdWait, Hub

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ForeignHub] = (
    weakref.WeakKeyDictionary()
)


class ForeignHub(Hub):
    """A hub driven by callbacks on a foreign asyncio loop."""

    @classmethod
    def attach(cls, loop: asyncio.AbstractEventLoop) -> ForeignHub:
        """The hub for ``loop`` (created on first use, from the greenlet running the loop)."""
        hub = _hubs.get(loop)
        if hub is None:
            hub = cls(loop)
            _hubs[loop] = hub
        return hub

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._hub_init(loop.time)
        self.loop = loop
        self.hub_greenlet = getcurrent()
        self._scheduled = False

    def _notify(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            assert self.loop is not None
            self.loop.call_soon(self._drive)

    def _drive(self) -> None:
        self._scheduled = False
        self.thread.unknot_pulse = True  # type: ignore[attr-defined]  # (see _selector_hub)
        self._run_ready()
        if self.ready:
            self._notify()

    # -- timers: one loop TimerHandle each ------------------------------------------------------

    def add_timer(self, deadline: float, fn: Callable[[Any], Any], arg: Any) -> list[Any]:
        # `ValueError` for NaN, as `TimerQueue.add_timer`: the loop's timer heap would break as
        # ours would (every comparison with NaN is false), and asyncio does not check.
        if deadline != deadline:
            raise ValueError("a timer's deadline must not be NaN")
        entry: list[Any] = [deadline, 0, fn, arg, None]
        assert self.loop is not None
        entry[4] = self.loop.call_at(deadline, self._fire, entry)
        return entry

    def cancel_timer(self, entry: list[Any]) -> None:
        if entry[2] is not None:
            entry[2] = entry[3] = None
            entry[4].cancel()

    @staticmethod
    def _fire(entry: list[Any]) -> None:
        fn = entry[2]
        if fn is not None:
            arg = entry[3]
            entry[2] = entry[3] = None
            fn(arg)

    def next_deadline(self) -> float | None:
        return None

    def _others_can_wake(self) -> bool:
        return True  # the loop is not ours: assume it knows what it is doing

    # -- fds: add_reader/add_writer while a fiber waits ----------------------------------------

    def _arm(self, rec: FdWait) -> bool:
        loop = self.loop
        assert loop is not None
        if rec.reader is not None and not rec.events & 1:
            loop.add_reader(rec.fd, self._fd_event, rec, True, False)
            rec.events |= 1
        if rec.writer is not None and not rec.events & 2:
            loop.add_writer(rec.fd, self._fd_event, rec, False, True)
            rec.events |= 2
        rec.armed = True
        return True

    def _after_wait(self, rec: FdWait) -> None:
        loop = self.loop
        assert loop is not None
        if rec.reader is None and rec.events & 1:
            loop.remove_reader(rec.fd)
            rec.events &= ~1
        if rec.writer is None and rec.events & 2:
            loop.remove_writer(rec.fd)
            rec.events &= ~2
        if not rec.events:
            rec.armed = False
            if not rec.persistent:
                self._drop(rec)

    def _disarm(self, rec: FdWait) -> None:
        loop = self.loop
        assert loop is not None
        if rec.events & 1:
            loop.remove_reader(rec.fd)
        if rec.events & 2:
            loop.remove_writer(rec.fd)
        rec.events = 0
        rec.armed = False
