"""Deadlock detection: every fiber is blocked and nothing outside them can wake one.

The selector hub asks `DeadlockDetection._idle_timeout` whenever it is about to sleep with no
timeout. Nothing can wake a fiber when no fiber is ready, none waits on an fd, no timer is
pending, no `to_thread` call is in flight, the asyncio loop has no work (no callbacks, timers,
other fds, signal handlers, executor jobs), no Python signal handler is set (``signal.signal``:
its handler may set an event; Python's own SIGINT handler, unknot's and pytest-timeout's do not
count, nor do those of the interval timers' signals but for a SIGALRM handler with its timer
running), and no foreign thread runs. After `DEADLOCK_GRACE` seconds of that, the root fiber
gets a `DeadlockError` listing every fiber. A foreign thread or a pending alarm may end without
waking anything: while one is the only possible waker, the hub looks again every
`FOREIGN_RECHECK` seconds (or once the alarm is due) instead of sleeping for good.

Under a `MockClock` that moves only when jumped (rate 0, no autojump) a pending timer cannot
fire by itself either: `_stalled_clock_timeout` (asked when the hub would sleep with no end
although timers are pending) reports the same deadlock once nothing but those timers could wake
a fiber, saying that the clock is not advancing.
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
from ._fiber import PARKED_SHIELDED, RUNNING
from ._monitor import monitor_thread_ident
from ._native import mypyc_attr
from ._stacks import frames_of, user_stack
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

    def _others_can_wake(self, timers: bool = True) -> bool:
        """Whether anything (I/O, timers unless ``timers`` is false, threads, asyncio, signal
        handlers) may wake a fiber and would wake the hub's poll when it does."""
        if self.ready or self.fd_waiters or self.threads_in_flight:
            return True
        if timers and self.next_deadline() is not None:
            return True
        loop = self.loop
        if loop is not None and _loop_has_work(loop, timers):
            return True
        return _signal_handler_set()

    def _idle_timeout(self) -> float | None:
        """The poll's timeout when the selector hub is about to sleep with none (nothing ready,
        no timer): None to sleep until woken; else the seconds after which to look again.

        Looks for a deadlock only under `run` (a root fiber exists) or while
        `HubEventLoop.close` unwinds leftover fibers; reports it (and returns 0) once nothing
        could wake a fiber for `DEADLOCK_GRACE` seconds. A foreign thread may end, and an
        alarm fire, without waking the poll: while those are the only possible wakers, the
        check runs again every `FOREIGN_RECHECK` seconds or when the alarm is due.
        """
        if self.root is None and not getattr(self.loop, UNWINDING_AT_CLOSE, False):
            return None
        if self._others_can_wake():
            return None
        return self._deadlock_timeout(False)

    def _stalled_clock_timeout(self) -> float | None:
        """The poll's timeout when the selector hub would sleep with none although timers are
        pending, because its `MockClock` does not move by itself (rate 0, no autojump): only a
        ``jump`` fires them. None to sleep until woken; else the seconds after which to look
        again.

        As `_idle_timeout`, but for the timers (the hub's and the loop's, all on that clock),
        which cannot wake a fiber: a deadlock once nothing else could, for `DEADLOCK_GRACE`
        seconds. The other wakers are the same, so a ``jump`` from another fiber (it is ready),
        from `to_thread` or an executor job (in flight: the hub sleeps until it ends) or from a
        foreign thread (looked at again every `FOREIGN_RECHECK` seconds) still fires them.
        """
        if self.root is None and not getattr(self.loop, UNWINDING_AT_CLOSE, False):
            return None
        if self._others_can_wake(timers=False):
            return None
        return self._deadlock_timeout(True)

    def _deadlock_timeout(self, stalled_clock: bool) -> float | None:
        """Nothing in the hub can wake a fiber (but the timers of a clock that does not move, if
        ``stalled_clock``): the poll's timeout while a foreign thread or an alarm may still do
        it, or during the grace; else report the deadlock and return 0."""
        recheck = _alarm_due()
        if _foreign_threads_alive(self.loop):
            foreign = self.FOREIGN_RECHECK
            recheck = foreign if recheck is None else min(recheck, foreign)
        if recheck is not None:
            self._deadlock_since = None  # (a possible waker: no suspicion yet)
            return recheck
        grace = self._deadlock_grace()
        if grace is not None:
            return grace
        self._report_deadlock(stalled_clock)
        return 0

    #: Seconds between two deadlock checks while a foreign thread runs and nothing else can
    #: wake a fiber: the thread may end without waking anything (then the deadlock is reported
    #: at the next check, after `DEADLOCK_GRACE`). A check costs some microseconds.
    FOREIGN_RECHECK: ClassVar[float] = 0.5

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

    def deadlock_report(self, stalled_clock: bool = False) -> str:
        """Describe every live fiber and where it is blocked (``stalled_clock``: they wait for
        timers of a `MockClock` that does not move by itself)."""
        if stalled_clock:
            lines = [self._stalled_clock_headline()]
        else:
            n = len(self.fibers)
            lines = [f"deadlock: all {n} fibers are blocked and nothing can wake them"]
        fibers = sorted(self.fibers, key=lambda f: f is not self.root)
        for f in fibers[:20]:
            lines.append(f"  {f.name}{' (root)' if f is self.root else ''}:")
            frame = f.gr_frame
            if frame is not None:
                # Its innermost entries, but for the core's wait machinery (as in the dump):
                # else they could be all there is, and the line where it waits left out.
                stack = user_stack(frames_of(frame)) or traceback.extract_stack(frame)
                for entry in stack.format()[-6:]:
                    lines.extend("    " + ln for ln in entry.rstrip().splitlines())
        if len(fibers) > 20:
            lines.append(f"  ... and {len(fibers) - 20} more")
        return "\n".join(lines)

    def _stalled_clock_headline(self) -> str:
        """The first line of the report of a deadlock on timers that only a jump can fire."""
        due = self.next_deadline()
        scheduled = getattr(self.loop, "_scheduled", None) or ()
        for handle in scheduled:  # (the loop's timers: asyncio's call_later, asyncio.sleep)
            if not handle.cancelled() and (due is None or handle.when() < due):
                due = handle.when()
        when = ""
        if due is not None:
            when = f" (the next is due at {due:g}; the clock reads {self.time():g})"
        return (
            f"deadlock: all {len(self.fibers)} fibers are blocked and only timers could wake "
            f"them{when}, but the MockClock is not advancing: it moves only when jumped "
            "(rate 0, no autojump). Use the autojump_clock fixture (MockClock("
            "autojump_threshold=0)), or advance it with clock.jump() from another fiber or "
            "a thread"
        )

    def _report_deadlock(self, stalled_clock: bool = False) -> None:
        """Throw the `DeadlockError` into the root fiber; raise it out of the loop instead if
        the root is not parked in a wait that can take it.

        A shielded wait (`PARKED_SHIELDED`: re-acquiring a lock in `Condition.wait`, a bridge
        waiting for its task to unwind) must finish: an exception out of it would leave, say,
        a lock held by another fiber that the root goes on to release. Out of the loop, the
        error ends `run`, whose shutdown cancels every fiber: the lock's holder lets go, and
        the root's wait ends as it must, then the root unwinds.
        """
        root = self.root
        err = DeadlockError(self.deadlock_report(stalled_clock))
        if (
            root is not None
            and root._state == RUNNING
            and root._parked != PARKED_SHIELDED
            and self.throw(root, err)
        ):
            return
        raise err


def _loop_has_work(loop: Any, timers: bool = True) -> bool:
    # asyncio internals we can read because the hub lives inside the loop: pending callbacks,
    # timers (unless ``timers`` is false), fd registrations besides the self-pipe, signal
    # handlers, executor jobs.
    if getattr(loop, "_ready", None) or (timers and getattr(loop, "_scheduled", None)):
        return True
    selector_map = getattr(loop, "_selector", None)
    nfds = len(selector_map.get_map()) if selector_map is not None else 0
    if nfds > 1:
        return True
    if getattr(loop, "_signal_handlers", None):
        return True
    return bool(getattr(loop, "_executor_jobs", 0))


#: The signals whose Python handler may wake a fiber: those a handler can be set for, but for
#: the interval timers' (``signal.setitimer``, ``signal.alarm``), whose handlers are there for
#: their timers. SIGALRM's counts only while its timer runs (`_alarm_due`). SIGVTALRM's and
#: SIGPROF's timers count CPU time, which a process whose fibers are all blocked does not spend
#: (a foreign thread that does is a waker of its own): they cannot fire.
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

#: SIGALRM's number, or -1 where there is no ``signal.setitimer`` (Windows). (An int either
#: way: mypyc mis-compiles a `Final` whose value is an int or None.)
_SIGALRM: Final[int] = int(signal.SIGALRM) if hasattr(signal, "setitimer") else -1

# ``signal.getsignal`` makes each number it returns an enum member: 15 times slower.
_getsignal: Any = getattr(_signal, "getsignal", signal.getsignal)

#: An attribute set (true) on a Python signal handler that never wakes a fiber: unknot's own
#: SIGINT handler (``unknot._core._interrupt``, which spells the name out: the two modules do
#: not import each other).
CANNOT_WAKE: Final = "__unknot_cannot_wake__"

#: The attribute `HubEventLoop.close` sets (true) on its loop while it unwinds leftover fibers
#: (``unknot._core._loop``, which imports this module): deadlocks are looked for then too.
UNWINDING_AT_CLOSE: Final = "_unknot_unwinding_at_close"

#: Modules whose signal handlers are a timeout's, never a waker's: they raise when they fire,
#: deadlock or not (pytest-timeout sets one for SIGALRM for every test, with its timer).
_TIMEOUT_MODULES: Final = frozenset({"pytest_timeout"})


def _may_wake(handler: Any) -> bool:
    """Whether a signal handler (from ``signal.getsignal``) is Python code that may wake a
    fiber: not SIG_DFL, SIG_IGN or None (a handler not set from Python: none is callable),
    Python's default SIGINT handler, one marked `CANNOT_WAKE`, or a timeout's."""
    return (
        callable(handler)
        and handler is not signal.default_int_handler
        and not getattr(handler, CANNOT_WAKE, False)
        and getattr(handler, "__module__", None) not in _TIMEOUT_MODULES
    )


def _signal_handler_set() -> bool:
    """True if a Python signal handler is set (``signal.signal``) that may wake a fiber.

    A signal may come at any time (from another process, a timer), and its handler may set an
    `Event` the root fiber waits on. Python's default SIGINT handler does not count (unknot
    turns Ctrl-C into a `KeyboardInterrupt` in the root fiber, which no deadlock report
    replaces), nor do handlers marked `CANNOT_WAKE` (unknot's own SIGINT handler) and those of
    the interval timers' signals (see `_WAKING_SIGNALS` and `_alarm_due`). Looked at only once
    nothing else can wake a fiber; about 60 look-ups (2 µs).
    """
    for signum in _WAKING_SIGNALS:
        if _may_wake(_getsignal(signum)):
            return True
    return False


#: Seconds past an alarm's time at which the deadlock check runs again: by then its handler has
#: run (in the main thread; one there also ends the hub's poll as soon as the signal comes).
_ALARM_SLACK: Final = 0.01


def _alarm_due() -> float | None:
    """The seconds (plus `_ALARM_SLACK`) until SIGALRM's timer fires (``signal.setitimer``
    with ``ITIMER_REAL``, or ``signal.alarm``, which sets the same timer), if it runs and
    SIGALRM has a Python handler that may wake a fiber (`_may_wake`: not pytest-timeout's);
    else None. Such a handler may set an `Event` the root fiber waits on."""
    if _SIGALRM < 0 or not _may_wake(_getsignal(_SIGALRM)):
        return None
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    return left + _ALARM_SLACK if left > 0 else None


def _foreign_threads_alive(loop: Any = None) -> bool:
    """True if a thread other than ours and idle pool workers runs (it might wake a fiber).

    The worker threads of ``loop``'s default executor (``run_in_executor(None, ...)``,
    ``asyncio.to_thread``) are left out as unknot's pool threads are: they stay after their
    jobs, idle, and the jobs in flight are counted apart (the loop's ``_executor_jobs``, see
    `_loop_has_work`), as are a pool's."""
    known = pool_thread_idents()
    monitor = monitor_thread_ident()
    if monitor is not None:  # (a thread not yet started has no ident: it must not match None)
        known.add(monitor)
    executor = getattr(loop, "_default_executor", None)
    if executor is not None:
        known.update(t.ident for t in list(getattr(executor, "_threads", ())))
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
