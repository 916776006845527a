"""`ParkingLot`: the one fair wait queue every blocking primitive is built on (after trio's).

A fiber that must wait for something another fiber will provide parks in the lot; whoever
provides it unparks the longest-waiting fiber (FIFO, so waiting is fair), optionally handing it a
value, and may take the payload the fiber parked with (a queue putter parks with its item; a
getter that finds the queue empty takes the item straight from the putter it unparks).

Cancellation safety comes from the hub's rule that the first wake-up wins (`Hub.wake` returns
False for a fiber no longer parked): `unpark` skips a fiber that a timeout, a cancellation or
another waker already woke, so nothing handed over is lost or given twice. A fiber that leaves the
lot early (timeout, `Cancelled`, Ctrl-C) marks its place dead; dead places are skipped and
compacted away once they are the majority, so a lot where every wait times out stays small.

A lot is used from its fibers' hub thread only. That is why the hybrid locks `unknot.patch`
installs keep their own guarded queue: their waiters can be fibers of several hubs, in several
OS threads, and OS threads themselves.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

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

    def __init__(self, fiber: Fiber, payload: Any) -> None:
        self.fiber = fiber
        self.payload = payload
        self.queued = True

    def __repr__(self) -> str:
        return f"<ParkedFiber {self.fiber!r} payload={self.payload!r}>"


class ParkingLot:
    """A FIFO queue of parked fibers: `park` waits in it, `unpark` wakes the first."""

    __slots__ = ("_queue", "_dead", "places")

    #: Dead places tolerated before the queue is compacted (when they are also the majority).
    COMPACT_AFTER: ClassVar[int] = 32

    def __init__(self) -> None:
        self._queue: deque[ParkedFiber] = deque()
        self._dead = 0
        #: The queue of places (read-only): empty when nobody is parked, so ``if lot.places``
        #: is the cheapest test for "maybe someone waits" (places left early are dropped lazily,
        #: so it may be true with nobody to wake; `unpark` then returns None).
        self.places = self._queue

    def __len__(self) -> int:
        """How many fibers are parked here."""
        return len(self._queue) - self._dead

    def __bool__(self) -> bool:
        return len(self._queue) > self._dead

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
        ``payload`` is kept with the fiber for the unparker to take. A cancellable park is a
        checkpoint (`Hub.park`): it raises `Cancelled` at once in a cancelled scope. However the
        wait ends, the fiber is no longer in the lot afterwards.
        """
        # (Not object.__new__ with the fields set inline, which saved the __init__ call when
        # interpreted: a compiled class refuses it, and constructs without a Python call.)
        place = ParkedFiber(fiber, payload)
        self._queue.append(place)
        try:
            return fiber.hub.park(fiber, timeout, cancellable, interruptible)
        finally:
            if place.queued:
                self.discard(place)

    def add(self, fiber: Fiber, payload: Any = None) -> ParkedFiber:
        """Queue ``fiber`` without parking it: for a fiber that waits in several lots at once
        (a `select` over channels) and parks itself with `Hub.park`. `discard` the place once
        the wait is over, however it ended."""
        place = ParkedFiber(fiber, payload)
        self._queue.append(place)
        return place

    def discard(self, place: ParkedFiber) -> None:
        """Take ``place`` out of the lot if it is still queued (its fiber left early)."""
        if place.queued:
            place.queued = False
            self._dead += 1
            if self._dead > self.COMPACT_AFTER and self._dead * 2 > len(self._queue):
                self._queue = self.places = deque(p for p in self._queue if p.queued)
                self._dead = 0

    def unpark(self, value: Any = True, *, with_payload: bool = False) -> ParkedFiber | None:
        """Wake the longest-parked fiber still waiting, with ``value``; return its place.

        None if no fiber could be woken. The place's ``payload`` is the unparker's to take.
        ``with_payload=True`` wakes it with ``(payload, value)`` instead, so that a fiber parked
        in several lots learns which of its places was taken.
        """
        queue = self._queue
        while queue:
            place = queue.popleft()
            if not place.queued:
                self._dead -= 1
                continue
            place.queued = False
            f = place.fiber
            if f.hub.wake(f, (place.payload, value) if with_payload else value):
                return place
            # woken by something else first (a timeout, a cancellation): try the next one
        return None

    def unpark_all(self, value: Any = True) -> int:
        """Wake every parked fiber with ``value``; return how many were woken."""
        queue = self._queue
        if not queue:
            return 0
        n = 0
        for place in queue:  # (waking only queues fibers to run: nothing parks meanwhile)
            if place.queued:
                place.queued = False
                f = place.fiber
                if f.hub.wake(f, value):
                    n += 1
        queue.clear()
        self._dead = 0
        return n

    def throw_all(self, exc: BaseException) -> int:
        """Wake every parked fiber by raising ``exc`` in it; return how many were woken."""
        queue = self._queue
        self._queue = self.places = deque()
        self._dead = 0
        n = 0
        for place in queue:
            if place.queued:
                place.queued = False
                f = place.fiber
                if f.hub.throw(f, exc):
                    n += 1
        return n

    def first(self) -> ParkedFiber | None:
        """The place of the longest-parked fiber (not woken), or None."""
        for place in self._queue:
            if place.queued:
                return place
        return None

    def __iter__(self) -> Iterator[ParkedFiber]:
        """The places of the parked fibers, longest-parked first."""
        return (p for p in list(self._queue) if p.queued)

    def __repr__(self) -> str:
        return f"<ParkingLot parked={len(self)}>"
