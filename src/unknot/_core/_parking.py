"""`ParkingLot`: the one fair wait queue every blocking primitive is built on (after trio's).

A fiber that must wait for something another fiber will provide parks in the lot; whoever
provides it unparks the longest-waiting fiber (FIFO, so waiting is fair), optionally handing it a
value, and may take the payload the fiber parked with (a queue putter parks with its item; a
getter that finds the queue empty takes the item straight from the putter it unparks).

Cancellation safety comes from the hub's rule that the first wake-up wins (`Hub.wake` returns
False for a fiber no longer parked): `unpark` skips a fiber that a timeout, a cancellation or
another waker already woke, so nothing handed over is lost or given twice.

How the queue is kept (it is on every hand-off's path, so the common cases allocate nothing:
one waiter, or a fiber parked without payload). ``head`` is the longest-parked fiber's entry, or
None when nobody is parked: it is never a dead entry, so ``lot.head is None`` is an exact and the
cheapest test for "nobody waits". The younger entries wait in ``rest``, a deque made when a
second fiber parks. An entry is of one of two kinds:

- the `Fiber` itself, for a fiber parked with `park` and no payload (an `Event`, a `Lock`, a
  queue getter, a join). ``fiber._lot`` is this lot while the entry waits to be unparked, and
  None once `unpark` took it (or the fiber left);
- a `ParkedFiber` place, for a fiber parked with a payload, or queued with `add` in several
  lots at once (a `select`); ``place.queued`` says whether it still waits.

A fiber that leaves early (timeout, `Cancelled`, Ctrl-C) takes its entry out when it is the head
or the last one, the usual cases (one waiter; waiters timing out in the order they came).
Otherwise its entry stays behind in ``rest``, dead: a place is marked, and a fiber is counted in
``_stale`` (a fiber's stale entries always come before its live one, since it parks again only
after it left). Dead entries are skipped when met and compacted away once they are the
majority, so a lot where every wait times out stays small.

A lot is meant to be used from its fibers' hub thread: nothing in it is guarded by a lock. (An
unpark from another thread still wakes the fiber, since `Hub.wake` interrupts the hub's poll;
but it races with the hub's own use of the lot.) That is why the hybrid locks `unknot.patch`
installs keep their own guarded queue: their waiters can be fibers of several hubs, in several
OS threads, and OS threads themselves.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, SupportsFloat, Union, final

if TYPE_CHECKING:
    from ._fiber import Fiber


class _TimedOut:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMED_OUT"


#: Returned by `Hub.park` (and `ParkingLot.park`) when the timeout expired first.
TIMED_OUT: Any = _TimedOut()


@final
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


def _detach(entry: _Entry) -> Fiber:
    """Mark an entry taken out of its lot as no longer waiting there; return its fiber."""
    # INLINED-ORIGINAL(detach): copied into ParkingLot.unpark and ParkingLot.unpark_all
    if type(entry) is ParkedFiber:
        entry.queued = False
        return entry.fiber
    entry._lot = None
    return entry


class ParkingLot:
    """A FIFO queue of parked fibers: `park` waits in it, `unpark` wakes the first."""

    __slots__ = ("head", "rest", "_dead", "_stale")

    #: Dead entries tolerated before the queue is compacted (when they are also the majority).
    COMPACT_AFTER: ClassVar[int] = 32

    def __init__(self) -> None:
        #: The longest-parked fiber's entry, None when nobody is parked (read-only; test it
        #: against None: the cheapest test for "nobody waits").
        self.head: _Entry | None = None
        self.rest: deque[_Entry] | None = None  # the younger entries, made for a second waiter
        self._dead = 0  # dead entries in `rest`
        self._stale: dict[Fiber, int] | None = None  # fiber -> its dead entries in `rest`

    def __len__(self) -> int:
        """How many fibers are parked here."""
        if self.head is None:
            return 0
        rest = self.rest
        return 1 + (len(rest) - self._dead if rest else 0)

    def __bool__(self) -> bool:
        return self.head is not None

    # -- waiting ---------------------------------------------------------------------------------

    def park(
        self,
        fiber: Fiber,
        timeout: SupportsFloat | None = None,
        *,
        payload: Any = None,
        cancellable: bool = True,
        interruptible: bool | None = None,
    ) -> Any:
        """Park ``fiber`` (the current fiber) at the back of the lot until it is unparked.

        Returns the value given to `unpark`, or `TIMED_OUT` once ``timeout`` seconds (any real
        number; `ValueError` for NaN: see `Hub.park`) passed.
        ``payload`` is kept with the fiber for the unparker to take (`take`). A cancellable park
        is a checkpoint (`Hub.park`): it raises `Cancelled` at once in a cancelled scope.
        However the wait ends, the fiber is no longer in the lot afterwards.
        """
        if payload is not None:
            place = self.add(fiber, payload)
            try:
                return fiber.hub.park(fiber, timeout, cancellable, interruptible)
            finally:
                self.discard(place)
        if self.head is None:
            self.head = fiber
        else:
            rest = self.rest
            if rest is None:
                rest = self.rest = deque()
            rest.append(fiber)
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
        # (Not object.__new__ with the fields set inline, which saved the __init__ call when
        # interpreted: a compiled class refuses it, and constructs without a Python call.)
        place = ParkedFiber(fiber, payload)
        if self.head is None:
            self.head = place
        else:
            rest = self.rest
            if rest is None:
                rest = self.rest = deque()
            rest.append(place)
        return place

    def discard(self, place: ParkedFiber) -> None:
        """Take ``place`` out of the lot if it is still queued (its fiber left early)."""
        if place.queued:
            place.queued = False
            self._leave(place)

    def _leave(self, entry: _Entry) -> None:
        """Take a live entry out (its fiber leaves early; a place is already marked)."""
        if self.head is entry:
            self._advance()
            return
        rest = self.rest
        assert rest
        if rest[-1] is entry:  # (a fiber's last entry is always its live one)
            rest.pop()
            return
        if type(entry) is not ParkedFiber:
            stale = self._stale
            if stale is None:
                stale = self._stale = {}
            stale[entry] = stale.get(entry, 0) + 1
        self._dead += 1
        if self._dead > self.COMPACT_AFTER and self._dead * 2 > len(rest):
            self.rest = deque(self._live_rest(consume=True))
            self._dead = 0
            self._stale = None

    def _advance(self) -> None:
        """The head was taken: the next live entry becomes the head (dead ones are dropped)."""
        rest = self.rest
        stale = self._stale
        while rest:
            entry = rest.popleft()
            if type(entry) is ParkedFiber:
                if entry.queued:
                    self.head = entry
                    return
            elif not (stale and entry in stale):
                self.head = entry
                return
            elif stale[entry] == 1:
                del stale[entry]
            else:
                stale[entry] -= 1
            self._dead -= 1
        self.head = None

    def _live_rest(self, consume: bool) -> Iterator[_Entry]:
        """The live entries of `rest`, in order; ``consume`` uses up the stale counts (the
        caller drops every dead entry)."""
        stale = self._stale if consume else dict(self._stale or ())
        for entry in list(self.rest or ()):
            if type(entry) is ParkedFiber:
                if entry.queued:
                    yield entry
            elif stale and stale.get(entry):
                stale[entry] -= 1
                if not stale[entry]:
                    del stale[entry]
            else:
                yield entry

    def _take_all(self) -> list[_Entry]:
        """Every live entry, in order, leaving the lot empty."""
        head = self.head
        if head is None:
            return []
        entries = [head]
        if self.rest:
            entries.extend(self._live_rest(consume=True))
            self.rest.clear()
            self._dead = 0
            self._stale = None
        self.head = None
        return entries

    # -- waking ----------------------------------------------------------------------------------

    # unpark and the one-waiter case of unpark_all do `_detach`'s work inline (INLINED-COPY
    # markers): they run at every hand-off, where a call costs more than the work.

    def unpark(self, value: Any = True, *, with_payload: bool = False) -> Fiber | None:
        """Wake the longest-parked fiber still waiting, with ``value``; return it.

        None if no fiber could be woken. ``with_payload=True`` wakes it with ``(payload,
        value)`` instead, so that a fiber parked in several lots learns which of its places was
        taken. To take the payload as well, use `take`.
        """
        entry = self.head
        while entry is not None:
            if self.rest:
                self._advance()
            else:
                self.head = None
            # INLINED-COPY-BEGIN(detach): _detach, and the entry's payload
            if type(entry) is ParkedFiber:
                entry.queued = False
                f = entry.fiber
                payload = entry.payload
            else:
                entry._lot = None
                f = entry
                payload = None
            # INLINED-COPY-END(detach)
            if f.hub.wake(f, (payload, value) if with_payload else value):
                return f
            # woken by something else first (a timeout, a cancellation): try the next one
            entry = self.head
        return None

    def take(self, value: Any = True, *, with_payload: bool = False) -> ParkedFiber | None:
        """`unpark`, returning the woken fiber's place: its ``fiber`` and the ``payload`` it
        parked with, which is now the caller's (None if it parked without one)."""
        entry = self.head
        while entry is not None:
            if self.rest:
                self._advance()
            else:
                self.head = None
            f = _detach(entry)
            place = entry if type(entry) is ParkedFiber else ParkedFiber(f, None, False)
            if f.hub.wake(f, (place.payload, value) if with_payload else value):
                return place
            entry = self.head
        return None

    def unpark_all(self, value: Any = True) -> int:
        """Wake every parked fiber with ``value``; return how many were woken."""
        head = self.head
        if head is None:
            return 0
        if not self.rest:  # one waiter: the common case
            self.head = None
            # INLINED-COPY-BEGIN(detach): _detach
            if type(head) is ParkedFiber:
                head.queued = False
                f = head.fiber
            else:
                head._lot = None
                f = head
            # INLINED-COPY-END(detach)
            return 1 if f.hub.wake(f, value) else 0
        n = 0
        for entry in self._take_all():  # (waking only queues fibers to run: nothing parks)
            f = _detach(entry)
            if f.hub.wake(f, value):
                n += 1
        return n

    def throw_all(self, exc: BaseException | Callable[[], BaseException]) -> int:
        """Wake every parked fiber by raising an exception in it; return how many were woken.

        ``exc`` is the exception, or a callable that makes a fresh one for each fiber."""
        n = 0
        for entry in self._take_all():
            f = _detach(entry)
            if f.hub.throw(f, exc if isinstance(exc, BaseException) else exc()):
                n += 1
        return n

    # -- looking ---------------------------------------------------------------------------------

    def first(self) -> ParkedFiber | None:
        """The place of the longest-parked fiber (not woken), or None."""
        head = self.head
        if head is None or type(head) is ParkedFiber:
            return head
        return ParkedFiber(head, None)

    def __iter__(self) -> Iterator[ParkedFiber]:
        """The places of the parked fibers, longest-parked first (a place is made for a fiber
        parked without payload)."""
        head = self.head
        if head is None:
            return
        for entry in [head, *self._live_rest(consume=False)]:
            yield entry if type(entry) is ParkedFiber else ParkedFiber(entry, None)

    def __repr__(self) -> str:
        return f"<ParkingLot parked={len(self)}>"
