"""`Pool.imap` and `Pool.imap_unordered` iterated inside calls of the same pool: the consumer
lends its slot to the run while it waits in ``next()`` and takes it back before it runs on, so
nested imaps finish whatever the pool's size and the pool's bound still holds."""

from __future__ import annotations

import itertools
import time

import pytest
from pool_helpers import Gauge

import unknot
from unknot.testing import MockClock

pytestmark = pytest.mark.timeout(60)

HOWS = ["imap", "imap_unordered"]


def _in_order(how: str, results: list[int]) -> list[int]:
    return results if how == "imap" else sorted(results)


@pytest.mark.unknot
@pytest.mark.parametrize("how", HOWS)
def test_two_workers_of_a_two_slot_pool_each_iterate_a_nested_imap(
    how: str, autojump_clock: MockClock
) -> None:
    # Both calls of the outer map hold the two slots and wait in next() of their own imap,
    # whose calls needed a slot: they waited for ever (cut here by fail_after). The consumer
    # lends its slot while it waits.
    gauge = Gauge()
    pool = unknot.Pool(2)

    def outer(i: int) -> list[int]:
        results = []
        for r in getattr(pool, how)(lambda x: gauge.call(x, 0.01 * (x % 3)), range(i, i + 6)):
            with gauge.running():  # the consumer's own work between results
                unknot.sleep(0)
            results.append(r)
        return results

    with unknot.fail_after(10):
        got = pool.map(outer, [0, 10])
    assert [_in_order(how, r) for r in got] == [list(range(6)), list(range(10, 16))]
    assert gauge.peak == 2
    assert pool.free_count() == 2


@pytest.mark.unknot
@pytest.mark.parametrize("how", HOWS)
def test_spawned_fibers_filling_the_pool_iterate_nested_imaps(
    how: str, autojump_clock: MockClock
) -> None:
    gauge = Gauge()
    with unknot.fail_after(10), unknot.Pool(2) as pool:
        fibers = [
            pool.spawn(lambda i: list(getattr(pool, how)(gauge.call, range(i, i + 5))), i)
            for i in (0, 5)
        ]
    assert [_in_order(how, f.result()) for f in fibers] == [list(range(5)), list(range(5, 10))]
    assert gauge.peak <= 2 and pool.free_count() == 2


@pytest.mark.unknot
def test_deeper_nesting_finishes_whatever_the_sizes(autojump_clock: MockClock) -> None:
    # map -> imap -> imap_unordered -> map, each level's calls iterating the next level on the
    # same pool, and running code of their own between results (counted).
    hung = []
    for size, n in itertools.product(range(1, 5), range(1, 5)):
        pool = unknot.Pool(size)
        gauge = Gauge()

        def leaf(x: int, gauge: Gauge = gauge) -> int:
            return gauge.call(x, 0.001 * (x % 2))

        def level3(x: int, pool: unknot.Pool = pool, gauge: Gauge = gauge) -> int:
            total = 0
            for r in pool.imap_unordered(leaf, range(x, x + 3)):
                with gauge.running():
                    unknot.sleep(0)
                total += r + sum(pool.map(leaf, [r]))
            return total

        def level2(x: int, pool: unknot.Pool = pool, gauge: Gauge = gauge) -> int:
            total = 0
            for r in pool.imap(level3, range(x, x + 2)):
                with gauge.running():
                    unknot.sleep(0)
                total += r
            return total

        with unknot.move_on_after(10):
            got = pool.map(level2, range(n))
            expected = [
                sum(2 * (y + k) for y in range(x, x + 2) for k in range(3)) for x in range(n)
            ]
            assert got == expected
            assert gauge.peak <= size and pool.free_count() == size
            continue
        hung.append((size, n))
    assert hung == []


@pytest.mark.unknot
@pytest.mark.parametrize("how", HOWS)
def test_breaking_out_of_a_nested_imap_gives_the_slot_back(
    how: str, autojump_clock: MockClock
) -> None:
    # The consumer breaks out and works on while its iterator (still referenced) reads ahead:
    # the slot it lent is its own again, so its work and the iterator's calls together stay
    # within the pool's size.
    gauge = Gauge()
    pool = unknot.Pool(2)

    def outer(i: int) -> int:
        it = getattr(pool, how)(lambda x: gauge.call(x, 0.01), range(i, i + 50))
        first = -1
        for r in it:
            first = r
            break
        for _ in range(5):
            gauge.call(0, 0.01)  # the consumer's own work, in its slot
        it.close()
        return first

    with unknot.fail_after(10):
        firsts = pool.map(outer, [0, 100])
    assert firsts[0] in range(50) and firsts[1] in range(100, 150)
    assert gauge.peak == 2
    assert pool.free_count() == 2


@pytest.mark.unknot
@pytest.mark.parametrize("how", HOWS)
def test_a_dropped_nested_imap_leaves_the_pool_whole(how: str, autojump_clock: MockClock) -> None:
    gauge = Gauge()
    pool = unknot.Pool(2)

    def outer(i: int) -> int:
        first = -1
        for r in getattr(pool, how)(lambda x: gauge.call(x, 0.01), range(i, i + 50)):
            first = r
            break  # the iterator is dropped: its calls are cancelled
        for _ in range(5):
            gauge.call(0, 0.01)
        return first

    with unknot.fail_after(10):
        pool.map(outer, [0, 100])
        assert pool.free_count() == 2
        assert pool.map(lambda x: gauge.call(x, 0.01), range(8)) == list(range(8))
    assert gauge.peak == 2


@pytest.mark.unknot
@pytest.mark.parametrize("how", HOWS)
def test_cancelling_a_consumer_of_a_nested_imap(how: str) -> None:
    # The consumer is cancelled while a call of its imap runs in the slot it lent (a call that
    # would run for a long time): the call is cancelled first, then the slot comes back, at
    # once, and the other consumer finishes.
    gauge = Gauge()
    cancelled = []

    def slow(x: int) -> int:
        try:
            return gauge.call(x, 30)
        except unknot.Cancelled:
            cancelled.append(x)
            raise

    with unknot.fail_after(10), unknot.Pool(2) as pool:
        stuck = pool.spawn(lambda: list(getattr(pool, how)(slow, range(5))))
        done = pool.spawn(lambda: list(getattr(pool, how)(gauge.call, range(20))))
        for _ in range(10):
            unknot.sleep(0)
        assert gauge.now >= 1  # a slow call runs
        start = time.monotonic()
        stuck.cancel()
        with pytest.raises(unknot.FiberCancelled):
            stuck.join()
        assert time.monotonic() - start < 5
    assert cancelled
    assert _in_order(how, done.result()) == list(range(20))
    assert pool.free_count() == 2
    assert gauge.peak <= 2


@pytest.mark.unknot
@pytest.mark.parametrize("how", HOWS)
def test_a_timeout_around_a_nested_imap(how: str) -> None:
    # fail_after inside the call: the imap is stopped, its calls cancelled, and the call goes
    # on in its slot (the pool stays bounded and whole).
    gauge = Gauge()
    pool = unknot.Pool(2)

    def outer(i: int) -> str:
        try:
            with unknot.fail_after(0.05):
                list(getattr(pool, how)(lambda x: gauge.call(x, 30), range(4)))
        except TimeoutError:
            gauge.call(0, 0.01)
            return "timed out"
        return "finished"

    start = time.monotonic()
    with unknot.fail_after(10):
        assert pool.map(outer, range(2)) == ["timed out"] * 2
    assert time.monotonic() - start < 5
    assert pool.free_count() == 2 and gauge.peak <= 2


@pytest.mark.unknot
@pytest.mark.parametrize("how", ["map", *HOWS])
@pytest.mark.parametrize("size", [2, 3])
def test_a_map_reading_an_imap_of_the_same_pool_is_lent_nothing(
    how: str, size: int, autojump_clock: MockClock
) -> None:
    # The outer run's workers pull from the inner iterator holding no slot (they hold one only
    # while they call): they lend none. (Lent one, the calls exceeded the pool's size.)
    gauge = Gauge()
    pool = unknot.Pool(size)
    inner = pool.imap(lambda x: gauge.call(x, 0.05), range(20))
    with unknot.fail_after(10):
        got = list(getattr(pool, how)(lambda x: gauge.call(x, 0.01), inner))
    assert sorted(got) == list(range(20))
    assert gauge.peak == size
    assert pool.free_count() == size
