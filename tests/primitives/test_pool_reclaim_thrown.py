"""An exception thrown (`unknot.lowlevel.throw`) into the consumer of a nested
`Pool.imap_unordered` while it waits, uncancellably, to take back the slot it lent: it comes
out of ``next()`` unchanged, the consumer runs on in the slot it lent (the slot is dropped when
the call holding it ends) and the pool stays bounded and whole (`_Run.reclaim`'s fallback)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from pool_helpers import Gauge

import unknot
from unknot import lowlevel
from unknot.testing import MockClock

pytestmark = pytest.mark.timeout(60)

SIZE = 2
N = 6


class Boom(Exception):
    pass


@dataclass
class Outcome:
    results: list[int]
    thrown: Boom
    caught: list[BaseException]
    seen_at_catch: list[tuple[int, int]]  # the run's (forfeit, lenders) when next() raised
    pool: unknot.Pool


def _throw_into_reclaim(gauge: Gauge) -> Outcome:
    """A pool call consumes ``imap_unordered`` of its own pool (size 2). Call 0 holds the lent
    slot, call 1 the pool's other slot; an outside `apply` queues for a slot. Call 1 ends: its
    slot goes to the `apply` and the consumer, woken with result 1, finds no slot to take back
    and waits for one. Boom is thrown in there; the consumer catches it and iterates on."""
    gates = {0: unknot.Event(), 1: unknot.Event()}
    caught: list[BaseException] = []
    seen: list[tuple[int, int]] = []
    box: dict[str, Any] = {}

    def call(x: int) -> int:
        with gauge.running():
            if x in gates:
                gates[x].wait()
            else:
                unknot.sleep(0.01)
        return x

    def consume() -> list[int]:
        it = pool.imap_unordered(call, range(N))
        box["run"] = run = it._run
        got = []
        while True:
            try:
                got.append(next(it))
            except StopIteration:
                return got
            except Boom as e:
                caught.append(e)
                seen.append((run.forfeit, run.lenders))

    def wait_until(cond: Any) -> None:
        while not cond():
            unknot.sleep(0.001)  # (not 0: lets the clock run, so fail_after ends a hang)

    with unknot.Pool(SIZE) as pool:
        consumer = pool.spawn(consume)
        wait_until(lambda: gauge.now == 2)  # calls 0 (lent slot) and 1 (pool slot) block
        outside = unknot.spawn(pool.apply, call, 0)  # queues: no slot is free
        for _ in range(5):
            unknot.sleep(0)
        assert gauge.now == 2 and not outside.done()
        gates[1].set()
        run = box["run"]
        wait_until(lambda: consumer in run.reclaimers)
        assert pool.free_count() == 0 and run.lent == 0 and gauge.now == 2
        thrown = Boom("thrown in while reclaiming")
        assert lowlevel.throw(consumer, thrown)
        wait_until(lambda: caught and run.nwaiting)  # caught, and waiting in next() again
        gates[0].set()  # call 0 (in the forfeited slot) and the outside apply end
    outside.join()
    return Outcome(consumer.result(), thrown, caught, seen, pool)


@pytest.mark.unknot
def test_thrown_exception_comes_out_of_next_unchanged(autojump_clock: MockClock) -> None:
    """The exception thrown into the uncancellable reclaim wait is the one ``next()`` raises,
    raised once; the fallback ran (one slot forfeit, the lender no longer counted); and no
    result was lost: iterating on yields every one."""
    with unknot.fail_after(10):
        out = _throw_into_reclaim(Gauge())
    assert out.caught == [out.thrown]
    assert out.seen_at_catch == [(1, 0)]
    assert sorted(out.results) == list(range(N))


@pytest.mark.unknot
def test_pool_stays_bounded_and_whole_after_a_forfeited_slot(autojump_clock: MockClock) -> None:
    """After the throw the consumer iterates on: the forfeited slot is dropped, not handed to a
    second call, so at most ``size`` calls run at once; once all ends, every slot is free again
    and ``size`` calls can run at once."""
    gauge = Gauge()
    with unknot.fail_after(10):
        out = _throw_into_reclaim(gauge)
        assert gauge.peak <= SIZE
        assert out.pool.free_count() == SIZE
        later = Gauge()

        def call(x: int) -> int:
            with later.running():
                unknot.sleep(0.01)
            return x

        assert out.pool.map(call, range(4)) == list(range(4))
    assert later.peak == SIZE
    assert out.pool.free_count() == SIZE
