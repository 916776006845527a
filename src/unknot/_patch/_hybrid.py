"""Locks that fibers and OS threads can share: what `unknot.patch` puts in `threading`.

A fiber waiting for one of these suspends cooperatively; a thread waiting for it blocks, as
usual. Each lock is a real ``_thread`` lock plus a list of parked fibers: releasing wakes the
first parked fiber (on its own hub, through ``call_soon_threadsafe`` when the release happens in
another thread), which then competes for the real lock like anyone else. A fiber that is
cancelled or times out passes its wake-up on, so none is lost.

Because `threading.Condition`, `Event`, `Semaphore`, `Barrier` and `queue.Queue` are written in
Python on top of ``threading._allocate_lock`` and ``threading.RLock``, patching those two makes
all of them correct for fibers and threads at once.

importlib's module locks get these locks too, and a fiber identity: `importlib_thread`.
"""

from __future__ import annotations

import _thread
import queue
import sys
import threading
import time
from collections import deque
from typing import Any

from greenlet import getcurrent

from .._sync import _LockBase
from ..lowlevel import TIMED_OUT, Fiber, Hub, raise_pending_interrupt, run_to_finish
from ..lowlevel import must_finish as must_finish_waits

_allocate = _thread.allocate_lock
_monotonic = time.monotonic


class _Waiter:
    """One fiber's wait for a `Lock`: what a release wakes. ``fiber`` is cleared when the wait
    ends, so that a wake-up that arrives too late (queued from another thread before the fiber
    was cancelled or timed out) cannot wake the fiber out of a later, unrelated wait; it is
    passed on instead. Compared by identity."""

    __slots__ = ("hub", "fiber")

    def __init__(self, hub: Hub, fiber: Fiber) -> None:
        self.hub = hub
        self.fiber: Fiber | None = fiber


class Lock(_LockBase):
    """A non-reentrant lock usable from fibers (cooperative wait) and threads (blocking)."""

    __slots__ = ("_lock", "_parked", "_guard", "__weakref__")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # As the stdlib's threading.Lock (a function before 3.13, a final class since).
        raise TypeError(f"type '{Lock.__module__}.Lock' is not an acceptable base type")

    def __init__(self) -> None:
        self._lock = _allocate()
        self._parked: deque[_Waiter] = deque()
        self._guard = _allocate()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As `threading.Lock.acquire`."""
        # INLINED-ORIGINAL(hybrid-acquire): the argument check and the first try are copied
        # into RLock.acquire; change them together.
        if timeout != -1:
            # The stdlib's own checks and errors (they vary between Python versions), made by
            # a free lock of its own, which therefore never waits.
            _allocate().acquire(blocking, timeout)
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        f = getcurrent()
        if type(f) is not Fiber:
            return self._lock.acquire(True, timeout)
        return self._acquire_in_fiber(f, None if timeout == -1 else _monotonic() + timeout)

    def _acquire_in_fiber(
        self, f: Fiber, deadline: float | None, must_finish: bool = False
    ) -> bool:
        """``must_finish``: neither cancellation nor Ctrl-C may interrupt this wait (they stay
        pending for the next blocking call)."""
        hub = f.hub
        entry = _Waiter(hub, f)
        if not must_finish:
            must_finish = must_finish_waits(f)  # inside run_to_finish
        try:
            return self._wait_in_fiber(f, hub, entry, deadline, must_finish)
        finally:
            entry.fiber = None  # a wake-up still on its way is passed on, not delivered

    def _wait_in_fiber(
        self, f: Fiber, hub: Hub, entry: _Waiter, deadline: float | None, must_finish: bool
    ) -> bool:
        while True:
            with self._guard:
                self._parked.append(entry)
            # Re-check after queueing: a release in between would otherwise be missed.
            if self._lock.acquire(False):
                self._forget(entry)
                return True
            timeout = None if deadline is None else deadline - _monotonic()
            try:
                if timeout is not None and timeout <= 0:
                    r = TIMED_OUT
                else:
                    r = hub.park(f, timeout, not must_finish)
            except BaseException:
                if not self._forget(entry):
                    self._pass_on()  # we were woken: hand the wake-up to the next one
                raise
            woken = not self._forget(entry)
            if self._lock.acquire(False):
                return True
            if r is TIMED_OUT:
                if woken:
                    self._pass_on()
                return False

    def _forget(self, entry: _Waiter) -> bool:
        """Remove ``entry`` if still queued; False if a release already took it out."""
        with self._guard:
            try:
                self._parked.remove(entry)
                return True
            except ValueError:
                return False

    def release(self) -> None:
        """As `threading.Lock.release`; wakes one waiting fiber."""
        # INLINED-ORIGINAL(hybrid-release): copied into Lock.__exit__ and RLock.__exit__;
        # change them together.
        self._lock.release()
        if self._parked:
            self._pass_on()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # INLINED-COPY-BEGIN(hybrid-release): Lock.release, one call less for every `with`
        self._lock.release()
        if self._parked:
            self._pass_on()
        # INLINED-COPY-END(hybrid-release)

    def _pass_on(self) -> None:
        """Wake the first parked fiber (it will retry the lock)."""
        with self._guard:
            if not self._parked:
                return
            entry = self._parked.popleft()
        hub = entry.hub
        if hub.thread is threading.current_thread():
            f = entry.fiber
            if f is None or not hub.wake(f):
                self._pass_on()  # it left already (cancelled or timed out): try the next
        else:
            try:
                hub.loop.call_soon_threadsafe(self._wake_there, entry)  # type: ignore[union-attr]
            except RuntimeError:
                self._pass_on()  # that hub's loop is closed

    def _wake_there(self, entry: _Waiter) -> None:
        # Only the wait this wake-up was meant for: a fiber that left it since (cancelled, timed
        # out) may be parked in another wait now. It passed the wake-up on as it left; passing
        # it on again when the lock is free costs at most a spurious wake-up, never a lost one.
        f = entry.fiber
        if (f is None or not entry.hub.wake(f)) and not self._lock.locked():
            self._pass_on()

    def locked(self) -> bool:
        """Whether the lock is held."""
        return self._lock.locked()

    # threading.Condition uses this, when the lock has it, to take its lock back at the end of
    # wait(): an exception there would leave the lock unheld in the caller's `with cond:`.
    def _acquire_restore(self, state: Any) -> None:
        """Acquire the lock; neither cancellation nor Ctrl-C interrupts the wait.

        A Ctrl-C that came meanwhile is raised once the lock is held (where the stdlib raises
        it: right after the acquire returns); a cancellation, at the next checkpoint.
        """
        self._reacquire()
        raise_pending_interrupt()

    def _reacquire(self) -> None:
        """Acquire the lock with a wait nothing interrupts."""
        if self._lock.acquire(False):
            return
        f = getcurrent()
        if type(f) is Fiber:
            self._acquire_in_fiber(f, None, must_finish=True)
        else:
            self._lock.acquire()

    def _at_fork_reinit(self) -> None:
        self._lock = _allocate()
        self._guard = _allocate()
        self._parked.clear()

    def __repr__(self) -> str:
        state = "locked" if self._lock.locked() else "unlocked"
        return f"<{state} {_qualname(self)} object parked={len(self._parked)} at {id(self):#x}>"

    # The C lock's old names for its methods.
    acquire_lock = acquire
    release_lock = release
    locked_lock = locked

    def __reduce__(self) -> Any:
        # As the C lock: copy.copy, deepcopy and pickle refuse it (else a copy would share
        # the underlying lock, a second name for one lock).
        raise TypeError(f"cannot pickle {_qualname(self)!r} object")


def _me() -> Any:
    """The owner identity for reentrant locks: the fiber, or the thread's main greenlet."""
    # INLINED-ORIGINAL(rlock-owner): copied into RLock.acquire and RLock.__exit__; change
    # them together.
    return getcurrent()


class RLock(_LockBase):
    """A reentrant lock owned by a fiber (or a thread), usable from both."""

    __slots__ = ("_block", "_owner", "_count", "__weakref__")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # (Arguments are ignored, as by _thread.RLock: threading.RLock passes them on.)
        self._block = Lock()
        self._owner: Any = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As `threading.RLock.acquire`."""
        # INLINED-COPY-BEGIN(hybrid-acquire): Lock.acquire's argument check
        if timeout != -1:
            _allocate().acquire(blocking, timeout)  # the stdlib's checks (see Lock.acquire)
        # INLINED-COPY-END(hybrid-acquire)
        # INLINED-COPY-BEGIN(rlock-owner): _me(): drivers take these locks on every command
        me = getcurrent()
        # INLINED-COPY-END(rlock-owner)
        if self._owner is me:
            self._count += 1
            return True
        block = self._block
        # The uncontended case without the extra call into Lock.acquire.
        # INLINED-COPY-BEGIN(hybrid-acquire): Lock.acquire's first try (Lock.acquire tries
        # again, harmlessly, when it fails)
        if not block._lock.acquire(False) and not block.acquire(blocking, timeout):
            return False
        # INLINED-COPY-END(hybrid-acquire)
        self._owner = me
        self._count = 1
        return True

    def release(self) -> None:
        """As `threading.RLock.release`."""
        self.__exit__(None, None, None)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # The release itself, here rather than in `release`: drivers take these locks with
        # `with` on every command, and this saves them a call (Lock.release is inlined too).
        # INLINED-COPY-BEGIN(rlock-owner): _me()
        if self._owner is not getcurrent():
            raise RuntimeError("cannot release un-acquired lock")
        # INLINED-COPY-END(rlock-owner)
        self._count -= 1
        if not self._count:
            self._owner = None
            block = self._block
            # INLINED-COPY-BEGIN(hybrid-release): Lock.release
            block._lock.release()
            if block._parked:
                block._pass_on()
            # INLINED-COPY-END(hybrid-release)

    def locked(self) -> bool:
        """Whether a fiber or a thread holds the lock (`threading.RLock.locked`, 3.14)."""
        return self._block.locked()

    # The protocol threading.Condition uses.
    def _is_owned(self) -> bool:
        return self._owner is _me()

    def _release_save(self) -> tuple[int, Any]:
        if not self._count:
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._block.release()
        return state

    def _acquire_restore(self, state: tuple[int, Any]) -> None:
        self._block._reacquire()
        self._count, self._owner = state
        raise_pending_interrupt()  # (see Lock._acquire_restore)

    def _recursion_count(self) -> int:
        return self._count if self._owner is _me() else 0

    def _at_fork_reinit(self) -> None:
        self._block._at_fork_reinit()
        self._owner = None
        self._count = 0

    def __repr__(self) -> str:
        state = "locked" if self._block.locked() else "unlocked"
        return (
            f"<{state} {_qualname(self)} object owner={self._owner!r} count={self._count} "
            f"at {id(self):#x}>"
        )

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {_qualname(self)!r} object")  # (as Lock's)


def _qualname(obj: Any) -> str:
    """As the stdlib's locks name themselves in their repr (``_thread.lock``)."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _allocate_lock() -> Lock:
    """What ``_thread.allocate_lock`` / ``threading.Lock`` return once patched."""
    return Lock()


# A staticmethod object: callable, and, like the C function it replaces, not bound as a method
# when a class stores it (CPython's lock tests hold ``locktype = _thread.allocate_lock``).
allocate_lock = staticmethod(_allocate_lock)


class Condition(threading.Condition):
    """`threading.Condition` under `unknot.patch`: a notification is never lost to a waiter
    that leaves with an exception.

    `notify` picks waiters and takes them off the list at once. In the stdlib, one that then
    leaves `wait` with an exception rather than the wake-up (Ctrl-C there) takes the
    notification with it, and a waiter behind it sleeps on, though what it waits for is there.
    With fibers that is no rare signal but any cancellation: a fiber cancelled while parked in
    ``Queue.get()`` or ``Semaphore.acquire()``, picked by the ``notify`` of the next ``put`` or
    ``release`` before it ran again; or a Ctrl-C raised as the woken waiter takes the lock
    back. Here such a waiter hands the notification on (`notify`, once the lock is held again):
    a spurious wake-up, which every user of a condition must expect, rather than a lost one.
    `Event`, `Semaphore`, `Barrier` and `queue.Queue` build on this class once patched. A wait
    that times out keeps the stdlib's behaviour (it returns False; its caller checks the
    predicate again).
    """

    def wait(self, timeout: float | None = None) -> bool:
        """As `threading.Condition.wait`."""
        if not self._is_owned():  # type: ignore[attr-defined]
            raise RuntimeError("cannot wait on un-acquired lock")
        waiter = Lock()
        waiter.acquire()
        self._waiters.append(waiter)  # type: ignore[attr-defined]
        saved = self._release_save()  # type: ignore[attr-defined]
        try:
            if timeout is None:
                woken = waiter.acquire()
            elif timeout > 0:
                woken = waiter.acquire(True, timeout)
            else:
                woken = waiter.acquire(False)
        except BaseException:
            self._return(saved, waiter, False, True)
            raise
        self._return(saved, waiter, woken, False)
        return woken

    def _return(self, saved: Any, waiter: Lock, woken: bool, failing: bool) -> None:
        """Take the lock back, leave the waiters' list, and hand on a notification that this
        waiter took but leaves with an exception (``failing``, or raised here: a Ctrl-C that
        came meanwhile is raised once the lock is held again)."""
        try:
            self._acquire_restore(saved)  # type: ignore[attr-defined]
        except BaseException:
            failing = True
            raise
        finally:
            notified = woken
            if not woken:
                try:
                    self._waiters.remove(waiter)  # type: ignore[attr-defined]
                except ValueError:
                    notified = True  # notify() picked this waiter and took it off the list
            # Leaving by a timeout keeps the stdlib's result (the caller checks again). Only
            # with the lock held again: a plain lock's restore may have raised before that.
            if notified and failing and self._is_owned():  # type: ignore[attr-defined]
                self.notify()


_py_put = queue._PySimpleQueue.put  # type: ignore[attr-defined]


class SimpleQueue(queue._PySimpleQueue):  # type: ignore[name-defined]
    """`queue.SimpleQueue` under `unknot.patch`: the stdlib's pure-Python one, whose blocking
    `get` waits on the patched locks (the C one would block the hub), with a `put` that, as
    documented, never blocks, and so takes no cancellation or Ctrl-C either.

    The pure-Python `put` appends the item, then counts it in a semaphore, whose lock a thread
    in `get` may hold for a moment: an exception raised in that short wait would leave the item
    queued but not counted, and every later `get` one item behind. It runs in `run_to_finish`.
    """

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """As `queue.SimpleQueue.put` (``block`` and ``timeout`` are ignored: it never blocks)."""
        run_to_finish(_py_put, self, item)


# -- importlib's module locks ---------------------------------------------------------------------

# A thread's ident is a C unsigned long: 64 bits at most.
_THREAD_BITS = 64
_THREAD_MASK = (1 << _THREAD_BITS) - 1


def importlib_thread() -> Any:
    """What `unknot.patch` puts in ``importlib._bootstrap._thread``: the ``_thread`` module as
    importlib's per-module locks (``_ModuleLock``) see it, so that fibers importing at once
    wait for each other as threads do.

    A module lock knows its owner by ``_thread.get_ident()``, which is the same for every
    fiber of a thread: a fiber importing a module whose import is suspended in another fiber
    (its top level made a cooperative call: a sleep, a subprocess, a socket) would be taken
    for a circular import of the first and given the half-initialised module. Here:

    * ``get_ident()`` in a fiber is the fiber's own identity: a negative int (thread idents
      are not), which holds the fiber's address and its thread's ident; elsewhere, the
      thread's ident. importlib's deadlock detection (``_blocking_on``) thus sees fibers as
      it sees threads: an import cycle between fibers, or between fibers and threads, ends
      as between threads (one gets the partial module), rather than hanging.
    * A fiber and the other greenlets of its own thread (the hub's, which runs asyncio tasks;
      the one that called `unknot.run`) never wait for each other, since such a wait could
      never end: a fiber importing a module held by one of them takes the lock as a circular
      import of that greenlet does (so do the locks of an import that was in progress in a
      fiber when `patch` ran, taken under the thread's ident); one of them importing a module
      that a fiber of its thread is importing gets importlib's ``_DeadlockError``, which an
      ``import`` statement turns into the partial module, as before the patch.
    * ``allocate_lock`` and ``RLock`` (3.12+) make hybrid locks: a fiber waiting for a module
      lock parks, a thread blocks.
    * Everything else is the real ``_thread``'s.

    None of its functions imports anything: they run inside the import machinery.
    """
    bootstrap = sys.modules["importlib._bootstrap"]
    module_lock = bootstrap._ModuleLock
    deadlock_error = bootstrap._DeadlockError
    # The methods that ask for the ident, in a frame whose ``self`` is the module lock.
    asking = {
        module_lock.__dict__[name].__code__: name != "release"
        for name in ("acquire", "release", "has_deadlock")
        if name in module_lock.__dict__
    }
    get_thread_ident = _thread.get_ident
    getframe = sys._getframe
    real = _thread

    def get_ident() -> int:
        """The calling fiber's identity, or its thread's outside fibers (see
        `importlib_thread`)."""
        thread = get_thread_ident()
        frame = getframe(1)
        lock: Any = frame.f_locals.get("self") if frame.f_code in asking else None
        owner = lock.owner if type(lock) is module_lock else None
        f = getcurrent()
        if type(f) is Fiber:
            if owner == thread:
                return thread  # a greenlet of this thread, suspended around this fiber, has it
            return -((id(f) << _THREAD_BITS) | thread)
        if (
            type(owner) is int
            and owner < 0
            and (-owner) & _THREAD_MASK == thread
            and asking[frame.f_code]
        ):
            raise deadlock_error(
                f"deadlock detected by {lock!r}: a fiber of this thread is importing the "
                f"module, and it cannot run while {f!r} waits for it"
            )
        return thread

    def __getattr__(name: str) -> Any:
        return getattr(real, name)

    shim = type(sys)(
        "_thread", "``_thread`` as importlib's module locks see it under unknot.patch."
    )
    shim.get_ident = get_ident  # type: ignore[attr-defined]
    shim.allocate_lock = _allocate_lock  # type: ignore[attr-defined]
    shim.RLock = RLock  # type: ignore[attr-defined]
    shim.__getattr__ = __getattr__  # type: ignore[method-assign]
    return shim
