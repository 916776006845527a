"""Hardening of the primitives: `Pool.apply` nesting, `BoundedSemaphore` over-release through a
hand-off, `Queue` subclass storage hooks on a hand-off, and `Future` negative timeouts."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from pool_helpers import Gauge

import unknot

pytestmark = pytest.mark.timeout(60)

#: Every wait of these tests is bounded by this (they take milliseconds when they pass).
LIMIT = 2


# -- Pool.apply: its fiber runs a call of the pool while fn runs ---------------------------------


@pytest.mark.unknot
def test_apply_nested_in_apply_on_a_full_pool_runs_at_once() -> None:
    pool = unknot.Pool(1)
    with unknot.fail_after(LIMIT):
        assert pool.apply(lambda: pool.apply(abs, -5)) == 5
        assert pool.apply(lambda: pool.apply(lambda: pool.apply(abs, -6))) == 6
    assert pool.free_count() == 1


@pytest.mark.unknot
@pytest.mark.parametrize("how", ["map", "imap", "imap_unordered"])
def test_map_and_imaps_nested_in_apply_on_a_full_pool_finish(how: str) -> None:
    pool = unknot.Pool(1)
    gauge = Gauge()

    def leaf(x: int) -> int:
        return -gauge.call(x, 0.001)

    def outer() -> list[int]:
        if how == "map":
            return pool.map(leaf, [1, 2, 3])
        with getattr(pool, how)(leaf, [1, 2, 3]) as it:
            return sorted(it, reverse=True)

    with unknot.fail_after(LIMIT):
        assert pool.apply(outer) == [-1, -2, -3]
    assert gauge.peak == 1  # the bound held: the nested calls ran in the slot apply held
    assert pool.free_count() == 1


def _check_no_longer_a_member(pool: unknot.Pool) -> None:
    """The calling fiber is no longer a call of ``pool`` (a size-1 pool, in its with-block):
    its next `apply` waits for the slot a spawned fiber holds."""
    holder = pool.spawn(unknot.sleep, 0.02)
    with unknot.fail_after(LIMIT):
        assert pool.apply(holder.done) is True


@pytest.mark.unknot
def test_apply_membership_ends_with_the_call_also_on_error_and_cancellation() -> None:
    with unknot.Pool(1) as pool:
        with unknot.fail_after(LIMIT):
            assert pool.apply(lambda: pool.apply(abs, -1)) == 1
        _check_no_longer_a_member(pool)

        def fails() -> None:
            assert pool.apply(abs, -2) == 2
            raise KeyError("boom")

        with pytest.raises(KeyError), unknot.fail_after(LIMIT):
            pool.apply(fails)
        _check_no_longer_a_member(pool)

        def blocks() -> None:
            assert pool.apply(abs, -3) == 3
            unknot.sleep(10)

        with unknot.fail_after(LIMIT), unknot.move_on_after(0.01) as scope:
            pool.apply(blocks)
        assert scope.cancelled_caught
        _check_no_longer_a_member(pool)
    assert pool.free_count() == 1


@pytest.mark.unknot
def test_apply_in_a_map_input_restores_the_worker_membership() -> None:
    # The input is read by a worker holding no slot: an apply there takes one, its nested
    # apply runs in it, and afterwards the worker is a worker of its run again (its calls'
    # nested applies run at once).
    pool = unknot.Pool(1)

    def items() -> Any:
        for x in (1, 2):
            yield pool.apply(lambda x=x: pool.apply(abs, -x))

    with unknot.fail_after(LIMIT):
        assert pool.map(lambda x: pool.apply(abs, -10 * x), items()) == [10, 20]
    assert pool.free_count() == 1


# -- BoundedSemaphore: the bound counts the slots handed to waiters not yet run -------------------


@pytest.mark.unknot
def test_bounded_semaphore_over_release_after_a_hand_off_raises_at_once() -> None:
    sem = unknot.BoundedSemaphore(1)
    holders: set[str] = set()
    peak = [0]
    late: list[str] = []

    def hold(name: str) -> None:
        sem.acquire()
        holders.add(name)
        peak[0] = max(peak[0], len(holders))
        unknot.sleep(0.01)
        holders.discard(name)
        try:
            sem.release()
        except ValueError:
            late.append(name)

    with unknot.fail_after(LIMIT):
        sem.acquire()
        a = unknot.spawn(hold, "a")
        unknot.sleep(0)
        sem.release()  # handed to a, which has not run yet
        with pytest.raises(ValueError):
            sem.release()  # the error: raised here, and nothing released
        assert sem.value == 0
        b = unknot.spawn(hold, "b")
        a.join()
        b.join()
    assert peak[0] == 1
    assert late == []
    assert sem.value == 1
    with pytest.raises(ValueError):
        sem.release()


@pytest.mark.unknot
def test_bounded_semaphore_release_n_counts_every_hand_off() -> None:
    sem = unknot.BoundedSemaphore(2)
    with unknot.fail_after(LIMIT):
        sem.acquire()
        sem.acquire()
        waiters = [unknot.spawn(sem.acquire) for _ in range(2)]
        unknot.sleep(0)
        sem.release(2)  # both handed over
        with pytest.raises(ValueError):
            sem.release()
        assert [w.join() for w in waiters] == [True, True]
        sem.release(2)
    assert sem.value == 2
    with pytest.raises(ValueError):
        sem.release()


@pytest.mark.unknot
def test_bounded_semaphore_slot_handed_to_a_cancelled_waiter_comes_back() -> None:
    sem = unknot.BoundedSemaphore(1)
    log = []

    def waiter() -> None:
        with sem:  # woken with the slot: acquire returns True though cancelled meanwhile
            log.append("in")
            unknot.sleep(10)  # the cancellation comes here; the with-block releases

    with unknot.fail_after(LIMIT):
        sem.acquire()
        w = unknot.spawn(waiter)
        unknot.sleep(0)
        sem.release()  # handed to w
        w.cancel()  # before it runs
        with pytest.raises(ValueError):
            sem.release()  # still an over-release
        with pytest.raises(unknot.FiberCancelled):
            w.join()
    assert log == ["in"]
    assert sem.value == 1
    assert sem.acquire(blocking=False) is True
    sem.release()
    with pytest.raises(ValueError):
        sem.release()


# -- Queue: a subclass's storage hooks also on a hand-off to a waiting getter ---------------------


class UpperQueue(unknot.Queue[str]):
    def _put(self, item: str) -> None:
        super()._put(item.upper())


class CountingQueue(unknot.Queue[Any]):
    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self.puts = 0
        self.gets = 0

    def _put(self, item: Any) -> None:
        self.puts += 1
        super()._put(item)

    def _get(self) -> Any:
        self.gets += 1
        return super()._get()


@pytest.mark.unknot
def test_queue_subclass_hooks_run_on_a_hand_off_as_in_the_stdlib() -> None:
    q = UpperQueue()
    with unknot.fail_after(LIMIT):
        q.put("a")
        assert q.get() == "A"
        g = unknot.spawn(q.get)
        unknot.sleep(0)
        q.put("b")  # to the waiting getter, through _put and _get
        assert g.join() == "B"
        g = unknot.spawn(q.get)
        unknot.sleep(0)
        q.put_nowait("c")
        assert g.join() == "C"
    assert q.empty()


@pytest.mark.unknot
def test_queue_subclass_hooks_are_called_once_per_item_however_it_goes() -> None:
    q = CountingQueue()
    with unknot.fail_after(LIMIT):
        getters = [unknot.spawn(q.get) for _ in range(2)]
        unknot.sleep(0)
        q.put(1)
        q.put_nowait(2)
        assert [g.join() for g in getters] == [1, 2]
        assert (q.puts, q.gets) == (2, 2)
        # A getter that cannot be woken any more (cancelled, not yet run): the item is stored.
        g = unknot.spawn(q.get)
        unknot.sleep(0)
        g.cancel()
        q.put(3)
        with pytest.raises(unknot.FiberCancelled):
            g.join()
        assert q.qsize() == 1
        assert q.get_nowait() == 3
    assert (q.puts, q.gets) == (3, 3)


class WrappingLifoQueue(unknot.LifoQueue[Any]):
    def _put(self, item: Any) -> None:
        super()._put(("wrapped", item))


class NegatingPriorityQueue(unknot.PriorityQueue[int]):
    def _get(self) -> int:
        return -super()._get()


@pytest.mark.unknot
def test_lifo_and_priority_subclass_hooks_run_on_a_hand_off() -> None:
    lq = WrappingLifoQueue()
    pq = NegatingPriorityQueue()
    with unknot.fail_after(LIMIT):
        g1 = unknot.spawn(lq.get)
        g2 = unknot.spawn(pq.get)
        unknot.sleep(0)
        lq.put(1)
        pq.put(5)
        assert g1.join() == ("wrapped", 1)
        assert g2.join() == -5
        lq.put(2)
        pq.put(6)
        assert lq.get_nowait() == ("wrapped", 2)
        assert pq.get_nowait() == -6
    # decided once per class: the plain queues hand items over without the hooks
    assert not (unknot.Queue._hooked or unknot.LifoQueue._hooked or unknot.PriorityQueue._hooked)
    assert WrappingLifoQueue._hooked and NegatingPriorityQueue._hooked


class PickyQueue(unknot.Queue[int]):
    def _put(self, item: int) -> None:
        if item < 0:
            raise ValueError("no negative items")
        super()._put(item)


@pytest.mark.unknot
def test_queue_subclass_put_hook_raising_leaves_the_getter_waiting() -> None:
    q = PickyQueue()
    with unknot.fail_after(LIMIT):
        g = unknot.spawn(q.get)
        unknot.sleep(0)
        with pytest.raises(ValueError):
            q.put(-1)  # as queue.Queue: nothing put, nothing counted, the getter waits on
        q.join()  # nothing unfinished
        unknot.sleep(0)
        assert not g.done()
        q.put(7)
        assert g.join() == 7
        # shutdown wakes a getter of a hooked queue with ShutDown
        g = unknot.spawn(q.get)
        unknot.sleep(0)
        q.shutdown()
        with pytest.raises(unknot.ShutDown):
            g.join()


# -- Future: a negative timeout counts as 0, as in concurrent.futures ----------------------------


@pytest.mark.unknot
def test_future_negative_timeout_times_out_at_once() -> None:
    fut: unknot.Future[int] = unknot.Future()
    with unknot.fail_after(LIMIT):
        with pytest.raises(TimeoutError):
            fut.result(timeout=-1)
        with pytest.raises(TimeoutError):
            fut.exception(timeout=-0.5)
        assert fut.wait(-1) is False
        with pytest.raises(ValueError):
            fut.result(timeout=math.nan)

        def in_a_thread() -> str:
            try:
                fut.result(timeout=-1)
            except TimeoutError:
                return "TimeoutError"
            return "returned"

        assert unknot.to_thread(in_a_thread) == "TimeoutError"
        fut.set_result(3)
        assert fut.result(timeout=-1) == 3
        assert fut.exception(timeout=-1) is None


def test_future_negative_timeout_from_a_plain_thread() -> None:
    fut: unknot.Future[int] = unknot.Future()
    out: list[str] = []

    def body() -> None:
        try:
            fut.result(timeout=-2)
        except TimeoutError:
            out.append("TimeoutError")
        except ValueError:
            out.append("ValueError")

    t = threading.Thread(target=body)
    t.start()
    t.join(LIMIT)
    assert out == ["TimeoutError"]


class FlakyGetQueue(unknot.Queue[int]):
    """A ``_get`` that fails once, leaving the item stored."""

    fail_next = False

    def _get(self) -> int:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("storage hiccup")
        return super()._get()


@pytest.mark.unknot
def test_queue_subclass_get_hook_raising_in_the_hand_off_loses_no_item() -> None:
    """``put`` hands the item to a waiting getter through ``_get``; if that raises (in the
    putter, as in the stdlib), the woken getter looks again and takes the stored item."""
    q = FlakyGetQueue()
    with unknot.fail_after(LIMIT):
        g = unknot.spawn(q.get)
        unknot.sleep(0)
        q.fail_next = True
        with pytest.raises(RuntimeError):
            q.put(5)
        assert g.join() == 5
        assert q.qsize() == 0
