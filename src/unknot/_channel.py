"""`Channel`: an unbuffered rendezvous between fibers, and `select` over channel operations.

As in Guile Fibers and Concurrent ML: ``send`` returns only once a receiver has taken the value,
so a completed send *is* a delivery. ``select(*operations)`` waits until one of several
operations can complete and completes exactly that one::

    op, value = unknot.select(requests.recv_op(), replies.send_op(result), timeout=5)
    if op.channel is requests:
        ...

No value is lost or delivered twice under cancellation or timeouts: a value passes between two
fibers only when the waiting side can still be woken (see `unknot.lowlevel.ParkingLot`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from .lowlevel import (
    TIMED_OUT,
    Fiber,
    ParkedFiber,
    ParkingLot,
    checkpoint_if_cancelled,
    require_fiber,
)

T = TypeVar("T")


class ChannelClosed(Exception):
    """The channel was closed: no more values can be sent, and none is left to receive."""


def _closed_error() -> ChannelClosed:
    return ChannelClosed("channel closed")


class Operation:
    """A channel operation not yet performed: pass it to `select`.

    ``channel`` and ``kind`` (``"send"`` or ``"recv"``) tell which one `select` completed.
    """

    __slots__ = ("channel", "kind", "value")

    def __init__(self, channel: Channel[Any], kind: str, value: Any = None) -> None:
        self.channel = channel
        self.kind = kind
        self.value = value

    def _try(self) -> tuple[bool, Any]:
        ch = self.channel
        if self.kind == "send":
            return ch._try_send(self.value), None
        return ch._try_recv()

    def _enqueue(self, f: Fiber) -> ParkedFiber:
        """Queue fiber ``f`` for this operation on its channel (the payload is the operation)."""
        ch = self.channel
        return (ch._senders if self.kind == "send" else ch._receivers).add(f, self)

    def _dequeue(self, place: ParkedFiber) -> None:
        ch = self.channel
        (ch._senders if self.kind == "send" else ch._receivers).discard(place)

    def __repr__(self) -> str:
        return f"<Operation {self.kind} on {self.channel!r}>"


class Channel(Generic[T]):
    """An unbuffered channel: ``send`` waits for a receiver, ``recv`` waits for a sender."""

    def __init__(self) -> None:
        # Fibers waiting to send and to receive; each place's payload is its `Operation` (a
        # send operation carries the value).
        self._senders = ParkingLot()
        self._receivers = ParkingLot()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def send(self, value: T, timeout: float | None = None) -> None:
        """Give ``value`` to a receiver, waiting for one. `TimeoutError` after ``timeout`` s."""
        _perform([self.send_op(value)], timeout)

    def recv(self, timeout: float | None = None) -> T:
        """Take a value from a sender, waiting for one. `TimeoutError` after ``timeout`` s.

        Raises `ChannelClosed` once the channel is closed.
        """
        return _perform([self.recv_op()], timeout)[1]

    def send_op(self, value: T) -> Operation:
        """The operation "send ``value``", for `select`."""
        return Operation(self, "send", value)

    def recv_op(self) -> Operation:
        """The operation "receive a value", for `select`."""
        return Operation(self, "recv")

    def close(self) -> None:
        """Close the channel: waiting and future senders and receivers get `ChannelClosed`."""
        if self._closed:
            return
        self._closed = True
        for waiting in (self._senders, self._receivers):
            waiting.throw_all(_closed_error)  # (a fresh exception for each fiber)

    def __iter__(self) -> Iterator[T]:
        """Receive values until the channel is closed."""
        while True:
            try:
                yield self.recv()
            except ChannelClosed:
                return

    # Matching ----------------------------------------------------------------------------------

    def _try_send(self, value: Any) -> bool:
        if self._closed:
            raise ChannelClosed("send on a closed channel")
        # the receiver wakes with (its operation, value)
        return self._receivers.unpark(value, with_payload=True) is not None

    def _try_recv(self) -> tuple[bool, Any]:
        place = self._senders.take(None, with_payload=True)  # wakes with (its operation, None)
        if place is not None:
            return True, place.payload.value
        if self._closed:
            raise ChannelClosed("channel closed")
        return False, None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Channel {state} senders={len(self._senders)} receivers={len(self._receivers)}>"


def _perform(ops: list[Operation], timeout: float | None) -> tuple[Operation, Any]:
    f = require_fiber()
    if timeout is not None and timeout != timeout:
        raise ValueError("timeout must not be NaN")
    if timeout is None or timeout > 0:
        checkpoint_if_cancelled()  # a call that can block is a cancellation point
    for op in ops:
        done, value = op._try()
        if done:
            return op, value
    if timeout is not None and timeout <= 0:
        raise TimeoutError("no operation was ready")
    places = [(op, op._enqueue(f)) for op in ops]
    try:
        r = f.hub.park(f, timeout)
    finally:
        for op, place in places:
            op._dequeue(place)
    if r is TIMED_OUT:
        raise TimeoutError(f"no operation completed within {timeout} s")
    return r


def select(*operations: Operation, timeout: float | None = None) -> tuple[Operation, Any]:
    """Perform exactly one of ``operations``, waiting until one can complete.

    Returns ``(operation, value)``: ``value`` is the received value for a receive, None for a
    send. When several are ready at once one is chosen at random, so none starves. Raises
    `TimeoutError` if none completes within ``timeout`` seconds (``timeout=0`` polls), and
    `ChannelClosed` if an operation's channel is closed.
    """
    if not operations:
        raise ValueError("select() needs at least one operation")
    for op in operations:
        if not isinstance(op, Operation):
            raise TypeError(f"select() takes channel operations (send_op/recv_op), got {op!r}")
    ops = list(operations)
    random.shuffle(ops)
    return _perform(ops, timeout)
