"""`Pool`: at most ``size`` calls at once (any number for ``Pool(None)``), with `spawn`, `map`,
`imap`, `imap_unordered`, `apply`.

How it works. The pool is a count of free *slots* and a fair queue (a `ParkingLot`) of fibers
waiting for one; a call runs only while it holds a slot. `Pool.spawn` takes a slot and starts a
fiber that gives it back when it ends. `map` and the `imap` variants do not start a fiber per
item (starting a fiber costs far more than a call): a `_Run` starts *workers*, each of which
loops "take the next item, take a slot, call, give the slot back, store the result". Before
each call a worker makes sure a helper is on its way (an idle worker woken, or a new one while
fewer than ``size`` exist), unless one already is (not yet started, woken, or in the pool's
queue for a slot): a function that never blocks is served by one worker with no switch per
item, while one that blocks brings up to ``size`` workers. A helper is started even when no
slot is free (the pool is shared): it takes an item and waits in the queue, so that a slot
another call frees goes to the run at once. A worker waits for a slot only with an item to
call: one that finds the input over ends without a slot (a run whose calls are done never
waits for the pool to learn that it is over). Each call runs in its own copy of the caller's
contextvars (as if spawned).

Nesting. A `map` called from inside a call of the same pool (a spawned fiber, a fiber inside
`apply`, a worker while it calls: one pulling from the input holds no slot) is lent the caller's
slot, which holds it and only waits meanwhile: the map's first call runs in that slot, so that
calls of the pool that map over it cannot take every slot and wait for each other for ever (as
`apply` called from inside runs at once). An imap's consumer runs on between results, so it
lends its slot only while it waits in ``next()`` and takes it back before it returns. The slot
may then be held by a call of the run: the consumer takes a free slot of the pool instead (the
lent one goes to the pool when that call ends), or waits for whichever of the two comes first,
ahead of the run's queued workers. So the bound is never exceeded, and a consumer waits at most
for one call of its own run, which waits only for its own nested calls: nothing waits in a
circle. (The consumer may get a result a call later than it would holding a second slot.)

Memory. `map` keeps the results (it returns them all). `imap` and `imap_unordered` take an item
from the input only while fewer than ``size`` items (`UNBOUNDED_WINDOW` for an unbounded pool)
are taken and not yet handed to the consumer. A worker that finds this window full parks, idle
(no call in flight), until the consumer takes a result; the consumer then wakes one, unless one
it woke has not run yet. Idle workers end when the input is exhausted, when the iterator is
closed or dropped, and when the pool's with-block exits (a consumer that comes back later
starts new ones).

Failure. The first call that raises (or the input iterator raising) stops the run: the calls
in flight are cancelled (`Cancelled` at their next blocking call), the run waits for them to
unwind, and the caller gets the first exception itself. Exceptions other calls raised while
being cancelled are listed in a note on it. Results not yet handed over are dropped.

Cancellation. A cancellation (or Ctrl-C) that reaches the consumer of an `imap` while it waits
in ``next()`` stops the run the same way; the results and items in flight are lost, so every
later ``next()`` raises `FiberCancelled`, naming the iteration, rather than ending it as if
the input were exhausted.
"""

from __future__ import annotations

import sys
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextvars import copy_context
from types import TracebackType
from typing import Any, TypeVar

from greenlet import GreenletExit

from ._future import call_in_loop, in_thread_of
from .lowlevel import (
    Cancelled,
    DeadlockError,
    Fiber,
    FiberCancelled,
    Hub,
    ParkingLot,
    TaskGroup,
    checkpoint_if_cancelled,
    current_fiber,
    require_fiber,
    spawn,
)

R = TypeVar("R")

_NEEDS_BLOCK = (
    "Pool.spawn() needs the pool's with-block, which owns the fibers it starts: "
    "'with unknot.Pool(n) as pool: pool.spawn(fn, ...)' "
    "(map, imap, imap_unordered and apply work without it)"
)

# What a run does with its results.
_MAP, _ORDERED, _UNORDERED = 0, 1, 2
_MISSING: Any = object()
#: What a worker waiting for a slot is woken with when it gets the slot lent to its run.
_LENT: Any = object()
_WORKER_NAME = "unknot.Pool worker"

#: How many items `Pool.imap` and `Pool.imap_unordered` take ahead of their consumer on an
#: unbounded pool (``Pool(None)``): their memory stays bounded, and so does the number of
#: their calls running at once. (`Pool.map` has no such bound.)
UNBOUNDED_WINDOW = 1000


class Pool:
    """A bounded group of fibers: at most ``size`` calls run at once (gevent's ``Pool``);
    ``Pool()`` or ``Pool(None)`` sets no bound.

    As a with-block it is structured like a `TaskGroup`: ``pool.spawn(fn, ...)`` starts
    ``fn`` in a fiber once a slot is free, the block waits for every fiber it started, a
    failing one cancels the rest and the block raises an `ExceptionGroup`, and cancelling the
    block's owner cancels them all. Nothing it started outlives it::

        with unknot.Pool(20) as pool:
            for url in urls:
                pool.spawn(fetch, url)     # waits while 20 fetches run

    `map`, `imap`, `imap_unordered` and `apply` also work on a pool outside any with-block
    (``pool = unknot.Pool(20); pool.map(fetch, urls)``): each call owns the fibers it starts
    and ends them before it returns (or, for the iterators, when they are exhausted, fail,
    are closed, or are garbage-collected). Inside the with-block their fibers belong to the
    block too. All the calls of one pool share its ``size`` slots.
    """

    def __init__(self, size: int | None = None) -> None:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"Pool size must be a positive integer or None, got {size!r}")
        self._size = size
        #: The bound the slots count against: ``size``, or one never reached for Pool(None)
        #: (so that taking and giving back a slot is the same code for both).
        self._limit: int = size if size is not None else sys.maxsize
        self._free = self._limit
        self._slot_waiters = ParkingLot()
        self._nwaiting = 0  # fibers in _slot_waiters (or just woken from it)
        self._group: TaskGroup | None = None
        #: Fibers running calls of this pool: spawned ones and those inside `apply` (-> None)
        #: and workers (-> their run), for `apply` and for lending to nested runs (see
        #: `_in_call`).
        self._members: dict[Fiber, _Run | None] = {}
        self._fiber_done_cb = self._fiber_done
        #: The imap runs, whose idle workers the with-block's exit sends away.
        self._runs: weakref.WeakSet[_Run] = weakref.WeakSet()
        #: The with-block is exiting: workers end instead of waiting for room.
        self._closing = False

    @property
    def size(self) -> int | None:
        """The most calls that run at once; None for an unbounded pool."""
        return self._size

    def free_count(self) -> int:
        """How many more calls could start now without waiting (1 for an unbounded pool, as
        in gevent: never 0)."""
        return self._free if self._size is not None else 1

    def full(self) -> bool:
        """Whether every slot is taken (the next `spawn` would wait); never for an unbounded
        pool."""
        return self._free == 0

    # -- slots -------------------------------------------------------------------------------

    # A slot is free only when no fiber waits for one (a released slot goes to a waiter first),
    # so a free slot can be taken without looking at the queue.

    def _acquire(self, f: Fiber) -> None:
        """Take a slot for ``f`` (the current fiber), waiting in line if none is free."""
        if self._free:
            self._free -= 1
        else:
            self._wait_for_slot(f)

    def _wait_for_slot(self, f: Fiber, cancellable: bool = True) -> Any:
        """Wait in line for a slot; returns what woke ``f``: `_release`, handing its slot
        over, or a run lending its caller's (`_Run.give_back_lent`)."""
        self._nwaiting += 1
        try:
            return self._slot_waiters.park(f, cancellable=cancellable)
        finally:
            self._nwaiting -= 1

    def _release(self) -> None:
        """Give a slot back: straight to the longest-waiting fiber, if any."""
        if not self._nwaiting or self._slot_waiters.unpark() is None:
            self._free += 1

    def _in_call(self, f: Fiber) -> bool:
        """Whether ``f`` runs a call of this pool, so holds a slot: a spawned fiber, one inside
        `apply`, or a worker except while it takes the next item from its input (it holds no
        slot then, so a map or imap of this pool iterated by the input must not be lent one)."""
        run = self._members.get(f, _MISSING)
        return run is None or (run is not _MISSING and run.pulling is not f)

    # -- the with-block ----------------------------------------------------------------------

    def __enter__(self) -> Pool:
        if self._group is not None:
            raise RuntimeError("this Pool's with-block is already open")
        group = TaskGroup()
        group.__enter__()
        self._group = group
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        group = self._group
        assert group is not None
        # Workers waiting for an imap consumer that may never come would keep the block open.
        self._closing = True
        for run in list(self._runs):
            run.wake_idle(every=True)
        try:
            return group.__exit__(exc_type, exc, tb)
        finally:
            self._group = None
            self._closing = False

    def cancel(self) -> None:
        """Cancel the with-block: its body and every fiber the pool runs in it."""
        if self._group is None:
            raise RuntimeError("Pool.cancel() cancels the pool's with-block, which is not open")
        self._group.cancel()

    # -- spawn and apply ---------------------------------------------------------------------

    def spawn(
        self, fn: Callable[..., Any], /, *args: Any, name: str | None = None, **kwargs: Any
    ) -> Fiber:
        """Start ``fn(*args, **kwargs)`` in a fiber of the pool once a slot is free; return it.

        Waits (a blocking call) while ``size`` calls run. Only inside the pool's with-block:
        `RuntimeError` otherwise.
        """
        group = self._group
        if group is None:
            raise RuntimeError(_NEEDS_BLOCK)
        f = require_fiber()
        if f.hub.ncancel:  # a cancellation point also when a slot is free
            checkpoint_if_cancelled()
        self._acquire(f)
        try:
            child = group.spawn(fn, *args, name=name, **kwargs)
        except BaseException:
            self._release()
            raise
        self._members[child] = None
        child.add_done_callback(self._fiber_done_cb)
        return child

    def _fiber_done(self, child: Fiber) -> None:
        self._members.pop(child, None)
        self._release()

    def apply(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Call ``fn(*args, **kwargs)`` once a slot is free, and return its result (or raise).

        The call runs in the calling fiber, in a copy of its contextvars, while holding a slot.
        Called from inside a call of this pool it runs at once (its caller holds a slot
        already), as in gevent. While ``fn`` runs, the calling fiber counts as running a call
        of the pool (a member, as a spawned fiber), so an `apply`, `map` or `imap` of this pool
        nested in it runs in, or is lent, the slot ``fn`` holds instead of waiting for it.
        """
        f = require_fiber()
        if self._in_call(f):
            return fn(*args, **kwargs)
        checkpoint_if_cancelled()
        self._acquire(f)
        members = self._members
        # (A worker of this pool pulling from its input holds no slot, so lands here: it is a
        # member again, of its run, once fn is done.)
        outer = members.get(f, _MISSING)
        members[f] = None
        try:
            return copy_context().run(fn, *args, **kwargs)
        finally:
            if outer is _MISSING:
                members.pop(f, None)
            else:
                members[f] = outer
            self._release()

    # -- map and friends ---------------------------------------------------------------------

    def map(
        self, fn: Callable[..., R], iterable: Iterable[Any], *iterables: Iterable[Any]
    ) -> list[R]:
        """``list(map(fn, iterable, ...))`` with up to ``size`` calls at once; results in input
        order. A blocking call.

        If a call raises, the calls in flight are cancelled and awaited, and that exception is
        raised (see the module notes). Cancelling the caller cancels the calls and waits for
        them before `Cancelled` comes out.
        """
        checkpoint_if_cancelled()
        # Called from inside a call of this pool: that call's slot is lent to the run (its
        # fiber waits in wait_all meanwhile). See "Nesting" in the module notes.
        lend = self._in_call(require_fiber())
        run = _Run(self, fn, iterable, iterables, _MAP, lend)
        results: list[R] = run.wait_all()
        return results

    def imap(
        self, fn: Callable[..., R], iterable: Iterable[Any], *iterables: Iterable[Any]
    ) -> PoolIterator[R]:
        """Like `map`, but an iterator yielding the results in input order as they come.

        The input is read lazily: at most ``size`` items (`UNBOUNDED_WINDOW` on an unbounded
        pool) are taken ahead of the consumer. Work starts at once. A failing call cancels the
        calls in flight and the iterator raises its exception. A cancellation that reaches the
        consumer while it waits for a result cancels them too, and the iterator then raises
        `FiberCancelled` at every ``next()``. Use it in a ``with`` statement (or call
        ``close()``) to end its fibers when you stop iterating early; dropping it cancels them
        too.

        Iterated from inside a call of the same pool, the consumer lends its slot to the
        iterator's calls while it waits in ``next()`` (as a nested `map` is lent its caller's),
        so imaps nested in the calls of a full pool finish. It takes the slot back before
        ``next()`` returns or raises, waiting if need be for the call running in it to end
        (or for another slot of the pool, whichever is first), so the pool never runs more
        than ``size`` calls; between results the iterator reads ahead only in the pool's
        other slots. A consumer cancelled meanwhile stops the calls first, so that wait is
        short.
        """
        checkpoint_if_cancelled()
        return PoolIterator(_Run(self, fn, iterable, iterables, _ORDERED))

    def imap_unordered(
        self, fn: Callable[..., R], iterable: Iterable[Any], *iterables: Iterable[Any]
    ) -> PoolIterator[R]:
        """Like `imap`, but the results come in the order the calls finish. Nested in a call
        of the same pool it lends the caller's slot while it waits, as `imap` does."""
        checkpoint_if_cancelled()
        return PoolIterator(_Run(self, fn, iterable, iterables, _UNORDERED))

    def __repr__(self) -> str:
        block = " in its with-block" if self._group is not None else ""
        if self._size is None:
            return f"<Pool size=None running={self._limit - self._free}{block}>"
        return f"<Pool size={self._size} free={self._free}{block}>"


class PoolIterator(Iterator[R]):
    """The results of `Pool.imap` or `Pool.imap_unordered`.

    ``close()`` (or leaving a ``with`` block around it) cancels the calls still running and
    waits for them; a dropped iterator cancels them without waiting.
    """

    __slots__ = ("_run",)

    def __init__(self, run: _Run) -> None:
        self._run = run

    def __iter__(self) -> PoolIterator[R]:
        return self

    def __next__(self) -> R:
        value: R = self._run.next()
        return value

    def close(self) -> None:
        """Stop: cancel the calls in flight and wait for them (a blocking call)."""
        self._run.close()

    def __enter__(self) -> PoolIterator[R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self._run.abandon()

    def __repr__(self) -> str:
        run = self._run
        return f"<PoolIterator {run.describe()} taken={run.taken}>"


class _Run:
    """One `map`, `imap` or `imap_unordered` call: its input, workers and results."""

    __slots__ = (
        "pool",
        "fn",
        "star",
        "source",
        "ctx",
        "mode",
        "window",
        "pulled",
        "taken",
        "exhausted",
        "stopping",
        "finished",
        "aborted",
        "error",
        "other_errors",
        "pulling",
        "pull_waiters",
        "npull_waiting",
        "live",
        "pending",
        "workers",
        "results",
        "waiters",
        "nwaiting",
        "group",
        "hub",
        "idle",
        "waking",
        "idle_workers",
        "queued",
        "lent",
        "lenders",
        "owed",
        "forfeit",
        "reclaimers",
        "stop_reason",
        "__weakref__",
        "_worker_done_cb",
    )

    def __init__(
        self,
        pool: Pool,
        fn: Callable[..., Any],
        iterable: Iterable[Any],
        iterables: tuple[Iterable[Any], ...],
        mode: int,
        lend: bool = False,
    ) -> None:
        self.hub: Hub = require_fiber().hub
        self.pool = pool
        self.fn = fn
        self.star = bool(iterables)
        self.source: Iterator[Any] = (
            zip(iterable, *iterables, strict=False) if iterables else iter(iterable)
        )
        self.ctx = copy_context()
        self.mode = mode
        #: Items taken from the input and not yet handed to the consumer, at most.
        self.window: float = float("inf") if mode == _MAP else pool._size or UNBOUNDED_WINDOW
        self.pulled = 0  # items taken from the input
        self.taken = 0  # results handed to the consumer (imap modes)
        self.exhausted = False  # the input is finished
        self.stopping = False  # a failure, close() or a cancelled consumer: no more calls
        self.finished = False  # the consumer got the end (StopIteration or the error)
        self.aborted = False  # the workers were cancelled from outside (the pool's block)
        self.error: BaseException | None = None
        self.other_errors: list[BaseException] = []
        self.pulling: Fiber | None = None  # the worker inside next(source)
        self.pull_waiters = ParkingLot()
        self.npull_waiting = 0
        self.live = 0  # workers started and not finished
        self.pending = 0  # workers started that have not run yet
        self.workers: dict[Fiber, bool] = {}  # live workers -> whether they have started
        self.idle_workers = ParkingLot()  # workers waiting for room in the window
        self.idle = 0  # workers parked there (not counting those woken)
        self.waking = 0  # workers woken from there that have not run yet
        #: Workers in the pool's queue for a slot, each with an item (a dict: oldest first).
        self.queued: dict[Fiber, None] = {}
        #: How many of the slots lent to the run are free for its next calls: the slot of
        #: map's caller (`Pool.map` from inside a call of the pool), or of an imap consumer
        #: waiting in ``next()`` (see `lend`).
        self.lent = 1 if lend else 0
        #: How many slots callers lend the run now (map's caller for good, consumers while
        #: they wait). The lent slots held by calls are ``lenders + owed + forfeit - lent``.
        self.lenders = 1 if lend else 0
        #: Lent slots held by calls whose lender took a slot of the pool instead of waiting
        #: for them: each goes to the pool when its call ends.
        self.owed = 0
        #: Lent slots held by calls whose lender took them back without waiting (a wait that
        #: could not end: `reclaim`): each is dropped when its call ends.
        self.forfeit = 0
        #: Consumers waiting to take their lent slot back (in the pool's queue), oldest first.
        self.reclaimers: dict[Fiber, None] = {}
        #: Why a consumer's next() stopped the run (the imap modes): later ones raise it.
        self.stop_reason: str | None = None
        self.results: Any = [] if mode == _MAP else {} if mode == _ORDERED else deque()
        self.waiters = ParkingLot()  # the consumer (or map's caller)
        self.nwaiting = 0  # fibers parked in (or just woken from) waiters
        self.group = pool._group
        self._worker_done_cb = self._worker_done
        if mode != _MAP:
            pool._runs.add(self)
        self.add_worker()

    def add_worker(self) -> None:
        """Start one more worker (in the pool's with-block if it is open)."""
        self.live += 1
        self.pending += 1
        group = self.group if self.group is not None and self.pool._group is self.group else None
        try:
            if group is not None:
                worker = group.spawn(_work, self, name=_WORKER_NAME)
            else:
                worker = spawn(_work, self, name=_WORKER_NAME)
        except BaseException:
            self.live -= 1
            self.pending -= 1
            raise
        self.workers[worker] = False
        worker.add_done_callback(self._worker_done_cb)

    def describe(self) -> str:
        """The call that made this run, for messages: ``Pool.imap(fn)``."""
        how = ("map", "imap", "imap_unordered")[self.mode]
        fn = self.fn
        name = getattr(fn, "__qualname__", None) or repr(fn)
        return f"Pool.{how}({name})"

    def _worker_done(self, worker: Fiber) -> None:
        """A worker ended, or was cancelled before it started (then `_work` never ran)."""
        if not self.workers.pop(worker, True):
            self.pending -= 1
        self.pool._members.pop(worker, None)
        self.live -= 1
        if not self.live and self.nwaiting:
            self.waiters.unpark_all()

    def fail(self, exc: BaseException) -> None:
        """A call (or the input) raised ``exc``: stop the run."""
        if self.error is None:
            self.error = exc
            self.stop()
            self.waiters.unpark_all()
        else:
            self.other_errors.append(exc)

    def stop(self) -> None:
        """No more calls: cancel the workers (they end on their own)."""
        self.stopping = True
        for worker in list(self.workers):
            worker.cancel()

    def wait_for_workers(self) -> BaseException | None:
        """Wait until every worker has ended (uncancellably: they are being stopped). An
        exception thrown in meanwhile (Ctrl-C) stops the run and is returned.

        A `DeadlockError` that comes once the workers were cancelled (every caller stops the
        run first) ends the wait, with workers left (stuck in shielded scopes), and is
        returned: nothing can ever wake them, and waiting again would only meet the next
        report of the same deadlock, for ever. (`TaskGroup` does the same.)
        """
        interrupt = None
        f = require_fiber()
        while self.live:
            try:
                self.park(f, cancellable=False)
            except BaseException as e:  # noqa: B036 - returned, raised once the workers ended
                stuck = self.stopping and isinstance(e, DeadlockError)
                interrupt = interrupt or e
                self.stop()
                if stuck:
                    break
        return interrupt

    def raise_error(self) -> None:
        """Raise the run's first error, noting the others."""
        err = self.error
        assert err is not None
        others = self.other_errors
        if others:
            shown = ", ".join(repr(e) for e in others[:3])
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            err.add_note(
                f"{len(others)} other call(s) failed while the pool cancelled them: {shown}{more}"
            )
            self.other_errors = []
        self.error = None
        if isinstance(err, StopIteration) and self.mode != _MAP:
            # Out of __next__ it would end the iteration silently (as PEP 479 says of generators)
            raise RuntimeError("a call of Pool.imap raised StopIteration") from err
        raise err

    def stopped_by_caller(self, exc: BaseException) -> None:
        """The caller (map's, or the consumer) was cancelled or interrupted: stop, wait, and
        re-raise (an interrupt that came in meanwhile wins)."""
        self.stop()
        self.finished = True
        interrupt = self.wait_for_workers()
        if interrupt is not None:
            raise interrupt from None
        raise exc

    # -- map -------------------------------------------------------------------------------

    def wait_all(self) -> Any:
        """For `Pool.map`: wait for every worker, then return the results or raise."""
        f = require_fiber()
        try:
            while self.live:
                self.park(f)
        except BaseException as e:  # noqa: B036 - re-raised once the calls are stopped
            self.stopped_by_caller(e)
        if self.error is not None:
            self.raise_error()
        if self.aborted:
            raise FiberCancelled("the pool's calls were cancelled")
        return self.results

    # -- imap --------------------------------------------------------------------------------

    def next(self) -> Any:
        """For `PoolIterator.__next__`: the next result. A consumer that runs a call of the
        pool lends the run its slot while it waits (see `lend`)."""
        results = self.results
        ordered = self.mode == _ORDERED
        while True:
            if self.finished:
                if self.stop_reason is not None:
                    raise FiberCancelled(self.stop_reason)
                raise StopIteration
            if self.error is not None:
                self.finished = True
                if self.live:
                    interrupt = self.wait_for_workers()
                    if interrupt is not None:
                        raise interrupt
                self.raise_error()
            if ordered:
                value = results.pop(self.taken, _MISSING)
                if value is not _MISSING:
                    self.taken += 1
                    if self.nwaiting and self.taken in results:
                        self.waiters.unpark()  # another consumer of the same iterator
                    self.refill()
                    return value
            elif results:
                value = results.popleft()
                self.taken += 1
                if self.nwaiting and results:
                    self.waiters.unpark()
                self.refill()
                return value
            if not self.live:
                if self.stopping or self.exhausted:
                    self.finished = True
                    if self.aborted:
                        # (Every later next() too, as after the consumer's own cancellation.)
                        self.stop_reason = (
                            f"{self.describe()} was stopped after {self.taken} result(s): the "
                            "pool's calls were cancelled"
                        )
                        raise FiberCancelled(self.stop_reason)
                    raise StopIteration
                self.add_worker()
            f = require_fiber()
            lender = self.pool._in_call(f)
            if lender:
                self.lend()
            try:
                self.park(f)
            except BaseException as e:  # noqa: B036 - re-raised once the calls are stopped
                # Its calls in flight are cancelled and their items lost: going on would skip
                # them silently (imap) or end early as if the input were exhausted.
                self.stop_reason = (
                    f"{self.describe()} was stopped by {type(e).__name__} while its consumer "
                    f"waited in next(), after {self.taken} result(s): the calls in flight "
                    "were cancelled and the rest of its input was not processed"
                )
                try:
                    self.stopped_by_caller(e)
                finally:
                    if lender:  # (once the calls are stopped: one may hold the slot)
                        self.reclaim(f)
            if lender:
                self.reclaim(f)

    def wait_for_slot(self, f: Fiber) -> bool:
        """In worker ``f``, which has an item to call: wait in the pool's queue for a slot.
        True if it got the slot lent to the run (`give_back_lent`), False for one of the
        pool's (handed over by `Pool._release`)."""
        queued = self.queued
        queued[f] = None
        try:
            return self.pool._wait_for_slot(f) is _LENT
        finally:
            del queued[f]

    def give_back_lent(self) -> None:
        """A call that ran in a lent slot ended: the slot is dropped or goes to the pool if its
        lender took another (`reclaim`), else to its lender waiting for it, else to the run's
        worker queued longest, else it waits for the run's next call."""
        if self.forfeit:
            self.forfeit -= 1
            return
        if self.owed:
            self.owed -= 1
            self.pool._release()
            return
        for consumer in list(self.reclaimers):
            if consumer.hub.wake(consumer, _LENT):  # (it leaves the pool's queue as it wakes)
                self.lenders -= 1
                return
        for worker in list(self.queued):
            if worker.hub.wake(worker, _LENT):
                return
        self.lent += 1

    def lend(self) -> None:
        """The consumer, which runs a call of the pool (so holds a slot), is about to wait in
        ``next()``: lend its slot to the run meanwhile (as `Pool.map` from inside a call is
        lent its caller's), so that imaps nested in the calls of one pool cannot take every
        slot and wait for each other for ever. `reclaim` takes it back."""
        self.lenders += 1
        self.give_back_lent()

    def reclaim(self, f: Fiber) -> None:
        """The consumer ``f`` stops waiting: take its lent slot back before it runs on, so
        the pool's bound holds. A free lent slot is taken at once; if every lent slot is held
        by a call, a free slot of the pool is taken instead (the lent one goes to the pool when
        its call ends); else ``f`` waits, uncancellably, for the first of the two. A call
        blocks while it holds a lent slot only as long as its own calls do, so the wait ends
        as they do (and nested imaps never wait on each other's consumers)."""
        if self.lent:
            self.lent -= 1
            self.lenders -= 1
            return
        pool = self.pool
        if pool._free:
            pool._free -= 1
            self.lenders -= 1
            self.owed += 1
            return
        self.reclaimers[f] = None
        try:
            got = pool._wait_for_slot(f, cancellable=False)
        except BaseException:
            # Thrown in (a deadlock report): the calls holding lent slots may never end. Run
            # on in the slot lent, and drop it when its call ends, rather than wait for ever.
            self.lenders -= 1
            self.forfeit += 1
            raise
        finally:
            del self.reclaimers[f]
        if got is not _LENT:  # a slot of the pool (give_back_lent counted the lent one)
            self.lenders -= 1
            self.owed += 1

    def park(self, f: Fiber, cancellable: bool = True) -> None:
        """Wait (the consumer, or map's caller) for a result or the workers' end."""
        self.nwaiting += 1
        try:
            self.waiters.park(f, cancellable=cancellable, interruptible=True)
        finally:
            self.nwaiting -= 1

    def wait_for_input(self, f: Fiber) -> None:
        """In worker ``f``: wait while another worker is inside ``next()`` of the input (a
        generator that blocked: calling it again meanwhile would raise ValueError)."""
        self.npull_waiting += 1
        try:
            self.pull_waiters.park(f)
        finally:
            self.npull_waiting -= 1

    def refill(self) -> None:
        """A result was handed over, so the window has room: wake an idle worker, unless one
        woken earlier has not run yet (it will take the room, and wake the next if its call
        blocks)."""
        if self.idle and not self.waking:
            self.wake_idle()

    def park_idle(self, f: Fiber) -> None:
        """In worker ``f``: wait for room in the window (no call in flight meanwhile)."""
        self.idle += 1
        try:
            self.idle_workers.park(f)
        except BaseException:
            self.idle -= 1  # left without being woken: nobody counted it
            raise
        self.waking -= 1  # counted by wake_idle

    def wake_idle(self, every: bool = False) -> None:
        """Wake one idle worker (or ``every`` one)."""
        n = self.idle_workers.unpark_all() if every else int(self.idle_workers.unpark() is not None)
        self.idle -= n
        self.waking += n

    def close(self) -> None:
        """Stop the run and wait for its workers."""
        if self.finished and not self.live:
            return
        self.finished = True
        self.stop()
        interrupt = self.wait_for_workers()
        if interrupt is not None:
            raise interrupt

    def abandon(self) -> None:
        """The iterator was dropped: cancel the workers, without waiting."""
        if self.live and not self.stopping:
            if in_thread_of(self.hub):
                self.stop()
            else:
                call_in_loop(self.hub.loop, self.stop)  # type: ignore[arg-type]


def _work(run: _Run) -> None:
    """A worker: take an item, take a slot, call, hand the result over; park while the window
    is full; end when the input ends or the run stops."""
    me = current_fiber()
    assert me is not None
    pool = run.pool
    fn, star, ctx, source = run.fn, run.star, run.ctx, run.source
    mode, window, results, waiters = run.mode, run.window, run.results, run.waiters
    run.pending -= 1
    run.workers[me] = True
    pool._members[me] = run
    try:
        while not run.stopping:
            if run.pulled - run.taken >= window:
                if run.exhausted or pool._closing:
                    break
                run.park_idle(me)
                continue
            while run.pulling:  # the input blocked in another worker: wait for it
                run.wait_for_input(me)
            i = run.pulled
            if run.stopping or run.exhausted:
                break
            if i - run.taken >= window:
                continue  # another worker filled it meanwhile: park
            run.pulling = me
            try:
                item = next(source)
            except StopIteration:
                run.exhausted = True
                run.wake_idle(every=True)  # they end too
                break
            finally:
                run.pulling = None
                if run.npull_waiting:  # each looks again (one pulls, the rest may be done)
                    run.pull_waiters.unpark_all()
            run.pulled = i + 1
            if mode == _MAP:
                results.append(None)
            # A slot for the call: the one lent to the run, a free one, or the next one freed.
            if run.lent:
                run.lent -= 1
                lent = True
            elif pool._free:
                pool._free -= 1
                lent = False
            else:
                lent = run.wait_for_slot(me)
            try:
                if run.stopping:
                    break  # stopped while this worker waited (the slot goes back)
                if not run.pending and not run.waking:
                    # A helper, in case this call blocks: an idle worker, else a new one, unless
                    # one waits for a slot already. (Started also when no slot is free: it then
                    # queues for the next one freed, which another call of the pool may free.)
                    if run.idle:
                        run.wake_idle()
                    elif run.live < pool._limit and not run.queued:
                        run.add_worker()
                value = ctx.copy().run(fn, *item) if star else ctx.copy().run(fn, item)
            finally:
                if lent:
                    run.give_back_lent()
                elif not pool._nwaiting or pool._slot_waiters.unpark() is None:
                    pool._free += 1
            if mode == _MAP:
                results[i] = value
            elif mode == _ORDERED:
                results[i] = value
                if i == run.taken and run.nwaiting:
                    waiters.unpark()
            else:
                results.append(value)
                if run.nwaiting:
                    waiters.unpark()
    except (Cancelled, GreenletExit):
        if not run.stopping:
            run.aborted = True
            run.stopping = True
    except BaseException as e:  # noqa: B036 - handed to the caller, who raises it
        run.fail(e)
