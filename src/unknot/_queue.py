"""Queues between fibers: `Queue` (FIFO), `LifoQueue`, `PriorityQueue`.

Same interface as the stdlib `queue` module (``put``/``get`` with ``block`` and ``timeout``,
``*_nowait``, ``task_done``/``join``, and its `queue.Empty`/`queue.Full` exceptions), but waiting
suspends only the current fiber.

No item is lost or duplicated under cancellation: an item is handed to a waiting getter (or taken
from a waiting putter) only if that fiber can still be woken; a fiber woken with an item returns
it even if it is cancelled before it runs (the cancellation is raised at its next blocking call).
"""

from __future__ import annotations

import heapq
from collections import deque
from queue import Empty, Full
from typing import Any, Generic, TypeVar

from .lowlevel import TIMED_OUT, ParkingLot, require_fiber

T = TypeVar("T")


class Queue(Generic[T]):
    """A FIFO queue for fibers. ``maxsize <= 0`` means unbounded."""

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._init(maxsize)
        self._getters = ParkingLot()
        self._putters = ParkingLot()  # waiting putters, each with the item it puts
        self._unfinished = 0
        self._all_done = ParkingLot()

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
        after ``timeout`` seconds)."""
        if block and timeout is not None and timeout < 0 and self.maxsize > 0:
            raise ValueError("'timeout' must be a non-negative number")  # as the stdlib
        self._unfinished += 1
        # A waiting getter means the queue is empty: hand the item over directly.
        if self._getters.unpark(item) is not None:
            return
        if not self.full():
            self._put(item)
            return
        if not block:
            self._unfinished -= 1
            raise Full
        f = require_fiber()
        taken = False
        try:
            taken = self._putters.park(f, timeout, payload=item) is True
        finally:
            if not taken:  # timed out or cancelled: the put did not happen
                self._unfinished -= 1
        if not taken:
            raise Full

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return an item; if empty, wait (or raise `queue.Empty` if not ``block`` or
        after ``timeout`` seconds)."""
        if block and timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")  # as the stdlib
        if self._qsize():
            item = self._get()
            self._admit_putter()
            return item
        if not block:
            raise Empty
        f = require_fiber()
        r = self._getters.park(f, timeout)
        if r is TIMED_OUT:
            raise Empty
        return r

    def _admit_putter(self) -> None:
        """Room was made: move the longest-waiting putter's item in, if it can be woken."""
        if self._putters and not self.full():
            place = self._putters.unpark(True)
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
        if self._unfinished:
            self._all_done.park(require_fiber())

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


__all__ = ["Empty", "Full", "LifoQueue", "PriorityQueue", "Queue"]
