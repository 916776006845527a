"""Synchronization between fibers of one hub: `Event`, `Lock`, `RLock`, `Semaphore`,
`BoundedSemaphore`, `Condition`.

They mirror the `threading` classes (same methods, same return values), but waiting suspends
only the current fiber. Ownership is handed over directly to the waiter that is woken (no
barging), and a waiter that is cancelled or times out before it runs is skipped, so nothing is
lost or granted twice.

Uncontended operations work anywhere; waiting needs a fiber. For locks shared with real OS
threads, see `unknot.patch` (it provides thread-safe variants).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from greenlet import getcurrent

from .lowlevel import (
    TIMED_OUT,
    Fiber,
    ParkingLot,
    checkpoint_if_cancelled,
    current_time,
    require_fiber,
    timeout_seconds,
)

T = TypeVar("T")


def _timeout_arg(blocking: bool, timeout: float | None) -> float | None:
    """An ``acquire`` timeout as `threading`'s locks take it: -1 (or None) waits forever; a
    float (any real number is converted); `ValueError` for another negative number or NaN."""
    if timeout is None or timeout < 0:
        if timeout is not None and timeout != -1:
            raise ValueError("timeout value must be a non-negative number or -1")
        return None
    t = float(timeout)
    if t != t:  # (a NaN deadline would break the hub's timer heap; threading refuses it too)
        raise ValueError("timeout value must not be NaN")
    if not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    return t


def _semaphore_timeout(blocking: bool, timeout: float | None) -> float | None:
    """A `Semaphore.acquire` timeout as `threading.Semaphore` takes it: None waits for ever, a
    negative number does not wait at all (threading's loop gives up at once), NaN is refused."""
    if timeout is None:
        return None
    if not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    t = timeout_seconds(timeout)
    return t if t > 0.0 else 0.0


class Event:
    """A flag fibers can wait for (`threading.Event` for fibers)."""

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters = ParkingLot()

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiting fiber."""
        self._flag = True
        self._waiters.unpark_all()

    def clear(self) -> None:
        """Reset the flag."""
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set; False if ``timeout`` seconds passed first.

        A cancellation point even when the flag is already set.
        """
        f = getcurrent()
        if type(f) is Fiber:
            if f.hub.ncancel:
                checkpoint_if_cancelled()
            if self._flag:
                return True
        else:
            if self._flag:
                return True
            f = require_fiber()  # raises
        return self._waiters.park(f, timeout) is not TIMED_OUT

    def __repr__(self) -> str:
        return f"<Event {'set' if self._flag else 'unset'} waiters={len(self._waiters)}>"


class _LockBase:
    """``with lock:`` for a class with ``acquire()`` and ``release()``.

    Each subclass's ``__enter__`` is its own ``acquire`` (an alias, not a method calling it: no
    extra call on the way in), unless the subclass defines ``__enter__`` itself; ``__exit__``
    calls ``release()``. Shared by these locks and by the hybrid ones `unknot.patch` installs.
    """

    __slots__ = ()

    if TYPE_CHECKING:

        def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...

        def release(self) -> None: ...

        def __enter__(self) -> bool: ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__enter__" not in cls.__dict__:
            cls.__enter__ = cls.acquire  # type: ignore[method-assign]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Lock(_LockBase):
    """A mutual-exclusion lock (`threading.Lock` for fibers). Not reentrant.

    Released locks go to the longest waiter (FIFO). ``acquire`` by the fiber that already holds
    it raises `RuntimeError` instead of deadlocking.
    """

    def __init__(self) -> None:
        self._owner: Any = None
        self._waiters = ParkingLot()

    def locked(self) -> bool:
        """Whether some fiber holds the lock."""
        return self._owner is not None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire the lock; with ``blocking=False`` or a ``timeout``, return False on failure."""
        t = _timeout_arg(blocking, timeout)
        if blocking:  # a call that can block is a cancellation point
            f = getcurrent()
            if type(f) is Fiber and f.hub.ncancel:
                checkpoint_if_cancelled()
        if self._owner is None and self._waiters.head is None:
            self._owner = getcurrent()
            return True
        if not blocking:
            return False
        f = require_fiber()
        if self._owner is f:
            raise RuntimeError("deadlock: this fiber already holds the (non-reentrant) Lock")
        return self._wait(f, t, True)

    def _wait(self, f: Fiber, timeout: float | None, cancellable: bool) -> bool:
        # On success release() has already made us the owner.
        return self._waiters.park(f, timeout, cancellable=cancellable) is not TIMED_OUT

    def release(self) -> None:
        """Release the lock, handing it to the longest-waiting fiber if any."""
        if self._owner is None:
            raise RuntimeError("release unlocked lock")
        self._owner = None
        self._owner = self._waiters.unpark()

    def __repr__(self) -> str:
        return f"<Lock {'locked' if self._owner else 'unlocked'} waiters={len(self._waiters)}>"


class RLock(_LockBase):
    """A reentrant lock (`threading.RLock` for fibers): the owner may acquire it again."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._count = 0

    def locked(self) -> bool:
        """Whether some fiber holds the lock (`threading.RLock.locked`, Python 3.14)."""
        return self._lock._owner is not None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire (or re-acquire, if already the owner) the lock."""
        if self._lock._owner is getcurrent() and self._count:
            self._count += 1
            return True
        if not self._lock.acquire(blocking, timeout):
            return False
        self._count = 1
        return True

    def release(self) -> None:
        """Release one level; the lock is free when every acquire has been released."""
        if self._lock._owner is not getcurrent() or not self._count:
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._lock.release()

    def _is_owned(self) -> bool:
        return self._lock._owner is getcurrent() and self._count > 0

    def _release_save(self) -> int:
        count, self._count = self._count, 0
        self._lock.release()
        return count

    def _acquire_restore(self, f: Fiber, count: int) -> None:
        if not self._lock.acquire(blocking=False):
            self._lock._wait(f, None, False)
        self._count = count

    def __repr__(self) -> str:
        return f"<RLock owner={self._lock._owner!r} count={self._count}>"


class Semaphore(_LockBase):
    """A counter of available slots (`threading.Semaphore` for fibers)."""

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._value = value
        self._waiters = ParkingLot()
        #: Slots `release` handed to waiters that have not run yet (`threading` counts them in
        #: its value until the waiter takes them): `BoundedSemaphore` bounds them too.
        self._handed = 0

    @property
    def value(self) -> int:
        """Slots available now."""
        return self._value

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a slot, waiting for one if needed; False on ``blocking=False``/timeout.

        As `threading.Semaphore`'s: ``timeout`` None waits for ever, a negative one does not
        wait (unlike a lock's -1), and a timeout with ``blocking=False`` is a `ValueError`."""
        t = _semaphore_timeout(blocking, timeout)
        if blocking:
            f = getcurrent()
            if type(f) is Fiber and f.hub.ncancel:
                checkpoint_if_cancelled()
        if self._value > 0 and self._waiters.head is None:
            self._value -= 1
            return True
        if not blocking:
            return False
        f = require_fiber()
        if self._waiters.park(f, t) is TIMED_OUT:
            return False
        # Woken by release with a slot (a fiber woken runs on with it, even if it was cancelled
        # meanwhile: the cancellation comes at its next blocking call).
        self._handed -= 1
        return True

    def release(self, n: int = 1) -> None:
        """Return ``n`` slots, handing each to a waiting fiber first."""
        if n < 1:
            raise ValueError("n must be one or more")
        for _ in range(n):
            if self._waiters.unpark() is None:
                self._value += 1
            else:
                self._handed += 1

    def __repr__(self) -> str:
        return f"<{type(self).__name__} value={self._value} waiters={len(self._waiters)}>"


class BoundedSemaphore(Semaphore):
    """A `Semaphore` that raises `ValueError` if released more often than acquired."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial = value

    def release(self, n: int = 1) -> None:
        """Return ``n`` slots; `ValueError` (and nothing released) if that would exceed the
        initial value. A slot handed to a waiter that has not run yet counts as free, as in
        `threading.BoundedSemaphore`: releasing it again is the error, raised here, rather
        than letting a third fiber in and failing later in a correct release."""
        if self._value + self._handed + n > self._initial:
            raise ValueError("Semaphore released too many times")
        super().release(n)


class Condition(_LockBase):
    """A condition variable (`threading.Condition` for fibers), over a `Lock` or `RLock`."""

    def __init__(self, lock: Lock | RLock | None = None) -> None:
        self._lock: Lock | RLock = lock if lock is not None else RLock()
        self._waiters = ParkingLot()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire the underlying lock."""
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        """Release the underlying lock."""
        self._lock.release()

    def _is_owned(self) -> bool:
        lock = self._lock
        if isinstance(lock, RLock):
            return lock._is_owned()
        return lock._owner is getcurrent()

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for `notify`, re-acquire the lock. False on timeout.

        The lock is re-acquired even when the wait is cancelled, before `Cancelled` propagates.
        """
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        if timeout is not None and timeout != timeout:  # (before the lock is released)
            raise ValueError("timeout must not be NaN")
        f = require_fiber()
        lock = self._lock
        if isinstance(lock, RLock):
            saved = lock._release_save()
        else:
            lock.release()
        try:
            return self._waiters.park(f, timeout) is not TIMED_OUT
        finally:
            if isinstance(lock, RLock):
                lock._acquire_restore(f, saved)
            elif not lock.acquire(blocking=False):
                lock._wait(f, None, False)

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """Wait until ``predicate()`` is true (checked with the lock held); return its value."""
        deadline = None if timeout is None else current_time() + timeout
        result = predicate()
        while not result:
            remaining = None
            if deadline is not None:
                remaining = deadline - current_time()
                if remaining <= 0:
                    break
            self.wait(remaining)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` fibers waiting on the condition."""
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        for _ in range(n):
            if self._waiters.unpark() is None:
                break

    def notify_all(self) -> None:
        """Wake every fiber waiting on the condition."""
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        self._waiters.unpark_all()
