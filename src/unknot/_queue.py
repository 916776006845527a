"""Queues between fibers: `Queue` (FIFO), `LifoQueue`, `PriorityQueue`.

Same interface as the stdlib `queue` module (``put``/``get`` with ``block`` and ``timeout``,
``*_nowait``, ``task_done``/``join``, and its `queue.Empty`/`queue.Full` exceptions), with
Python 3.13's ``shutdown()`` and `ShutDown` on every version, but waiting suspends only the
current fiber. ``for item in q`` gets items until the queue is shut down and empty.

Every call that can block (``put``, ``get``, ``join``; not ``*_nowait`` nor ``block=False``) is
a cancellation point, as in trio: in a cancelled scope it raises `unknot.Cancelled` even when it
would not have had to wait (and then it has put or taken nothing).

No item is lost or duplicated under cancellation: an item is handed to a waiting getter (or taken
from a waiting putter) only if that fiber can still be woken; a fiber woken with an item returns
it even if it is cancelled before it runs (the cancellation is raised at its next blocking call).
"""

from __future__ import annotations

import heapq
import sys
from collections import deque
from collections.abc import Iterator
from queue import Empty, Full
from typing import Any, Generic, TypeVar

from greenlet import getcurrent

from .lowlevel import (
    TIMED_OUT,
    Fiber,
    ParkingLot,
    checkpoint_if_cancelled,
    current_time,
    require_fiber,
)

if sys.version_info >= (3, 13):
    from queue import ShutDown
else:

    class ShutDown(Exception):
        """Raised by `put` and `get` on a queue that was shut down (`queue.ShutDown` on 3.13+)."""


T = TypeVar("T")

#: The storage hooks a subclass may override (as the stdlib's `queue.Queue` allows).
_HOOKS = ("_init", "_put", "_get")
#: Those of `Queue`, `LifoQueue` and `PriorityQueue`, which only store (see `Queue._hooked`).
_PLAIN_HOOKS: set[Any] = set()


class _HandOff:
    """What a getter of a queue with its own storage hooks is woken with by `Queue.put`: the
    item, filled in through ``_put`` and ``_get`` once the getter is known to take it."""

    __slots__ = ("item",)

    def __init__(self) -> None:
        self.item: Any = _NONE


_NONE: Any = object()


class Queue(Generic[T]):
    """A FIFO queue for fibers. ``maxsize`` None or ``<= 0`` means unbounded."""

    #: Whether the class has storage hooks of its own (not those of `Queue`, `LifoQueue` and
    #: `PriorityQueue`, which only store): `put` then hands an item to a waiting getter
    #: through ``_put`` and ``_get``, as the stdlib's queue always does. Decided once per
    #: class, so the plain queues hand items over directly.
    _hooked: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._hooked = any(getattr(cls, name) not in _PLAIN_HOOKS for name in _HOOKS)

    def __init__(self, maxsize: int | None = 0) -> None:
        self.maxsize = 0 if maxsize is None else maxsize
        self._init(self.maxsize)
        self._getters = ParkingLot()
        self._putters = ParkingLot()  # waiting putters, each with the item it puts
        self._unfinished = 0
        self._all_done = ParkingLot()
        #: True once `shutdown` was called (as `queue.Queue.is_shutdown` on 3.13).
        self.is_shutdown = False

    # Storage hooks (as in the stdlib): overridden by LifoQueue and PriorityQueue.
    def _init(self, maxsize: int) -> None:
        self._items: Any = deque()

    def _qsize(self) -> int:
        return len(self._items)

    def _put(self, item: T) -> None:
        self._items.append(item)

    def _get(self) -> T:
        return self._items.popleft()

    # Public API ------------------------------------------------------------------------------

    def qsize(self) -> int:
        """Number of items in the queue."""
        return self._qsize()

    def empty(self) -> bool:
        """True if the queue holds no items."""
        return not self._qsize()

    def full(self) -> bool:
        """True if a bounded queue holds ``maxsize`` items."""
        return 0 < self.maxsize <= self._qsize()

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item``; if the queue is full, wait (or raise `queue.Full` if not ``block`` or
        after ``timeout`` seconds). `ShutDown` once the queue is shut down, also for a putter
        that was waiting then (its item is not put)."""
        if block:
            f = getcurrent()
            if type(f) is Fiber and f.hub.ncancel:
                checkpoint_if_cancelled()
            if timeout is not None and timeout < 0 and self.maxsize > 0:
                raise ValueError("'timeout' must be a non-negative number")  # as the stdlib
        if self.is_shutdown:
            raise ShutDown
        self._unfinished += 1
        # A waiting getter means the queue is empty: hand the item over directly.
        if self._getters.head is not None:
            if not self._hooked:
                if self._getters.unpark(item) is not None:
                    return
            else:
                self._hand_over(item)
                return
        if not self.full():
            self._put(item)
            return
        if not block:
            self._unfinished -= 1
            raise Full
        taken = False
        try:
            f = require_fiber()  # (NotInFiberError: the item was not put, nor counted)
            taken = self._putters.park(f, timeout, payload=item) is True
        finally:
            if not taken:  # timed out, cancelled or shut down: the put did not happen
                self._unfinished -= 1
                if not self._unfinished:  # (its item was the last thing join waited for)
                    self._all_done.unpark_all()
        if not taken:
            raise Full

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return an item; if empty, wait (or raise `queue.Empty` if not ``block`` or
        after ``timeout`` seconds). `ShutDown` once the queue is shut down and empty, also for
        a getter that was waiting then."""
        if block:
            f = getcurrent()
            if type(f) is Fiber and f.hub.ncancel:
                checkpoint_if_cancelled()
            if timeout is not None and timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")  # as the stdlib
        if self._qsize():
            item = self._get()
            self._admit_putter()
            return item
        if self.is_shutdown:
            raise ShutDown
        if not block:
            raise Empty
        f = require_fiber()
        if self._hooked:
            return self._wait_hand_over(f, timeout)
        r = self._getters.park(f, timeout)
        if r is TIMED_OUT:
            raise Empty
        return r

    def _hand_over(self, item: T) -> None:
        """`put` on a queue with its own storage hooks, with a getter waiting (so the queue is
        empty): the item goes through ``_put`` and ``_get`` (as in the stdlib), and what
        ``_get`` returns to the longest-waiting getter that can still be woken, or stays
        stored if none can."""
        try:
            self._put(item)
        except BaseException:
            self._unfinished -= 1  # (nothing was put)
            raise
        box = _HandOff()
        if self._getters.unpark(box) is not None:
            box.item = self._get()  # (the getter runs only once this fiber blocks)

    def _wait_hand_over(self, f: Fiber, timeout: float | None) -> T:
        """`get` waiting on an empty queue with its own storage hooks: woken by `put` with a
        `_HandOff`, which holds the item (`_hand_over`)."""
        deadline = None if timeout is None else current_time() + timeout
        while True:
            r = self._getters.park(f, timeout)
            if r is TIMED_OUT:
                raise Empty
            if r.item is not _NONE:
                item: T = r.item
                return item
            # The put's _get raised after this getter was woken: look again.
            try:
                return self.get(block=False)
            except Empty:
                pass
            if deadline is not None:
                timeout = max(deadline - current_time(), 0.0)

    def _admit_putter(self) -> None:
        """Room was made: move the longest-waiting putter's item in, if it can be woken."""
        if self._putters.head is not None and not self.full():
            place = self._putters.take(True)
            if place is not None:
                self._put(place.payload)

    def put_nowait(self, item: T) -> None:
        """``put(item, block=False)``."""
        self.put(item, block=False)

    def get_nowait(self) -> T:
        """``get(block=False)``."""
        return self.get(block=False)

    def task_done(self) -> None:
        """Mark one item taken with `get` as processed (for `join`)."""
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if not self._unfinished:
            self._all_done.unpark_all()

    def join(self) -> None:
        """Wait until every item put has been marked with `task_done`."""
        checkpoint_if_cancelled()
        if self._unfinished:
            self._all_done.park(require_fiber())

    def shutdown(self, immediate: bool = False) -> None:
        """Shut the queue down, as Python 3.13's `queue.Queue.shutdown`.

        From now on `put` raises `ShutDown`, and so does `get` once the queue is empty; waiting
        putters are woken with `ShutDown` (their items are not put), and so are waiting getters
        (a getter waits only on an empty queue). ``immediate=True`` also removes the queued
        items at once, counting each as done for `join` (which returns once nothing is left
        unfinished), so that every `get` raises from now on. Calling it again does no harm.
        """
        self.is_shutdown = True
        if immediate:
            while self._qsize():
                self._get()
                if self._unfinished > 0:
                    self._unfinished -= 1
            if not self._unfinished:
                self._all_done.unpark_all()
        for lot in (self._getters, self._putters):
            lot.throw_all(ShutDown)  # (a fresh exception for each fiber)

    def __iter__(self) -> Iterator[T]:
        """Get items (waiting for each) until the queue is shut down and empty."""
        while True:
            try:
                item = self.get()
            except ShutDown:
                return
            yield item

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} size={self._qsize()} maxsize={self.maxsize} "
            f"getters={len(self._getters)} putters={len(self._putters)}>"
        )


class LifoQueue(Queue[T]):
    """A last-in, first-out queue."""

    def _init(self, maxsize: int) -> None:
        self._items = []

    def _get(self) -> T:
        return self._items.pop()


class PriorityQueue(Queue[T]):
    """A queue returning the smallest item first (items are typically ``(priority, data)``)."""

    def _init(self, maxsize: int) -> None:
        self._items = []

    def _put(self, item: T) -> None:
        heapq.heappush(self._items, item)

    def _get(self) -> T:
        return heapq.heappop(self._items)


_PLAIN_HOOKS.update(
    getattr(cls, name) for cls in (Queue, LifoQueue, PriorityQueue) for name in _HOOKS
)
LifoQueue._hooked = PriorityQueue._hooked = False  # (set before their hooks were known)

__all__ = ["Empty", "Full", "LifoQueue", "PriorityQueue", "Queue", "ShutDown"]
