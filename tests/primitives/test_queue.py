"""Queue, LifoQueue, PriorityQueue: the stdlib queue interface for fibers."""

from __future__ import annotations

import queue

import pytest

import unknot
from unknot.testing import MockClock


def test_exceptions_are_the_stdlib_ones() -> None:
    assert unknot.Empty is queue.Empty
    assert unknot.Full is queue.Full


@pytest.mark.unknot
def test_fifo_order() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    for i in range(5):
        q.put(i)
    assert q.qsize() == 5
    assert not q.empty()
    assert [q.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert q.empty()


@pytest.mark.unknot
def test_lifo_order() -> None:
    q: unknot.LifoQueue[int] = unknot.LifoQueue()
    for i in range(5):
        q.put(i)
    assert [q.get() for _ in range(5)] == [4, 3, 2, 1, 0]


@pytest.mark.unknot
def test_priority_order() -> None:
    q: unknot.PriorityQueue[tuple[int, str]] = unknot.PriorityQueue()
    for item in [(3, "c"), (1, "a"), (4, "d"), (2, "b")]:
        q.put(item)
    assert [q.get()[1] for _ in range(4)] == ["a", "b", "c", "d"]


@pytest.mark.unknot
def test_nowait_variants() -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=1)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.put_nowait(1)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(2)
    with pytest.raises(queue.Full):
        q.put(2, block=False)
    assert q.get_nowait() == 1
    with pytest.raises(queue.Empty):
        q.get(block=False)


@pytest.mark.unknot
def test_get_timeout_raises_empty(autojump_clock: MockClock) -> None:
    q: unknot.Queue[int] = unknot.Queue()
    with pytest.raises(queue.Empty):
        q.get(timeout=3)
    assert unknot.current_time() == pytest.approx(3)
    assert not q._getters


@pytest.mark.unknot
def test_put_timeout_raises_full(autojump_clock: MockClock) -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=2)
    q.put(1)
    q.put(2)
    with pytest.raises(queue.Full):
        q.put(3, timeout=3)
    assert unknot.current_time() == pytest.approx(3)
    assert q.qsize() == 2
    assert [q.get(), q.get()] == [1, 2]
    assert not q._putters


@pytest.mark.unknot
def test_negative_timeout_rejected_as_the_stdlib_does() -> None:
    import queue as std

    for maxsize in (0, 2):
        ours: unknot.Queue[int] = unknot.Queue(maxsize)
        theirs: std.Queue[int] = std.Queue(maxsize)
        for q in (ours, theirs):
            with pytest.raises(ValueError):
                q.get(timeout=-1)  # even with nothing to wait for: the stdlib checks first
            q.put_nowait(7)
            with pytest.raises(ValueError):
                q.get(timeout=-1)
        # put checks only on bounded queues (an unbounded put never waits)
        if maxsize:
            for q in (ours, theirs):
                with pytest.raises(ValueError):
                    q.put(1, timeout=-1)
        else:
            ours.put(1, timeout=-1)
            theirs.put(1, timeout=-1)
        assert ours.qsize() == theirs.qsize()


@pytest.mark.unknot
def test_get_waits_for_put(autojump_clock: MockClock) -> None:
    q: unknot.Queue[str] = unknot.Queue()

    def producer() -> None:
        unknot.sleep(5)
        q.put("hello")

    unknot.spawn(producer)
    assert q.get() == "hello"
    assert unknot.current_time() == pytest.approx(5)


@pytest.mark.unknot
def test_get_timeout_succeeds_before_expiry(autojump_clock: MockClock) -> None:
    q: unknot.Queue[int] = unknot.Queue()
    unknot.spawn(lambda: (unknot.sleep(1), q.put(9)))
    assert q.get(timeout=10) == 9


@pytest.mark.unknot
def test_put_blocks_when_full(autojump_clock: MockClock) -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=1)
    q.put(1)
    p = unknot.spawn(q.put, 2)
    unknot.sleep(10)
    assert not p.done()
    assert q.get() == 1
    p.join()
    assert q.get() == 2


@pytest.mark.unknot
def test_putters_admitted_in_fifo_order() -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=2)
    with unknot.TaskGroup() as tg:
        for i in range(10):
            tg.spawn(q.put, i)
        got = [q.get() for _ in range(10)]
    assert got == list(range(10))
    assert q.empty()


@pytest.mark.unknot
def test_getters_served_in_fifo_order() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    getters = [unknot.spawn(q.get) for _ in range(5)]
    unknot.sleep(0)
    for i in range(5):
        q.put(i)
    assert [g.join() for g in getters] == [0, 1, 2, 3, 4]


@pytest.mark.unknot
def test_none_and_falsy_items_handed_to_waiting_getter() -> None:
    q: unknot.Queue[object] = unknot.Queue()
    items: list[object] = [None, 0, (), "", False]
    getters = [unknot.spawn(q.get) for _ in items]
    unknot.sleep(0)
    for item in items:
        q.put(item)
    results = [g.join() for g in getters]
    assert results == items
    assert [type(r) for r in results] == [type(i) for i in items]


@pytest.mark.unknot
def test_cancelled_getter_does_not_lose_items() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    a = unknot.spawn(q.get)
    b = unknot.spawn(q.get)
    unknot.sleep(0)
    a.cancel()
    q.put(1)  # a is cancelled: the item goes to b
    assert b.join() == 1
    with pytest.raises(unknot.FiberCancelled):
        a.join()
    assert q.empty()


@pytest.mark.unknot
def test_getter_handed_item_then_cancelled_keeps_it() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    got: list[int] = []

    def getter() -> None:
        got.append(q.get())
        unknot.sleep(0)  # the cancellation lands here

    g = unknot.spawn(getter)
    unknot.sleep(0)
    q.put(5)  # handed to g directly
    g.cancel()
    with pytest.raises(unknot.FiberCancelled):
        g.join()
    assert got == [5]
    assert q.empty()


@pytest.mark.unknot
def test_cancelled_putter_item_is_not_enqueued() -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=1)
    q.put(0)
    p = unknot.spawn(q.put, 1)
    unknot.sleep(0)
    p.cancel()
    with pytest.raises(unknot.FiberCancelled):
        p.join()
    assert q.get() == 0
    assert q.empty()
    q.put(2)
    assert q.get() == 2


@pytest.mark.unknot
def test_putter_admitted_then_cancelled_item_stays(autojump_clock: MockClock) -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=1)
    q.put(0)
    log: list[str] = []

    def putter() -> None:
        q.put(1)
        log.append("put returned")
        unknot.sleep(0)

    p = unknot.spawn(putter)
    unknot.sleep(0)
    assert q.get() == 0  # admits the putter's item
    p.cancel()
    with pytest.raises(unknot.FiberCancelled):
        p.join()
    assert log == ["put returned"]
    assert q.get_nowait() == 1


@pytest.mark.unknot
def test_task_done_and_join(autojump_clock: MockClock) -> None:
    q: unknot.Queue[int] = unknot.Queue()
    processed: list[int] = []

    def worker() -> None:
        while True:
            item = q.get()
            unknot.sleep(1)
            processed.append(item)
            q.task_done()

    w = unknot.spawn(worker)
    for i in range(3):
        q.put(i)
    q.join()
    assert processed == [0, 1, 2]
    assert unknot.current_time() == pytest.approx(3)
    q.join()  # nothing unfinished: returns at once
    w.cancel()


@pytest.mark.unknot
def test_task_done_too_many_times() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    with pytest.raises(ValueError):
        q.task_done()
    q.put(1)
    q.get()
    q.task_done()
    with pytest.raises(ValueError):
        q.task_done()


@pytest.mark.unknot
def test_failed_puts_do_not_count_for_join(autojump_clock: MockClock) -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=1)
    q.put(1)
    with pytest.raises(queue.Full):
        q.put_nowait(2)
    with pytest.raises(queue.Full):
        q.put(3, timeout=1)
    q.get()
    q.task_done()
    with unknot.fail_after(1):
        q.join()


@pytest.mark.unknot
@pytest.mark.parametrize("how", ["cancel", "shutdown", "shutdown-immediate"])
def test_join_returns_when_a_waiting_putter_gives_up_last(how: str) -> None:
    # The waiting putter's item counts as unfinished until it gives up; join() waiting on it
    # must be woken then, when that was the last unfinished item.
    q: unknot.Queue[str] = unknot.Queue(maxsize=1)
    q.put("a")

    def putter() -> None:
        with pytest.raises(unknot.ShutDown if how.startswith("shutdown") else unknot.Cancelled):
            q.put("b")

    p = unknot.spawn(putter)
    unknot.sleep(0.01)
    joiner = unknot.spawn(q.join)
    unknot.sleep(0)
    if how == "cancel":
        p.cancel()
    elif how == "shutdown":
        q.shutdown()
    if how == "shutdown-immediate":
        q.shutdown(immediate=True)  # "a" is dropped, counted as done
    else:
        assert q.get_nowait() == "a"  # the putter was woken already: "b" is not let in
        q.task_done()
    p.join(timeout=1)
    assert q._unfinished == 0
    joiner.join(timeout=1)


@pytest.mark.unknot
def test_multiple_joiners() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    q.put(1)
    joiners = [unknot.spawn(q.join) for _ in range(3)]
    unknot.sleep(0)
    assert not any(j.done() for j in joiners)
    q.get()
    q.task_done()
    for j in joiners:
        j.join()


@pytest.mark.unknot
def test_lifo_and_priority_respect_maxsize(autojump_clock: MockClock) -> None:
    for cls in (unknot.LifoQueue, unknot.PriorityQueue):
        q = cls(maxsize=2)
        q.put(1)
        q.put(2)
        assert q.full()
        with pytest.raises(queue.Full):
            q.put(3, timeout=1)
        p = unknot.spawn(q.put, 0)
        unknot.sleep(0)
        q.get()
        p.join()
        assert q.qsize() == 2


@pytest.mark.unknot
def test_unbounded_when_maxsize_not_positive() -> None:
    for maxsize in (0, -1):
        q: unknot.Queue[int] = unknot.Queue(maxsize=maxsize)
        for i in range(1000):
            q.put_nowait(i)
        assert not q.full()
        assert q.qsize() == 1000


@pytest.mark.unknot
def test_many_producers_and_consumers() -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=3)
    received: list[int] = []

    def producer(base: int) -> None:
        for i in range(100):
            q.put(base + i)

    def consumer() -> None:
        while True:
            item = q.get()
            if item < 0:
                return
            received.append(item)

    with unknot.TaskGroup() as tg:
        consumers = [tg.spawn(consumer) for _ in range(4)]
        with unknot.TaskGroup() as producers:
            for p in range(5):
                producers.spawn(producer, p * 1000)
        for _ in consumers:
            q.put(-1)
    assert sorted(received) == sorted(p * 1000 + i for p in range(5) for i in range(100))


@pytest.mark.unknot
def test_repr() -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=4)
    q.put(1)
    assert "size=1" in repr(q) and "maxsize=4" in repr(q)
