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

Such a loop has no shutdown hook of ours (`HubEventLoop.shutdown_asyncgens` cancels its fibers
when ``asyncio.run`` shuts it down), so the hub keeps an asyncio task on the loop while it has
fibers: the *keeper* (`_keep_fibers`, named `KEEPER_NAME`). Made when a fiber is spawned and
there is none, it waits until the hub has no fiber left, then ends: an idle hub leaves no task
behind. What cancels every task of the loop on its way out (``asyncio.run``, ``asyncio.Runner``,
pytest-asyncio, most frameworks) cancels the keeper too, and the keeper then cancels the fibers
still running and waits, the loop running, until they have unwound (their ``finally`` blocks
run), those spawned meanwhile too (`cancel_fibers`, which `HubEventLoop` shares). A loop closed
by hand, without cancelling its tasks, unwinds nothing: its fibers stay suspended (and, as
suspended greenlets, in memory with the hub and the loop); should they end nonetheless, asyncio
reports the keeper, by its name, as a task destroyed while pending. The keeper holds its hub
weakly (its fibers hold it), so that it keeps nothing alive once they are gone.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable, Container
from typing import Any

from greenlet import getcurrent

from ._fiber import Fiber, Onlooker
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


#: The name of the keeper task (see the module docs): what asyncio's "Task was destroyed but it is
#: pending!" names for a loop closed by hand with fibers still running on it.
KEEPER_NAME = "unknot: fibers still running on this loop (cancelled with its tasks)"


async def cancel_fibers(hub: Hub, abandoned: Container[Fiber] = ()) -> None:
    """Cancel every fiber still running on ``hub`` and wait (the loop running) until all have
    finished, those spawned meanwhile too; but for ``abandoned`` ones (`HubEventLoop`'s: fibers
    that ignored their cancellation until nothing could wake them)."""
    while True:
        fibers = [f for f in hub.fibers if f not in abandoned]
        if not fibers:
            return
        for f in fibers:
            f.cancel()
        await _all_finished(hub, fibers)


def _all_finished(hub: Hub, fibers: list[Fiber]) -> asyncio.Future[None]:
    """A future (of the hub's loop) resolved once every fiber in ``fibers`` has finished."""
    assert hub.loop is not None
    done: asyncio.Future[None] = hub.loop.create_future()
    remaining = set(fibers)

    def finished(f: Fiber) -> None:
        remaining.discard(f)
        if not remaining and not done.done():
            done.set_result(None)

    # (An `Onlooker`: a fiber whose error nobody else waits for is reported as it ends, while
    # the shutdown runs, not when it is collected, whenever that is.)
    watch = Onlooker(finished)
    for f in fibers:
        f.add_done_callback(watch)
    return done


async def _keep_fibers(hub_ref: weakref.ref[ForeignHub], idle: asyncio.Future[None]) -> None:
    """The keeper task of a `ForeignHub` (see the module docs): waits for ``idle``, which the hub
    resolves when its last fiber finishes; cancelled first, cancels and unwinds the fibers."""
    try:
        await idle
    except asyncio.CancelledError:
        if idle.cancelled():  # (not when the last fiber had finished already: nothing to do)
            await _unwind(hub_ref, idle)
        raise


async def _unwind(hub_ref: weakref.ref[ForeignHub], idle: asyncio.Future[None]) -> None:
    # (A frame of its own: the keeper's, which its `CancelledError`'s traceback holds, keeps no
    # reference to the hub.)
    hub = hub_ref()
    if hub is None:
        return
    try:
        await cancel_fibers(hub)
    except asyncio.CancelledError:
        if hub._idle is idle:  # cancelled again meanwhile, fibers left: a new keeper for them
            hub._idle = None
            if hub.fibers and not hub._forked:
                hub._start_keeper()
        raise


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
        #: While the hub has fibers: the future its keeper task waits on (see the module).
        self._idle: asyncio.Future[None] | None = None

    def spawn(self, *args: Any, **kwargs: Any) -> Fiber:
        """`Hub.spawn`, and a keeper task made if there is none (see the module docs)."""
        f = super().spawn(*args, **kwargs)
        if self._idle is None and not self._forked:
            self._start_keeper()
        return f

    def _start_keeper(self) -> None:
        loop = self.loop
        assert loop is not None
        idle: asyncio.Future[None] = loop.create_future()
        keeper = _keep_fibers(weakref.ref(self), idle)
        try:
            # In an empty context: the keeper keeps no context variable of the spawner's alive.
            contextvars.Context().run(loop.create_task, keeper, name=KEEPER_NAME)
        except BaseException:
            keeper.close()  # (a closed loop, say: no "never awaited" warning on top)
            raise
        self._idle = idle

    def _fiber_finished(self, f: Fiber) -> None:
        """`Hub._fiber_finished`; the last fiber ending lets the keeper task end."""
        super()._fiber_finished(f)
        idle = self._idle
        if idle is not None and not self.fibers:
            self._idle = None
            # (Unless it was cancelled: the keeper unwinds the fibers; or the loop was closed
            # by hand with fibers left over, which ended since: nothing may go on the loop.)
            if not idle.done() and not idle.get_loop().is_closed():
                idle.set_result(None)

    def _reset_after_fork(self, keep: Fiber | None) -> list[Fiber]:
        """`Hub._reset_after_fork`, and the loop closed to this hub's fibers (see the module
        docs). Its fd records go: their registrations are in the parent's selector."""
        others = super()._reset_after_fork(keep)
        self._forked = True
        self.fds = {}
        self._idle = None  # (the keeper is the parent's: not resolved here, on its loop)
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

    def _others_can_wake(self, timers: bool = True) -> bool:
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
