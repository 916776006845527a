"""The hub: the scheduler that runs fibers, and the blocking calls built directly on it.

A hub belongs to one event loop in one OS thread. It keeps

* ``ready``: fibers to resume, each with the value its blocking call will return, or a
  `Raise` holding the exception it will raise (``Fiber._wake_value``);
* a heap of timers (sleeps, timeouts, scope deadlines);
* a table of file descriptors fibers wait on (`FdWait` records).

Every blocking call comes down to `Hub.park`: the fiber marks itself parked and switches to the
hub greenlet. Whoever wakes it first (`wake`, `throw`, a timer, an fd event) wins; later wake-ups
find it no longer parked and do nothing. That single rule is what keeps cancellation from losing
or duplicating a value handed to a waiting fiber.

How the hub is *driven* is left to subclasses: `unknot._core._selector_hub` runs fibers straight
from the selector's ``select()`` inside our own asyncio loop (the fast path);
`unknot._core._foreign` drives them with callbacks on any other asyncio loop.
"""

from __future__ import annotations

import errno
import heapq
import os
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterable
from contextvars import copy_context
from typing import Any, ClassVar, Final, SupportsFloat

from greenlet import getcurrent, greenlet

from .._compiled import nbio, slot_reader, slot_swapper, slot_writer
from . import _monitor
from ._cancel import Cancelled, count_cancellations, effectively_cancelled, fiber_finished
from ._deadlock import DeadlockDetection
from ._exceptions import NotInFiberError
from ._fiber import (
    _NO_ARG,
    NOT_PARKED,
    PARKED_CANCELLABLE,
    PARKED_INTERRUPTIBLE,
    PARKED_SHIELDED,
    Fiber,
    async_function_refused,
)
from ._interrupt import must_finish
from ._native import mypyc_attr
from ._parking import TIMED_OUT

#: What `Hub.spawn` looks at to refuse an ``async def`` function: the type of plain functions,
#: and ``inspect.CO_COROUTINE``, the flag of their code when they are ``async def``.
_FUNCTION_TYPE: Final = types.FunctionType
_CO_COROUTINE: Final = 0x80

#: How many fibers readied *during* a pass may still run in it before I/O is polled again.
#: Running them at once saves a loop iteration per hand-off (a join, a queue put); the
#: bound keeps a fiber that yields in a loop from starving I/O.
PASS_EXTRA: Final = 256

#: Called with (hub, True) before and (hub, False) after each pass of every hub while not
#: empty: the instruments' pass events (`unknot._core._instruments`). One test per pass.
PASS_HOOKS: Final[list[Callable[[Any, bool], None]]] = []


#: greenlet's switch, called as a function: compiled, ``f.switch()`` would look the method up
#: by name (in the type, then in the greenlet's ``__dict__``) at every switch.
_switch: Final = greenlet.switch
#: The same for the ready queue's popleft.
_popleft: Final = deque.popleft
#: The blocking detector's latest sample, or None (`unknot._core._monitor.EPOCH`): the list.
_EPOCH: Final = _monitor.EPOCH
# The int object of an fd number, the same one each time (`unknot._nbio.fd_int`, the compiled
# build's; its epoll_wait returns these), or None: the pure build passes the fd it was given.
_NBIO: Final = nbio()
_FD_INT: Final = None if _NBIO is None else _NBIO.fd_int
# The fiber slots that parking, waking and switching read and write on their common paths.
# Compiled, ``f._parked`` is a generic attribute access (about 160 instructions to read, 190 to
# write: `Fiber` derives from greenlet, so mypyc cannot lay it out); these callables make it one C
# load or store (`unknot._compiled.slot_reader`, about 60 with the call). Interpreted, the
# attribute is the fastest (a call costs more than the access), so those paths test
# ``_SLOTS_IN_C`` and keep the attribute in the pure build. The rare paths keep the attribute.
_SLOTS_IN_C: Final = _NBIO is not None
_set_parked: Final = slot_writer(Fiber, "_parked")
# (Clearing the flag and learning whether it was set, in one call: `_unpark`.)
_swap_parked: Final = slot_swapper(Fiber, "_parked")
_wake_value_of: Final = slot_reader("_wake_value")
_set_wake_value: Final = slot_writer(Fiber, "_wake_value")


class Raise:
    """A fiber's wake value that says "raise ``exc``" (`Hub.throw`), not "return it".

    One slot for both outcomes: the resumed fiber reads one attribute, not two (`_switch_out`).
    Never handed to the woken code itself."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc: BaseException | None = exc

    def take(self) -> BaseException:
        """The exception, which this object then lets go of: the fiber raising it keeps this
        object in a local of the frame that its traceback holds, which would otherwise be a
        reference cycle (exception, traceback, frame, this object). Taken once."""
        exc = self.exc
        assert exc is not None, "a Raise is raised once"
        self.exc = None
        return exc


def _unpark(f: Fiber) -> bool:
    """Mark ``f`` not parked if it is: True for the first wake-up, False for any later one (the
    park/wake rule: the module docstring). `Hub.wake` and `EpollHub.select` (an fd's waiters)."""
    if _SLOTS_IN_C:
        # (Storing NOT_PARKED over NOT_PARKED changes nothing: one call, not a read and a
        # write.)
        return bool(_swap_parked(f, NOT_PARKED))
    if f._parked:
        f._parked = NOT_PARKED
        return True
    return False


def _nothing() -> None:
    """A batched call that only marks a place in the batch (see `Hub.cede`)."""


class FdWait:
    """The fibers waiting on one file descriptor, and how the OS is watching it.

    ``reader`` and ``writer`` are the fibers the OS's events wake; others waiting the same way
    queue behind them (`FdQueue`, kept outside the record: `Hub._wait_queued`).

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
        "fdobj",
        "reader",
        "writer",
        "persistent",
        "armed",
        "events",
        "hints",
        "readable",
        "writable",
        "hub",
    )

    def __init__(self, fd: int, persistent: bool, hints: bool, hub: Hub) -> None:
        self.fd = fd
        #: ``fd`` as an int object, for the syscalls and the hub's table (its key): compiled,
        #: the one `unknot._nbio.fd_int` keeps for the number, which epoll_wait returns, so
        #: that neither boxes a new int per call (docs/compiled.md, "One int object per fd").
        #: -1 once the fd is forgotten, as ``fd``.
        self.fdobj: Any = fd if _FD_INT is None else _FD_INT(fd)
        #: The hub whose table holds this record (a socket's record is only valid on that hub).
        self.hub = hub
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


class FdQueue:
    """The fibers queued behind an fd record's ``reader`` (``writer``): those that came to wait
    the same way on the same fd while another already did, oldest first (`Hub.wait_fd`)."""

    __slots__ = ("readers", "writers")

    def __init__(self) -> None:
        self.readers: deque[Fiber] = deque()
        self.writers: deque[Fiber] = deque()


#: The queues of the records that have one, made when a second fiber waits on the same fd in
#: the same direction and dropped when the last queued fiber leaves: the slow path. Module-level,
#: keyed by the record (each belongs to one hub), so that neither `FdWait` (kept per idle
#: connection) nor the hub (see the note in `Hub._hub_init`) grows an attribute; the waits'
#: common path tests only that the dict is empty.
_QUEUED: Final[dict[FdWait, FdQueue]] = {}


def _enqueue(f: Fiber, rec: FdWait, write: bool) -> None:
    """Queue ``f`` last behind ``rec``'s ``writer`` (or ``reader``), making the record's queue
    if it has none (`Hub._wait_queued`, `Hub.wait_fds`)."""
    q = _QUEUED.get(rec)
    if q is None:
        q = _QUEUED[rec] = FdQueue()
    (q.writers if write else q.readers).append(f)


if hasattr(os, "register_at_fork"):
    # A forked child keeps only the forking thread, which was not waiting on an fd: no fiber
    # of any hub (its own, other threads') is queued there, nor will its queue end to say so.
    # (Registered at this module's import, so it runs before `_fork`'s reset of the forking
    # thread's hub, which relies on it.)
    os.register_at_fork(after_in_child=_QUEUED.clear)


@mypyc_attr(allow_interpreted_subclasses=True)
class Hub(DeadlockDetection):
    """Scheduler state and operations common to every driver. See the module docstring."""

    TIMED_OUT: ClassVar[Any] = TIMED_OUT
    #: True if fd records stay registered edge-triggered (the fast path): `_hub_init`'s argument.
    edge_triggered: bool

    # The attributes `_hub_init` sets, declared for the compiled build (mypyc lays them out);
    # those `DeadlockDetection` reads are declared there.
    _yielded: bool
    hub_greenlet: greenlet | None
    ncancel: int
    interrupt_pending: bool
    interrupt: BaseException | None
    fds: dict[int, FdWait]
    thread: threading.Thread
    _timeout_cb: Callable[[Fiber], None]
    io_budget_full: int
    io_budget: int
    io_streak: int
    calls: list[list[Any]]
    #: Compiled build only: how many fibers of this hub were given a wake value other than None
    #: (`wake`, `throw`, `_run_calls`) that they have not taken yet. While it is 0, a resumed
    #: fiber knows its ``_wake_value`` is None without reading it (one slot call saved per
    #: resume: docs/compiled.md, "One call to unpark, and the wake value read only when one was
    #: given"). A class default: the pure build never writes it, so the hub keeps its 29
    #: instance attributes (see `_hub_init`).
    wake_values: int = 0

    def _hub_init(
        self, clock: Callable[[], float] | None = None, edge_triggered: bool = False
    ) -> None:
        self.ready = deque()
        self._yielded = False
        self._timers_init()
        #: The greenlet that runs the event loop; fibers switch to it when they park.
        self.hub_greenlet = None
        self.loop = None
        self.root = None
        self.fibers = {}
        #: How many cancellations are in force on this hub: cancelled scopes still entered, plus
        #: cancelled fibers still running. While it is 0 no fiber can be cancelled, so every
        #: checkpoint costs one attribute test. Counted only by `unknot._core._cancel`.
        self.ncancel = 0
        #: An interrupt waits to be raised in the root fiber: Ctrl-C, or the exception a Python
        #: signal handler raised while the hub was polling (see `unknot._core._interrupt`).
        self.interrupt_pending = False
        #: ...that exception (None: a plain `KeyboardInterrupt`).
        self.interrupt = None
        self._deadlock_since = None
        self.threads_in_flight = 0
        self.fd_waiters = 0
        self.fds = {}
        self.time = clock or time.monotonic
        self.thread = threading.current_thread()
        self._timeout_cb = self._on_timeout
        # Read on every wait and hand-off: instance attributes, because CPython finds one faster
        # than a class attribute reached through the instance (and mypyc lays them out).
        self.edge_triggered = edge_triggered
        #: The fiber this hub last switched to (set at each switch; None once that fiber
        #: ended): when it is the current greenlet, the current greenlet is a fiber of this
        #: hub (one C field compared, where compiled code reads ``Fiber.hub`` by a generic
        #: attribute access).
        self.running = None
        #: Blocking I/O calls the running fiber may still begin before one takes the slow path
        #: (`IO_STREAK_MAX`); refilled to ``io_budget_full`` whenever a fiber switches out, and
        #: both are held at 0 while a cancellation is in force (``ncancel``: see _cancel.py).
        self.io_budget_full = type(self).IO_STREAK_MAX
        self.io_budget = self.io_budget_full
        #: The streak counted on the slow path while cancellations hold the budget at 0.
        self.io_streak = 0
        self._budget = 0
        # (No new attribute here lightly: past 29, CPython 3.11 stops specializing the hub's
        # attribute accesses (LOAD_ATTR_WITH_HINT instead of _INSTANCE_VALUE), a measurable
        # slow-down of every hot path. The blocking detector's pulse lives on ``self.thread``.)
        # [fiber (None once it no longer waits for the call), function, arguments]
        self.calls = []

    # -- fibers ----------------------------------------------------------------------------------

    def spawn(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        name: Any = None,
        parent: Any = None,
        name_arg: Any = _NO_ARG,
    ) -> Fiber:
        """Create a fiber running ``fn(*args, **kwargs)`` and queue it to start.

        A ``name`` that is not a str is made one with ``str()``, as the `Fiber.name` setter and
        `threading.Thread` do. With ``name_arg``, ``name`` is a template: the fiber is named
        ``name.format(name_arg)``, made when the name is first read (`spawn_named`)."""
        if type(fn) is _FUNCTION_TYPE:
            # An ``async def`` function would make a coroutine nobody awaits (a plain test:
            # no inspect per spawn; other callables are checked when the fiber returns).
            plain: Any = fn
            if plain.__code__.co_flags & _CO_COROUTINE:
                raise async_function_refused(fn, False)
        elif not callable(fn):
            raise TypeError(f"spawn() needs a callable, got {fn!r}")
        if name is not None and type(name) is not str:  # (no name, or a str: nothing done)
            name = str(name)
        me = getcurrent()
        f = Fiber(self, fn, args, kwargs or {}, name, parent, self.hub_greenlet or me, name_arg)
        # The fiber gets a copy of the spawner's context, unless that is empty: then it starts
        # with none (greenlet's default), and CPython makes it an empty one of its own if it
        # ever uses a context variable. The same for the fiber, and no Context object (64
        # bytes) per fiber that never does ("Memory per idle connection").
        ctx = me.gr_context
        if ctx is not None and len(ctx):
            f.gr_context = copy_context()
        self.fibers[f] = None
        self.ready.append(f)
        self._notify()
        return f

    def _fiber_finished(self, f: Fiber) -> None:
        self.fibers.pop(f, None)
        if self.running is f:
            self.running = None  # (keeps no finished fiber alive)
        if f._cancel_called == 2:  # (it carried a cancellation: no longer in force)
            fiber_finished(self, f)
        parent = f._parent
        if parent is not None and parent._children is not None:
            parent._children.discard(f)
        group = f._group
        if group is not None:
            group._child_finished(f)

    def park(
        self,
        f: Fiber,
        timeout: SupportsFloat | None = None,
        cancellable: bool = True,
        interruptible: bool | None = None,
    ) -> Any:
        """Suspend fiber ``f`` (the current one) until it is woken.

        Returns the value given to `wake`, or `TIMED_OUT` once ``timeout`` seconds (any real
        number; `ValueError` for NaN) passed; raises what `throw` delivered. A
        cancellable park is a checkpoint: it raises `Cancelled` at once if ``f`` is effectively
        cancelled, and cancellation wakes it. ``cancellable=False`` is for waits that must finish
        (re-acquiring a lock, a `TaskGroup` waiting for its children). ``interruptible`` (default:
        ``cancellable``) says whether Ctrl-C may be raised here in the root fiber: only waits that
        keep their invariants when an exception comes out of them may say yes.
        """
        if interruptible is None:
            interruptible = cancellable
        # INLINED-ORIGINAL(park-checks): these checks and the untimed park below are copied
        # into Hub.wait_fd (its edge-triggered, untimed case); change them together.
        if cancellable and self.ncancel and effectively_cancelled(f._scope):
            raise Cancelled()
        if interruptible and self.interrupt_pending and f is self.root:
            raise self.take_interrupt()
        hub_greenlet = self.hub_greenlet
        if hub_greenlet is None or f is hub_greenlet:
            raise NotInFiberError("a blocking call was made outside a running fiber")
        state = (
            PARKED_CANCELLABLE
            if cancellable
            else PARKED_INTERRUPTIBLE
            if interruptible
            else PARKED_SHIELDED
        )
        epoch = _EPOCH[0]
        if epoch is not None:  # (for dumps: about when the wait began, while the detector runs)
            f._since = epoch
        if timeout is None:
            if _SLOTS_IN_C:
                _set_parked(f, state)
            else:
                f._parked = state
            try:
                return self._switch_out(f)
            finally:
                if _SLOTS_IN_C:
                    _set_parked(f, NOT_PARKED)
                else:
                    f._parked = NOT_PARKED
        # Any real number (an int, a Fraction...) is taken, as a float in both builds; NaN is
        # refused here, where every timed wait passes, before it reaches the timer heap.
        t = timeout if type(timeout) is float else self.seconds(timeout)
        if t != t:
            raise ValueError("timeout must not be NaN")
        now = self.time()
        entry = self.add_timer(now + t, self._timeout_cb, f)
        f._wait_began = now  # (for dumps: when the timed wait began, on the hub's clock)
        if _SLOTS_IN_C:
            _set_parked(f, state)
        else:
            f._parked = state
        try:
            return self._switch_out(f)
        finally:
            if _SLOTS_IN_C:
                _set_parked(f, NOT_PARKED)
            else:
                f._parked = NOT_PARKED
            if entry[2] is not None:
                self.cancel_timer(entry)

    def take_interrupt(self) -> BaseException:
        """The pending interrupt for the root fiber (Ctrl-C, or what a signal handler raised),
        which is then no longer pending."""
        exc = self.interrupt or KeyboardInterrupt()
        self.interrupt_pending = False
        self.interrupt = None
        return exc

    def _on_timeout(self, f: Fiber) -> None:
        self.wake(f, TIMED_OUT)

    def wake(self, f: Fiber, value: Any = None) -> bool:
        """Resume parked fiber ``f`` with ``value``. False (and nothing done) if not parked."""
        # INLINED-ORIGINAL(fd-wake, batched-wake): copied into EpollHub.select (the fd's
        # waiters) and Hub._run_calls (a batched call's fiber); change them together.
        if _SLOTS_IN_C:
            if not _unpark(f):
                return False
            _set_wake_value(f, value)
            if value is not None:
                self.wake_values += 1
        else:  # (`_unpark` inlined: a call costs the interpreter more than this)
            if not f._parked:
                return False
            f._parked = NOT_PARKED
            f._wake_value = value
        self.ready.append(f)
        if not self._budget:  # (outside a pass: see `_queued_outside_pass`)
            self._queued_outside_pass()
        return True

    def throw(self, f: Fiber, exc: BaseException) -> bool:
        """Resume parked fiber ``f`` by raising ``exc`` in it. False if not parked."""
        # INLINED-ORIGINAL(batched-wake): copied into Hub._run_calls; change them together.
        if f._parked:
            f._parked = NOT_PARKED
            f._wake_value = Raise(exc)
            if _SLOTS_IN_C:
                self.wake_values += 1
            self.ready.append(f)
            if not self._budget:  # (outside a pass: see `_queued_outside_pass`)
                self._queued_outside_pass()
            return True
        return False

    def _queued_outside_pass(self) -> None:
        """`wake` or `throw` queued a fiber while no pass runs: from a timer or a loop callback
        of this hub, or from another OS thread.

        Inside a pass nothing is needed (the common case, a hand-off between fibers: one test of
        ``_budget``): the pass runs the fiber, or the driver finds it in ``ready`` once the pass
        ends (the selector hub before it polls again, `ForeignHub` after its drive). A pass
        ends by setting ``_budget`` to 0 and then looks at ``ready``; another thread appends
        first and then reads ``_budget``: whichever comes second sees the other's write, so a
        fiber another thread queues during a pass is never left behind.

        Outside a pass, in this hub's thread the driver is told (`_notify`). From another
        thread the hub may be asleep in its poll, which nothing else would end: the loop is
        woken through ``call_soon_threadsafe``, which runs `_notify` in the hub's thread.
        """
        cur = getcurrent()
        if cur is self.hub_greenlet or (type(cur) is Fiber and cur.hub is self):
            self._notify()  # (this hub's thread: a timer, a loop callback)
            return
        loop = self.loop
        if loop is None or self.thread.ident == threading.get_ident():
            self._notify()  # (its thread, before its loop runs)
            return
        try:
            loop.call_soon_threadsafe(self._notify)
        except RuntimeError:
            pass  # the loop is closed: none of its fibers will run again

    def yield_now(self, f: Fiber) -> None:
        """Let every other ready fiber run once, then continue (``sleep(0)``). A checkpoint:
        `Cancelled` in a cancelled scope; in the root fiber, an interrupt (Ctrl-C) that came
        while the others ran (or before, during a wait it could not interrupt)."""
        if self.ncancel and effectively_cancelled(f._scope):
            raise Cancelled()
        hub_greenlet = self.hub_greenlet
        if hub_greenlet is None or f is hub_greenlet:
            raise NotInFiberError("a blocking call was made outside a running fiber")
        self.ready.append(f)
        self._yielded = True  # this pass must not be extended: I/O and timers get their turn
        self._notify()
        # (no refill of io_budget here: the hub resumes the next fiber through _switch_out,
        # which refills it)
        hub_greenlet.switch()
        # A Ctrl-C handled while the others ran (its handler ran in one of them) is pending for
        # the root, which `deliver_interrupt` cannot throw into: it is not parked, but queued.
        # It is raised here, in the blocking call the root is in (one test on the hot path).
        if self.interrupt_pending and f is self.root and not must_finish(f):
            raise self.take_interrupt()

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
        hub_greenlet = self.hub_greenlet
        if hub_greenlet is None or f is hub_greenlet:
            return
        if self.calls:
            # Batched calls (sends) wait for the ready fibers: go after those calls too, so
            # that the bytes written to one socket keep the order of the calls.
            self.call_batched(f, _nothing)
        elif self.ready:
            # No _notify(): a fiber runs only inside a pass, and every driver looks at
            # ``ready`` again once a pass ends.
            self.ready.append(f)
            self._switch_out(f)

    def _notify(self) -> None:
        """Called in the hub's thread when ``ready`` grew (but when a pass grew it: see
        `_queued_outside_pass`); drivers that need a nudge to run it override this."""

    running: Fiber | None

    #: Fairness: after this many blocking I/O calls in a row that never had to wait (a peer that
    #: always has data ready), the calling fiber lets the others run (`yield_now`) at its next
    #: one. The I/O modules count down ``io_budget`` at the entry of each blocking call (one
    #: test: a zero budget means "take the slow path", which is also how a cancellation in
    #: force makes every entry a cancellation point); a fiber switching out refills it.
    IO_STREAK_MAX: ClassVar[int] = 64

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
        hooks = PASS_HOOKS
        if hooks:  # (instruments: pass started)
            for hook in list(hooks):
                hook(self, True)
        ready = self.ready
        self._yielded = False
        self._budget = len(ready) + PASS_EXTRA
        try:
            self._run_pass(ready)
            while self.calls:
                self._run_calls()
                self._run_pass(ready)
        finally:
            self._budget = 0
            if hooks:  # (pass ended; not for a hook removed meanwhile: the same list)
                for hook in list(hooks):
                    hook(self, False)

    def _run_pass(self, ready: deque[Fiber]) -> None:
        while self._budget and ready:
            # Past the fibers queued before the pass, stop extending it once a fiber yielded
            # (sleep(0) in a loop would otherwise starve I/O and timers for PASS_EXTRA turns)
            # or Ctrl-C arrived in a fiber (the hub must deliver it to the root now).
            # INLINED-COPY-BEGIN(pass-rule): Hub._switch_out's test for resuming the next ready
            # fiber (the loop ends where it fails). They must agree: were _switch_out to refuse
            # a fiber this loop gives it, it would switch the hub to itself, and the loop spin.
            if self._budget <= PASS_EXTRA and (self._yielded or self.interrupt_pending):
                break
            if ready[0]:
                # (A greenlet is true once started, until it ends: the fiber has run. One C
                # call, where compiled code reads ``_state`` by a generic attribute access.)
                # The same test passes in _switch_out, which resumes it (and the chain after
                # it) and returns once control is back on the hub.
                self._switch_out()
            else:
                self._budget -= 1
                f = self.running = _popleft(ready)
                _switch(f)  # not started: switched to without arguments
                del f  # (the hub's frame outlives the pass: it must not keep the fiber alive)
            # INLINED-COPY-END(pass-rule)

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
        if _SLOTS_IN_C:
            _set_parked(f, PARKED_SHIELDED)
        else:
            f._parked = PARKED_SHIELDED
        try:
            return self._switch_out(f)
        finally:
            if _SLOTS_IN_C:
                _set_parked(f, NOT_PARKED)
            else:
                f._parked = NOT_PARKED
            call[0] = None  # resumed: by _run_calls, or woken otherwise (then: call dropped)

    def _run_calls(self) -> None:
        """Make the batched calls, in order, and queue their fibers with the outcomes."""
        calls, self.calls = self.calls, []
        ready = self.ready
        for f, fn, args in calls:
            if f is None:
                continue  # its fiber was woken by something else meanwhile: not wanted now
            # INLINED-COPY-BEGIN(batched-wake): Hub.wake (a value) or Hub.throw (an exception),
            # without their test (the fiber is parked: its call is still wanted) and without
            # _notify (this runs inside a pass, which then runs the fiber).
            try:
                v = fn(*args)
            except Exception as exc:
                v = Raise(exc)
            if _SLOTS_IN_C:
                _set_wake_value(f, v)
                _set_parked(f, NOT_PARKED)
                if v is not None:
                    self.wake_values += 1
            else:
                f._wake_value = v
                f._parked = NOT_PARKED
            ready.append(f)
            # INLINED-COPY-END(batched-wake)

    def _switch_out(self, f: Fiber | None = None) -> Any:
        """Leave the current greenlet: fiber ``f`` parking (or yielding), or the hub in
        `_run_ready` (None).

        Within a pass whose budget allows it, the next ready fiber is resumed directly;
        otherwise control goes back to the hub. Once ``f`` is resumed in turn, returns the
        value it was woken with, or raises the exception (`Raise`).

        The wake value travels in the fiber's ``_wake_value``, not through the switch: the
        resumed fiber reads its own. A switch with an argument makes greenlet build a 1-tuple
        for it, and the switch's caller never needs the value itself (about 150 instructions
        per switch compiled: docs/compiled.md, "The wake value read by the fiber resumed").
        """
        # INLINED-ORIGINAL(switch-out): copied whole into Hub.wait_fd (its untimed
        # edge-triggered wait, where idle connections park) and Hub.wait_readable; change them
        # together.
        self.io_budget = self.io_budget_full
        n = self._budget
        ready = self.ready
        # INLINED-ORIGINAL(pass-rule): this test is copied into Hub._run_pass (which hands
        # over to this method exactly when it passes); change them together.
        if (
            n
            and ready
            and ready[0]
            and (n > PASS_EXTRA or not (self._yielded or self.interrupt_pending))
        ):
            self._budget = n - 1
            self.running = _popleft(ready)
            _switch(self.running)  # (not held in a local: this frame waits on)
        else:
            _switch(self.hub_greenlet)
        if f is None:
            return None  # (the hub: nobody gives it a value)
        # INLINED-ORIGINAL(resume): copied into Hub.wait_fd and Hub.wait_readable (within
        # their copies of this method); change them together.
        if _SLOTS_IN_C:
            v = _wake_value_of(f) if self.wake_values else None
        else:
            v = f._wake_value
        if v is not None:
            if _SLOTS_IN_C:
                self.wake_values -= 1
            f._wake_value = None
            if isinstance(v, Raise):
                raise v.take()
        return v

    # -- file descriptors ------------------------------------------------------------------------

    def fd_record(self, fd: int) -> FdWait:
        """A new persistent record for ``fd``, owned by one socket; `forget_fd` it on close.

        An idle record left for the same fd number (its socket was garbage-collected without
        close, and the number reused) is replaced. So is one that fibers still wait on if its
        file is gone (`_forget_if_stale`: the fd was closed behind its socket's back); its
        waiters get `OSError` (EBADF) as from `forget_fd`.
        """
        old = self.fds.get(fd)
        if old is not None:
            if self._has_waiters(old) and not self._forget_if_stale(old):
                raise RuntimeError(f"fd {fd} is already being waited on through another object")
            if old.armed:
                self._disarm(old)
        rec = FdWait(fd, True, self.edge_triggered, self)
        self.fds[rec.fdobj] = rec
        return rec

    def forget_fd(self, rec: FdWait) -> None:
        """The fd is being closed: stop watching it and wake its waiters with `OSError`."""
        if self.fds.get(rec.fd) is rec:
            del self.fds[rec.fd]
        if rec.armed:
            self._disarm(rec)
        # The number may be reused at once: whoever still holds the record (a fiber woken
        # before the close, about to retry its syscall on ``rec.fd``) gets EBADF instead.
        rec.fd = -1
        rec.fdobj = -1
        waiters = [rec.reader, rec.writer]
        q = _QUEUED.get(rec)
        if q is not None:
            waiters += q.readers
            waiters += q.writers
        for f in waiters:
            if f is not None:
                self.throw(f, OSError(errno.EBADF, "the file descriptor was closed while waiting"))

    def _forget_if_stale(self, rec: FdWait) -> bool:
        """`forget_fd` ``rec`` if it is a socket's registered record whose file is gone: True if
        so. For a wait that finds the record by the fd number, as another user of the number
        (`_raw_record`, `fd_record`), never the socket's own waits (the hot path).

        A socket's fd closed behind its back (``os.close(sock.fileno())``, a C library closing
        it) leaves its record in the table, registered as far as the hub knows, while the
        kernel dropped the closed file from its interest set. Whoever gets the number next
        (a pipe, a pidfd, a new socket) would find the record, take it for registered, and
        never be woken. The backend's check costs one syscall (`_registration_lost`), made only
        for a record the hub keeps registered between waits (persistent, armed: the
        edge-triggered hub's); the others are registered afresh by the wait itself.
        """
        if not (rec.persistent and rec.armed and self.edge_triggered):
            return False
        if not self._registration_lost(rec):
            return False
        rec.armed = False  # (nothing to unregister: the kernel dropped it)
        self.forget_fd(rec)
        return True

    def _raw_record(self, f: Fiber, fd: int) -> FdWait:
        """The record for a wait on ``fd`` by number (`wait_raw_fd`, `wait_fds`): the one in the
        table, a socket's record too (checked by `_forget_if_stale` unless ``f`` waits on it
        already), or a new one, watched only while fibers wait."""
        rec = self.fds.get(fd)
        if rec is not None:
            if rec.reader is f or rec.writer is f or not self._forget_if_stale(rec):
                return rec
        rec = FdWait(fd, False, False, self)
        self.fds[fd] = rec
        return rec

    def _has_waiters(self, rec: FdWait) -> bool:
        """Whether a fiber waits on ``rec``: as its ``reader`` or ``writer``, or queued."""
        return rec.reader is not None or rec.writer is not None or rec in _QUEUED

    def _fd_queue(self, rec: FdWait) -> tuple[list[Fiber], list[Fiber]]:
        """The fibers queued behind ``rec.reader`` and behind ``rec.writer``, oldest first."""
        q = _QUEUED.get(rec)
        if q is None:
            return [], []
        return list(q.readers), list(q.writers)

    def _drop_queues(self) -> None:
        """Forget the queues of this hub's records: the hub is closed, its fibers will not run
        again, so none of them will leave its queue. (A forked child drops every queue at
        once: see `_QUEUED`.)"""
        for rec in list(_QUEUED):  # (one C call: other hubs' threads add and remove keys)
            if rec.hub is self:
                _QUEUED.pop(rec, None)

    def wait_fd(self, f: Fiber, rec: FdWait, write: bool, timeout: float | None) -> Any:
        """Park ``f`` until ``rec.fd`` is readable (or writable). Returns None or `TIMED_OUT`.

        Call it only after the non-blocking syscall failed with EAGAIN (an edge-triggered record
        reports only changes), and when it returns None, make the syscall again (and wait
        again if it would still block): the wake-up may be spurious.

        One fiber per direction is the record's ``reader`` (``writer``), the one the OS's events
        wake. Others that come to wait the same way meanwhile queue behind it (`_wait_queued`),
        and whoever leaves the wait wakes the first of them if that leaves nobody as the waiter
        (`_pass_on`).
        """
        # INLINED-ORIGINAL(wait-readable): the read, untimed, edge-triggered case is copied into
        # Hub.wait_readable; change them together.
        if write:
            if rec.writer is not None:
                return self._wait_queued(f, rec, True, timeout)
            rec.writer = f
        else:
            if rec.reader is not None:
                return self._wait_queued(f, rec, False, timeout)
            rec.reader = f
        self.fd_waiters += 1
        try:
            if rec.armed and self.edge_triggered and rec.persistent:
                untimed = timeout is None
            elif not self._arm(rec):
                return None  # the fd cannot be polled (a regular file): it is always ready
            else:  # (a first wait parks inline too: see below)
                untimed = timeout is None and self.edge_triggered
            if untimed:
                # The sockets' hot path, with `park` inlined: an idle connection's fiber waits
                # here, and every frame on its stack is memory kept per connection
                # (docs/internals.md, "Memory per idle connection"), `_switch_out` too.
                # INLINED-COPY-BEGIN(park-checks): Hub.park(f) (cancellable, untimed): the
                # same checks, in the same order, but for its NotInFiberError test (`f` is
                # a running fiber of this hub here).
                if self.ncancel and effectively_cancelled(f._scope):
                    raise Cancelled()
                if self.interrupt_pending and f is self.root:
                    raise self.take_interrupt()
                epoch = _EPOCH[0]
                if epoch is not None:
                    f._since = epoch
                if _SLOTS_IN_C:
                    _set_parked(f, PARKED_CANCELLABLE)
                else:
                    f._parked = PARKED_CANCELLABLE
                try:
                    # INLINED-COPY-BEGIN(switch-out): Hub._switch_out, whole (a frame less
                    # for every fiber waiting here: about 215 bytes each on 3.12+).
                    self.io_budget = self.io_budget_full
                    n = self._budget
                    ready = self.ready
                    if (
                        n
                        and ready
                        and ready[0]
                        and (n > PASS_EXTRA or not (self._yielded or self.interrupt_pending))
                    ):
                        self._budget = n - 1
                        self.running = _popleft(ready)
                        _switch(self.running)
                    else:
                        _switch(self.hub_greenlet)
                    # INLINED-COPY-BEGIN(resume): Hub._switch_out's, for ``f``
                    if _SLOTS_IN_C:
                        v = _wake_value_of(f) if self.wake_values else None
                    else:
                        v = f._wake_value
                    if v is not None:
                        if _SLOTS_IN_C:
                            self.wake_values -= 1
                        f._wake_value = None
                        if isinstance(v, Raise):
                            raise v.take()
                    return v
                    # INLINED-COPY-END(resume)
                    # INLINED-COPY-END(switch-out)
                except BaseException:
                    # (Resumed normally, ``f`` was woken by one who cleared ``_parked``: only
                    # an exception greenlet raised itself, a GreenletExit, needs this.)
                    f._parked = NOT_PARKED
                    raise
                # INLINED-COPY-END(park-checks)
            return self.park(f, timeout)
        finally:
            self.fd_waiters -= 1
            if write:
                rec.writer = None
            else:
                rec.reader = None
            if _QUEUED:  # (some fd has fibers queued: the slow path)
                self._pass_on(rec, write)
            if not rec.persistent or not self.edge_triggered:
                self._after_wait(rec)

    def _wait_queued(self, f: Fiber, rec: FdWait, write: bool, timeout: float | None) -> Any:
        """`wait_fd` when another fiber already waits the same way on ``rec``: ``f`` queues
        behind it, and parks until `_pass_on` wakes it (None), or its timeout, a cancellation,
        or `forget_fd` ends the wait.

        How no readiness is lost. An edge-triggered record reports a change once, and one
        report may cover several pending connections or datagrams: whoever leaves the wait
        while nobody else is the waiter (the waiter woken by the event, one that timed out or
        was cancelled, a queued fiber woken to retry) wakes the first queued fiber, which
        retries its syscall; if that would still block, it waits again, as the waiter if the
        place is free (queued last otherwise). So after each event, queued fibers retry one
        after another until one finds the fd drained and waits as the waiter: the OS reports
        the next change to it. A fiber queued while a waiter waits needs no wake-up: the waiter
        made its syscall, found nothing, and no event has come since (it would have been woken).
        """
        if rec.fd < 0:
            raise OSError(errno.EBADF, "the file descriptor was closed")
        _enqueue(f, rec, write)
        self.fd_waiters += 1
        try:
            return self.park(f, timeout)
        finally:
            self.fd_waiters -= 1
            self._unqueue(f, rec, write)

    def _unqueue(self, f: Fiber, rec: FdWait, write: bool) -> None:
        """End a queued wait of ``f`` on ``rec``: out of the queue if `_pass_on` did not take
        it out (a timeout, a cancellation, `forget_fd`), then `_pass_on`."""
        q = _QUEUED.get(rec)
        if q is not None:
            line = q.writers if write else q.readers
            try:
                line.remove(f)
            except ValueError:
                pass  # (woken by _pass_on, which took it out)
        self._pass_on(rec, write)
        if not rec.persistent or not self.edge_triggered:
            self._after_wait(rec)  # (a record kept for the queue may go now)

    def _pass_on(self, rec: FdWait, write: bool) -> None:
        """A fiber left its wait on ``rec`` (readiness, a timeout, a cancellation, a close):
        if nobody is the waiter now, wake the first fiber queued that way, to retry its syscall
        (see `_wait_queued`). A fiber taken out here that something else woke first (it is no
        longer parked) passes on when it leaves in turn. Drops the queues once empty."""
        q = _QUEUED.get(rec)
        if q is None:
            return
        if write:
            if rec.writer is None and q.writers:
                self.wake(_popleft(q.writers))
        elif rec.reader is None and q.readers:
            self.wake(_popleft(q.readers))
        if not q.readers and not q.writers:
            del _QUEUED[rec]

    def wait_readable(self, f: Fiber, rec: FdWait) -> Any:
        """``wait_fd(f, rec, False, None)`` for a socket's record (`fd_record`): where an idle
        connection's fiber waits in ``recv``.

        The same, with less kept while the fiber waits. Compiled, the C frames between the
        fiber's entry and its switch stay on its stack, which greenlet copies to the heap at
        every switch (docs/internals.md, "Memory per idle connection"): `wait_fd`'s, which
        holds every case, takes 336 bytes on x86-64, this one 208 (its checks and the calls
        that raise are left to `wait_fd`). The rare cases (a second reader, a cancellation or
        a Ctrl-C in force, a level-triggered hub) go to `wait_fd`. Interpreted, it is as deep
        as `wait_fd` (`_switch_out` inlined in both).
        """
        if not self.edge_triggered or rec.reader is not None:
            return self.wait_fd(f, rec, False, None)
        if self.ncancel or self.interrupt_pending:
            return self.wait_fd(f, rec, False, None)  # (its checks, in its order)
        # INLINED-COPY-BEGIN(wait-readable): Hub.wait_fd (a read, no timeout, on the
        # edge-triggered hub, nothing cancelled or interrupted), in the same order.
        rec.reader = f
        self.fd_waiters += 1
        try:
            if not rec.armed and not self._arm(rec):
                return None  # the fd cannot be polled (a regular file): it is always ready
            epoch = _EPOCH[0]
            if epoch is not None:
                f._since = epoch
            if _SLOTS_IN_C:
                _set_parked(f, PARKED_CANCELLABLE)
            else:
                f._parked = PARKED_CANCELLABLE
            # INLINED-COPY-BEGIN(switch-out): Hub._switch_out, whole (its own C frame, about
            # 110 bytes, would stay on the idle fiber's stack too).
            self.io_budget = self.io_budget_full
            n = self._budget
            ready = self.ready
            if (
                n
                and ready
                and ready[0]
                and (n > PASS_EXTRA or not (self._yielded or self.interrupt_pending))
            ):
                self._budget = n - 1
                self.running = _popleft(ready)
                _switch(self.running)
            else:
                _switch(self.hub_greenlet)
            # INLINED-COPY-BEGIN(resume): Hub._switch_out's, for ``f``
            if _SLOTS_IN_C:
                v = _wake_value_of(f) if self.wake_values else None
            else:
                v = f._wake_value
            if v is not None:
                if _SLOTS_IN_C:
                    self.wake_values -= 1
                f._wake_value = None
                if isinstance(v, Raise):
                    raise v.take()
            return v
            # INLINED-COPY-END(resume)
            # INLINED-COPY-END(switch-out)
        except BaseException:
            # Resumed normally, ``f`` was woken by one who cleared ``_parked`` (`wake`, an fd
            # event): a store saved per wait (compiled, a generic attribute access). An
            # exception may come from greenlet itself (a GreenletExit), with nobody's wake.
            f._parked = NOT_PARKED
            raise
        finally:
            self.fd_waiters -= 1
            rec.reader = None
            if _QUEUED:
                self._pass_on(rec, False)
            if not rec.persistent:
                self._after_wait(rec)
        # INLINED-COPY-END(wait-readable)

    def wait_raw_fd(self, f: Fiber, fd: Any, write: Any, timeout: float | None) -> Any:
        """`wait_fd` for an fd unknot does not own: watched only while the fiber waits.

        ``fd`` is a number or an object with a ``fileno()`` method (as for `wait_fds`);
        ``write`` is taken for its truth."""
        # (Typed Any, converted here: compiled, an int or bool parameter would refuse what the
        # pure build takes, a 0 for False or a file object.)
        if type(fd) is not int:
            fd = self._fd_number(fd)
        return self.wait_fd(f, self._raw_record(f, fd), True if write else False, timeout)

    @staticmethod
    def _fd_number(fd: Any) -> int:
        """The fd number of ``fd``, a number or an object with a ``fileno()`` method (what
        `select.select` takes); `TypeError` for anything else, `ValueError` for a negative
        number."""
        if isinstance(fd, int) and not isinstance(fd, bool):
            n = int(fd)
        else:
            fileno = getattr(fd, "fileno", None)
            if fileno is None or isinstance(fd, bool):
                raise TypeError(
                    f"an fd must be an int or have a fileno() method, not {type(fd).__name__}"
                )
            n = fileno()
            if not isinstance(n, int) or isinstance(n, bool):
                raise TypeError(f"fileno() returned {type(n).__name__}, not an int")
            n = int(n)
        if n < 0:
            raise ValueError(f"an fd cannot be a negative number ({n})")
        return n

    def wait_fds(
        self,
        f: Fiber,
        reads: Iterable[Any],
        writes: Iterable[Any],
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

        Where another fiber already waits on an fd in the same direction, ``f`` queues behind
        it, as in `wait_fd`, and is woken when that one leaves its wait. An fd asyncio watches
        raises `RuntimeError`, leaving nothing registered; unless ``busy_poll`` is given: such
        fds are then skipped and the wait ends (returning None) after at most ``busy_poll``
        seconds, so that the caller polls them again. An fd is a number or an object with a
        ``fileno()`` method (as `select.select` takes): `TypeError` for anything else.
        """
        taken: list[tuple[FdWait, bool]] = []
        queued: list[tuple[FdWait, bool]] = []
        skipped = False
        self.fd_waiters += 1
        try:
            for write, fds in ((False, reads), (True, writes)):
                for fd in fds:
                    rec = self._raw_record(f, fd if type(fd) is int else self._fd_number(fd))
                    waiter = rec.writer if write else rec.reader
                    if waiter is f:
                        continue  # listed twice
                    if waiter is not None:
                        if (rec, write) not in queued:  # (not listed twice)
                            _enqueue(f, rec, write)
                            queued.append((rec, write))
                        continue
                    if write:
                        rec.writer = f
                    else:
                        rec.reader = f
                    taken.append((rec, write))
                    try:
                        # (A record that is not a socket's is armed level-triggered for its
                        # waiters' directions: armed for one, it is armed again for both.)
                        if (
                            not rec.armed or not rec.persistent or not self.edge_triggered
                        ) and not self._arm(rec):
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
            for rec, write in queued:
                self._unqueue(f, rec, write)

    def _release(self, rec: FdWait, write: bool) -> None:
        """End one direction of a fiber's wait on ``rec`` (narrow or drop its registration)."""
        if write:
            rec.writer = None
        else:
            rec.reader = None
        if _QUEUED:
            self._pass_on(rec, write)
        if not rec.persistent or not self.edge_triggered:
            self._after_wait(rec)

    def _drop(self, rec: FdWait) -> None:
        """Take a record nobody waits on (as ``reader`` or ``writer``) out of the table, unless
        fibers are queued on it: the one woken to retry comes back to the same record."""
        if self.fds.get(rec.fd) is rec and rec not in _QUEUED:
            del self.fds[rec.fd]

    def _fd_event(self, rec: FdWait, readable: bool, writable: bool) -> None:
        # INLINED-ORIGINAL(fd-wake): copied, with Hub.wake, into EpollHub.select (which also
        # keeps the readiness hints); change them together.
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

    def _registration_lost(self, rec: FdWait) -> bool:
        """Whether the OS no longer watches ``rec``, an armed persistent record, because the
        file it was registered for is gone (the number closed, perhaps reused since): see
        `_forget_if_stale`. Only backends that keep such records registered between waits
        (edge-triggered) can lose one."""
        return False

    # After a fork (`unknot._core._fork`) ---------------------------------------------------------

    def _reset_after_fork(self, keep: Fiber | None) -> list[Fiber]:
        """In a child process forked while this hub ran: only ``keep`` goes on.

        ``keep`` is the fiber that called fork (None: fork was called outside any fiber). As a
        forked process keeps only the thread that forked, every other fiber is left as it is,
        never to run again: marked not parked (then no wake-up, timer, fd event or parking lot
        resumes it), out of the ready queue, the batched calls and the hub's table of fibers.
        Their timers go; a scope deadline of ``keep``'s stays. Returns the fibers left behind
        (the caller keeps them alive: a collected greenlet would run its ``finally`` blocks).
        The backend's kernel object is the caller's business (`_reset_fd_records_after_fork`).
        """
        # (The fd queues are gone already: `_QUEUED` is cleared in every forked child.)
        others = [f for f in self.fibers if f is not keep]
        for f in others:
            f._parked = NOT_PARKED
        self.fibers = {keep: None} if keep is not None and keep in self.fibers else {}
        self.ready.clear()
        self.calls = []
        self._yielded = False
        self.running = keep
        self.fd_waiters = 0  # (nobody waits: ``keep`` runs)
        self.threads_in_flight = 0  # (the pool's threads are not in the child)
        self._deadlock_since = None
        # Timers: those whose argument is another fiber (a timed wait) or another fiber's
        # scope (a deadline) go; hub-level ones (`lowlevel.add_timer`) stay.
        live = []
        for entry in self.timers:
            if entry[2] is None:
                continue
            owner = getattr(entry[3], "_owner", entry[3])
            if type(owner) is Fiber and owner is not keep:
                continue
            live.append(entry)
        heapq.heapify(live)
        self.timers = live
        self._cancelled_timers = 0
        # The cancellations in force: only those on ``keep``'s scope chain can still end (it
        # exits its scopes, or finishes), so the count is theirs.
        n = 0
        node: Any = keep._scope if keep is not None else None
        while node is not None:
            if type(node) is Fiber:
                if node._cancel_called == 2 and not node.dead:
                    n += 1
            elif node._cancel_called and node._active:
                n += 1
            node = node._parent
        count_cancellations(self, n - self.ncancel)
        return others

    def _reset_fd_records_after_fork(self) -> None:
        """The fd records, for a new kernel object made in a forked child: nobody waits on any,
        none is registered; the sockets' records stay (their next wait registers them in the
        new object), the others go. Readiness hints say "try the syscall first"."""
        kept: dict[int, FdWait] = {}
        for key, rec in self.fds.items():
            rec.reader = None
            rec.writer = None
            rec.armed = False
            rec.events = 0
            if rec.persistent:
                rec.readable = True
                rec.writable = True
                kept[key] = rec
        self.fds = kept
