"""Event, Lock, RLock, Semaphore, BoundedSemaphore, Condition: threading semantics for fibers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import unknot
from unknot._patch import _hybrid
from unknot.testing import MockClock


def most_inside_at_once(lock: Any, fibers: int, rounds: int, pause: float) -> int:
    """Run ``fibers`` fibers that each enter ``with lock:`` ``rounds`` times, staying ``pause``
    seconds (``sleep(pause)``, so others run meanwhile); the most fibers inside at once."""
    inside = most = 0

    def worker() -> None:
        nonlocal inside, most
        for _ in range(rounds):
            with lock:
                inside += 1
                most = max(most, inside)
                unknot.sleep(pause)
                inside -= 1

    with unknot.TaskGroup() as tg:
        for _ in range(fibers):
            tg.spawn(worker)
    return most


# -- Event ----------------------------------------------------------------------------------------


@pytest.mark.unknot
def test_event_set_wakes_all_waiters() -> None:
    ev = unknot.Event()
    assert not ev.is_set()
    waiters = [unknot.spawn(ev.wait) for _ in range(5)]
    unknot.sleep(0)
    assert not any(w.done() for w in waiters)
    ev.set()
    assert ev.is_set()
    assert [w.join() for w in waiters] == [True] * 5


@pytest.mark.unknot
def test_event_wait_when_set_returns_at_once() -> None:
    ev = unknot.Event()
    ev.set()
    assert ev.wait() is True
    assert ev.wait(timeout=0) is True


def test_event_set_wait_outside_fibers() -> None:
    ev = unknot.Event()
    ev.set()
    assert ev.wait() is True  # no need to block, so it works anywhere


@pytest.mark.unknot
def test_event_wait_timeout(autojump_clock: MockClock) -> None:
    ev = unknot.Event()
    assert ev.wait(timeout=5) is False
    assert unknot.current_time() == pytest.approx(5)
    assert "unset" in repr(ev)


@pytest.mark.unknot
def test_event_clear() -> None:
    ev = unknot.Event()
    ev.set()
    ev.clear()
    assert not ev.is_set()
    assert ev.wait(timeout=0.001) is False


@pytest.mark.unknot
def test_event_set_then_clear_still_wakes_waiter() -> None:
    ev = unknot.Event()
    w = unknot.spawn(ev.wait)
    unknot.sleep(0)
    ev.set()
    ev.clear()
    assert w.join() is True


@pytest.mark.unknot
def test_event_wait_cancelled(autojump_clock: MockClock) -> None:
    ev = unknot.Event()
    with unknot.move_on_after(1) as scope:
        ev.wait()
    assert scope.cancelled_caught
    assert not ev._waiters  # the cancelled waiter was removed


# -- Lock ---------------------------------------------------------------------------------------


@pytest.mark.unknot
def test_lock_basic() -> None:
    lock = unknot.Lock()
    assert not lock.locked()
    assert lock.acquire() is True
    assert lock.locked()
    assert lock.acquire(blocking=False) is False
    lock.release()
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()


@pytest.mark.unknot
def test_lock_context_manager_and_mutual_exclusion() -> None:
    lock = unknot.Lock()
    assert most_inside_at_once(lock, fibers=10, rounds=5, pause=0) == 1
    assert not lock.locked()


@pytest.mark.unknot
def test_lock_acquire_timeout(autojump_clock: MockClock) -> None:
    lock = unknot.Lock()
    holder = unknot.spawn(lambda: (lock.acquire(), unknot.sleep(10), lock.release()))
    unknot.sleep(0)
    assert lock.acquire(timeout=3) is False
    assert unknot.current_time() == pytest.approx(3)
    assert lock.acquire(timeout=30) is True
    assert unknot.current_time() == pytest.approx(10)
    lock.release()
    holder.join()


@pytest.mark.unknot
def test_lock_timeout_argument_validation() -> None:
    lock = unknot.Lock()
    with pytest.raises(ValueError):
        lock.acquire(blocking=False, timeout=1)
    with pytest.raises(ValueError):
        lock.acquire(timeout=-5)
    assert lock.acquire(timeout=-1) is True  # -1 means "no timeout", as in threading


@pytest.mark.unknot
def test_lock_reacquire_by_owner_is_an_error() -> None:
    lock = unknot.Lock()
    lock.acquire()
    with pytest.raises(RuntimeError, match="already holds"):
        lock.acquire()
    assert lock.acquire(blocking=False) is False


@pytest.mark.unknot
def test_lock_fifo_handoff() -> None:
    lock = unknot.Lock()
    order: list[int] = []

    def worker(i: int) -> None:
        with lock:
            order.append(i)

    lock.acquire()
    with unknot.TaskGroup() as tg:
        for i in range(10):
            tg.spawn(worker, i)
        unknot.sleep(0)  # all ten queue up, in spawn order
        lock.release()
    assert order == list(range(10))


@pytest.mark.unknot
def test_lock_no_barging() -> None:
    # A released lock goes to the waiter, even if the releaser asks again at once.
    lock = unknot.Lock()
    got: list[str] = []

    def waiter() -> None:
        with lock:
            got.append("waiter")

    lock.acquire()
    w = unknot.spawn(waiter)
    unknot.sleep(0)
    lock.release()
    assert lock.acquire(blocking=False) is False  # handed to the waiter already
    lock.acquire()
    got.append("releaser")
    lock.release()
    w.join()
    assert got == ["waiter", "releaser"]


@pytest.mark.unknot
def test_lock_cancelled_waiter_is_skipped(autojump_clock: MockClock) -> None:
    lock = unknot.Lock()
    lock.acquire()
    a = unknot.spawn(lock.acquire)
    b = unknot.spawn(lambda: (lock.acquire(), "b got it")[1])
    unknot.sleep(1)
    a.cancel()
    lock.release()
    assert b.join() == "b got it"
    with pytest.raises(unknot.FiberCancelled):
        a.join()
    assert lock.locked()  # b holds it, not lost


@pytest.mark.unknot
def test_lock_granted_then_cancelled_keeps_ownership() -> None:
    # Handing the lock to a waiter and cancelling it before it runs must not lose the lock:
    # the waiter returns True and meets the cancellation at its next blocking call.
    lock = unknot.Lock()
    log: list[str] = []

    def waiter() -> None:
        got = lock.acquire()
        log.append(f"acquired={got}")
        try:
            unknot.sleep(0)
        finally:
            log.append(f"owner={lock.locked()}")
            lock.release()

    lock.acquire()
    w = unknot.spawn(waiter)
    unknot.sleep(0)
    lock.release()  # w is now the owner, not yet running
    w.cancel()
    with pytest.raises(unknot.FiberCancelled):
        w.join()
    assert log == ["acquired=True", "owner=True"]
    assert not lock.locked()


@pytest.mark.unknot
def test_lock_repr() -> None:
    lock = unknot.Lock()
    assert "unlocked" in repr(lock)
    with lock:
        assert "locked" in repr(lock)


# -- RLock --------------------------------------------------------------------------------------


@pytest.mark.unknot
def test_rlock_reentrancy() -> None:
    rlock = unknot.RLock()
    assert rlock.acquire()
    assert rlock.acquire()
    with rlock:
        pass
    rlock.release()
    other = unknot.spawn(lambda: rlock.acquire(blocking=False))
    assert other.join() is False  # still held once
    rlock.release()
    other2 = unknot.spawn(lambda: (rlock.acquire(blocking=False), rlock.release())[0])
    assert other2.join() is True


@pytest.mark.unknot
def test_rlock_release_by_non_owner_is_an_error() -> None:
    rlock = unknot.RLock()
    with pytest.raises(RuntimeError):
        rlock.release()
    rlock.acquire()
    f = unknot.spawn(rlock.release)
    with pytest.raises(RuntimeError):
        f.join()
    rlock.release()


@pytest.mark.unknot
def test_rlock_waiter_gets_it_after_full_release(autojump_clock: MockClock) -> None:
    rlock = unknot.RLock()
    got_at: list[float] = []

    def waiter() -> None:
        with rlock:
            got_at.append(unknot.current_time())

    with rlock:
        with rlock:
            w = unknot.spawn(waiter)
            unknot.sleep(1)
        unknot.sleep(1)  # released once: still held
        assert got_at == []
    w.join()
    assert got_at == [pytest.approx(2)]


@pytest.mark.unknot
@pytest.mark.parametrize("make", [unknot.RLock, _hybrid.RLock], ids=["RLock", "hybrid RLock"])
def test_rlock_locked_says_whether_anyone_holds_it(make: Any) -> None:
    # threading.RLock.locked() (Python 3.14): held by any fiber or thread, at any depth.
    rlock = make()
    assert rlock.locked() is False
    with rlock:
        with rlock:
            assert rlock.locked() is True
        assert rlock.locked() is True  # released once: still held
        seen = unknot.spawn(rlock.locked)  # another fiber sees it held too
        assert seen.join() is True
    assert rlock.locked() is False
    if make is _hybrid.RLock:  # held by an OS thread
        held, release = threading.Event(), threading.Event()

        def holder() -> None:
            with rlock:
                held.set()
                release.wait(5)

        t = threading.Thread(target=holder)
        t.start()
        assert held.wait(5)
        assert rlock.locked() is True
        release.set()
        t.join()
        assert rlock.locked() is False


@pytest.mark.unknot
def test_rlock_timeout(autojump_clock: MockClock) -> None:
    rlock = unknot.RLock()
    holder = unknot.spawn(lambda: (rlock.acquire(), unknot.sleep(10), rlock.release()))
    unknot.sleep(0)
    assert rlock.acquire(timeout=2) is False
    assert rlock.acquire(blocking=False) is False
    holder.join()
    assert rlock.acquire(blocking=False) is True


# -- Semaphore / BoundedSemaphore ----------------------------------------------------------------


@pytest.mark.unknot
def test_semaphore_counts() -> None:
    sem = unknot.Semaphore(2)
    assert sem.value == 2
    assert sem.acquire()
    assert sem.acquire()
    assert sem.value == 0
    assert sem.acquire(blocking=False) is False
    sem.release()
    assert sem.value == 1
    sem.release(3)
    assert sem.value == 4
    with pytest.raises(ValueError):
        sem.release(0)
    with pytest.raises(ValueError):
        unknot.Semaphore(-1)


@pytest.mark.unknot
def test_semaphore_limits_concurrency(autojump_clock: MockClock) -> None:
    sem = unknot.Semaphore(3)
    assert most_inside_at_once(sem, fibers=9, rounds=1, pause=1) == 3
    assert unknot.current_time() == pytest.approx(3)


@pytest.mark.unknot
def test_semaphore_timeout(autojump_clock: MockClock) -> None:
    sem = unknot.Semaphore(0)
    assert sem.acquire(timeout=4) is False
    assert unknot.current_time() == pytest.approx(4)
    with pytest.raises(ValueError):
        sem.acquire(blocking=False, timeout=1)


@pytest.mark.unknot
def test_semaphore_fifo_and_release_n() -> None:
    sem = unknot.Semaphore(0)
    order: list[int] = []

    def worker(i: int) -> None:
        sem.acquire()
        order.append(i)

    with unknot.TaskGroup() as tg:
        for i in range(5):
            tg.spawn(worker, i)
        unknot.sleep(0)
        sem.release(3)
        unknot.sleep(0)
        assert order == [0, 1, 2]
        sem.release(2)
    assert order == [0, 1, 2, 3, 4]
    assert sem.value == 0


@pytest.mark.unknot
def test_semaphore_no_slot_lost_to_timed_out_waiter(autojump_clock: MockClock) -> None:
    sem = unknot.Semaphore(0)
    a = unknot.spawn(sem.acquire, timeout=1)
    b = unknot.spawn(sem.acquire)
    unknot.sleep(1)  # a times out now, at the same instant we release
    sem.release()
    assert a.join() is False
    assert b.join() is True
    assert sem.value == 0


@pytest.mark.unknot
def test_bounded_semaphore() -> None:
    sem = unknot.BoundedSemaphore(2)
    with pytest.raises(ValueError, match="too many"):
        sem.release()
    sem.acquire()
    sem.release()
    assert sem.value == 2
    sem.acquire()
    sem.acquire()
    with pytest.raises(ValueError):
        sem.release(3)
    sem.release(2)
    assert "BoundedSemaphore" in repr(sem)


# -- Condition ----------------------------------------------------------------------------------


@pytest.mark.unknot
def test_condition_wait_notify() -> None:
    cond = unknot.Condition()
    items: list[int] = []

    def consumer() -> int:
        with cond:
            while not items:
                assert cond.wait() is True
            return items.pop()

    c = unknot.spawn(consumer)
    unknot.sleep(0)
    with cond:
        items.append(7)
        cond.notify()
    assert c.join() == 7


@pytest.mark.unknot
def test_condition_notify_n_and_all() -> None:
    cond = unknot.Condition(unknot.Lock())
    woken: list[int] = []

    def waiter(i: int) -> None:
        with cond:
            cond.wait()
            woken.append(i)

    with unknot.TaskGroup() as tg:
        for i in range(5):
            tg.spawn(waiter, i)
        unknot.sleep(0)
        with cond:
            cond.notify(2)
        unknot.sleep(0)
        unknot.sleep(0)
        assert woken == [0, 1]
        with cond:
            cond.notify_all()
    assert woken == [0, 1, 2, 3, 4]


@pytest.mark.unknot
def test_condition_requires_lock() -> None:
    cond = unknot.Condition()
    with pytest.raises(RuntimeError):
        cond.wait()
    with pytest.raises(RuntimeError):
        cond.notify()
    with pytest.raises(RuntimeError):
        cond.notify_all()


@pytest.mark.unknot
def test_condition_wait_timeout_reacquires(autojump_clock: MockClock) -> None:
    for lock in (unknot.Lock(), unknot.RLock()):
        cond = unknot.Condition(lock)
        with cond:
            t0 = unknot.current_time()
            assert cond.wait(timeout=2) is False
            assert unknot.current_time() - t0 == pytest.approx(2)
            assert cond._is_owned()


@pytest.mark.unknot
def test_condition_wait_restores_rlock_depth() -> None:
    rlock = unknot.RLock()
    cond = unknot.Condition(rlock)

    def notifier() -> None:
        with cond:
            cond.notify()

    with cond:
        with cond:
            unknot.spawn(notifier)
            assert cond.wait() is True
            assert rlock._count == 2
    assert not rlock._lock.locked()


@pytest.mark.unknot
def test_condition_wait_reacquires_lock_even_when_cancelled(autojump_clock: MockClock) -> None:
    for lock in (unknot.Lock(), unknot.RLock()):
        cond = unknot.Condition(lock)
        log: list[str] = []

        def waiter(cond: unknot.Condition = cond, log: list[str] = log) -> None:
            with cond:
                try:
                    cond.wait()
                except unknot.Cancelled:
                    log.append(f"cancelled, owns lock: {cond._is_owned()}")
                    log.append(f"at {unknot.current_time():.0f}")
                    raise

        w = unknot.spawn(waiter)
        unknot.sleep(1)
        with cond:  # hold the lock while the waiter is cancelled
            w.cancel()
            unknot.sleep(5)  # the waiter must wait for the lock, not run without it
            assert log == []
        with pytest.raises(unknot.FiberCancelled):
            w.join()
        assert log[0] == "cancelled, owns lock: True"
        assert log[1] == f"at {unknot.current_time():.0f}"
        assert cond.acquire(blocking=False) is True  # released by the waiter's with-block
        cond.release()


@pytest.mark.unknot
def test_condition_wait_for(autojump_clock: MockClock) -> None:
    cond = unknot.Condition()
    state = {"n": 0}

    def incrementer() -> None:
        for _ in range(5):
            unknot.sleep(1)
            with cond:
                state["n"] += 1
                cond.notify_all()

    unknot.spawn(incrementer)
    with cond:
        result = cond.wait_for(lambda: state["n"] >= 3 and state["n"])
        assert result == 3
        assert unknot.current_time() == pytest.approx(3)
        assert cond.wait_for(lambda: state["n"] >= 100, timeout=10) is False
        assert unknot.current_time() == pytest.approx(13)
        assert cond.wait_for(lambda: "immediately") == "immediately"


@pytest.mark.unknot
def test_condition_producer_consumer() -> None:
    cond = unknot.Condition()
    buf: list[int] = []
    received: list[int] = []

    def producer() -> None:
        for i in range(100):
            with cond:
                buf.append(i)
                cond.notify()
            if i % 7 == 0:
                unknot.sleep(0)

    def consumer() -> None:
        while len(received) < 100:
            with cond:
                cond.wait_for(lambda: buf)
                received.extend(buf)
                buf.clear()

    with unknot.TaskGroup() as tg:
        tg.spawn(consumer)
        tg.spawn(producer)
    assert received == list(range(100))


@pytest.mark.unknot
def test_condition_notify_skips_cancelled_waiter() -> None:
    cond = unknot.Condition()
    woken: list[str] = []

    def waiter(tag: str) -> None:
        with cond:
            cond.wait()
            woken.append(tag)

    a = unknot.spawn(waiter, "a")
    b = unknot.spawn(waiter, "b")
    unknot.sleep(0)
    a.cancel()
    with cond:
        cond.notify()  # a was cancelled: b gets the notification
    b.join()
    assert woken == ["b"]


@pytest.mark.unknot
def test_semaphore_acquire_infinite_wait_then_release(autojump_clock: MockClock) -> None:
    sem = unknot.Semaphore(0)
    f = unknot.spawn(sem.acquire)
    unknot.sleep(100)
    assert not f.done()
    sem.release()
    assert f.join() is True


def test_ctrl_c_does_not_break_condition_reacquire() -> None:
    """Ctrl-C arriving while the root re-acquires a Condition's lock waits until it holds it."""
    cond = unknot.Condition(unknot.Lock())
    order: list[str] = []

    def holder() -> None:
        with cond:
            cond.notify()
            hub = unknot.current().hub  # type: ignore[union-attr]
            hub.interrupt_pending = True  # what the SIGINT handler does while another fiber runs
            unknot.sleep(0.05)  # the root is now parked re-acquiring the lock
            order.append("holder releases")

    def main() -> None:
        with cond:
            unknot.spawn(holder)
            try:
                cond.wait()
            except KeyboardInterrupt:  # pragma: no cover - the bug this test guards against
                order.append("interrupted without the lock")
                raise
            order.append("root has the lock again")
        unknot.sleep(1)  # the next interruptible wait delivers the Ctrl-C

    with pytest.raises(KeyboardInterrupt):
        unknot.run(main)
    assert order == ["holder releases", "root has the lock again"]


def test_semaphore_negative_timeout_does_not_wait_as_threading() -> None:
    # threading.Semaphore.acquire(timeout=-1) gives up at once when no slot is free (-1 means
    # "for ever" only for locks); unknot's waited for ever. A timeout with blocking=False is a
    # ValueError in both.
    import threading

    std = threading.Semaphore(0)
    assert std.acquire(timeout=-1) is False
    with pytest.raises(ValueError):
        std.acquire(False, 1)

    def main() -> list[object]:
        sem = unknot.Semaphore(0)
        out: list[object] = []
        with unknot.move_on_after(5) as scope:
            t0 = unknot.current_time()
            out.append(sem.acquire(timeout=-1))
            out.append(sem.acquire(timeout=-0.5))
            out.append(unknot.current_time() - t0 < 1)
        out.append(scope.cancelled_caught)
        with pytest.raises(ValueError):
            sem.acquire(False, 1)
        sem.release()
        out.append(sem.acquire(timeout=-1))  # a free slot is still taken
        return out

    assert unknot.run(main) == [False, False, True, False, True]
