"""Deadlock detection: every fiber is blocked and nothing outside them can wake one.

The selector hub asks `DeadlockDetection._others_can_wake` whenever it is about to sleep with no
timeout while a root fiber exists. Nothing can wake a fiber when no fiber is ready, none waits on
an fd, no timer is pending, no `to_thread` call is in flight, the asyncio loop has no work (no
callbacks, timers, other fds, signal handlers, executor jobs), no foreign thread runs and no
Python signal handler is set (``signal.signal``: its handler may set an event; Python's own
SIGINT handler and unknot's do not count). After `DEADLOCK_GRACE` seconds of that, the root
fiber gets a `DeadlockError` listing every fiber.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import _thread
import asyncio
import os
import signal
import threading
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar, Final

from ._exceptions import DeadlockError
from ._fiber import RUNNING
from ._monitor import monitor_thread_ident
from ._native import mypyc_attr
from ._thread_pool import pool_thread_idents
from ._timers import TimerQueue

if TYPE_CHECKING:
    from ._fiber import Fiber


@mypyc_attr(allow_interpreted_subclasses=True)
class DeadlockDetection(TimerQueue):
    """The deadlock part of `Hub` (its base; one chain of bases, which the compiled build needs)."""

    ready: deque[Fiber]
    fd_waiters: int
    threads_in_flight: int
    loop: asyncio.AbstractEventLoop | None
    fibers: dict[Fiber, None]  # (an ordered set: spawn order)
    root: Fiber | None
    _deadlock_since: float | None

    # Provided by Hub: a plain method rather than a stub under TYPE_CHECKING, which the
    # compiled build cannot have in a class body.
    def throw(self, f: Fiber, exc: BaseException) -> bool:
        raise NotImplementedError

    def _others_can_wake(self) -> bool:
        """Whether anything outside the fibers (I/O, timers, threads, signals) may wake one."""
        if self.ready or self.fd_waiters or self.threads_in_flight:
            return True
        if self.next_deadline() is not None:
            return True
        loop = self.loop
        if loop is not None and _loop_has_work(loop):
            return True
        return _foreign_threads_alive() or _signal_handler_set()

    #: Seconds everything must stay blocked before a deadlock is reported: a thread just started
    #: with ``_thread.start_new_thread`` is seen (``_thread._count``) only once it has begun to run.
    DEADLOCK_GRACE: ClassVar[float] = 0.1

    def _deadlock_grace(self) -> float | None:
        """Called while nothing can wake a fiber: the seconds to wait before checking again, or
        None once that has lasted `DEADLOCK_GRACE` (then it is a deadlock)."""
        now = time.monotonic()
        since = self._deadlock_since
        if since is None or now - since > 2 * self.DEADLOCK_GRACE:  # new (or stale) suspicion
            self._deadlock_since = now
            return self.DEADLOCK_GRACE
        left = since + self.DEADLOCK_GRACE - now
        if left > 0:
            return left
        self._deadlock_since = None
        return None

    def deadlock_report(self) -> str:
        """Describe every live fiber and where it is blocked."""
        lines = [f"deadlock: all {len(self.fibers)} fibers are blocked and nothing can wake them"]
        fibers = sorted(self.fibers, key=lambda f: f is not self.root)
        for f in fibers[:20]:
            lines.append(f"  {f.name}{' (root)' if f is self.root else ''}:")
            frame = f.gr_frame
            if frame is not None:
                for entry in traceback.format_stack(frame)[-6:]:
                    lines.extend("    " + ln for ln in entry.rstrip().splitlines())
        if len(fibers) > 20:
            lines.append(f"  ... and {len(fibers) - 20} more")
        return "\n".join(lines)

    def _report_deadlock(self) -> None:
        root = self.root
        err = DeadlockError(self.deadlock_report())
        if root is not None and root._state == RUNNING and self.throw(root, err):
            return
        raise err


def _loop_has_work(loop: Any) -> bool:
    # asyncio internals we can read because the hub lives inside the loop: pending callbacks,
    # timers, fd registrations besides the self-pipe, signal handlers, executor jobs.
    if getattr(loop, "_ready", None) or getattr(loop, "_scheduled", None):
        return True
    selector_map = getattr(loop, "_selector", None)
    nfds = len(selector_map.get_map()) if selector_map is not None else 0
    if nfds > 1:
        return True
    if getattr(loop, "_signal_handlers", None):
        return True
    return bool(getattr(loop, "_executor_jobs", 0))


#: The signals whose Python handler may wake a fiber: those a handler can be set for, but for
#: the interval timers' (``signal.setitimer``, ``signal.alarm``). A handler of those is taken for
#: a timeout's, which raises in the root fiber whenever it fires, deadlock or not: pytest-timeout
#: sets one for every test, which would otherwise turn each deadlock into a wait for it.
_WAKING_SIGNALS: Final = tuple(
    sorted(
        set(map(int, signal.valid_signals()))
        - {
            int(getattr(signal, name))
            for name in ("SIGKILL", "SIGSTOP", "SIGALRM", "SIGVTALRM", "SIGPROF")
            if hasattr(signal, name)
        }
    )
)

# ``signal.getsignal`` makes each number it returns an enum member: 15 times slower.
_getsignal: Any = getattr(_signal, "getsignal", signal.getsignal)

#: An attribute set (true) on a Python signal handler that never wakes a fiber: unknot's own
#: SIGINT handler (``unknot._core._interrupt``, which spells the name out: the two modules do
#: not import each other).
CANNOT_WAKE: Final = "__unknot_cannot_wake__"


def _signal_handler_set() -> bool:
    """True if a Python signal handler is set (``signal.signal``) that may wake a fiber.

    A signal may come at any time (from another process, a timer), and its handler may set an
    `Event` the root fiber waits on. Python's default SIGINT handler does not count (unknot
    turns Ctrl-C into a `KeyboardInterrupt` in the root fiber, which no deadlock report
    replaces), nor do handlers marked `CANNOT_WAKE` (unknot's own SIGINT handler) and those of
    the interval timers' signals (see `_WAKING_SIGNALS`). Looked at only once nothing else can
    wake a fiber; about 60 look-ups (2 µs).
    """
    default_int = signal.default_int_handler
    for signum in _WAKING_SIGNALS:
        handler = _getsignal(signum)
        # (SIG_DFL, SIG_IGN and None, a handler not set from Python, are not callable.)
        if (
            callable(handler)
            and handler is not default_int
            and not getattr(handler, CANNOT_WAKE, False)
        ):
            return True
    return False


def _foreign_threads_alive() -> bool:
    """True if a thread other than ours and idle pool workers runs (it might wake a fiber)."""
    known = pool_thread_idents()
    monitor = monitor_thread_ident()
    if monitor is not None:  # (a thread not yet started has no ident: it must not match None)
        known.add(monitor)
    me = threading.get_ident()
    listed = threading.enumerate()
    if any(t.ident != me and t.ident not in known and _still_runs(t) for t in listed):
        return True
    # Threads started with _thread.start_new_thread are not in threading.enumerate();
    # _thread._count() counts every thread the _thread module started (threading's too).
    main = threading.main_thread()
    return _thread._count() > sum(
        1 for t in listed if t is not main and not isinstance(t, threading._DummyThread)
    )


def _still_runs(t: threading.Thread) -> bool:
    """False for a `threading._DummyThread` (a thread threading did not start, which called
    into it: ``current_thread()``, logging) whose OS thread has ended: Python 3.11 lists one
    for good (3.12 drops it when its thread ends), which would turn deadlock detection off for
    the rest of the process. Its thread's entry in ``/proc/self/task`` tells; without
    ``/proc`` it counts as running."""
    if not isinstance(t, threading._DummyThread):
        return True
    native_id = t.native_id
    if native_id is None or not os.path.isdir("/proc/self/task"):
        return True
    return os.path.exists(f"/proc/self/task/{native_id}")
