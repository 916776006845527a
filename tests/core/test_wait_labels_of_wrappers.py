"""What a fiber dump says a fiber waits on when the public call it made delegates the wait:
an `RLock` (over a `Lock`), a `Condition` (over its lock), `as_completed` (a generator over a
private helper)."""

from __future__ import annotations

import unknot


def _waits() -> dict[str, unknot.FiberInfo]:
    return {i.name: i for i in unknot.fibers()}


def test_an_rlock_wait_is_labelled_rlock_acquire() -> None:
    seen: dict[str, unknot.FiberInfo] = {}

    def main() -> None:
        rlock = unknot.RLock()
        rlock.acquire()

        def with_block() -> None:
            with rlock:
                pass

        with unknot.TaskGroup() as tg:
            tg.spawn(rlock.acquire, name="acquirer")
            tg.spawn(with_block, name="with")
            tg.spawn(rlock.acquire, True, 30, name="timed")
            unknot.sleep(0.01)
            seen.update(_waits())
            tg.cancel()

    unknot.run(main)
    assert seen["acquirer"].waiting_on == "RLock.acquire"
    assert isinstance(seen["acquirer"].wait_object, unknot.RLock)
    assert seen["with"].waiting_on == "RLock.acquire"
    timed = seen["timed"].waiting_on
    assert timed is not None and timed.startswith("RLock.acquire (timeout in ")


def test_a_lock_and_a_condition_are_labelled_by_their_own_calls() -> None:
    seen: dict[str, unknot.FiberInfo] = {}
    after_notify: list[str | None] = []

    def main() -> None:
        lock = unknot.Lock()
        lock.acquire()
        cond = unknot.Condition()  # (over an RLock)
        cond_lock = unknot.Condition(unknot.Lock())

        def cond_waiter() -> None:
            with cond_lock:
                cond_lock.wait()

        with unknot.TaskGroup() as tg:
            tg.spawn(lock.acquire, name="lock")
            w = tg.spawn(cond_waiter, name="cond-wait")
            unknot.sleep(0.01)
            with cond:
                tg.spawn(cond.acquire, name="cond-acquire")
                unknot.sleep(0.01)
                seen.update(_waits())
            with cond_lock:
                cond_lock.notify()
                unknot.sleep(0.01)  # woken, now waiting to re-acquire the held lock
                after_notify.append(unknot.lowlevel.fiber_info(w).waiting_on)
            tg.cancel()

    unknot.run(main)
    assert seen["lock"].waiting_on == "Lock.acquire"
    assert isinstance(seen["lock"].wait_object, unknot.Lock)
    assert seen["cond-wait"].waiting_on == "Condition.wait"
    assert seen["cond-acquire"].waiting_on == "Condition.acquire"
    assert isinstance(seen["cond-acquire"].wait_object, unknot.Condition)
    assert after_notify == ["Condition.wait"]


def test_an_as_completed_wait_is_labelled_as_completed() -> None:
    seen: dict[str, unknot.FiberInfo] = {}

    def main() -> None:
        never: unknot.Future[int] = unknot.Future()

        def consume(timeout: float | None) -> None:
            for _ in unknot.as_completed([never], timeout=timeout):
                pass

        with unknot.TaskGroup() as tg:
            tg.spawn(consume, None, name="untimed")
            tg.spawn(consume, 30, name="timed")
            unknot.sleep(0.01)
            seen.update(_waits())
            tg.cancel()

    unknot.run(main)
    assert seen["untimed"].waiting_on == "as_completed"
    timed = seen["timed"].waiting_on
    assert timed is not None and timed.startswith("as_completed (timeout in "), timed
