"""Fibers on an event loop that is not unknot's (stock asyncio, uvloop): the slow, portable path.

There is no selector to hook into, so the hub is driven with the loop's public API: ready fibers
run from a ``call_soon`` callback, timers are ``call_at`` handles, and a waiting fiber's fd is
watched with ``add_reader``/``add_writer`` only while it waits. Correct, but every wait costs
loop callbacks and ``epoll_ctl`` calls; the design brief measured it at about a quarter of the
fast path's throughput.

In a child forked while the loop ran (`unknot._core._fork`), the loop cannot be used: it is the
parent's, as asyncio leaves it (its epoll instance and self-pipe shared with the parent, the
parent's tasks and callbacks in it; asyncio does not support a loop running across a fork).
So that the child neither runs the parent's asyncio work nor changes the parent's epoll
interest set, the fiber that forked may go on computing there, but not wait: whatever would
hand it to the loop (a timer, an fd wait, scheduling a fiber) raises `RuntimeError`
(`_FORKED_MESSAGE`). The child ends when that fiber does (`_fork._exit_child`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from greenlet import getcurrent

from ._fiber import Fiber
from ._hub import FdWait, Hub

#: The hub of each foreign loop, by the loop's ``id``, held weakly. The hub holds its loop, so
#: a mapping that held the hub as long as its loop (a weak-key dictionary, loop -> hub) would
#: keep both for ever: every stock asyncio loop that ever ran a fiber (one per test under
#: pytest-asyncio, say) would stay in memory with its hub. Instead, what needs the hub holds
#: it: its fibers (``Fiber.hub``), the loop's handles for its callbacks, timers and fd watches,
#: the sockets' fd records, its instruments. Once nothing does, the hub goes, and the loop with
#: it once its user drops it; a later fiber on the same loop gets a new hub, as the first.
#: (While the hub lives, so does its loop: no other loop can have that ``id``.)
_hubs: weakref.WeakValueDictionary[int, ForeignHub] = weakref.WeakValueDictionary()


_FORKED_MESSAGE = (
    "this process was forked while fibers ran on an asyncio loop that is not unknot's: that "
    "loop is the parent's (asyncio does not support it in a forked child), so a fiber cannot "
    "wait here; end the child with os._exit() or exec(), or run the fibers with unknot.run() "
    "(whose loop is reset in a forked child)"
)


class ForeignHub(Hub):
    """A hub driven by callbacks on a foreign asyncio loop."""

    @classmethod
    def attach(cls, loop: asyncio.AbstractEventLoop) -> ForeignHub:
        """The hub for ``loop`` (created on first use, from the greenlet running the loop)."""
        hub = _hubs.get(id(loop))
        if hub is None or hub.loop is not loop:
            hub = cls(loop)
            _hubs[id(loop)] = hub
        return hub

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._hub_init(loop.time)
        self.loop = loop
        self.hub_greenlet = getcurrent()
        self._scheduled = False
        #: In a child forked while the loop ran: nothing may reach the loop (see the module).
        self._forked = False

    def _reset_after_fork(self, keep: Fiber | None) -> list[Fiber]:
        """`Hub._reset_after_fork`, and the loop closed to this hub's fibers (see the module
        docs). Its fd records go: their registrations are in the parent's selector."""
        others = super()._reset_after_fork(keep)
        self._forked = True
        self.fds = {}
        return others

    def _refuse_in_forked_child(self) -> None:
        raise RuntimeError(_FORKED_MESSAGE)

    def _notify(self) -> None:
        if self._forked:
            self._refuse_in_forked_child()
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
        if self._forked:
            self._refuse_in_forked_child()
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
        if self._forked:
            self._refuse_in_forked_child()
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
