"""`Future` (a result set once, from a fiber, an OS thread or asyncio, and waited on by fibers),
`as_completed` and `wait` over fibers and futures, and `spawn_later`.

The threading rules, in one place:

* A `Future` may be completed (`Future.set_result`, `Future.set_exception`) from any thread. The
  state changes at once, under a lock, so a second completion raises `InvalidStateError` however
  the two race.
* Fibers waiting on it are woken on their own hub: directly when the completing code runs in
  that hub's thread, otherwise through ``hub.loop.call_soon_threadsafe``.
* A future *belongs* to a hub once a fiber of that hub creates it, waits on it, or adds a done
  callback to it. Done callbacks run in that hub's thread (handed over the same way); a future
  that belongs to no hub runs them in the thread that completes it, and so does one whose hub's
  loop is closed (as `concurrent.futures` does: they are never dropped; a loop that closes with
  them still queued runs them in the thread that closes it).
* ``await future`` works in coroutines on any event loop; OS threads that are not running an
  event loop may block in `Future.result` too (the thread blocks, as with
  `concurrent.futures`).
* `Future.cancel` is a completion like the others (under the same lock, waking the same
  waiters): it and a racing `set_result` cannot both win.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import math
import threading
from _thread import allocate_lock
from collections import deque
from collections.abc import Callable, Collection, Generator, Iterable, Iterator
from concurrent.futures import InvalidStateError
from types import TracebackType
from typing import Any, Generic, NamedTuple, TypeVar

from .lowlevel import (
    TIMED_OUT,
    Fiber,
    Hub,
    ParkingLot,
    checkpoint_if_cancelled,
    current_fiber,
    current_time,
    require_fiber,
    sleep,
    spawn,
)

T = TypeVar("T")

log = logging.getLogger("unknot")

_PENDING, _RESULT, _EXCEPTION, _CANCELLED = 0, 1, 2, 3


def call_in_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> bool:
    """Schedule ``fn(*args)`` on ``loop`` from any thread; nothing if the loop is closed (no one
    can be waiting on a closed loop). Returns whether it was scheduled."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        return False
    return True


def in_thread_of(hub: Hub) -> bool:
    """Whether the calling code runs in the OS thread of ``hub``."""
    return hub.thread.ident == threading.get_ident()


#: The fibers running a future's done callbacks. A callback reading the outcome (``result()``)
#: meets no cancellation point there: its `Cancelled` would come out of the ``set_result`` that
#: ran it (in a fiber cancelled meanwhile, completing a future in its cleanup) and skip the
#: other callbacks.
_IN_CALLBACKS: set[Fiber] = set()


def _checkpoint() -> None:
    """Raise `Cancelled` in a cancelled fiber, except in done callbacks; nothing elsewhere."""
    f = current_fiber()
    if f is not None and f.hub.ncancel and f not in _IN_CALLBACKS:
        checkpoint_if_cancelled()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _HandOver:
    """A future's done callbacks, handed to the loop of the hub it belongs to by a completion in
    another thread: they run there. A loop closed before it ran them drops them (asyncio clears
    its queue): they then run as it lets go of this, in the thread that closed it, not never."""

    __slots__ = ("future", "callbacks")

    def __init__(self, future: Future[Any], callbacks: list[Callable[[Any], Any]]) -> None:
        self.future = future
        self.callbacks: list[Callable[[Any], Any]] | None = callbacks

    def __call__(self) -> None:
        callbacks, self.callbacks = self.callbacks, None  # (once, however it ends)
        if callbacks:
            self.future._run_callbacks(callbacks)

    def __del__(self) -> None:
        if self.callbacks:  # never run by the loop: closed first
            self()


class Future(Generic[T]):
    """A value or an exception that becomes available once (gevent's ``AsyncResult``).

    Set it once with `set_result` or `set_exception` (or `cancel` it), from a fiber, an OS thread
    or asyncio code; any number of fibers wait for it with `result`, `exception` or `wait` (each
    with an optional timeout), and coroutines with ``await future``. See the module
    documentation for how the hand-over between threads works.
    """

    __slots__ = (
        "_state",
        "_value",
        "_tb",
        "_hub",
        "_lock",
        "_lots",
        "_loop_waiters",
        "_thread_waiters",
        "_callbacks",
    )

    def __init__(self) -> None:
        self._state = _PENDING
        self._value: Any = None
        #: The exception's traceback when it was set: each `result` raises it with that one
        #: (a bare ``raise`` would add the raising frames to it at every call, for ever).
        self._tb: TracebackType | None = None
        f = current_fiber()
        #: The hub the future belongs to (where done callbacks run); see the module docs.
        self._hub: Hub | None = f.hub if f is not None else None
        self._lock = allocate_lock()
        self._lots: dict[Hub, ParkingLot] | None = None  # fibers waiting, per hub
        self._loop_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread_waiters: list[Any] = []  # locks held for threads blocked in result()
        self._callbacks: list[Callable[[Future[T]], Any]] = []

    # -- completing --------------------------------------------------------------------------

    def set_result(self, value: T) -> None:
        """Complete the future with ``value`` and wake its waiters.

        Raises `InvalidStateError` (``concurrent.futures.InvalidStateError``) if it is already
        complete.
        """
        self._complete(_RESULT, value)

    def set_exception(self, exc: BaseException | type[BaseException]) -> None:
        """Complete the future with the exception ``exc`` (an instance, or a class to
        instantiate): `result` raises it. `InvalidStateError` if already complete."""
        if isinstance(exc, type) and issubclass(exc, BaseException):
            exc = exc()
        if not isinstance(exc, BaseException):
            raise TypeError(f"set_exception() needs an exception, got {exc!r}")
        self._complete(_EXCEPTION, exc)

    def cancel(self) -> bool:
        """Cancel the future if it is pending (`concurrent.futures.Future.cancel`): True if it
        is cancelled now (or was already), False if it has a result or an exception.

        Cancelling completes it: its waiters wake, its done callbacks run, `result` and
        `exception` raise ``concurrent.futures.CancelledError`` (``await future``:
        ``asyncio.CancelledError``), and `set_result`/`set_exception` raise `InvalidStateError`.
        """
        try:
            self._complete(_CANCELLED, None)
        except InvalidStateError:  # (completed first, perhaps racing in another thread)
            return self._state == _CANCELLED
        return True

    def _complete(self, state: int, value: Any) -> None:
        with self._lock:
            if self._state:
                raise InvalidStateError(f"{self!r} is already complete")
            self._state = state
            self._value = value
            if state == _EXCEPTION:
                self._tb = value.__traceback__
            lots, self._lots = self._lots, None
            loop_waiters, self._loop_waiters = self._loop_waiters, []
            thread_waiters, self._thread_waiters = self._thread_waiters, []
            callbacks, self._callbacks = self._callbacks, []
            hub = self._hub
        if lots:
            for lot_hub, lot in lots.items():
                if in_thread_of(lot_hub):
                    lot.unpark_all()
                else:
                    call_in_loop(lot_hub.loop, lot.unpark_all)  # type: ignore[arg-type]
        for lock in thread_waiters:
            lock.release()
        if loop_waiters:
            running = asyncio._get_running_loop()
            for loop, waiter in loop_waiters:
                if loop is running:
                    _resolve(waiter)
                else:
                    call_in_loop(loop, _resolve, waiter)
        if callbacks:
            if hub is None or in_thread_of(hub):
                self._run_callbacks(callbacks)
            else:
                hand_over = _HandOver(self, callbacks)
                hub_loop = hub.loop
                if hub_loop is None or not call_in_loop(hub_loop, hand_over):
                    # The hub's loop is closed: nothing will run them there. Here, then, as
                    # concurrent.futures runs them, rather than never.
                    hand_over()

    def _run_callbacks(self, callbacks: list[Callable[[Future[T]], Any]]) -> None:
        f = current_fiber()
        mark = f if f is not None and f not in _IN_CALLBACKS else None
        if mark is not None:
            _IN_CALLBACKS.add(mark)
        try:
            for fn in callbacks:
                try:
                    fn(self)
                except Exception as e:  # a failing callback must not stop the others
                    log.error("error in a done-callback of %r", self, exc_info=e)
        finally:
            if mark is not None:
                _IN_CALLBACKS.discard(mark)

    # -- waiting -----------------------------------------------------------------------------

    def done(self) -> bool:
        """Whether a result or an exception has been set, or the future was cancelled."""
        return self._state != _PENDING

    def cancelled(self) -> bool:
        """Whether the future was cancelled (`cancel`)."""
        return self._state == _CANCELLED

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the future is complete; False if ``timeout`` seconds passed first.

        In a fiber this is a blocking call (a cancellation point, also when the future is
        complete); in an OS thread that runs no event loop it blocks the thread. From asyncio
        code use ``await future``. A negative ``timeout`` counts as 0, as in
        `concurrent.futures`; NaN is a `ValueError`.
        """
        _checkpoint()
        if self._state:
            return True
        if timeout is not None:
            if math.isnan(timeout):
                raise ValueError(f"timeout must not be NaN, got {timeout!r}")
            if timeout < 0:
                timeout = 0.0
        f = current_fiber()
        if f is None:
            if asyncio._get_running_loop() is not None:
                require_fiber()  # raises NotInFiberError: blocking here would stop the loop
            return self._wait_in_thread(timeout)
        hub = f.hub
        with self._lock:
            if self._state:
                return True
            if self._hub is None:
                self._hub = hub
            lots = self._lots
            if lots is None:
                lots = self._lots = {}
            lot = lots.get(hub)
            if lot is None:
                lot = lots[hub] = ParkingLot()
        # A completion in another thread is handed to this thread's loop, which cannot run
        # before this fiber has parked: nothing is missed between the lock and the park.
        if lot.park(f, timeout) is TIMED_OUT:
            return self._state != _PENDING
        return True

    def _wait_in_thread(self, timeout: float | None) -> bool:
        lock = allocate_lock()
        lock.acquire()
        with self._lock:
            if self._state:
                return True
            self._thread_waiters.append(lock)
        if lock.acquire(timeout=-1 if timeout is None else timeout):
            return True
        with self._lock:
            if lock in self._thread_waiters:
                self._thread_waiters.remove(lock)
        return self._state != _PENDING

    def result(self, timeout: float | None = None) -> T:
        """Wait for the future (see `wait`) and return its value, or raise its exception.

        Raises `TimeoutError` if ``timeout`` seconds pass first, and
        ``concurrent.futures.CancelledError`` if the future was cancelled.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"{self!r} was not completed within {timeout} s")
        return self._outcome()

    def _outcome(self) -> T:
        """The value of a complete future, or its exception raised."""
        if self._state != _RESULT:
            if self._state == _CANCELLED:
                raise concurrent.futures.CancelledError()
            raise self._value.with_traceback(self._tb)
        value: T = self._value
        return value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the future (see `wait`) and return its exception, or None if it has a
        result. Raises `TimeoutError` if ``timeout`` seconds pass first, and
        ``concurrent.futures.CancelledError`` if the future was cancelled."""
        if not self.wait(timeout):
            raise TimeoutError(f"{self!r} was not completed within {timeout} s")
        state = self._state
        if state == _CANCELLED:
            raise concurrent.futures.CancelledError()
        return self._value if state == _EXCEPTION else None

    def __await__(self) -> Generator[Any, None, T]:
        """``await future`` in a coroutine: wait without blocking the event loop.

        A cancelled future raises ``asyncio.CancelledError`` here (as awaiting
        ``asyncio.wrap_future`` of a cancelled ``concurrent.futures.Future`` does), so that an
        asyncio task awaiting it ends cancelled."""
        if not self._state:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            entry = (loop, waiter)
            with self._lock:
                registered = not self._state
                if registered:
                    self._loop_waiters.append(entry)
            if registered:
                try:
                    yield from waiter
                finally:
                    with self._lock:
                        if entry in self._loop_waiters:
                            self._loop_waiters.remove(entry)
        if self._state == _CANCELLED:
            raise asyncio.CancelledError()
        return self._outcome()  # (complete now: its waiter is resolved only then)

    # -- callbacks ---------------------------------------------------------------------------

    def add_done_callback(self, fn: Callable[[Future[T]], Any]) -> None:
        """Call ``fn(future)`` once the future is complete: at once (in the calling thread) if it
        already is, otherwise in the thread of the hub the future belongs to (in the completing
        thread if there is none, or its loop is closed: see the module docs). Called from a
        fiber, this makes the future belong to the fiber's hub if it belonged to none. What
        ``fn`` raises is logged (logger ``unknot``), not raised, in both cases (as
        `concurrent.futures` and `Fiber.add_done_callback` do)."""
        with self._lock:
            if not self._state:
                if self._hub is None:
                    f = current_fiber()
                    if f is not None:
                        self._hub = f.hub
                self._callbacks.append(fn)
                return
        self._run_callbacks([fn])  # (logged if it raises, as when it runs on completion)

    def remove_done_callback(self, fn: Callable[[Future[T]], Any]) -> int:
        """Forget every registration of ``fn`` by `add_done_callback`; return how many there
        were (0 if none, or once the future is complete), as asyncio's
        ``Future.remove_done_callback`` does."""
        with self._lock:
            callbacks = self._callbacks
            self._callbacks = [cb for cb in callbacks if cb != fn]
            return len(callbacks) - len(self._callbacks)

    def __repr__(self) -> str:
        if self._state == _RESULT:
            return f"<Future result={self._value!r}>"
        if self._state == _EXCEPTION:
            return f"<Future exception={self._value!r}>"
        if self._state == _CANCELLED:
            return "<Future cancelled>"
        return "<Future pending>"


def spawn_later(
    seconds: float, fn: Callable[..., Any], /, *args: Any, name: str | None = None, **kwargs: Any
) -> Fiber:
    """Start a fiber that calls ``fn(*args, **kwargs)`` after ``seconds`` (gevent's
    ``spawn_later``) and return it at once.

    The fiber sleeps first: cancelling it during the delay means ``fn`` is never called, and
    ``join`` returns ``fn``'s result. Like `spawn`, it copies the caller's contextvars and needs
    a running hub.
    """
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"delay must be a non-negative number, got {seconds!r}")
    if inspect.iscoroutinefunction(fn):  # (as spawn refuses it: its fiber would call another)
        raise TypeError(
            f"spawn_later() runs a plain function in a fiber, and {fn!r} is an async function: "
            "call it from a fiber with unknot.await_(fn(...)), or run it as an asyncio task on "
            "unknot's loop"
        )
    return spawn(_call_later, seconds, fn, args, kwargs, name=name)


def _call_later(
    seconds: float, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    sleep(seconds)
    return fn(*args, **kwargs)


# -- as_completed and wait ---------------------------------------------------------------------

#: `wait` returns as soon as one fiber or future is done.
FIRST_COMPLETED = concurrent.futures.FIRST_COMPLETED
#: `wait` returns as soon as one ends by raising (or when all are done, if none raised).
FIRST_EXCEPTION = concurrent.futures.FIRST_EXCEPTION
#: `wait` returns when every one is done (the default).
ALL_COMPLETED = concurrent.futures.ALL_COMPLETED

#: What `as_completed` and `wait` accept: fibers and futures (anything with ``done()`` and
#: ``add_done_callback(fn)`` works: unknot's, asyncio's and `concurrent.futures`' futures;
#: ``remove_done_callback(fn)`` is called when there is one).
Waitable = Any


class DoneAndNotDone(NamedTuple):
    """What `wait` returns: the fibers and futures that are done, and those that are not."""

    done: set[Waitable]
    not_done: set[Waitable]


class _Completions:
    """Collects fibers and futures as they complete, for the one fiber that waits for them.

    Completion callbacks may run in another thread (a future set there, a fiber of another hub,
    a `concurrent.futures.Future` completed by its worker thread): the wake-up is then handed to
    this hub's loop. A callback that cannot be removed (`concurrent.futures.Future` has no
    ``remove_done_callback``) is ignored once the waiting is over.
    """

    __slots__ = ("ready", "_lot", "_hub", "_watched", "_callback", "_closed")

    def __init__(self, watched: list[Waitable]) -> None:
        self.ready: deque[Waitable] = deque()
        self._lot = ParkingLot()
        self._hub = require_fiber().hub
        self._watched = watched
        self._callback = self._on_done
        self._closed = False
        for w in watched:
            w.add_done_callback(self._callback)

    def _on_done(self, w: Waitable) -> None:
        if self._closed:  # (a callback close() could not remove, run late: nobody waits)
            return
        self.ready.append(w)  # (a deque: appending from another thread is safe)
        if in_thread_of(self._hub):
            self._lot.unpark()
        else:
            call_in_loop(self._hub.loop, self._lot.unpark)  # type: ignore[arg-type]

    def wait(self, deadline: float | None) -> bool:
        """Wait until one more completed; False once ``deadline`` (hub clock) has passed."""
        while not self.ready:
            f = require_fiber()
            if deadline is None:
                self._lot.park(f)
                continue
            left = deadline - current_time()
            if left <= 0:
                return False
            self._lot.park(f, left)
        return True

    def close(self) -> None:
        """Stop watching (remove the callbacks, or make those that cannot be removed inert)."""
        self._closed = True
        for w in self._watched:
            remove = getattr(w, "remove_done_callback", None)
            if remove is not None:
                remove(self._callback)
        self.ready.clear()


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if math.isnan(timeout):
        raise ValueError("timeout must not be NaN")
    return current_time() + timeout


def as_completed(fs: Iterable[Waitable], timeout: float | None = None) -> Iterator[Waitable]:
    """Yield the fibers and futures of ``fs`` as they complete (`concurrent.futures`'
    ``as_completed``, gevent's ``iwait``).

    Those already done come first, in the order given; duplicates are yielded once. Waiting
    for the next one is a blocking call. Raises `TimeoutError` if ``timeout`` seconds (counted
    from this call) pass before the next one completes. It does not retrieve results: call
    ``join()``/``result()`` on what it yields.
    """
    items = list(dict.fromkeys(fs))
    return _as_completed(items, _deadline(timeout), timeout)


def _as_completed(
    items: list[Waitable], deadline: float | None, timeout: float | None
) -> Iterator[Waitable]:
    finished = [w for w in items if w.done()]
    pending = [w for w in items if not w.done()]
    yield from finished
    if not pending:
        return
    completions = _Completions(pending)
    try:
        for left in range(len(pending), 0, -1):
            if not completions.wait(deadline):
                raise TimeoutError(
                    f"{left} of {len(items)} fibers and futures still unfinished after {timeout} s"
                )
            yield completions.ready.popleft()
    finally:
        completions.close()


def _failed(w: Waitable) -> bool:
    """Whether done ``w`` ended by raising (a cancelled one did not, as in concurrent.futures)."""
    if isinstance(w, Future):  # (a done one: its exception() would be a cancellation point)
        return w._state == _EXCEPTION
    cancelled = getattr(w, "cancelled", None)  # (an asyncio future's exception() would raise)
    if cancelled is not None and cancelled():
        return False
    return w.exception() is not None


def _satisfied(new: Collection[Waitable], not_done: set[Waitable], return_when: str) -> bool:
    """Whether `wait` is over, ``new`` being those done since the last check (which said no).

    Only ``new`` is looked at: one failed before would have ended the waiting then (looking at
    every done one at each wake-up was quadratic).
    """
    if not not_done:
        return True
    if return_when == FIRST_COMPLETED:
        return bool(new)
    if return_when == FIRST_EXCEPTION:
        return any(_failed(w) for w in new)
    return False


def wait(
    fs: Iterable[Waitable], timeout: float | None = None, return_when: str = ALL_COMPLETED
) -> DoneAndNotDone:
    """Wait for the fibers and futures of ``fs`` (`concurrent.futures`' ``wait``, gevent's
    ``wait``); return ``(done, not_done)``, two sets.

    ``return_when`` is `ALL_COMPLETED` (the default), `FIRST_COMPLETED` or `FIRST_EXCEPTION`
    (a fiber or a future that was cancelled did not raise). After ``timeout`` seconds it
    returns what is done so far; it never raises `TimeoutError`. A blocking call, unless the
    condition already holds. `FIRST_EXCEPTION` looks at the exceptions of the done ones, which
    counts as retrieving them (a failed fiber is then not logged as unretrieved).
    """
    if return_when not in (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED):
        raise ValueError(f"invalid return_when: {return_when!r}")
    items = set(fs)
    done = {w for w in items if w.done()}
    not_done = items - done
    if _satisfied(done, not_done, return_when):
        return DoneAndNotDone(done, not_done)
    deadline = _deadline(timeout)
    completions = _Completions(list(not_done))
    try:
        while completions.wait(deadline):
            new = []
            while completions.ready:
                w = completions.ready.popleft()
                new.append(w)
                done.add(w)
                not_done.discard(w)
            if _satisfied(new, not_done, return_when):
                break
    finally:
        completions.close()
    late = {w for w in not_done if w.done()}
    return DoneAndNotDone(done | late, not_done - late)
