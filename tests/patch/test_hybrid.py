"""The hybrid locks `unknot.patch()` installs as ``threading.Lock`` / ``threading.RLock``:
what they share with the stdlib's ``_thread`` locks (arguments, errors, repr)."""

from __future__ import annotations

import _thread
import re
import time
from typing import Any

import pytest
from fiber_helpers import run_script

from unknot._patch import _hybrid

BAD_ACQUIRE_ARGS: list[tuple[Any, ...]] = [(False, 1), (True, -5), (True, "x"), (True, 1e300)]


def _error(fn: Any, *args: Any) -> tuple[type, str] | None:
    try:
        fn(*args)
    except Exception as e:
        return type(e), str(e)
    return None


@pytest.mark.parametrize("make", [_hybrid.Lock, _hybrid.RLock], ids=["Lock", "RLock"])
@pytest.mark.parametrize("args", BAD_ACQUIRE_ARGS)
def test_acquire_rejects_what_the_stdlib_rejects(make: Any, args: tuple[Any, ...]) -> None:
    # Checked before the lock is taken (it is free here), with the running Python's errors.
    expected = _error(_thread.allocate_lock().acquire, *args)
    assert expected is not None
    lock = make()
    assert _error(lock.acquire, *args) == expected
    assert lock.acquire(False), "a rejected call must not leave the lock taken"
    if make is _hybrid.RLock:  # also when the caller already owns it
        assert _error(lock.acquire, *args) == expected


@pytest.mark.parametrize("make", [_hybrid.Lock, _hybrid.RLock], ids=["Lock", "RLock"])
def test_repr_has_the_stdlib_form(make: Any) -> None:
    # As _thread's locks: "<unlocked _thread.lock object at 0x...>" (CPython's lock_tests).
    lock = make()
    assert re.fullmatch(
        r"<unlocked unknot\._patch\._hybrid\.R?Lock object (.*)?at 0x[0-9a-f]+>", repr(lock)
    )
    lock.acquire()
    assert re.fullmatch(
        r"<locked unknot\._patch\._hybrid\.R?Lock object (.*)?at 0x[0-9a-f]+>", repr(lock)
    )


# A Condition's wait() re-acquires its lock on the way out (threading.Condition calls
# _acquire_restore); an exception raised inside that re-acquisition leaves the lock unheld and
# the caller's `with cond:` fails with "release unlocked lock". Neither Ctrl-C nor
# cancellation may land there: Ctrl-C is raised once the lock is held again (as in the
# stdlib, where it is raised when the acquire returns), a cancellation at the next checkpoint.
REACQUIRE = """
import _thread, threading, time
import unknot
from unknot._patch import _hybrid

def holder(cond, interrupt):
    with cond:
        cond.notify()
        time.sleep(0.1)  # the waiter, woken, now waits to re-acquire the lock
        if interrupt:
            _thread.interrupt_main()
        time.sleep(0.2)

def main():
    log = []
    for make in (_hybrid.Lock, _hybrid.RLock):
        lock = make()
        cond = threading.Condition(lock)
        with cond:
            threading.Thread(target=holder, args=(cond, True)).start()
            try:
                cond.wait(5)
            except KeyboardInterrupt:
                log.append(f"KeyboardInterrupt, lock held: {cond._is_owned()}")
        log.append(lock.acquire(False))  # free again
        lock.release()
        cond = threading.Condition(make())
        with unknot.move_on_after(0.1) as scope:
            with cond:
                threading.Thread(target=holder, args=(cond, False)).start()
                log.append(cond.wait(5))
            unknot.sleep(5)
        log.append(scope.cancelled_caught)
    return log

print(*unknot.run(main), sep="|")
"""


def test_condition_lock_reacquire_takes_no_interrupt_or_cancellation() -> None:
    expected = ["KeyboardInterrupt, lock held: True", "True", "True", "True"] * 2
    assert run_script(REACQUIRE) == expected


def test_lock_is_final_as_the_stdlibs() -> None:
    # threading.Lock has never been subclassable (a function before 3.13, a final class since).
    with pytest.raises(TypeError, match="not an acceptable base type"):

        class Mine(_hybrid.Lock):  # noqa: F841
            pass


# run_to_finish: a wait on these locks inside it is not cut short by cancellation; the
# cancellation is raised at the fiber's next checkpoint, after the call returned.
@pytest.mark.parametrize("finishing", [True, False], ids=["run_to_finish", "plain"])
def test_run_to_finish_keeps_cancellation_for_the_next_checkpoint(finishing: bool) -> None:
    import threading
    import time

    import unknot
    from unknot.lowlevel import must_finish, run_to_finish

    lock = _hybrid.Lock()
    lock.acquire()  # held by the thread below for 0.2 s

    def main() -> list[Any]:
        log: list[Any] = []
        threading.Thread(target=lambda: (time.sleep(0.2), lock.release())).start()
        with unknot.move_on_after(0.02) as scope:
            try:
                if finishing:
                    log.append(
                        run_to_finish(lambda: (must_finish(unknot.current()), lock.acquire()))
                    )
                else:
                    log.append(lock.acquire())
            finally:
                log.append(unknot.current_time() - start >= 0.15)  # waited for the thread?
            log.append("after the call")
            unknot.checkpoint()
            log.append("not cancelled")
        log.append(scope.cancelled_caught)
        log.append(must_finish(unknot.current()))
        return log

    start = 0.0

    def timed() -> list[Any]:
        nonlocal start
        start = unknot.current_time()
        return main()

    log = unknot.run(timed)
    if finishing:
        assert log == [(True, True), True, "after the call", True, False]
        assert lock.locked()
    else:
        assert log == [False, True, False]
        time.sleep(0.3)
        assert not lock.locked()


# queue.SimpleQueue.put never blocks, so it takes no cancellation: under the patch it counts
# the item in a semaphore whose lock a thread may hold for a moment, and a cancellation in that
# wait used to leave the item queued but not counted (get then found nothing).
SIMPLE_QUEUE_PUT = """
import queue, threading, time
import unknot
unknot.patch()

def main():
    q = queue.SimpleQueue()
    held = threading.Event()

    def hold():  # the lock of the semaphore that counts the items, for 0.2 s
        with q._count._cond:
            held.set()
            time.sleep(0.2)

    threading.Thread(target=hold).start()
    held.wait()
    log = []
    with unknot.move_on_after(0.05) as scope:
        try:
            q.put("item")
            log.append("put")
        finally:
            log.append(q.qsize())
        unknot.checkpoint()
    log.append(scope.cancelled_caught)
    try:
        log.append(q.get(timeout=0.5))
    except queue.Empty:
        log.append("lost")
    return log

print(*unknot.run(main), sep="|")
"""


def test_simple_queue_put_takes_no_cancellation() -> None:
    assert run_script(SIMPLE_QUEUE_PUT) == ["put", "1", "True", "item"]


# A waiter that notify() picked but that leaves wait() with an exception hands the notification
# on: the next waiter wakes, rather than sleeping on with the item there.
def _notify_one_of_two(cond: Any, before_notify: Any) -> list[tuple[str, str]]:
    """Fibers A, then B, wait on ``cond`` for an item (3 s at most); ``before_notify(A)`` runs,
    then an item comes with one ``notify()``. What each ended with: the item ("at once" if
    within a second), "timed out", or the name of the exception that came out."""
    import unknot

    items: list[str] = []
    log: list[tuple[str, str]] = []

    def consumer(name: str) -> None:
        try:
            with cond:
                while not items:
                    if not cond.wait(3.0):
                        log.append((name, "timed out"))
                        return
                late = time.monotonic() - t0 > 1.0
                log.append((name, items.pop() + (" late" if late else " at once")))
        except BaseException as e:
            log.append((name, type(e).__name__))

    def main() -> None:
        a = unknot.spawn(consumer, "A")
        unknot.sleep(0.01)
        b = unknot.spawn(consumer, "B")
        unknot.sleep(0.01)
        before_notify(a)
        with cond:
            items.append("item")
            cond.notify()  # picks A, first in line
        a.join()
        b.join()

    t0 = time.monotonic()
    unknot.run(main)
    return log


def test_condition_notification_is_not_lost_to_a_cancelled_waiter() -> None:
    cond = _hybrid.Condition(_hybrid.Lock())
    # A is woken with Cancelled, but has not run yet when notify() picks it.
    log = _notify_one_of_two(cond, lambda a: a.cancel())
    assert log == [("A", "Cancelled"), ("B", "item at once")]


# The same when the waiter was woken but an exception comes out of the lock's re-acquisition
# (a Ctrl-C that arrived meanwhile is raised there, once the lock is held again).
def test_condition_notification_is_not_lost_when_the_reacquisition_raises() -> None:
    class Interrupting:
        """A hybrid lock whose next re-acquisition by a Condition raises KeyboardInterrupt."""

        def __init__(self) -> None:
            self.lock = _hybrid.Lock()
            self.interrupt_next = False

        def acquire(self, *args: Any) -> bool:
            return self.lock.acquire(*args)

        def release(self) -> None:
            self.lock.release()

        __enter__ = acquire

        def __exit__(self, *exc: Any) -> None:
            self.lock.release()

        def _release_save(self) -> None:
            self.lock.release()

        def _acquire_restore(self, state: Any) -> None:
            self.lock.acquire()
            if self.interrupt_next:
                self.interrupt_next = False
                raise KeyboardInterrupt

    lock = Interrupting()
    log = _notify_one_of_two(
        _hybrid.Condition(lock), lambda a: setattr(lock, "interrupt_next", True)
    )
    assert log == [("A", "KeyboardInterrupt"), ("B", "item at once")]


def test_condition_wait_timing_out_returns_false_as_the_stdlibs() -> None:
    import unknot

    cond = _hybrid.Condition(_hybrid.RLock())

    def main() -> tuple[bool, bool]:
        with cond:
            first = cond.wait(0.05)
            second = cond.wait(0)
        return first, second

    assert unknot.run(main) == (False, False)
    assert not cond._waiters  # type: ignore[attr-defined]


QUEUE_GET_NOT_LOST = """
import queue, time
import unknot
unknot.patch()

def main():
    q = queue.Queue()
    t0 = time.monotonic()
    log = []
    scopes = {}

    def getter(name):
        with unknot.CancelScope() as scopes[name]:
            log.append(f"{name} got {q.get(timeout=3.0)} after {time.monotonic() - t0 < 1.0}")
        if scopes[name].cancelled_caught:
            log.append(f"{name} cancelled")

    a = unknot.spawn(getter, "A")
    unknot.sleep(0.01)
    b = unknot.spawn(getter, "B")
    unknot.sleep(0.01)
    scopes["A"].cancel()
    q.put("x")
    a.join()
    b.join()
    return log

print(*unknot.run(main), sep="|")
"""


def test_patched_queue_get_is_not_left_waiting_by_a_cancelled_getter() -> None:
    # (Before: B got the item only when its 3 s timeout ran out.)
    assert run_script(QUEUE_GET_NOT_LOST) == ["A cancelled", "B got x after True"]


# A release in an OS thread hands the wake-up to the first waiting fiber through
# call_soon_threadsafe. A fiber that leaves its wait before that wake-up runs (cancelled, or
# timed out) must not be woken by it later, in an unrelated wait; and the lock is not lost: the
# fiber waiting behind it gets it.
STALE_WAKE_SETUP = """
import unknot
unknot.patch()
import threading, time
from unknot._core._calls import _thread_sleep as block_hub  # blocks the hub, once patched

lock = threading.Lock()
held = threading.Event()
release_now = threading.Event()

def thread_body():
    lock.acquire()
    held.set()
    release_now.wait()
    lock.release()  # pops the first waiter, queues its wake-up on the hub's loop
"""

STALE_WAKE_CANCELLED = """
def main():
    log = []
    scopes = []
    t = threading.Thread(target=thread_body)
    t.start()
    unknot.to_thread(held.wait)

    def cancelled_waiter():
        with unknot.CancelScope() as scope:
            scopes.append(scope)
            lock.acquire()
            log.append("A acquired")
        log.append(f"A then Event.wait -> {unknot.Event().wait(timeout=0.2)}")

    def next_waiter():
        t0 = time.monotonic()
        got = lock.acquire(timeout=3.0)
        log.append(f"B acquire -> {got} soon {time.monotonic() - t0 < 1.0}")
        if got:
            lock.release()

    a = unknot.spawn(cancelled_waiter)
    unknot.sleep(0.01)
    b = unknot.spawn(next_waiter)
    unknot.sleep(0.01)
    release_now.set()
    block_hub(0.2)  # the thread releases meanwhile; A is cancelled before the wake-up runs
    scopes[0].cancel()
    a.join()
    b.join()
    unknot.to_thread(t.join)
    return sorted(log) + [str(lock.locked())]

print(*unknot.run(main), sep="|")
"""

STALE_WAKE_TIMED_OUT = """
def main():
    log = []
    t = threading.Thread(target=thread_body)
    t.start()
    unknot.to_thread(held.wait)

    def timed_waiter():
        got = lock.acquire(timeout=0.05)  # times out, and is released to, at once
        if got:
            lock.release()
        log.append(f"T acquire -> {got}, then Event.wait -> {unknot.Event().wait(timeout=0.2)}")

    def releaser():
        unknot.sleep(0.01)  # woken in the same tick as T's timeout, before it
        release_now.set()
        block_hub(0.1)  # the thread releases meanwhile

    w = unknot.spawn(timed_waiter)
    unknot.sleep(0)
    r = unknot.spawn(releaser)
    unknot.sleep(0)
    block_hub(0.1)  # both timers expire
    w.join()
    r.join()
    unknot.to_thread(t.join)
    return log + [str(lock.locked())]

print(*unknot.run(main), sep="|")
"""


def test_late_wake_up_from_a_thread_skips_a_cancelled_waiter() -> None:
    assert run_script(STALE_WAKE_SETUP + STALE_WAKE_CANCELLED) == [
        "A then Event.wait -> False",
        "B acquire -> True soon True",
        "False",
    ]


def test_late_wake_up_from_a_thread_skips_a_timed_out_waiter() -> None:
    assert run_script(STALE_WAKE_SETUP + STALE_WAKE_TIMED_OUT) == [
        "T acquire -> True, then Event.wait -> False",
        "False",
    ]


def test_patched_allocate_lock_is_not_bound_as_a_method() -> None:
    # As the C function it replaces: CPython's lock_tests hold `locktype = _thread.allocate_lock`.
    class Tests:
        locktype = _hybrid.allocate_lock

    lock = Tests().locktype()
    assert type(lock) is _hybrid.Lock
    assert type(_hybrid.allocate_lock()) is _hybrid.Lock
