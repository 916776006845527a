"""`unknot.lowlevel.ParkingLot`: FIFO fairness, payloads, and no value lost or given twice when a
timeout or a cancellation races an unpark."""

from __future__ import annotations

from typing import Any

import pytest

import unknot
from unknot import lowlevel
from unknot.lowlevel import TIMED_OUT, ParkingLot
from unknot.testing import MockClock


def _park_into(lot: ParkingLot, out: list[Any], tag: Any, **kw: Any) -> None:
    f = lowlevel.current_fiber()
    assert f is not None
    out.append((tag, lot.park(f, **kw)))


@pytest.mark.unknot
def test_unpark_wakes_in_fifo_order_with_the_value() -> None:
    lot = ParkingLot()
    out: list[Any] = []
    with unknot.TaskGroup() as tg:
        for i in range(5):
            tg.spawn(_park_into, lot, out, i)
        unknot.sleep(0)
        assert len(lot) == 5 and bool(lot)
        for i in range(5):
            place = lot.unpark(f"v{i}")
            assert place is not None
            unknot.sleep(0)
    assert out == [(i, f"v{i}") for i in range(5)]
    assert len(lot) == 0 and not lot
    assert lot.unpark() is None


@pytest.mark.unknot
def test_the_unparker_takes_the_payload() -> None:
    lot = ParkingLot()
    out: list[Any] = []
    with unknot.TaskGroup() as tg:
        tg.spawn(_park_into, lot, out, "a", payload="item-a")
        tg.spawn(_park_into, lot, out, "b", payload="item-b")
        unknot.sleep(0)
        first = lot.first()
        assert first is not None and first.payload == "item-a"
        assert [p.payload for p in lot] == ["item-a", "item-b"]
        place = lot.take("taken")
        assert place is not None and place.payload == "item-a"
        place = lot.take(7, with_payload=True)
        assert place is not None and place.payload == "item-b"
    assert out == [("a", "taken"), ("b", ("item-b", 7))]


@pytest.mark.unknot
def test_timed_out_waiter_leaves_the_lot(autojump_clock: MockClock) -> None:
    lot = ParkingLot()
    out: list[Any] = []
    with unknot.TaskGroup() as tg:
        tg.spawn(_park_into, lot, out, "short", timeout=1)
        tg.spawn(_park_into, lot, out, "long")
        unknot.sleep(2)
        assert len(lot) == 1  # the timed-out one is gone
        place = lot.unpark("x")
        assert place is not None
    assert out == [("short", TIMED_OUT), ("long", "x")]


@pytest.mark.unknot
def test_a_cancelled_waiter_never_receives_and_the_value_goes_to_the_next() -> None:
    lot = ParkingLot()
    out: list[Any] = []
    with unknot.TaskGroup() as tg:
        first = tg.spawn(_park_into, lot, out, 1)
        tg.spawn(_park_into, lot, out, 2)
        unknot.sleep(0)
        first.cancel()  # woken with Cancelled, but it has not run yet: still in the lot
        woken = lot.unpark("only-one")  # must skip the cancelled fiber (first wake-up wins)
        assert woken is not None and woken is not first
    assert out == [(2, "only-one")]
    assert first.cancelled()
    assert len(lot) == 0


@pytest.mark.unknot
def test_a_timeout_racing_an_unpark_in_the_same_pass(autojump_clock: MockClock) -> None:
    lot = ParkingLot()
    out: list[Any] = []
    unparked: list[Any] = []

    def unparker() -> None:
        unknot.sleep(1)  # its timer fires in the same pass as the waiter's timeout
        unparked.append(lot.unpark("late"))

    with unknot.TaskGroup() as tg:
        tg.spawn(_park_into, lot, out, "w", timeout=1)
        tg.spawn(unparker)
    # Either the timeout won (the value was not consumed) or the unpark won: never both.
    if out == [("w", TIMED_OUT)]:
        assert unparked == [None]
    else:
        assert out == [("w", "late")] and unparked[0] is not None


@pytest.mark.unknot
def test_dead_places_are_compacted(autojump_clock: MockClock) -> None:
    lot = ParkingLot()
    f = lowlevel.current_fiber()
    assert f is not None
    for _ in range(200):
        assert lot.park(f, timeout=0.01) is TIMED_OUT
    assert len(lot) == 0
    assert lot.head is None and not lot.rest  # every wait left the lot


def _park_named(lot: ParkingLot, out: list[Any], tag: Any) -> None:
    """Park in ``lot`` until unparked; a cancellation makes it leave (and is recorded)."""
    try:
        _park_into(lot, out, tag)
    except unknot.Cancelled:
        out.append((tag, "left"))


@pytest.mark.unknot
def test_waiters_leaving_from_the_middle_are_skipped_then_compacted() -> None:
    lot = ParkingLot()
    out: list[Any] = []
    stays = [i for i in range(200) if i % 4 == 0 or i == 199]  # the ends stay: none leaves there
    with unknot.TaskGroup() as tg:
        fibers = [tg.spawn(_park_named, lot, out, i) for i in range(200)]
        unknot.sleep(0)
        for i in range(200):
            if i not in stays:
                fibers[i].cancel()
        unknot.sleep(0)
        assert len(lot) == len(stays) == 51
        assert lot.rest is not None and len(lot.rest) < 100  # dead entries were compacted
        assert [p.fiber for p in lot] == [fibers[i] for i in stays]
        woken = [lot.unpark(n) for n in range(51)]
        assert lot.unpark() is None and len(lot) == 0 and not lot.rest and lot.head is None
    assert woken == [fibers[i] for i in stays]
    assert [(tag, v) for tag, v in out if v != "left"] == list(zip(stays, range(51), strict=True))
    assert sorted(tag for tag, v in out if v == "left") == sorted(set(range(200)) - set(stays))


@pytest.mark.unknot
def test_a_fiber_that_left_and_parked_again_waits_at_the_back(autojump_clock: MockClock) -> None:
    lot = ParkingLot()
    out: list[Any] = []

    def leaves_then_comes_back(tag: str) -> None:
        _park_into(lot, out, tag, timeout=1)  # times out while between the others
        _park_into(lot, out, tag + "-again")

    with unknot.TaskGroup() as tg:
        tg.spawn(_park_into, lot, out, "a")
        tg.spawn(leaves_then_comes_back, "b")
        tg.spawn(_park_into, lot, out, "c")
        unknot.sleep(2)
        assert len(lot) == 3  # a, c, and b's second wait; b's first entry is dead
        for v in (1, 2, 3):
            assert lot.unpark(v) is not None
        assert lot.unpark() is None
    assert out == [("b", TIMED_OUT), ("a", 1), ("c", 2), ("b-again", 3)]


@pytest.mark.unknot
def test_payloads_none_and_not_none_mix_in_order() -> None:
    lot = ParkingLot()
    out: list[Any] = []
    with unknot.TaskGroup() as tg:
        tg.spawn(_park_into, lot, out, 0, payload="p0")
        tg.spawn(_park_into, lot, out, 1)  # no payload: the fiber itself is the entry
        tg.spawn(_park_into, lot, out, 2, payload=0)  # a falsy payload is still a payload
        unknot.sleep(0)
        assert [p.payload for p in lot] == ["p0", None, 0]
        first = lot.first()
        assert first is not None and first.payload == "p0"
        places = [lot.take(i) for i in range(3)]
        assert [p.payload for p in places if p is not None] == ["p0", None, 0]
        assert lot.take() is None
    assert out == [(0, 0), (1, 1), (2, 2)]


@pytest.mark.unknot
def test_throw_all_raises_in_every_waiter() -> None:
    lot = ParkingLot()
    errors: list[str] = []

    def waiter() -> None:
        f = lowlevel.current_fiber()
        assert f is not None
        try:
            lot.park(f)
        except LookupError as e:
            errors.append(str(e))

    with unknot.TaskGroup() as tg:
        for _ in range(3):
            tg.spawn(waiter)
        unknot.sleep(0)
        assert lot.throw_all(LookupError("closed")) == 3
        for _ in range(2):
            tg.spawn(waiter)
        unknot.sleep(0)
        assert lot.throw_all(lambda: LookupError("made for each")) == 2
    assert errors == ["closed"] * 3 + ["made for each"] * 2
    assert len(lot) == 0


@pytest.mark.unknot
def test_add_and_discard_for_waiting_in_several_lots() -> None:
    a, b = ParkingLot(), ParkingLot()
    result: list[Any] = []

    def waiter() -> None:
        f = lowlevel.current_fiber()
        assert f is not None
        pa, pb = a.add(f, "from-a"), b.add(f, "from-b")
        try:
            result.append(f.hub.park(f))
        finally:
            a.discard(pa)
            b.discard(pb)

    with unknot.TaskGroup() as tg:
        tg.spawn(waiter)
        unknot.sleep(0)
        assert len(a) == len(b) == 1
        assert b.unpark("v", with_payload=True) is not None
    assert result == [("from-b", "v")]
    assert len(a) == len(b) == 0
    assert a.unpark() is None  # its place was discarded


@pytest.mark.unknot
def test_cancellable_park_is_a_checkpoint_and_uncancellable_is_not() -> None:
    lot = ParkingLot()
    f = lowlevel.current_fiber()
    assert f is not None
    with unknot.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(unknot.Cancelled):
            lot.park(f)  # raises at once, without waiting
        assert len(lot) == 0

        def giver() -> None:
            lot.unpark("done")

        unknot.spawn(giver)
        assert lot.park(f, cancellable=False) == "done"  # not interrupted by the cancellation
    assert scope.cancelled_caught is False  # nothing raised Cancelled out of the block


@pytest.mark.unknot
def test_unpark_all_counts() -> None:
    lot = ParkingLot()
    out: list[Any] = []
    with unknot.TaskGroup() as tg:
        for i in range(4):
            tg.spawn(_park_into, lot, out, i)
        unknot.sleep(0)
        assert lot.unpark_all("go") == 4
    assert sorted(out) == [(i, "go") for i in range(4)]
