"""How Ctrl-C (and an exception raised by a Python signal handler) reaches the root fiber.

The journey of one Ctrl-C:

1. `install_sigint` (called by `unknot.run` in the main thread) replaces the default SIGINT
   handler. If the root fiber itself is running (its function, not its done callbacks after it
   returned), the handler raises `KeyboardInterrupt` at once, as without unknot. Otherwise it
   sets ``hub.interrupt_pending`` and wakes the loop.
2. A signal that arrives while the hub sleeps in the OS poll runs its Python handler inside the
   poll call; an exception it raises comes out of the poll. `signal_handler_raised` turns it into
   a pending interrupt for the root fiber (``hub.interrupt`` holds the exception). A signal that
   does not interrupt the poll (delivered to another thread, or to this one just before the
   poll's system call began) still ends it: while the loop runs in the main thread its self-pipe
   is the wakeup fd (`wake_on_signals`), to which the C-level handler writes, and the hub runs
   the Python handler as soon as the poll returns.
3. After the poll, `deliver_interrupt` throws the pending interrupt into the root fiber if it is
   parked in a wait that can take an exception (`PARKED_CANCELLABLE` or `PARKED_INTERRUPTIBLE`);
   otherwise the root raises it at its next blocking call (`Hub.park` checks
   ``interrupt_pending``). A root that yielded (``sleep(0)``, `checkpoint`: queued, not parked)
   raises it in that yield once it is resumed (`Hub.yield_now` checks it then): a root looping
   on `checkpoint` gets a Ctrl-C handled in another fiber meanwhile. A pass of ready fibers also
   stops extending itself once an interrupt is pending, so the root gets it promptly. Before
   each poll the hub delivers it again (`HubSelector._compute_timeout`): a handler that ran
   after the last poll's check wrote its wake-up byte to the loop's self-pipe, which asyncio may
   drain in the same iteration (when the poll had reported an earlier byte, a thread's
   ``call_soon_threadsafe``): the poll would then sleep with the interrupt pending.
4. With no root fiber left to take it, the hub raises it out of the loop. During `unknot.run`'s
   shutdown (the root is done) that does not cut the shutdown short: `_loop._shutdown` keeps the
   first such interrupt, lets the leftover fibers be cancelled and unwound and finishes the other
   steps, then raises it out of `run`; a second one comes out at once.

Inside `run_to_finish`, a fiber's waits on the patched `threading` locks finish whatever comes,
and neither the SIGINT handler nor `raise_pending_interrupt` raises: Ctrl-C and cancellation wait
for the fiber's next blocking call after it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar

from greenlet import getcurrent

from ._fiber import DONE, PARKED_CANCELLABLE, PARKED_INTERRUPTIBLE, Fiber

if TYPE_CHECKING:
    from ._hub import Hub

T = TypeVar("T")


def deliver_interrupt(hub: Hub) -> None:
    """After a poll: hand the pending interrupt to the root fiber (or raise it: no root)."""
    root = hub.root
    if root is None or root.done():
        raise hub.take_interrupt()
    if root._parked in (PARKED_CANCELLABLE, PARKED_INTERRUPTIBLE):
        hub.throw(root, hub.take_interrupt())
    # otherwise the root is about to run: it raises at its next blocking call


def signal_handler_raised(hub: Hub, exc: BaseException, polling_files: Collection[str]) -> None:
    """The poll was interrupted by a signal whose Python handler raised ``exc``.

    Without unknot the handler would have run in the main thread's blocking call and the
    exception come out of it (``signal.alarm`` timeouts rely on that): it goes to the root
    fiber, like Ctrl-C. An exception the poll itself raised (no handler frame in its
    traceback) is re-raised: the hub cannot go on.
    """
    # The only Python code that can run inside the C poll call is a signal handler.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in polling_files:
        tb = tb.tb_next
    root = hub.root
    if root is None or root.done() or (tb is None and not isinstance(exc, KeyboardInterrupt)):
        raise exc
    hub.interrupt = exc.with_traceback(tb)
    hub.interrupt_pending = True


def install_sigint(hub: Hub, loop: Any) -> Callable[[], None]:
    """Route Ctrl-C to the root fiber as `KeyboardInterrupt` (main thread, default handler only)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        return lambda: None

    def on_sigint(signum: int, frame: Any) -> None:
        root = hub.root
        # (A root that has finished is running its done callbacks, which would swallow the
        # exception: the interrupt waits for the hub, which raises it out of the loop.)
        running = root is not None and getcurrent() is root and root._state < DONE
        if running and root not in _FINISHING:
            raise KeyboardInterrupt()
        hub.interrupt_pending = True
        loop._write_to_self()

    # (Not a handler that can wake a fiber: `unknot._core._deadlock.CANNOT_WAKE`.)
    on_sigint.__unknot_cannot_wake__ = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGINT, on_sigint)

    def restore() -> None:
        if signal.getsignal(signal.SIGINT) is on_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    return restore


def wake_on_signals(loop: Any) -> Callable[[], None]:
    """Make every signal with a Python handler wake ``loop``'s poll; returns the undo.

    A Python signal handler runs between bytecodes of the main thread, and the C code of a poll
    runs none: a signal that does not interrupt the poll with EINTR leaves its handler waiting
    until the poll returns for another reason (with nothing else to wake it, for ever). That
    happens when it is delivered to another thread (a worker of `to_thread`, say), or to this
    one after the last bytecode before the poll and before the poll's system call began (the
    compiled hub runs no bytecode in between at all). The C-level handler writes the signal's
    number to the wakeup fd (`signal.set_wakeup_fd`): here the loop's self-pipe, so the poll
    returns and the handler runs before any fiber is woken (see `HubSelector.select`). asyncio
    reads the byte and ignores a signal it has no handler of its own for.

    `HubEventLoop.run_forever` calls it, in the main thread only, and only while no other
    wakeup fd is set (someone else's is left alone; asyncio's ``add_signal_handler`` sets the
    same self-pipe), and once per run (a refused second ``run_forever`` changes nothing). The
    undo clears it unless asyncio's signal handlers still need it; `keep_waking` sets it again
    meanwhile (asyncio clears it with the last handler it removes).
    """
    csock = getattr(loop, "_csock", None)
    if csock is None or _our_wakeup_fd[0] != -1:  # (closed; or set by the run in progress)
        return lambda: None
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    fd = csock.fileno()
    previous = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    if previous not in (-1, fd):
        signal.set_wakeup_fd(previous)  # someone else's: left in place
        return lambda: None
    _our_wakeup_fd[0] = fd

    def undo() -> None:
        _our_wakeup_fd[0] = -1
        if getattr(loop, "_signal_handlers", None):
            return  # asyncio's add_signal_handler set it too, and still needs it
        current = signal.set_wakeup_fd(-1)
        if current not in (fd, -1):  # someone else's since: left in place
            signal.set_wakeup_fd(current)

    return undo


def keep_waking(loop: Any) -> None:
    """After asyncio's ``remove_signal_handler``, which clears the wakeup fd with the last
    handler it removes: set it again if ``loop``'s run made it its self-pipe."""
    csock = getattr(loop, "_csock", None)
    if csock is None or _our_wakeup_fd[0] != csock.fileno():  # (closed, or not ours)
        return
    if not getattr(loop, "_signal_handlers", None):
        signal.set_wakeup_fd(_our_wakeup_fd[0], warn_on_full_buffer=False)


#: The wakeup fd `wake_on_signals` set and has not undone yet (-1: none). One at most: only
#: the main thread sets one, and it runs one loop at a time.
_our_wakeup_fd = [-1]


def _forget_wakeup_fd() -> None:
    """In a child forked while a hub's loop ran: the wakeup fd is the parent's loop's self-pipe,
    shared with the parent; the child's signals must not wake the parent (nor a hub the child
    starts find a wakeup fd already set)."""
    if _our_wakeup_fd[0] != -1:
        _our_wakeup_fd[0] = -1
        try:
            signal.set_wakeup_fd(-1)
        except ValueError:  # (forked from a thread other than the one that set it)
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_wakeup_fd)


# The fibers inside `run_to_finish`.
_FINISHING: set[Fiber] = set()


def run_to_finish(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` with nothing raised into the current fiber's waits on the way.

    Neither cancellation nor Ctrl-C is raised in the waits that honour this (those of the
    locks `unknot.patch` puts in `threading`), nor by the SIGINT handler of `unknot.run` or
    `raise_pending_interrupt`: both stay pending for the fiber's next blocking call after
    ``fn`` returns. For short calls whose bookkeeping an exception would split. `to_thread`
    hands its call to the thread pool this way: `concurrent.futures.ThreadPoolExecutor.submit`
    may start a worker thread and wait for it to say it started, and an exception there leaves
    a running worker the pool never recorded (so never tells to exit: the interpreter's exit
    would wait for it forever).
    Outside a fiber, ``fn(*args, **kwargs)`` as it is.
    """
    f = getcurrent()
    if type(f) is not Fiber or f in _FINISHING:
        return fn(*args, **kwargs)
    _FINISHING.add(f)
    try:
        return fn(*args, **kwargs)
    finally:
        _FINISHING.discard(f)


def must_finish(f: Fiber) -> bool:
    """Whether fiber ``f`` is inside `run_to_finish`: its waits must finish."""
    return f in _FINISHING
