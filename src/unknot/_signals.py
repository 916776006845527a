"""`open_signal_receiver`: deliver OS signals to a fiber (trio's ``open_signal_receiver``).

The handlers are asyncio's (``loop.add_signal_handler`` on the hub's loop): the signal wakes the
loop through its self-pipe, and the handler, run by the loop, queues the signal number and wakes
a fiber waiting in the receiver.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import weakref
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
        #: An ordered set of the signals received and not yet taken (each signal once), each
        #: with the tick of its latest delivery (`_Installed.tick`).
        self._pending: dict[int, int] = {}
        self._waiters = ParkingLot()
        self._closed = False

    def _deliver(self, signum: int, tick: int = 0) -> None:
        """Called by the loop for every signal received (``tick``: see `_Installed`)."""
        if not self._closed:
            self._pending[signum] = tick
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

    def _close(self) -> dict[int, int]:
        """Stop receiving; return the signals received and never taken (with their ticks)."""
        self._closed = True
        self._waiters.unpark_all()
        pending = dict(self._pending)
        self._pending.clear()
        return pending

    def __repr__(self) -> str:
        names = ", ".join(signal.Signals(s).name for s in self.signals)
        return f"<SignalReceiver {names} pending={len(self._pending)}>"


class _Installed:
    """The receivers open for one signal on one loop, whose handler (`dispatch`) delivers the
    signal to each of them, and the handlers to put back when the last one closes.

    ``tick`` counts the deliveries (a signal, or a hand-over by a closing receiver); each
    receiver records the tick at which it opened, so that a receiver closing with the signal
    untaken hands it over to the receivers that did not get it (opened after it came) only.
    ``shared`` is the tick of the latest delivery that a Python handler installed over the
    loop's (``signal.signal`` while receivers are open) got as well: not to be raised again.
    """

    __slots__ = (
        "receivers",
        "python_handler",
        "asyncio_handler",
        "tick",
        "loop_python_handler",
        "shared",
    )

    def __init__(self, python_handler: Any, asyncio_handler: tuple[Any, Any] | None) -> None:
        self.receivers: dict[SignalReceiver, int] = {}  # open receiver -> tick when opened
        self.python_handler = python_handler
        self.asyncio_handler = asyncio_handler
        self.tick = 0
        #: The Python handler the loop installed with `dispatch` (asyncio's no-op one).
        self.loop_python_handler: Any = None
        self.shared = -1

    def install(self, loop: Any, signum: int) -> None:
        """Make `dispatch` the loop's handler for ``signum`` (may raise)."""
        loop.add_signal_handler(signum, self.dispatch, signum)
        self.loop_python_handler = signal.getsignal(signum)

    def in_force(self, loop: Any, signum: int) -> bool:
        """Whether `dispatch` is still the loop's handler for ``signum``."""
        current = _previous_asyncio_handler(loop, signum)
        return current is not None and current[0] == self.dispatch

    def adopt_replacement(self, loop: Any, signum: int) -> bool:
        """If user code installed a handler for ``signum`` over ours since (the loop's, or a
        Python one), make it the one to put back at the end (the user's latest word): whether
        it did."""
        python_handler = signal.getsignal(signum)
        if self.in_force(loop, signum):
            if python_handler is self.loop_python_handler:
                return False
            self.asyncio_handler = None  # a Python handler over the loop's
        else:  # the loop's replaced (or removed: then the Python handler left is the one)
            self.asyncio_handler = _previous_asyncio_handler(loop, signum)
        self.python_handler = python_handler
        return True

    def dispatch(self, signum: int) -> None:
        """The loop's handler for the signal: deliver it to every open receiver."""
        self.tick += 1
        if signal.getsignal(signum) is not self.loop_python_handler:
            self.shared = self.tick  # a Python handler installed over the loop's ran for it
        for receiver in list(self.receivers):
            receiver._deliver(signum, self.tick)

    def hand_over(self, signum: int, tick: int) -> None:
        """A closing receiver never took ``signum``, delivered at ``tick``: give it to the open
        receivers that opened after that (the others got it then)."""
        late = [r for r, opened in self.receivers.items() if opened >= tick]
        if late:
            self.tick += 1
            if tick == self.shared:
                self.shared = self.tick
            for receiver in late:
                receiver._deliver(signum, self.tick)


#: Per loop, per signal: the receivers open (several blocks may be open at once, in fibers of
#: the main thread's hub, and exit in any order).
_installed: weakref.WeakKeyDictionary[Any, dict[int, _Installed]] = weakref.WeakKeyDictionary()


def _previous_asyncio_handler(loop: Any, signum: int) -> tuple[Any, tuple[Any, ...]] | None:
    """The callback and arguments asyncio's loop has for ``signum``, if any (asyncio keeps them
    in a private dict of Handles: read defensively)."""
    handle = getattr(loop, "_signal_handlers", {}).get(signum)
    callback = getattr(handle, "_callback", None)
    if callback is None:
        return None
    return callback, tuple(getattr(handle, "_args", ()) or ())


def _register(loop: Any, per_signal: dict[int, _Installed], signum: int, r: SignalReceiver) -> None:
    """Open ``r`` for ``signum``: the first receiver installs the loop's handler."""
    installed = per_signal.get(signum)
    if installed is None:
        installed = _Installed(signal.getsignal(signum), _previous_asyncio_handler(loop, signum))
        installed.install(loop, signum)  # (may raise: not kept)
        per_signal[signum] = installed
    elif installed.adopt_replacement(loop, signum):  # replaced meanwhile: taken back
        installed.install(loop, signum)
    installed.receivers[r] = installed.tick


def _unregister(
    loop: Any,
    per_signal: dict[int, _Installed],
    signum: int,
    r: SignalReceiver,
    untaken: int | None,
) -> bool:
    """Close ``r`` for ``signum``; the last receiver puts the handlers in place before back.
    Whether ``signum``, received and never taken, must be raised again."""
    installed = per_signal.get(signum)
    if installed is None or installed.receivers.pop(r, None) is None:
        return False
    if installed.receivers:  # others still open: they keep the loop's handler
        if untaken is not None:
            installed.hand_over(signum, untaken)
        return False
    del per_signal[signum]
    installed.adopt_replacement(loop, signum)
    if installed.in_force(loop, signum):  # (else the loop's handler is user code's: kept)
        loop.remove_signal_handler(signum)
        if installed.asyncio_handler is not None:
            callback, args = installed.asyncio_handler
            loop.add_signal_handler(signum, callback, *args)
        elif installed.python_handler is not None:
            signal.signal(signum, installed.python_handler)
    return untaken is not None and untaken != installed.shared


@contextlib.contextmanager
def open_signal_receiver(*signals: int) -> Iterator[SignalReceiver]:
    """A with-block during which ``signals`` are delivered to fibers instead of their handlers::

        with unknot.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as received:
            for signum in received:
                ...

    Call it in a fiber of the main thread (Python runs signal handlers only there):
    `RuntimeError` otherwise. Several blocks may be open for one signal at once (nested, or in
    several fibers, exiting in any order): each signal is delivered to every open receiver. The
    handlers in place before the first block (Python ones, or the loop's) are put back when the
    last one exits, and then signals received but never taken from its iterator are raised
    again (``signal.raise_signal``) so that they are not lost. A block that exits while others
    stay open hands the signals it never took to those opened after they came (the others got
    them too).

    A handler that user code installs for one of the signals while blocks are open takes the
    signal over, and stays in force when the last block exits (the handler from before the
    first is then not put back over it; trio's puts it back): with ``loop.add_signal_handler``
    the receivers no longer get the signal; with ``signal.signal`` they still do, as the new
    handler does (a signal it got is not raised again at the exit). A block opened after that
    takes the signal back for all the open blocks, and the last to exit puts that handler back.
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
    per_signal = _installed.setdefault(loop, {})
    registered: list[int] = []
    try:
        for signum in signums:
            if signum not in registered:
                _register(loop, per_signal, signum, receiver)
                registered.append(signum)
        yield receiver
    finally:
        untaken = receiver._close()
        again = {
            signum
            for signum in reversed(registered)
            if _unregister(loop, per_signal, signum, receiver, untaken.get(signum))
        }
        for signum in untaken:
            if signum in again:
                signal.raise_signal(signum)
