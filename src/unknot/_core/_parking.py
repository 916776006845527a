"""`ParkingLot`: the one fair wait queue every blocking primitive is built on (after trio's).

A fiber that must wait for something another fiber will provide parks in the lot; whoever
provides it unparks the longest-waiting fiber (FIFO, so waiting is fair), optionally handing it a
value, and may take the payload the fiber parked with (a queue putter parks with its item; a
getter that finds the queue empty takes the item straight from the putter it unparks).

Cancellation safety comes from the hub's rule that the first wake-up wins (`Hub.wake` returns
False for a fiber no longer parked): `unpark` skips a fiber that a timeout, a cancellation or
another waker already woke, so nothing handed over is lost or given twice.

How the queue is kept (it is on every hand-off's path, so it allocates nothing per wait in the
common case). Its entries are of two kinds:

- the `Fiber` itself, for a fiber parked with `park` and no payload (an `Event`, a `Lock`, a
  queue getter, a join). ``fiber._lot`` is this lot while the entry waits to be unparked, and
  None once `unpark` took it (or the fiber left);
- a `ParkedFiber` place, for a fiber parked with a payload, or queued with `add` in several
  lots at once (a `select`); ``place.queued`` says whether it still waits.

A fiber that leaves early (timeout, `Cancelled`, Ctrl-C) takes its entry out when it is at either
end of the queue, which is the usual case (one waiter; waiters timing out in the order they came).
Otherwise the entry stays behind, dead: a place is marked, and a fiber is counted in ``_stale``
(a fiber's stale entries always come before its live one, since it parks again only after it
left). Dead entries are skipped when met and compacted away once they are the majority, so a lot
where every wait times out stays small.

A lot is used from its fibers' hub thread only. That is why the hybrid locks `unknot.patch`
installs keep their own guarded queue: their waiters can be fibers of several hubs, in several
OS threads, and OS threads themselves.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from ._fiber import Fiber


class _TimedOut:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMED_OUT"


#: Returned by `Hub.park` (and `ParkingLot.park`) when the timeout expired first.
TIMED_OUT: Any = _TimedOut()


class ParkedFiber:
    """A place in a `ParkingLot`: the fiber, its payload, and whether it is still queued."""

    __slots__ = ("fiber", "payload", "queued")

    def __init__(self, fiber: Fiber, payload: Any, queued: bool = True) -> None:
        self.fiber = fiber
        self.payload = payload
        self.queued = queued

    def __repr__(self) -> str:
        return f"<ParkedFiber {self.fiber!r} payload={self.payload!r}>"


_Entry = Union["Fiber", ParkedFiber]


class ParkingLot:
    """A FIFO queue of parked fibers: `park` waits in it, `unpark` wakes the first."""

    __slots__ = ("places", "_dead", "_stale")

    #: Dead entries tolerated before the queue is compacted (when they are also the majority).
    COMPACT_AFTER = 32

    def __init__(self) -> None:
        #: The queue's entries (read-only): empty when nobody is parked, so ``if lot.places``
        #: is the cheapest test for "maybe someone waits" (entries left early may linger, so it
        #: may be true with nobody to wake; `unpark` then returns None).
        self.places: deque[_Entry] = deque()
        self._dead = 0  # dead entries in `places`
        self._stale: dict[Fiber, int] | None = None  # fiber -> its dead entries in `places`

    def __len__(self) -> int:
        """How many fibers are parked here."""
        return len(self.places) - self._dead

    def __bool__(self) -> bool:
        return len(self.places) > self._dead

    # -- waiting ---------------------------------------------------------------------------------

    def park(
        self,
        fiber: Fiber,
        timeout: float | None = None,
        *,
        payload: Any = None,
        cancellable: bool = True,
        interruptible: bool | None = None,
    ) -> Any:
        """Park ``fiber`` (the current fiber) at the back of the lot until it is unparked.

        Returns the value given to `unpark`, or `TIMED_OUT` once ``timeout`` seconds passed.
        ``payload`` is kept with the fiber for the unparker to take (`take`). A cancellable park
        is a checkpoint (`Hub.park`): it raises `Cancelled` at once in a cancelled scope.
        However the wait ends, the fiber is no longer in the lot afterwards.
        """
        if payload is not None:
            place = ParkedFiber(fiber, payload)
            self.places.append(place)
            try:
                return fiber.hub.park(fiber, timeout, cancellable, interruptible)
            finally:
                if place.queued:
                    self.discard(place)
        self.places.append(fiber)
        fiber._lot = self
        try:
            return fiber.hub.park(fiber, timeout, cancellable, interruptible)
        finally:
            if fiber._lot is not None:  # it leaves early: take its entry out
                fiber._lot = None
                self._leave(fiber)

    def add(self, fiber: Fiber, payload: Any = None) -> ParkedFiber:
        """Queue ``fiber`` without parking it: for a fiber that waits in several lots at once
        (a `select` over channels) and parks itself with `Hub.park`. `discard` the place once
        the wait is over, however it ended."""
        place = ParkedFiber(fiber, payload)
        self.places.append(place)
        return place

    def discard(self, place: ParkedFiber) -> None:
        """Take ``place`` out of the lot if it is still queued (its fiber left early)."""
        if place.queued:
            place.queued = False
            places = self.places
            if places[-1] is place:
                places.pop()
            elif places[0] is place:
                places.popleft()
            else:
                self._dead += 1
                self._compact_if_worth_it()

    def _leave(self, fiber: Fiber) -> None:
        places = self.places
        if places[-1] is fiber:  # (its last entry is always its live one)
            places.pop()
            return
        stale = self._stale
        if places[0] is fiber and not (stale and fiber in stale):
            places.popleft()
            return
        if stale is None:
            stale = self._stale = {}
        stale[fiber] = stale.get(fiber, 0) + 1
        self._dead += 1
        self._compact_if_worth_it()

    def _compact_if_worth_it(self) -> None:
        if self._dead > self.COMPACT_AFTER and self._dead * 2 > len(self.places):
            self.places = deque(self._live_entries(consume=True))
            self._dead = 0
            self._stale = None

    def _live_entries(self, consume: bool) -> Iterator[_Entry]:
        """The entries still waiting, in order; ``consume`` uses up the stale counts (the
        caller drops every dead entry)."""
        stale = self._stale if consume else dict(self._stale or ())
        for entry in list(self.places):
            if type(entry) is ParkedFiber:
                if entry.queued:
                    yield entry
            elif stale and stale.get(entry):
                stale[entry] -= 1
                if not stale[entry]:
                    del stale[entry]
            else:
                yield entry

    # -- waking ----------------------------------------------------------------------------------

    def _pop_live(self) -> _Entry | None:
        """Take the first entry still waiting out of the queue (dead ones before it too)."""
        places = self.places
        while places:
            entry = places.popleft()
            if type(entry) is ParkedFiber:
                if entry.queued:
                    entry.queued = False
                    return entry
            else:
                stale = self._stale
                if not (stale and entry in stale):
                    entry._lot = None
                    return entry
                if stale[entry] == 1:
                    del stale[entry]
                else:
                    stale[entry] -= 1
            self._dead -= 1
        return None

    def unpark(self, value: Any = True, *, with_payload: bool = False) -> Fiber | None:
        """Wake the longest-parked fiber still waiting, with ``value``; return it.

        None if no fiber could be woken. ``with_payload=True`` wakes it with ``(payload,
        value)`` instead, so that a fiber parked in several lots learns which of its places was
        taken. To take the payload as well, use `take`.
        """
        # The common case first: a fiber parked without payload, nothing dead before it.
        places = self.places
        while places:
            entry = places[0]
            if type(entry) is ParkedFiber or self._stale:
                place = self.take(value, with_payload=with_payload)
                return place.fiber if place is not None else None
            places.popleft()
            entry._lot = None
            if entry.hub.wake(entry, (None, value) if with_payload else value):
                return entry
            # woken by something else first (a timeout, a cancellation): try the next one
        return None

    def take(self, value: Any = True, *, with_payload: bool = False) -> ParkedFiber | None:
        """`unpark`, returning the woken fiber's place: its ``fiber`` and the ``payload`` it
        parked with, which is now the caller's (None if it parked without one)."""
        while True:
            entry = self._pop_live()
            if entry is None:
                return None
            if type(entry) is ParkedFiber:
                place = entry
            else:
                place = ParkedFiber(entry, None, False)
            f = place.fiber
            if f.hub.wake(f, (place.payload, value) if with_payload else value):
                return place

    def unpark_all(self, value: Any = True) -> int:
        """Wake every parked fiber with ``value``; return how many were woken."""
        places = self.places
        if not places:
            return 0
        n = 0
        if self._dead:
            entries: Any = list(self._live_entries(consume=True))
            self._dead = 0
            self._stale = None
        else:
            entries = places
        for entry in entries:  # (waking only queues fibers to run: nothing parks meanwhile)
            if type(entry) is ParkedFiber:
                entry.queued = False
                f = entry.fiber
            else:
                entry._lot = None
                f = entry
            if f.hub.wake(f, value):
                n += 1
        places.clear()
        return n

    def throw_all(self, exc: BaseException | Callable[[], BaseException]) -> int:
        """Wake every parked fiber by raising an exception in it; return how many were woken.

        ``exc`` is the exception, or a callable that makes a fresh one for each fiber."""
        entries = list(self._live_entries(consume=True))
        self.places = deque()
        self._dead = 0
        self._stale = None
        n = 0
        for entry in entries:
            if type(entry) is ParkedFiber:
                entry.queued = False
                f = entry.fiber
            else:
                entry._lot = None
                f = entry
            if f.hub.throw(f, exc if isinstance(exc, BaseException) else exc()):
                n += 1
        return n

    # -- looking ---------------------------------------------------------------------------------

    def first(self) -> ParkedFiber | None:
        """The place of the longest-parked fiber (not woken), or None."""
        for place in self:
            return place
        return None

    def __iter__(self) -> Iterator[ParkedFiber]:
        """The places of the parked fibers, longest-parked first (a place is made for a fiber
        parked without payload)."""
        for entry in self._live_entries(consume=False):
            yield entry if type(entry) is ParkedFiber else ParkedFiber(entry, None)

    def __repr__(self) -> str:
        return f"<ParkingLot parked={len(self)}>"
