"""The hub: the scheduler that runs fibers, and the blocking calls built directly on it.

A hub belongs to one event loop in one OS thread. It keeps

* ``ready``: fibers to resume, each with the value (``_wake_value``) or exception
  (``_wake_exc``) its blocking call will return or raise;
* a heap of timers (sleeps, timeouts, scope deadlines);
* a table of file descriptors fibers wait on (`FdWait` records).

Every blocking call comes down to `Hub.park`: the fiber marks itself parked and switches to the
hub greenlet. Whoever wakes it first (`wake`, `throw`, a timer, an fd event) wins; later wake-ups
find it no longer parked and do nothing. That single rule is what keeps cancellation from losing
or duplicating a value handed to a waiting fiber.

How the hub is *driven* is left to subclasses: `unknot._selectors` runs fibers straight from the
selector's ``select()`` inside our own asyncio loop (the fast path); `unknot._foreign` drives them
with callbacks on any other asyncio loop.
"""

from __future__ import annotations

import _thread
import asyncio
import errno
import heapq
import itertools
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from contextvars import copy_context
from typing import Any

from greenlet import getcurrent, greenlet

from ._cancel import Cancelled, effectively_cancelled
from ._fiber import CANCELLED, FAILED, RUNNING, Fiber


class _TimedOut:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMED_OUT"


#: Returned by `Hub.park` when its timeout expired first.
TIMED_OUT: Any = _TimedOut()


def _nothing() -> None:
    """A batched call that only marks a place in the batch (see `Hub.cede`)."""


class DeadlockError(RuntimeError):
    """Raised in the root fiber when every fiber is blocked and nothing can ever wake them."""


class NotInFiberError(RuntimeError):
    """A blocking unknot call was made where it cannot suspend (not in a fiber)."""


class FdWait:
    """The fibers waiting on one file descriptor, and how the OS is watching it.

    ``persistent`` records (sockets owned by unknot) stay registered, edge-triggered where the
    backend supports it, until `Hub.forget_fd`. Other records exist only while a fiber waits.

    Readiness hints (edge-triggered records only, ``hints`` True): ``readable``/``writable`` are
    set by every edge the hub sees, and cleared by the socket when a read comes back short (the
    buffer was drained) or a write short (the buffer is full). While a hint is clear the next
    edge is certain to come, so the socket waits for it instead of first making a syscall that
    would fail with EAGAIN. Level-triggered backends see no edges and never clear the hints.
    Once the hub sees a hang-up or an error on the fd, no further edge is promised (the peer's
    last data and its FIN can arrive as one edge), so it turns the hints off for good.
    """

    __slots__ = (
        "fd",
        "reader",
        "writer",
        "persistent",
        "armed",
        "events",
        "hints",
        "readable",
        "writable",
    )

    def __init__(self, fd: int, persistent: bool, hints: bool = False) -> None:
        self.fd = fd
        self.reader: Fiber | None = None
        self.writer: Fiber | None = None
        self.persistent = persistent
        self.armed = False
        self.events = 0
        self.hints = hints
        self.readable = True
        self.writable = True

    def __repr__(self) -> str:
        return f"<FdWait fd={self.fd} reader={self.reader} writer={self.writer}>"


_local = threading.local()


class Hub:
    """Scheduler state and operations common to every driver. See the module docstring."""

    TIMED_OUT = TIMED_OUT
    #: True if fd records stay registered edge-triggered (the fast path).
    edge_triggered = False

    def _hub_init(self, clock: Callable[[], float] | None = None) -> None:
        self.ready: deque[Fiber] = deque()
        self._yielded = False
        self.timers: list[list[Any]] = []
        self._seq = itertools.count()
        self._cancelled_timers = 0
        self.glet: greenlet | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.root: Fiber | None = None
        self.fibers: set[Fiber] = set()
        self.ncancel = 0
        self.kbi_pending = False  # an interrupt waits to be raised in the root fiber
        self.interrupt: BaseException | None = None  # ... this one (None: KeyboardInterrupt)
        self._deadlock_since: float | None = None
        self.threads_in_flight = 0
        self.fd_waiters = 0
        self.fds: dict[int, FdWait] = {}
        self.time: Callable[[], float] = clock or time.monotonic
        self.thread = threading.current_thread()
        self._timeout_cb = self._on_timeout
        # Read on every wait and hand-off: copied from the class, because CPython finds an
        # instance attribute faster than a class attribute reached through the instance.
        self.edge_triggered = type(self).edge_triggered
        self.PASS_EXTRA = type(self).PASS_EXTRA
        self._budget = 0
        # [fiber (None once it no longer waits for the call), function, arguments]
        self.calls: list[list[Any]] = []

    # -- fibers ----------------------------------------------------------------------------------

    def spawn(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        parent: Any = None,
    ) -> Fiber:
        """Create a fiber running ``fn(*args, **kwargs)`` and queue it to start."""
        if not callable(fn):
            raise TypeError(f"spawn() needs a callable, got {fn!r}")
        f = Fiber(self, fn, args, kwargs or {}, name, parent, self.glet or getcurrent())
        f.gr_context = copy_context()
        self.fibers.add(f)
        self.ready.append(f)
        self._notify()
        return f

    def _fiber_finished(self, f: Fiber) -> None:
        self.fibers.discard(f)
        if f._cancel_called == 2:
            self.ncancel -= 1
        parent = f._parent
        if parent is not None and parent._children is not None:
            parent._children.discard(f)
        group = f._group
        if group is not None:
            group._child_finished(f)

    def park(
        self,
        f: Fiber,
        timeout: float | None = None,
        cancellable: bool = True,
        interruptible: bool | None = None,
    ) -> Any:
        """Suspend fiber ``f`` (the current one) until it is woken.

        Returns the value given to `wake`, or `TIMED_OUT`; raises what `throw` delivered. A
        cancellable park is a checkpoint: it raises `Cancelled` at once if ``f`` is effectively
        cancelled, and cancellation wakes it. ``cancellable=False`` is for waits that must finish
        (re-acquiring a lock, a `TaskGroup` waiting for its children). ``interruptible`` (default:
        ``cancellable``) says whether Ctrl-C may be raised here in the root fiber: only waits that
        keep their invariants when an exception comes out of them may say yes.
        """
        if interruptible is None:
            interruptible = cancellable
        if cancellable and self.ncancel and effectively_cancelled(f._scope):
            raise Cancelled()
        if interruptible and self.kbi_pending and f is self.root:
            raise self.take_interrupt()
        glet = self.glet
        if glet is None or f is glet:
            raise NotInFiberError("a blocking call was made outside a running fiber")
        # 1: cancellable (and interruptible); 2: neither; 3: interruptible only
        state = 1 if cancellable else 3 if interruptible else 2
        if timeout is None:
            f._parked = state
            try:
                return self._switch_out()
            finally:
                f._parked = 0
        entry = self.add_timer(self.time() + timeout, self._timeout_cb, f)
        f._parked = state
        try:
            return self._switch_out()
        finally:
            f._parked = 0
            if entry[2] is not None:
                self.cancel_timer(entry)

    def take_interrupt(self) -> BaseException:
        """The pending interrupt for the root fiber (Ctrl-C, or what a signal handler raised),
        which is then no longer pending."""
        exc = self.interrupt or KeyboardInterrupt()
        self.kbi_pending = False
        self.interrupt = None
        return exc

    def _on_timeout(self, f: Fiber) -> None:
        self.wake(f, TIMED_OUT)

    def wake(self, f: Fiber, value: Any = None) -> bool:
        """Resume parked fiber ``f`` with ``value``. False (and nothing done) if not parked."""
        if f._parked:
            f._parked = 0
            f._wake_value = value
            self.ready.append(f)
            self._notify()
            return True
        return False

    def throw(self, f: Fiber, exc: BaseException) -> bool:
        """Resume parked fiber ``f`` by raising ``exc`` in it. False if not parked."""
        if f._parked:
            f._parked = 0
            f._wake_exc = exc
            self.ready.append(f)
            self._notify()
            return True
        return False

    def yield_now(self, f: Fiber) -> None:
        """Let every other ready fiber run once, then continue (``sleep(0)``). A checkpoint."""
        if self.ncancel and effectively_cancelled(f._scope):
            raise Cancelled()
        glet = self.glet
        if glet is None or f is glet:
            raise NotInFiberError("a blocking call was made outside a running fiber")
        self.ready.append(f)
        self._yielded = True  # this pass must not be extended: I/O and timers get their turn
        self._notify()
        glet.switch()

    def cede(self, f: Fiber) -> None:
        """Let the fibers already ready run before ``f`` (the current fiber) goes on.

        Client sockets call this before a blocking send: when many fibers each answer a reply
        with a new request, their requests then leave together, and the server (a database, a
        cache) serves the batch in one wake-up instead of being woken, and woken again, for
        each one (bytes they send go through `call_batched` instead, which makes the sends
        themselves back to back). It is not a checkpoint: it never raises (a cancellation or a
        Ctrl-C that arrives meanwhile is raised by the next blocking call), and with no other
        fiber ready it returns at once without switching.
        """
        glet = self.glet
        if glet is None or f is glet:
            return
        if self.calls:
            # Batched calls (sends) wait for the ready fibers: go after those calls too, so
            # that the bytes written to one socket keep the order of the calls.
            self.call_batched(f, _nothing)
        elif self.ready:
            # No _notify(): a fiber runs only inside a pass, and every driver looks at
            # ``ready`` again once a pass ends.
            self.ready.append(f)
            self._switch_out()

    def _notify(self) -> None:
        """Called when ``ready`` grew; drivers that need a nudge to run it override this."""

    #: How many fibers readied *during* a pass may still run in it before I/O is polled again.
    #: Running them at once saves a loop iteration per hand-off (a join, a queue put); the
    #: bound keeps a fiber that yields in a loop from starving I/O.
    PASS_EXTRA = 256

    #: Fibers the current pass may still resume (0 outside a pass); see `_run_ready`.
    _budget: int

    def _run_ready(self) -> None:
        """Resume the ready fibers: those queued now, plus up to PASS_EXTRA queued meanwhile.

        A fiber that parks during the pass does not return to the hub first: `_switch_out`
        resumes the next ready fiber straight from it (one greenlet switch instead of two), under
        the same budget. Control comes back here when the budget or the queue runs out, when
        the next fiber has never run (fibers start on the hub's stack), or when a fiber ends.
        Whenever the queue runs dry, the calls batched meanwhile (`call_batched`) are made and
        their fibers queued, to run in the same pass while the budget lasts.
        """
        ready = self.ready
        self._yielded = False
        self._budget = len(ready) + self.PASS_EXTRA
        try:
            self._run_pass(ready)
            while self.calls:
                self._run_calls()
                self._run_pass(ready)
        finally:
            self._budget = 0

    def _run_pass(self, ready: deque[Fiber]) -> None:
        while self._budget and ready:
            # Past the fibers queued before the pass, stop extending it once a fiber yielded
            # (sleep(0) in a loop would otherwise starve I/O and timers for PASS_EXTRA turns)
            # or Ctrl-C arrived in a fiber (the hub must deliver it to the root now).
            if self._budget <= self.PASS_EXTRA and (self._yielded or self.kbi_pending):
                break
            if ready[0]._state:
                # The same test passes in _switch_out, which resumes it (and the chain after
                # it) and returns once control is back on the hub.
                self._switch_out()
            else:
                self._budget -= 1
                ready.popleft().switch()  # not started: switched to without arguments

    def call_batched(self, f: Fiber, fn: Callable[..., Any], *args: Any) -> Any:
        """Park ``f`` (the current fiber); the hub calls ``fn(*args)`` once the fibers already
        ready have run, back to back with the other calls batched meanwhile, and resumes ``f``
        with what it returned or raised (an `Exception`).

        ``fn`` must not block or switch: it is a non-blocking syscall (sockets batch their
        blocking sends this way, see `unknot.socket`). Calls run in the order they were
        batched. Not a checkpoint: neither cancellation nor Ctrl-C interrupts the wait.
        """
        call = [f, fn, args]
        self.calls.append(call)
        f._parked = 2
        try:
            return self._switch_out()
        finally:
            f._parked = 0
            call[0] = None  # resumed: by _run_calls, or woken otherwise (then: call dropped)

    def _run_calls(self) -> None:
        """Make the batched calls, in order, and queue their fibers with the outcomes."""
        calls, self.calls = self.calls, []
        ready = self.ready
        for f, fn, args in calls:
            if f is None:
                continue  # its fiber was woken by something else meanwhile: not wanted now
            try:
                f._wake_value = fn(*args)
            except Exception as exc:
                f._wake_exc = exc
            f._parked = 0
            ready.append(f)

    def _switch_out(self) -> Any:
        """Leave the current greenlet (a parking fiber, or the hub in `_run_ready`).

        Within a pass whose budget allows it, the next ready fiber is resumed directly, with its
        wake value or exception; otherwise control goes back to the hub. Returns (or raises)
        what the caller is later resumed with.
        """
        n = self._budget
        if n:
            ready = self.ready
            if (
                ready
                and ready[0]._state
                and (n > self.PASS_EXTRA or not (self._yielded or self.kbi_pending))
            ):
                self._budget = n - 1
                f = ready.popleft()
                exc = f._wake_exc
                if exc is not None:
                    f._wake_exc = None
                    return f.throw(exc)
                v = f._wake_value
                f._wake_value = None
                # None must be passed explicitly: a bare switch() would hand park() ().
                return f.switch(v)
        return self.glet.switch()  # type: ignore[union-attr]

    # -- timers ----------------------------------------------------------------------------------

    def add_timer(self, deadline: float, fn: Callable[[Any], Any], arg: Any) -> list[Any]:
        """Call ``fn(arg)`` on the hub at ``deadline`` (hub clock). Returns a cancel handle."""
        entry = [deadline, next(self._seq), fn, arg]
        heapq.heappush(self.timers, entry)
        return entry

    def cancel_timer(self, entry: list[Any]) -> None:
        """Cancel a timer returned by `add_timer` (no effect if it already fired)."""
        if entry[2] is not None:
            entry[2] = entry[3] = None
            self._cancelled_timers += 1

    def _expire_timers(self) -> None:
        timers = self.timers
        if not timers:
            return
        now = self.time()
        pop = heapq.heappop
        while timers and timers[0][0] <= now:
            entry = pop(timers)
            fn = entry[2]
            if fn is None:
                self._cancelled_timers -= 1
            else:
                arg = entry[3]
                entry[2] = entry[3] = None
                fn(arg)

    def next_deadline(self) -> float | None:
        """The earliest live timer's deadline, or None."""
        timers = self.timers
        if self._cancelled_timers > 256 and self._cancelled_timers * 2 > len(timers):
            # Mostly cancelled timeouts (the common case: I/O finished first): compact. Done
            # here, between loop iterations, never while _expire_timers walks the heap.
            timers = self.timers = [e for e in timers if e[2] is not None]
            heapq.heapify(timers)
            self._cancelled_timers = 0
        while timers and timers[0][2] is None:
            heapq.heappop(timers)
            self._cancelled_timers -= 1
        return timers[0][0] if timers else None

    # -- file descriptors ------------------------------------------------------------------------

    def fd_record(self, fd: int) -> FdWait:
        """A new persistent record for ``fd``, owned by one socket; `forget_fd` it on close.

        An idle record left for the same fd number (its socket was garbage-collected without
        close, and the number reused) is replaced.
        """
        old = self.fds.get(fd)
        if old is not None:
            if old.reader is not None or old.writer is not None:
                raise RuntimeError(f"fd {fd} is already being waited on through another object")
            if old.armed:
                self._disarm(old)
        rec = FdWait(fd, True, self.edge_triggered)
        self.fds[fd] = rec
        return rec

    def forget_fd(self, rec: FdWait) -> None:
        """The fd is being closed: stop watching it and wake its waiters with `OSError`."""
        if self.fds.get(rec.fd) is rec:
            del self.fds[rec.fd]
        if rec.armed:
            self._disarm(rec)
        for f in (rec.reader, rec.writer):
            if f is not None:
                self.throw(f, OSError(errno.EBADF, "the file descriptor was closed while waiting"))

    def wait_fd(self, f: Fiber, rec: FdWait, write: bool, timeout: float | None) -> Any:
        """Park ``f`` until ``rec.fd`` is readable (or writable). Returns None or `TIMED_OUT`.

        Call it only after the non-blocking syscall failed with EAGAIN (an edge-triggered record
        reports only changes). A second fiber waiting the same way on the same fd is an error.
        """
        if write:
            if rec.writer is not None:
                raise RuntimeError(f"another fiber is already waiting to write to fd {rec.fd}")
            rec.writer = f
        else:
            if rec.reader is not None:
                raise RuntimeError(f"another fiber is already waiting to read from fd {rec.fd}")
            rec.reader = f
        self.fd_waiters += 1
        try:
            if rec.armed and self.edge_triggered:
                if timeout is None:
                    # The sockets' hot path: `park` inlined (the same checks, in the same order).
                    if self.ncancel and effectively_cancelled(f._scope):
                        raise Cancelled()
                    if self.kbi_pending and f is self.root:
                        raise self.take_interrupt()
                    f._parked = 1
                    try:
                        return self._switch_out()
                    finally:
                        f._parked = 0
            elif not self._arm(rec):
                return None  # the fd cannot be polled (a regular file): it is always ready
            return self.park(f, timeout)
        finally:
            self.fd_waiters -= 1
            if write:
                rec.writer = None
            else:
                rec.reader = None
            if not rec.persistent or not self.edge_triggered:
                self._after_wait(rec)

    def wait_raw_fd(self, f: Fiber, fd: int, write: bool, timeout: float | None) -> Any:
        """`wait_fd` for an fd unknot does not own: watched only while the fiber waits."""
        rec = self.fds.get(fd)
        if rec is None:
            rec = FdWait(fd, False)
            self.fds[fd] = rec
        return self.wait_fd(f, rec, write, timeout)

    def wait_fds(
        self,
        f: Fiber,
        reads: Iterable[int],
        writes: Iterable[int],
        timeout: float | None,
        busy_poll: float | None = None,
    ) -> Any:
        """Park ``f`` until any fd of ``reads`` is readable or any of ``writes`` is writable.

        The first event wins. Returns None when woken by an fd (or when the fds cannot be polled
        at all, as regular files: they are always ready), `TIMED_OUT` once ``timeout`` expired.
        It does not say which fd fired: the caller polls them all again (with a zero timeout),
        and must be ready to find none, since readiness can be spurious or consumed by someone
        else first. As with `wait_fd`, call it only after such a poll found none ready. Fds unknot
        does not own are watched only while ``f`` waits; persistent records stay as they are.

        An fd that cannot be watched for ``f`` (another fiber already waits on it in the same
        direction, or asyncio watches it) raises `RuntimeError`, leaving nothing registered;
        unless ``busy_poll`` is given: such fds are then skipped and the wait ends (returning
        None) after at most ``busy_poll`` seconds, so that the caller polls them again.
        """
        taken: list[tuple[FdWait, bool]] = []
        skipped = False
        self.fd_waiters += 1
        try:
            for write, fds in ((False, reads), (True, writes)):
                for fd in fds:
                    rec = self.fds.get(fd)
                    if rec is None:
                        rec = FdWait(fd, False)
                        self.fds[fd] = rec
                    waiter = rec.writer if write else rec.reader
                    if waiter is f:
                        continue  # listed twice
                    if waiter is not None:
                        if busy_poll is None:
                            what = "write to" if write else "read from"
                            raise RuntimeError(
                                f"another fiber is already waiting to {what} fd {fd}"
                            )
                        skipped = True
                        continue
                    if write:
                        rec.writer = f
                    else:
                        rec.reader = f
                    taken.append((rec, write))
                    try:
                        if (not rec.armed or not self.edge_triggered) and not self._arm(rec):
                            return None  # cannot be polled (a regular file): always ready
                    except RuntimeError:  # asyncio watches this fd
                        if busy_poll is None:
                            raise
                        skipped = True
                        taken.pop()
                        self._release(rec, write)
            if skipped and busy_poll is not None and (timeout is None or busy_poll < timeout):
                r = self.park(f, busy_poll)
                return None if r is TIMED_OUT else r
            return self.park(f, timeout)
        finally:
            self.fd_waiters -= 1
            for rec, write in taken:
                self._release(rec, write)

    def _release(self, rec: FdWait, write: bool) -> None:
        """End one direction of a fiber's wait on ``rec`` (narrow or drop its registration)."""
        if write:
            rec.writer = None
        else:
            rec.reader = None
        if not rec.persistent or not self.edge_triggered:
            self._after_wait(rec)

    def _fd_event(self, rec: FdWait, readable: bool, writable: bool) -> None:
        if readable and rec.reader is not None:
            self.wake(rec.reader)
        if writable and rec.writer is not None:
            self.wake(rec.writer)

    # Backend hooks ------------------------------------------------------------------------------

    def _arm(self, rec: FdWait) -> bool:
        """Make the OS watch ``rec`` for its current waiters. False if the fd can't be polled."""
        raise NotImplementedError

    def _after_wait(self, rec: FdWait) -> None:
        """A wait on a level-triggered record ended: narrow or drop the registration."""
        raise NotImplementedError

    def _disarm(self, rec: FdWait) -> None:
        """Stop watching ``rec`` at all."""
        raise NotImplementedError

    # -- deadlock detection ----------------------------------------------------------------------

    def _others_can_wake(self) -> bool:
        """Whether anything outside the fibers (I/O, timers, threads, signals) may wake one."""
        if self.ready or self.fd_waiters or self.threads_in_flight:
            return True
        if self.next_deadline() is not None:
            return True
        loop = self.loop
        if loop is not None and _loop_has_work(loop):
            return True
        return _foreign_threads_alive()

    #: Seconds everything must stay blocked before a deadlock is reported: a thread just started
    #: with ``_thread.start_new_thread`` is seen (``_thread._count``) only once it has begun to run.
    DEADLOCK_GRACE = 0.1

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


def _foreign_threads_alive() -> bool:
    """True if a thread other than ours and idle pool workers runs (it might wake a fiber)."""
    from ._threads import pool_thread_idents

    known = pool_thread_idents()
    me = threading.get_ident()
    listed = threading.enumerate()
    if any(t.ident != me and t.ident not in known for t in listed):
        return True
    # Threads started with _thread.start_new_thread are not in threading.enumerate();
    # _thread._count() counts every thread the _thread module started (threading's too).
    main = threading.main_thread()
    return _thread._count() > sum(
        1 for t in listed if t is not main and not isinstance(t, threading._DummyThread)
    )


# -- finding the hub ---------------------------------------------------------------------------


def get_hub() -> Hub | None:
    """The hub for the current context: the fiber's own, or the running loop's, or None."""
    cur = getcurrent()
    hub = getattr(cur, "_hub", None)
    if hub is not None:
        return hub
    loop = asyncio._get_running_loop()
    if loop is None:
        return None
    hub = getattr(loop, "_unknot_hub", None)
    if hub is None:
        from ._foreign import ForeignHub

        hub = ForeignHub.attach(loop)
    return hub


def current_fiber() -> Fiber | None:
    """The running `Fiber`, or None outside fibers."""
    cur = getcurrent()
    return cur if type(cur) is Fiber else None


def require_fiber() -> Fiber:
    """The running fiber, or a clear `NotInFiberError`."""
    cur = getcurrent()
    if type(cur) is Fiber:
        return cur
    if asyncio._get_running_loop() is not None:
        raise NotInFiberError(
            "this blocking call was made from asyncio code running on an event loop; "
            "await an async equivalent instead, or run the code in a fiber (unknot.spawn)"
        )
    raise NotInFiberError("this call must be made inside a fiber: start one with unknot.run(fn)")


__all__ = [
    "CANCELLED",
    "FAILED",
    "DeadlockError",
    "FdWait",
    "Hub",
    "NotInFiberError",
    "TIMED_OUT",
    "current_fiber",
    "get_hub",
    "require_fiber",
]
