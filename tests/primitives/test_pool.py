"""unknot.Pool: bounded concurrency, map/imap/imap_unordered/apply, failures, cancellation,
timeouts, the with-block's structure and imap's memory bound."""

from __future__ import annotations

import contextvars
import gc
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fiber_helpers import run_script

import unknot
from unknot import _pool as unknot_pool
from unknot.testing import MockClock

pytestmark = pytest.mark.timeout(30)


class Gauge:
    """Counts calls running at once, and the most seen."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.started: list[Any] = []
        self.finished: list[Any] = []
        self.cancelled: list[Any] = []

    def call(self, seconds: float, result: Any = None) -> Any:
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.started.append(result)
        try:
            unknot.sleep(seconds)
        except unknot.Cancelled:
            self.cancelled.append(result)
            raise
        finally:
            self.now -= 1
        self.finished.append(result)
        return result


class Counted:
    """An iterator over range(n) that counts the items taken from it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        while self.pulled < self.n:
            self.pulled += 1
            yield self.pulled - 1


def double(x: int) -> int:
    return x * 2


def yielding_double(x: int) -> int:
    unknot.sleep(0)
    return x * 2


# -- results --------------------------------------------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize("mapped", [double, yielding_double])
def test_map_returns_results_in_input_order(mapped: Callable[[int], int]) -> None:
    pool = unknot.Pool(4)
    assert pool.map(mapped, range(1000)) == [2 * x for x in range(1000)]
    assert pool.map(mapped, []) == []
    assert pool.free_count() == 4


@pytest.mark.unknot
def test_map_with_several_iterables_stops_at_the_shortest() -> None:
    assert unknot.Pool(3).map(pow, [2, 3, 4], [5, 2]) == [32, 9]
    assert list(unknot.Pool(3).imap(pow, [2, 3], [1, 2, 3])) == [2, 9]
    assert sorted(unknot.Pool(3).imap_unordered(pow, [2, 3], [1, 2])) == [2, 9]


@pytest.mark.unknot
def test_imap_keeps_input_order_when_calls_finish_out_of_order(
    autojump_clock: MockClock,
) -> None:
    gauge = Gauge()
    delays = [5, 1, 4, 2, 3]
    results = list(unknot.Pool(5).imap(lambda d: gauge.call(d, d), delays))
    assert results == delays
    assert gauge.finished == [1, 2, 3, 4, 5]  # they did finish out of order
    assert unknot.current_time() == pytest.approx(5)  # concurrently


@pytest.mark.unknot
def test_imap_unordered_yields_in_completion_order(autojump_clock: MockClock) -> None:
    gauge = Gauge()
    results = list(unknot.Pool(5).imap_unordered(lambda d: gauge.call(d, d), [5, 1, 4, 2, 3]))
    assert results == [1, 2, 3, 4, 5]


@pytest.mark.unknot
def test_map_from_a_plain_fiber_without_with_block_leaves_no_fiber_behind() -> None:
    gauge = Gauge()
    pool = unknot.Pool(3)
    assert pool.map(lambda x: gauge.call(0.001, x), range(10)) == list(range(10))
    assert gauge.now == 0 and len(gauge.finished) == 10


# -- the bound ---------------------------------------------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize("how", ["map", "imap", "imap_unordered", "spawn"])
def test_at_most_size_calls_run_at_once(how: str, autojump_clock: MockClock) -> None:
    gauge = Gauge()

    def call(x: int) -> int:
        return gauge.call(1, x)

    with unknot.Pool(3) as pool:
        if how == "spawn":
            fibers = [pool.spawn(call, x) for x in range(10)]
        else:
            results = getattr(pool, how)(call, range(10))
            assert sorted(results) == list(range(10))
    if how == "spawn":
        assert [f.result() for f in fibers] == list(range(10))
    assert gauge.peak == 3
    assert unknot.current_time() == pytest.approx(4)  # ceil(10 / 3) rounds of 1 s


@pytest.mark.unknot
def test_concurrent_maps_share_the_slots(autojump_clock: MockClock) -> None:
    gauge = Gauge()
    pool = unknot.Pool(4)
    with unknot.TaskGroup() as tg:
        a = tg.spawn(pool.map, lambda x: gauge.call(1, x), range(8))
        b = tg.spawn(pool.map, lambda x: gauge.call(1, -x), range(8))
    assert a.result() == list(range(8)) and b.result() == [-x for x in range(8)]
    assert gauge.peak == 4
    assert unknot.current_time() == pytest.approx(4)


@pytest.mark.unknot
def test_spawn_waits_for_a_free_slot(autojump_clock: MockClock) -> None:
    gauge = Gauge()
    with unknot.Pool(2) as pool:
        pool.spawn(gauge.call, 3)
        pool.spawn(gauge.call, 5)
        assert pool.free_count() == 0 and pool.full()
        pool.spawn(gauge.call, 1)  # waits for the first to end
        assert unknot.current_time() == pytest.approx(3)
    assert unknot.current_time() == pytest.approx(5)
    assert pool.free_count() == 2


@pytest.mark.unknot
def test_pool_size_must_be_positive_or_none() -> None:
    for bad in (0, -1, 1.5, True, False, "3"):
        with pytest.raises(ValueError):
            unknot.Pool(bad)  # type: ignore[arg-type]
    assert unknot.Pool(7).size == 7
    assert unknot.Pool(None).size is None and unknot.Pool().size is None


# -- an unbounded pool -------------------------------------------------------------------------


@pytest.mark.unknot
def test_an_unbounded_pool_never_waits_for_a_slot(autojump_clock: MockClock) -> None:
    # gevent's Pool(None) (and Pool()): it used to raise ValueError.
    gauge = Gauge()
    pool = unknot.Pool(None)
    assert pool.free_count() == 1 and not pool.full()  # as gevent's: never 0
    assert "size=None" in repr(pool)
    with pool:
        fibers = [pool.spawn(gauge.call, 1, i) for i in range(50)]
        unknot.sleep(0)
        assert gauge.now == 50 and unknot.current_time() == 0  # no spawn waited
        assert pool.free_count() == 1 and not pool.full()
        assert "running=50" in repr(pool)
        assert pool.apply(gauge.call, 1, "apply") == "apply"  # beside the 50
        assert gauge.peak == 51
    assert [f.result() for f in fibers] == list(range(50))
    gauge.peak = 0
    assert pool.map(lambda x: gauge.call(1, x), range(300)) == list(range(300))
    assert gauge.peak == 300 and unknot.current_time() == pytest.approx(2)  # all at once


@pytest.mark.unknot
@pytest.mark.parametrize("how", ["imap", "imap_unordered"])
def test_imap_on_an_unbounded_pool_reads_a_bounded_window_ahead(
    how: str, autojump_clock: MockClock
) -> None:
    window = unknot_pool.UNBOUNDED_WINDOW
    source = Counted(10 * window)
    gauge = Gauge()
    it = getattr(unknot.Pool(), how)(lambda x: gauge.call(1, x), source)
    unknot.sleep(0.5)
    assert source.pulled == window and gauge.now == window  # that many calls at once
    got = [next(it) for _ in range(window + 5)]
    assert sorted(got) == list(range(window + 5))
    assert source.pulled <= len(got) + window
    it.close()
    assert gauge.now == 0


# -- the with-block ----------------------------------------------------------------------------


@pytest.mark.unknot
def test_spawn_outside_the_with_block_names_the_with_block() -> None:
    pool = unknot.Pool(2)
    with pytest.raises(RuntimeError, match=r"with unknot\.Pool\(n\) as pool"):
        pool.spawn(double, 1)
    with pool:
        assert pool.spawn(double, 1).join() == 2
    with pytest.raises(RuntimeError, match="with-block"):
        pool.spawn(double, 1)  # closed again


@pytest.mark.unknot
def test_with_block_waits_for_its_fibers(autojump_clock: MockClock) -> None:
    gauge = Gauge()
    with unknot.Pool(5) as pool:
        for d in (1, 2, 3):
            pool.spawn(gauge.call, d, d)
        assert gauge.finished == []
    assert gauge.finished == [1, 2, 3]


@pytest.mark.unknot
def test_failing_spawned_fiber_cancels_the_others_like_a_task_group() -> None:
    gauge = Gauge()

    def boom() -> None:
        unknot.sleep(0.01)
        raise KeyError("boom")

    with pytest.raises(ExceptionGroup) as info:
        with unknot.Pool(5) as pool:
            pool.spawn(gauge.call, 10, "slow")
            pool.spawn(boom)
    assert info.group_contains(KeyError)
    assert gauge.cancelled == ["slow"] and gauge.now == 0


@pytest.mark.unknot
def test_cancelling_the_owner_of_a_pool_cancels_its_fibers() -> None:
    gauge = Gauge()
    entered = unknot.Event()

    def owner() -> None:
        with unknot.Pool(3) as pool:
            for i in range(3):
                pool.spawn(gauge.call, 10, i)
            entered.set()
            pool.map(lambda x: gauge.call(10, x), range(3, 9))  # waits for slots

    f = unknot.spawn(owner)
    entered.wait()
    unknot.sleep(0.01)
    assert gauge.now == 3
    f.cancel()
    with pytest.raises(unknot.FiberCancelled):
        f.join(timeout=5)
    assert sorted(gauge.cancelled) == [0, 1, 2] and gauge.now == 0


@pytest.mark.unknot
def test_pool_cancel_cancels_the_block_and_its_fibers() -> None:
    gauge = Gauge()
    with unknot.Pool(2) as pool:
        pool.spawn(gauge.call, 10, "a")
        unknot.sleep(0.01)
        pool.cancel()
        unknot.sleep(10)  # cancelled too
    assert gauge.cancelled == ["a"]
    with pytest.raises(RuntimeError):
        pool.cancel()


@pytest.mark.unknot
def test_map_inside_the_with_block_runs_its_workers_in_the_block(
    autojump_clock: MockClock,
) -> None:
    gauge = Gauge()
    with unknot.Pool(2) as pool:
        it = pool.imap(lambda x: gauge.call(1, x), range(100))
        assert next(it) == 0
        del it  # dropped: its workers are cancelled, the block has nothing left to wait for
    assert gauge.now == 0
    assert len(gauge.started) <= 4


# -- failures ----------------------------------------------------------------------------------


def _fails_at(gauge: Gauge, bad: int, after: float) -> Callable[[int], int]:
    def call(x: int) -> int:
        if x == bad:
            unknot.sleep(after)
            raise ValueError(f"bad item {x}")
        return gauge.call(10, x)

    return call


@pytest.mark.unknot
def test_map_raises_the_calls_own_exception_after_cancelling_the_rest() -> None:
    gauge = Gauge()
    with pytest.raises(ValueError, match="bad item 2"):
        unknot.Pool(4).map(_fails_at(gauge, 2, 0.01), range(100))
    # the three other calls in flight were cancelled and had unwound before map raised
    assert sorted(gauge.cancelled) == [0, 1, 3]
    assert gauge.now == 0 and gauge.finished == []
    assert len(gauge.started) == 3  # nothing new started after the failure


@pytest.mark.unknot
def test_imap_with_a_failing_call_cancels_the_rest_and_raises_its_exception() -> None:
    gauge = Gauge()
    it = unknot.Pool(3).imap(_fails_at(gauge, 1, 0.01), range(100))
    with pytest.raises(ValueError, match="bad item 1"):
        next(it)
    assert sorted(gauge.cancelled) == [0, 2] and gauge.now == 0
    with pytest.raises(StopIteration):
        next(it)


@pytest.mark.unknot
def test_imap_unordered_failure_comes_after_the_results_already_yielded(
    autojump_clock: MockClock,
) -> None:
    def call(x: int) -> int:
        unknot.sleep(x)
        if x == 3:
            raise KeyError(x)
        return x

    got: list[int] = []
    with pytest.raises(KeyError):
        for r in unknot.Pool(10).imap_unordered(call, range(10)):
            got.append(r)
    assert got == [0, 1, 2]


@pytest.mark.unknot
def test_other_failures_during_cancellation_are_noted() -> None:
    def call(x: int) -> None:
        if x == 0:
            unknot.sleep(0.001)
            raise ValueError("first")
        try:
            unknot.sleep(10)
        finally:
            raise RuntimeError(f"cleanup of {x} failed")

    with pytest.raises(ValueError, match="first") as info:
        unknot.Pool(3).map(call, range(3))
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 1 and "2 other call(s) failed" in notes[0]
    assert "cleanup of 1 failed" in notes[0] and "cleanup of 2 failed" in notes[0]


@pytest.mark.unknot
def test_a_call_raising_stop_iteration_does_not_end_imap_silently() -> None:
    def call(x: int) -> int:
        if x == 2:
            raise StopIteration
        return x

    with pytest.raises(RuntimeError, match="StopIteration"):
        list(unknot.Pool(2).imap(call, range(5)))
    with pytest.raises(StopIteration):
        unknot.Pool(2).map(call, range(5))


@pytest.mark.unknot
def test_the_input_iterator_failing_fails_the_map() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("input broke")

    with pytest.raises(OSError, match="input broke"):
        unknot.Pool(2).map(double, source())
    with pytest.raises(OSError, match="input broke"):
        list(unknot.Pool(2).imap(yielding_double, source()))


@pytest.mark.unknot
def test_a_blocking_input_iterator_is_read_by_one_worker_at_a_time() -> None:
    def slow_source() -> Iterator[int]:
        for i in range(20):
            unknot.sleep(0.0005)  # another worker would get "generator already executing"
            yield i

    assert unknot.Pool(5).map(yielding_double, slow_source()) == [2 * i for i in range(20)]


# -- cancellation and timeouts -----------------------------------------------------------------


@pytest.mark.unknot
def test_fail_after_around_pool_map_raises_timeout_error() -> None:
    gauge = Gauge()
    with pytest.raises(TimeoutError):
        with unknot.fail_after(0.05):
            unknot.Pool(3).map(lambda x: gauge.call(10, x), range(10))
    assert sorted(gauge.cancelled) == [0, 1, 2] and gauge.now == 0


@pytest.mark.unknot
def test_fail_after_around_imap_raises_timeout_error() -> None:
    gauge = Gauge()
    with pytest.raises(TimeoutError):
        with unknot.fail_after(0.05):
            for _ in unknot.Pool(3).imap(lambda x: gauge.call(0.02 * x, x), range(10)):
                pass
    assert gauge.now == 0
    assert gauge.cancelled  # the calls in flight were cancelled, not left running


@pytest.mark.unknot
def test_map_in_a_cancelled_scope_raises_cancelled_and_calls_nothing() -> None:
    called: list[int] = []
    with unknot.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(unknot.Cancelled):
            unknot.Pool(2).map(called.append, range(5))
        with pytest.raises(unknot.Cancelled):
            unknot.Pool(2).imap(called.append, range(5))
        with pytest.raises(unknot.Cancelled):
            unknot.Pool(2).apply(called.append, 1)
    assert called == []


@pytest.mark.unknot
def test_spawn_with_a_free_slot_is_a_cancellation_point() -> None:
    called: list[int] = []
    with unknot.Pool(2) as pool:
        with unknot.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(unknot.Cancelled):
                pool.spawn(called.append, 1)
        pool.spawn(called.append, 2)  # the slot was not taken
        pool.spawn(called.append, 3)
    assert called == [2, 3]


@pytest.mark.unknot
def test_cancelling_a_running_map_stops_its_calls_before_cancelled_comes_out() -> None:
    gauge = Gauge()
    seen: list[int] = []
    with unknot.move_on_after(0.03) as scope:
        try:
            unknot.Pool(2).map(lambda x: gauge.call(10, x), range(5))
        except unknot.Cancelled:
            seen.append(gauge.now)  # no call still running when Cancelled reaches us
            raise
    assert scope.cancelled_caught and seen == [0]
    assert sorted(gauge.cancelled) == [0, 1]


@pytest.mark.unknot
def test_closing_an_imap_early_cancels_and_awaits_its_calls() -> None:
    gauge = Gauge()
    with unknot.Pool(3).imap(lambda x: gauge.call(0.001 if x == 0 else 10, x), range(50)) as it:
        assert next(it) == 0
    # items 0-2 filled the window (3 items taken and not handed over): nothing else started
    assert gauge.started == [0, 1, 2]
    assert gauge.now == 0 and sorted(gauge.cancelled) == [1, 2]


@pytest.mark.unknot
def test_a_dropped_imap_cancels_its_calls() -> None:
    gauge = Gauge()
    it = unknot.Pool(3).imap(lambda x: gauge.call(10, x), range(50))
    unknot.sleep(0.01)
    assert gauge.now == 3
    del it
    gc.collect()
    unknot.sleep(0.01)
    assert gauge.now == 0 and sorted(gauge.cancelled) == [0, 1, 2]


@pytest.mark.unknot
@pytest.mark.parametrize("how", ["imap", "imap_unordered"])
def test_imap_after_its_consumer_was_cancelled_raises_instead_of_ending(how: str) -> None:
    # The cancellation stops the run (its calls in flight are cancelled, their items lost).
    # Later next() calls used to raise StopIteration, so `for` loops and list() ended early
    # as if the input were exhausted, silently dropping results.
    gate = unknot.Event()
    cancelled: list[int] = []

    def call(x: int) -> int:
        if x >= 2:
            try:
                gate.wait()
            except unknot.Cancelled:
                cancelled.append(x)
                raise
        return x

    it = getattr(unknot.Pool(2), how)(call, range(10))
    got = [next(it), next(it)]
    with unknot.CancelScope() as scope:
        unknot.spawn(scope.cancel)
        next(it)  # waits for item 2: cancelled
    assert scope.cancelled_caught and sorted(got) == [0, 1]
    assert sorted(cancelled) == [2, 3]  # the window's two calls, stopped before next() left
    for _ in range(2):  # every time, not once
        with pytest.raises(unknot.FiberCancelled, match=rf"Pool\.{how}\(.*call\).*Cancelled"):
            next(it)
    with pytest.raises(unknot.FiberCancelled):
        list(it)
    it.close()  # nothing left to stop
    assert f"Pool.{how}(" in repr(it)


# -- slots shared between spawn, apply and map -------------------------------------------------


@pytest.mark.unknot
def test_a_slot_freed_by_a_spawned_fiber_goes_to_a_running_map_at_once() -> None:
    # The map's one worker ran item 0 while the pool was full; it added no helper then (no slot
    # was free), so the slot the spawned fiber freed stayed unused until item 0 finished.
    log: list[str] = []
    spawned_may_end = unknot.Event()
    item0_may_end = unknot.Event()

    def spawned() -> None:
        spawned_may_end.wait()
        log.append("spawned ends")

    def call(x: int) -> int:
        log.append(f"{x} starts")
        if x == 0:
            item0_may_end.wait()
        return x

    with unknot.Pool(2) as pool:
        pool.spawn(spawned)
        mapping = unknot.spawn(pool.map, call, [0, 1])
        for _ in range(10):
            unknot.sleep(0)
        assert log == ["0 starts"] and pool.full()
        spawned_may_end.set()
        for _ in range(10):
            unknot.sleep(0)
        assert log == ["0 starts", "spawned ends", "1 starts"]  # item 0 still runs
        item0_may_end.set()
        assert mapping.join() == [0, 1]


@pytest.mark.unknot
def test_a_map_whose_input_ended_does_not_wait_for_a_slot_to_end() -> None:
    # A worker waits for a slot only with an item to call (one that finds the input over ends
    # without a slot): the map returns although the other calls of the pool (a spawned fiber,
    # an apply) hold every slot.
    spawned_may_end = unknot.Event()
    applied_may_end = unknot.Event()
    item_may_end = unknot.Event()
    with unknot.Pool(2) as pool:
        pool.spawn(spawned_may_end.wait)
        mapping = unknot.spawn(pool.map, lambda x: item_may_end.wait() and x, [7])
        for _ in range(10):
            unknot.sleep(0)
        applying = unknot.spawn(pool.apply, applied_may_end.wait)  # waits for a slot
        for _ in range(10):
            unknot.sleep(0)
        item_may_end.set()
        for _ in range(10):
            unknot.sleep(0)
        assert mapping.done() and mapping.result() == [7]
        assert pool.full() and not applying.done()  # the apply got the map's slot
        applied_may_end.set()
        spawned_may_end.set()
        assert applying.join() is True
    assert pool.free_count() == 2


# -- memory: imap reads its input lazily ----------------------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize("mapped", [double, yielding_double])
@pytest.mark.parametrize("how", ["imap", "imap_unordered"])
def test_imap_reads_a_large_input_lazily(how: str, mapped: Callable[[int], int]) -> None:
    size = 8
    source = Counted(100_000)
    consumed = 0
    ahead = 0
    for _ in getattr(unknot.Pool(size), how)(mapped, source):
        consumed += 1
        ahead = max(ahead, source.pulled - consumed)
        if consumed == 5_000:
            break
    assert ahead <= size + 1  # at most `size` results ahead of the one just handed over
    assert source.pulled <= consumed + size


@pytest.mark.unknot
def test_an_unconsumed_imap_takes_nothing_more_and_runs_nothing() -> None:
    source = Counted(100_000)
    gauge = Gauge()
    it = unknot.Pool(4).imap(lambda x: gauge.call(0, x), source)
    unknot.sleep(0.01)
    assert source.pulled == 4 and gauge.now == 0  # the window is full, the workers idle
    assert next(it) == 0
    unknot.sleep(0.01)
    assert source.pulled == 5
    it.close()


@pytest.mark.unknot
def test_a_slow_consumer_keeps_the_calls_pipelined(autojump_clock: MockClock) -> None:
    gauge = Gauge()
    got = []
    for r in unknot.Pool(4).imap(lambda x: gauge.call(1, x), range(12)):
        got.append(r)
        unknot.sleep(0.5)  # the consumer is slower than 4 calls in parallel
    assert got == list(range(12)) and gauge.peak <= 4
    # each taken result lets the next call start at once: 12 * 0.5 s of consuming, plus the
    # first call; stop-and-go (waiting for the window to empty) would take far longer
    assert unknot.current_time() == pytest.approx(7)


@pytest.mark.unknot
def test_the_with_block_exits_while_an_imap_waits_for_its_consumer(
    autojump_clock: MockClock,
) -> None:
    source = Counted(100)
    with unknot.Pool(3) as pool:
        it = pool.imap(double, source)
        assert next(it) == 0
        unknot.sleep(1)  # the workers filled the window and wait for room
    assert source.pulled == 4
    assert list(it) == [2 * x for x in range(1, 100)]  # a consumer coming back starts anew


# -- apply and contextvars ---------------------------------------------------------------------


@pytest.mark.unknot
def test_apply_returns_or_raises_and_holds_a_slot(autojump_clock: MockClock) -> None:
    gauge = Gauge()
    pool = unknot.Pool(2)
    assert pool.apply(pow, 2, 10) == 1024
    assert pool.apply(lambda *, k: k, k=3) == 3
    with pytest.raises(ZeroDivisionError):
        pool.apply(lambda: 1 / 0)
    with unknot.TaskGroup() as tg:
        for i in range(6):
            tg.spawn(pool.apply, gauge.call, 1, i)
    assert gauge.peak == 2 and unknot.current_time() == pytest.approx(3)
    assert pool.free_count() == 2


@pytest.mark.unknot
def test_apply_inside_a_call_of_the_same_pool_does_not_wait_for_a_slot() -> None:
    pool = unknot.Pool(1)
    assert pool.map(lambda x: pool.apply(double, x), range(3)) == [0, 2, 4]
    with pool:
        assert pool.spawn(lambda: pool.apply(double, 21)).join(timeout=5) == 42


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@pytest.mark.unknot
def test_each_call_sees_the_callers_contextvars_and_keeps_its_changes() -> None:
    request_id.set("caller")

    def call(x: int) -> str:
        seen = request_id.get()
        request_id.set(f"call {x}")
        unknot.sleep(0)
        return seen

    pool = unknot.Pool(2)
    assert pool.map(call, range(6)) == ["caller"] * 6
    assert list(pool.imap(call, range(6))) == ["caller"] * 6
    assert pool.apply(call, 0) == "caller"
    assert request_id.get() == "caller"


@pytest.mark.unknot
def test_pool_repr() -> None:
    pool = unknot.Pool(3)
    assert "size=3" in repr(pool)
    with pool:
        assert "with-block" in repr(pool)


def test_map_outside_a_fiber_raises_not_in_fiber_error() -> None:
    pool = unknot.Pool(2)
    with pytest.raises(unknot.NotInFiberError):
        pool.map(double, range(3))
    with pytest.raises(unknot.NotInFiberError):
        pool.imap(double, range(3))


# Run in a child process: the bug was a wait that re-parked after every deadlock report (a new
# report every DEADLOCK_GRACE), and neither a watchdog thread (a live thread is a possible
# waker: no deadlock would be reported) nor pytest-timeout's SIGALRM (its exception is thrown
# into the same wait) can stop that in this process.
_RUN_WAITING_FOR_A_STUCK_WORKER = """
import json, logging, unknot

logging.disable(logging.WARNING)  # (run's notice of the abandoned worker)

def call(item, log):
    if item == "fails":
        raise ValueError("call failed")
    try:
        unknot.Event().wait()
    finally:
        with unknot.CancelScope(shield=True):  # a clean-up that can never finish
            log.append("stuck")
            unknot.Event().wait()

def main(how):
    log = []
    pool = unknot.Pool(2)
    fn = lambda item: call(item, log)
    try:
        if how == "map":
            pool.map(fn, ["stuck", "fails"])
        else:
            list(pool.imap(fn, ["stuck", "fails"]))
    except unknot.DeadlockError as e:
        return ["DeadlockError", "unknot.Pool worker" in str(e), log]
    except BaseException as e:
        return [type(e).__name__, log]
    return "no error"

for how in ("map", "imap"):
    print(json.dumps(unknot.run(main, how)))
"""


def test_a_deadlock_while_the_pool_waits_for_a_worker_stuck_in_a_shield_comes_out() -> None:
    # One call fails, so the run cancels the other worker, which is stuck in a shielded
    # clean-up. Every fiber is blocked: the deadlock report thrown into the caller's wait for
    # the workers must end that wait and come out of map (or of the iterator), not make it
    # wait again for ever.
    (out,) = run_script(_RUN_WAITING_FOR_A_STUCK_WORKER)  # (it used to run until killed)
    outcome = ["DeadlockError", True, ["stuck"]]
    assert [json.loads(line) for line in out.splitlines()] == [outcome, outcome]
