"""`open_signal_receiver`: deliver OS signals to a fiber (trio's ``open_signal_receiver``).

The handlers are asyncio's (``loop.add_signal_handler`` on the hub's loop): the signal wakes the
loop through its self-pipe, and the handler, run by the loop, queues the signal number and wakes
a fiber waiting in the receiver.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from .lowlevel import Hub, ParkingLot, require_fiber


class SignalReceiver:
    """The iterator `open_signal_receiver` yields: ``for signum in receiver`` waits for the
    next signal (a blocking call) and yields its number. It ends when the with-block exits.

    A signal that arrives again before the receiver took it is delivered once.
    """

    def __init__(self, signals: tuple[int, ...]) -> None:
        self.signals = signals
        self._pending: dict[int, None] = {}  # an ordered set: each signal once
        self._waiters = ParkingLot()
        self._closed = False

    def _deliver(self, signum: int) -> None:
        """Called by the loop for every signal received."""
        if not self._closed:
            self._pending[signum] = None
            self._waiters.unpark()

    def __iter__(self) -> SignalReceiver:
        return self

    def __next__(self) -> int:
        while not self._pending:
            if self._closed:
                raise StopIteration
            self._waiters.park(require_fiber())
        signum = next(iter(self._pending))
        del self._pending[signum]
        return signum

    def _close(self) -> list[int]:
        """Stop receiving; return the signals received and never taken."""
        self._closed = True
        self._waiters.unpark_all()
        pending = list(self._pending)
        self._pending.clear()
        return pending

    def __repr__(self) -> str:
        names = ", ".join(signal.Signals(s).name for s in self.signals)
        return f"<SignalReceiver {names} pending={len(self._pending)}>"


def _previous_asyncio_handler(loop: Any, signum: int) -> tuple[Any, tuple[Any, ...]] | None:
    """The callback and arguments asyncio's loop has for ``signum``, if any (asyncio keeps them
    in a private dict of Handles: read defensively)."""
    handle = getattr(loop, "_signal_handlers", {}).get(signum)
    callback = getattr(handle, "_callback", None)
    if callback is None:
        return None
    return callback, tuple(getattr(handle, "_args", ()) or ())


@contextlib.contextmanager
def open_signal_receiver(*signals: int) -> Iterator[SignalReceiver]:
    """A with-block during which ``signals`` are delivered to fibers instead of their handlers::

        with unknot.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as received:
            for signum in received:
                ...

    Call it in a fiber of the main thread (Python runs signal handlers only there):
    `RuntimeError` otherwise. The handlers in place before the block (Python ones, or another
    receiver's, or the loop's) are put back on exit, and then signals received but never taken
    from the iterator are raised again (``signal.raise_signal``) so that they are not lost.
    """
    if not signals:
        raise TypeError("open_signal_receiver() needs at least one signal")
    signums = tuple(signal.Signals(s).value for s in signals)
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "open_signal_receiver() works only in the main thread: Python runs signal handlers "
            "there (start the hub with unknot.run in the main thread)"
        )
    hub: Hub = require_fiber().hub
    loop = hub.loop
    assert loop is not None
    receiver = SignalReceiver(signums)
    saved: list[tuple[int, Any, tuple[Any, Any] | None]] = []
    try:
        for signum in signums:
            before = (signum, signal.getsignal(signum), _previous_asyncio_handler(loop, signum))
            loop.add_signal_handler(signum, receiver._deliver, signum)
            saved.append(before)
        yield receiver
    finally:
        unclaimed = receiver._close()
        for signum, python_handler, asyncio_handler in reversed(saved):
            loop.remove_signal_handler(signum)
            if asyncio_handler is not None:
                callback, args = asyncio_handler
                loop.add_signal_handler(signum, callback, *args)
            elif python_handler is not None:
                signal.signal(signum, python_handler)
        for signum in unclaimed:
            signal.raise_signal(signum)
