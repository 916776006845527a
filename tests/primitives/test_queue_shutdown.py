"""Queue.shutdown and ShutDown (Python 3.13's semantics on every version), iteration that ends at
shutdown, ``maxsize=None``, and every blocking queue call being a cancellation point."""

from __future__ import annotations

import queue
import sys

import pytest

import unknot
from unknot.testing import MockClock

QUEUE_TYPES = [unknot.Queue, unknot.LifoQueue, unknot.PriorityQueue]


def test_shutdown_is_the_stdlib_class_where_there_is_one() -> None:
    if sys.version_info >= (3, 13):
        assert unknot.ShutDown is queue.ShutDown  # type: ignore[attr-defined]
    else:
        assert issubclass(unknot.ShutDown, Exception)
        assert not hasattr(queue, "ShutDown")


@pytest.mark.unknot
@pytest.mark.parametrize("make", QUEUE_TYPES)
def test_put_raises_after_shutdown_and_nothing_is_added(make: type[unknot.Queue[int]]) -> None:
    q = make()
    q.put(1)
    assert not q.is_shutdown
    q.shutdown()
    assert q.is_shutdown
    for put in (q.put, q.put_nowait, lambda item: q.put(item, block=False)):
        with pytest.raises(unknot.ShutDown):
            put(2)
    assert q.qsize() == 1


@pytest.mark.unknot
@pytest.mark.parametrize("make", QUEUE_TYPES)
def test_get_drains_then_raises(make: type[unknot.Queue[int]]) -> None:
    q = make()
    for i in (1, 2):
        q.put(i)
    q.shutdown()
    assert sorted([q.get(), q.get_nowait()]) == [1, 2]
    for get in (q.get, q.get_nowait, lambda: q.get(block=False), lambda: q.get(timeout=1)):
        with pytest.raises(unknot.ShutDown):
            get()


@pytest.mark.unknot
def test_immediate_shutdown_drops_items_and_releases_join() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    for i in range(3):
        q.put(i)
    joined = unknot.spawn(q.join)
    unknot.sleep(0)
    assert not joined.done()
    q.shutdown(immediate=True)
    assert q.empty()
    with pytest.raises(unknot.ShutDown):
        q.get()
    joined.join(timeout=1)  # the three drained items count as done


@pytest.mark.unknot
def test_immediate_shutdown_keeps_join_waiting_for_items_already_taken() -> None:
    # As 3.13: only the drained items count as done; one already taken still needs task_done.
    q: unknot.Queue[int] = unknot.Queue()
    q.put(1)
    q.put(2)
    assert q.get() == 1
    joined = unknot.spawn(q.join)
    q.shutdown(immediate=True)
    unknot.sleep(0.01)
    assert not joined.done()
    q.task_done()
    joined.join(timeout=1)


@pytest.mark.unknot
def test_waiting_getters_and_putters_are_woken_with_shutdown() -> None:
    empty: unknot.Queue[int] = unknot.Queue()
    full: unknot.Queue[int] = unknot.Queue(maxsize=1)
    full.put(0)
    getters = [unknot.spawn(empty.get) for _ in range(3)]
    putters = [unknot.spawn(full.put, i) for i in (1, 2)]
    unknot.sleep(0.01)
    assert not any(f.done() for f in getters + putters)
    empty.shutdown()
    full.shutdown()
    for f in getters + putters:
        with pytest.raises(unknot.ShutDown):
            f.join(timeout=1)
    # The putters' items were not put, and not counted for join.
    assert full.qsize() == 1 and full.get() == 0
    full.task_done()
    with unknot.fail_after(1):
        full.join()


@pytest.mark.unknot
def test_non_immediate_shutdown_wakes_waiting_putter_but_keeps_queued_items() -> None:
    q: unknot.Queue[str] = unknot.Queue(maxsize=1)
    q.put("kept")
    putter = unknot.spawn(q.put, "refused")
    unknot.sleep(0.01)
    q.shutdown()
    with pytest.raises(unknot.ShutDown):
        putter.join(timeout=1)
    assert q.get() == "kept"
    with pytest.raises(unknot.ShutDown):
        q.get()


@pytest.mark.unknot
def test_iteration_ends_at_shutdown_after_draining() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    seen: list[int] = []

    def consume() -> None:
        for item in q:
            seen.append(item)

    consumer = unknot.spawn(consume)
    for i in range(3):
        q.put(i)
        unknot.sleep(0)
    q.put(3)
    q.put(4)
    q.shutdown()  # the two queued items are still delivered
    consumer.join(timeout=1)
    assert seen == [0, 1, 2, 3, 4]


@pytest.mark.unknot
def test_iteration_ends_at_once_on_an_immediate_shutdown() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    q.put(1)
    q.put(2)
    it = iter(q)
    assert next(it) == 1
    q.shutdown(immediate=True)
    assert list(it) == []


@pytest.mark.unknot
def test_shutdown_twice_is_harmless() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    q.put(1)
    q.shutdown()
    q.shutdown()
    assert q.get() == 1
    q.shutdown(immediate=True)
    with pytest.raises(unknot.ShutDown):
        q.get()


@pytest.mark.unknot
def test_maxsize_none_is_unbounded(autojump_clock: MockClock) -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=None)
    assert q.maxsize == 0
    for i in range(1000):
        q.put(i, timeout=0)
    assert not q.full()
    assert q.qsize() == 1000
    for make in (unknot.LifoQueue, unknot.PriorityQueue):
        other = make(None)
        for i in range(100):
            other.put_nowait(i)
        assert other.qsize() == 100 and not other.full()


# -- every blocking call is a cancellation point --------------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize("make", QUEUE_TYPES)
def test_put_with_room_raises_cancelled_and_does_not_enqueue(
    make: type[unknot.Queue[int]],
) -> None:
    q = make(maxsize=5)
    with unknot.CancelScope() as scope:
        scope.cancel()
        q.put(1)
        pytest.fail("put did not raise Cancelled")  # pragma: no cover
    assert scope.cancelled_caught
    assert q.empty()
    with unknot.CancelScope() as scope:
        scope.cancel()
        q.put(2, timeout=10)
    assert scope.cancelled_caught and q.empty()
    q.join()  # the refused puts did not count as unfinished work


@pytest.mark.unknot
def test_put_handing_to_a_waiting_getter_raises_cancelled_without_handing_over() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    getter = unknot.spawn(q.get)
    unknot.sleep(0)
    with unknot.CancelScope() as scope:
        scope.cancel()
        q.put(1)
    assert scope.cancelled_caught
    unknot.sleep(0.01)
    assert not getter.done()  # the item did not reach it
    q.put(2)
    assert getter.join(timeout=1) == 2


@pytest.mark.unknot
@pytest.mark.parametrize("make", QUEUE_TYPES)
def test_get_with_an_item_ready_raises_cancelled_and_does_not_dequeue(
    make: type[unknot.Queue[int]],
) -> None:
    q = make()
    q.put(7)
    with unknot.CancelScope() as scope:
        scope.cancel()
        q.get()
        pytest.fail("get did not raise Cancelled")  # pragma: no cover
    assert scope.cancelled_caught
    assert q.qsize() == 1
    with unknot.CancelScope() as scope:
        scope.cancel()
        q.get(timeout=10)
    assert scope.cancelled_caught and q.qsize() == 1
    assert q.get() == 7


@pytest.mark.unknot
def test_get_does_not_admit_a_waiting_putter_when_cancelled() -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=1)
    q.put(1)
    putter = unknot.spawn(q.put, 2)
    unknot.sleep(0)
    with unknot.CancelScope() as scope:
        scope.cancel()
        q.get()
    assert scope.cancelled_caught
    assert not putter.done() and q.qsize() == 1
    assert q.get() == 1
    putter.join(timeout=1)
    assert q.get() == 2


@pytest.mark.unknot
def test_join_with_nothing_unfinished_raises_cancelled() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    with unknot.CancelScope() as scope:
        scope.cancel()
        q.join()
        pytest.fail("join did not raise Cancelled")  # pragma: no cover
    assert scope.cancelled_caught


@pytest.mark.unknot
def test_nowait_calls_are_not_cancellation_points() -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=2)
    with unknot.CancelScope() as scope:
        scope.cancel()
        q.put_nowait(1)
        q.put(2, block=False)
        got = [q.get_nowait(), q.get(block=False)]
        q.task_done()
        q.task_done()
    assert not scope.cancelled_caught
    assert got == [1, 2]


@pytest.mark.unknot
def test_shutdown_queue_in_a_cancelled_scope_raises_cancelled_first() -> None:
    # A blocking put/get checks cancellation at entry, before anything else.
    q: unknot.Queue[int] = unknot.Queue()
    q.shutdown()
    for call in (lambda: q.put(1), q.get):
        with unknot.CancelScope() as scope:
            scope.cancel()
            call()
        assert scope.cancelled_caught
