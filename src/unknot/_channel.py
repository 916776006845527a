"""`Channel`: an unbuffered rendezvous between fibers, and `select` over channel operations.

As in Guile Fibers and Concurrent ML: ``send`` returns only once a receiver has taken the value,
so a completed send *is* a delivery. ``select(*operations)`` waits until one of several
operations can complete and completes exactly that one::

    op, value = unknot.select(requests.recv_op(), replies.send_op(result), timeout=5)
    if op.channel is requests:
        ...

No value is lost or delivered twice under cancellation or timeouts: a value passes between two
fibers only when the waiting side can still be woken (see `Hub.wake`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from .lowlevel import TIMED_OUT, Fiber, require_fiber

T = TypeVar("T")


class ChannelClosed(Exception):
    """The channel was closed: no more values can be sent, and none is left to receive."""


class _Token:
    """One operation of one waiting fiber, queued on a channel."""

    __slots__ = ("fiber", "op")

    def __init__(self, fiber: Fiber, op: Operation) -> None:
        self.fiber = fiber
        self.op = op


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

    def _enqueue(self, tok: _Token) -> None:
        ch = self.channel
        if self.kind == "send":
            ch._senders[tok] = self.value
        else:
            ch._receivers[tok] = None

    def _dequeue(self, tok: _Token) -> None:
        ch = self.channel
        (ch._senders if self.kind == "send" else ch._receivers).pop(tok, None)

    def __repr__(self) -> str:
        return f"<Operation {self.kind} on {self.channel!r}>"


class Channel(Generic[T]):
    """An unbuffered channel: ``send`` waits for a receiver, ``recv`` waits for a sender."""

    def __init__(self) -> None:
        self._senders: dict[_Token, Any] = {}
        self._receivers: dict[_Token, None] = {}
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
            toks = list(waiting)
            waiting.clear()
            for tok in toks:
                tok.fiber.hub.throw(tok.fiber, ChannelClosed("channel closed"))

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
        receivers = self._receivers
        while receivers:
            tok = next(iter(receivers))
            del receivers[tok]
            if tok.fiber.hub.wake(tok.fiber, (tok.op, value)):
                return True
        return False

    def _try_recv(self) -> tuple[bool, Any]:
        senders = self._senders
        while senders:
            tok = next(iter(senders))
            value = senders.pop(tok)
            if tok.fiber.hub.wake(tok.fiber, (tok.op, None)):
                return True, value
        if self._closed:
            raise ChannelClosed("channel closed")
        return False, None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Channel {state} senders={len(self._senders)} receivers={len(self._receivers)}>"


def _perform(ops: list[Operation], timeout: float | None) -> tuple[Operation, Any]:
    f = require_fiber()
    for op in ops:
        done, value = op._try()
        if done:
            return op, value
    if timeout is not None and timeout <= 0:
        raise TimeoutError("no operation was ready")
    toks = [_Token(f, op) for op in ops]
    for tok in toks:
        tok.op._enqueue(tok)
    try:
        r = f.hub.park(f, timeout)
    finally:
        for tok in toks:
            tok.op._dequeue(tok)
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
