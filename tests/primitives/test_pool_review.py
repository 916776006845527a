"""Review of `Pool`'s queued helpers (a helper waits for a slot even when none is free), maps
nested in calls of the same pool, an imap stopped from outside, and `unknot.wait` with
cancelled futures."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

import unknot
from unknot.testing import MockClock

pytestmark = pytest.mark.timeout(60)


def _settle() -> None:
    for _ in range(10):
        unknot.sleep(0)


# -- maps nested in calls of the same pool --------------------------------------------------------


class Gauge:
    """Counts the calls running at once (not parked in a nested map), and the most seen."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def call(self, x: int) -> int:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            unknot.sleep(0)
        finally:
            self.now -= 1
        return x


@pytest.mark.unknot
def test_a_map_inside_a_call_of_a_one_slot_pool_runs_in_that_slot(
    autojump_clock: MockClock,
) -> None:
    # The call holds the only slot and waits for its map, whose calls need a slot: they were
    # never started (a deadlock, here cut by fail_after). The map is lent the caller's slot.
    gauge = Gauge()
    pool = unknot.Pool(1)

    def outer(x: int) -> int:
        return sum(pool.map(gauge.call, range(x, x + 3)))

    with unknot.fail_after(10):
        assert pool.map(outer, [0, 10]) == [3, 33]
        with pool:
            spawned = pool.spawn(outer, 20)
        assert spawned.result() == 63
    assert gauge.peak == 1  # the bound holds: the caller only waits meanwhile
    assert pool.free_count() == 1


@pytest.mark.unknot
def test_nested_maps_finish_whatever_the_sizes(autojump_clock: MockClock) -> None:
    # Calls of a pool that each map over the same pool: every one holds a slot while its map
    # runs. Depending on the sizes the calls took every slot and their maps waited for ever:
    # before the queued helpers in 43 of these 120 cases, with them in 44 (among which 4/4/3
    # to 4/8/3, which worked before); with the lent slot, in none.
    hung = []
    for size, n, m in itertools.product(range(2, 7), range(1, 9), range(1, 4)):
        pool = unknot.Pool(size)
        gauge = Gauge()

        def outer(i: int, pool: unknot.Pool = pool, gauge: Gauge = gauge, m: int = m) -> int:
            return sum(pool.map(gauge.call, range(i * m, i * m + m)))

        with unknot.move_on_after(10):
            result = pool.map(outer, range(n))
            assert result == [sum(range(i * m, i * m + m)) for i in range(n)]
            assert gauge.peak <= size and pool.free_count() == size
            continue
        hung.append((size, n, m))
    assert hung == []


@pytest.mark.unknot
def test_a_nested_map_that_fails_gives_its_lent_slot_back(autojump_clock: MockClock) -> None:
    pool = unknot.Pool(2)

    def inner(x: int) -> int:
        unknot.sleep(0.1 * x)
        if x == 1:
            raise ValueError(x)
        return x

    def outer(x: int) -> int:
        return sum(pool.map(inner, range(3)))

    with unknot.fail_after(10), pytest.raises(ValueError):
        pool.map(outer, range(4))
    assert pool.free_count() == 2
    assert pool.map(lambda x: x, range(5)) == list(range(5))


# -- a run stopped while its helper waits for a slot ----------------------------------------------


@pytest.mark.unknot
def test_a_worker_given_a_slot_after_its_map_stopped_does_not_call() -> None:
    # The slot freed by a spawned fiber goes to the map's worker, queued for it; in the same
    # pass the map's caller is cancelled. The worker, woken with the slot (its cancellation
    # deferred: it is no longer parked), must give the slot back without calling.
    calls: list[int] = []
    gate = unknot.Event()
    with unknot.Pool(1) as pool:
        pool.spawn(gate.wait)
        mapping = unknot.spawn(pool.map, calls.append, [0])
        _settle()
        assert pool._nwaiting == 1  # the map's worker, with item 0
        gate.set()  # the spawned fiber ends first, then the map's caller is cancelled
        mapping.cancel()
        with pytest.raises(unknot.FiberCancelled):
            mapping.join()
    assert calls == []
    assert pool.free_count() == 1


# -- an imap stopped from outside --------------------------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize("how", ["imap", "imap_unordered"])
def test_imap_whose_calls_the_pool_cancelled_raises_every_time(how: str) -> None:
    # The pool's with-block cancelled the calls (Pool.cancel): the first next() raised
    # FiberCancelled, the second StopIteration, so a loop run again ended as if the input
    # were exhausted (as after the consumer's own cancellation, which was fixed).
    def call(x: int) -> int:
        unknot.sleep(0.01 * x)
        return x

    with unknot.Pool(2) as pool:
        it = getattr(pool, how)(call, range(100))
        first = next(it)
        pool.cancel()
    assert first == 0
    with pytest.raises(unknot.FiberCancelled):
        next(it)
    with pytest.raises(unknot.FiberCancelled, match=rf"Pool\.{how}\(.*call\).*cancelled"):
        next(it)  # (StopIteration, before)
    with pytest.raises(unknot.FiberCancelled):
        list(it)


# -- unknot.wait with cancelled futures -----------------------------------------------------------


@pytest.mark.unknot
def test_wait_first_exception_with_a_cancelled_asyncio_future() -> None:
    # A cancelled future did not raise (concurrent.futures.wait): FIRST_EXCEPTION goes on
    # waiting. An asyncio future's exception() raises CancelledError when it was cancelled,
    # and that came out of unknot.wait.
    async def make() -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    cancelled = unknot.await_(make())
    cancelled.cancel()
    own = unknot.Future[int]()
    own.cancel()
    later = unknot.spawn(unknot.sleep, 0.01)
    with unknot.fail_after(10):
        done, not_done = unknot.wait([cancelled, own, later], return_when=unknot.FIRST_EXCEPTION)
    assert done == {cancelled, own, later} and not not_done
