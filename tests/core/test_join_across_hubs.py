"""`Fiber.join` from another thread: from a fiber of another hub (only that fiber waits), from a
plain thread (it blocks), and from the fiber's own hub's thread outside any fiber (an error);
the wake-up across threads, timeouts, the joiner's cancellation, and a hub closed first."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fiber_helpers import OtherHub

import unknot
from unknot import lowlevel
from unknot._core import _fiber

#: A joiner woken in time returns well within this; one that missed its wake-up would wait for
#: its timeout (the poll for a closed hub is made too rare to hide it: see `slow_poll`).
PROMPT = 2.0


@pytest.fixture(autouse=True)
def slow_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """A joiner looks whether the fiber's hub was closed only every 60 s: it must be woken."""
    monkeypatch.setattr(_fiber, "_CLOSED_POLL", 60.0)


@pytest.fixture
def other() -> Iterator[OtherHub]:
    with OtherHub() as hub:
        yield hub


def released_value(release: threading.Event, value: Any = "value") -> Any:
    unknot.to_thread(release.wait, 30)
    if isinstance(value, BaseException):
        raise value
    return value


def nothing_left_on(target: unknot.Fiber, other: OtherHub) -> bool:
    """Whether a joiner that stopped waiting left no callback on ``target`` (once the other
    hub ran what the joiner sent it)."""
    other.call(lambda: None)
    return target._callbacks is None


# -- from a fiber of another hub ---------------------------------------------------------------


@pytest.mark.unknot
def test_a_fiber_of_another_hub_gets_the_result_and_only_it_waits(other: OtherHub) -> None:
    release = threading.Event()
    target = other.spawn(released_value, release)
    ticks: list[float] = []

    def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            unknot.sleep(0.002)

    with unknot.TaskGroup() as tg:
        tg.spawn(ticker)
        joiner = unknot.spawn(target.join)
        unknot.sleep(0.05)
        assert not joiner.done() and not target.done()
        before = len(ticks)
        unknot.sleep(0.05)
        assert len(ticks) > before  # the joiner's hub goes on running its other fibers
        release.set()
        t0 = time.monotonic()
        assert joiner.join(timeout=10) == "value"
        assert time.monotonic() - t0 < PROMPT
        tg.cancel()
    assert target.join() == "value"  # (already finished: at once)


@pytest.mark.unknot
def test_a_fiber_of_another_hub_gets_the_error(other: OtherHub) -> None:
    release = threading.Event()
    target = other.spawn(released_value, release, ValueError("boom"))
    unknot.spawn_later(0.02, release.set)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="boom"):
        target.join(timeout=10)
    assert time.monotonic() - t0 < PROMPT
    assert lowlevel.unretrieved_error(target) is None  # the joiner retrieved it


@pytest.mark.unknot
def test_a_fiber_of_another_hub_joining_a_cancelled_fiber(other: OtherHub) -> None:
    target = other.spawn(unknot.sleep, 3600)
    unknot.spawn_later(0.02, other.call, target.cancel)
    t0 = time.monotonic()
    with pytest.raises(unknot.FiberCancelled):
        target.join(timeout=10)
    assert time.monotonic() - t0 < PROMPT
    assert target.cancelled()


@pytest.mark.unknot
def test_timeout_across_hubs_leaves_the_fiber_running_and_nothing_behind(
    other: OtherHub,
) -> None:
    release = threading.Event()
    target = other.spawn(released_value, release)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within 0.05 s"):
        target.join(timeout=0.05)
    assert 0.04 < time.monotonic() - t0 < PROMPT
    assert not target.done()
    assert nothing_left_on(target, other)
    release.set()
    assert target.join(timeout=10) == "value"


@pytest.mark.unknot
def test_a_cancelled_joiner_of_another_hub_stops_and_leaves_nothing_behind(
    other: OtherHub,
) -> None:
    release = threading.Event()
    target = other.spawn(released_value, release)
    with unknot.move_on_after(0.05) as scope:  # its deadline cancels the parked joiner
        target.join()
    assert scope.cancelled_caught
    joiner = unknot.spawn(target.join)
    unknot.sleep(0.02)
    joiner.cancel()
    with pytest.raises(unknot.FiberCancelled):
        joiner.join(timeout=PROMPT)
    with unknot.CancelScope() as already:  # a cancellation point: Cancelled at once
        already.cancel()
        target.join()
        pytest.fail("join() in a cancelled scope must raise Cancelled")
    assert not target.done()
    assert nothing_left_on(target, other)
    release.set()
    assert target.join(timeout=10) == "value"


@pytest.mark.unknot
def test_the_fiber_finishes_before_the_registration_reaches_its_hub(other: OtherHub) -> None:
    # The joiner sees the fiber unfinished, then the fiber finishes before the joiner's wait
    # is registered on the fiber's hub: it must still be woken, not left to time out.
    gate = threading.Event()
    blocked = threading.Event()
    box: list[unknot.Fiber] = []

    def blocker() -> None:
        box.append(unknot.spawn(lambda: "value"))  # ready to run, once this fiber lets it
        blocked.set()
        gate.wait(30)  # (the stdlib's: the whole hub thread waits, its loop with it)

    other.loop.call_soon_threadsafe(unknot.spawn, blocker)  # type: ignore[union-attr]
    assert unknot.to_thread(blocked.wait, 30)
    target = box[0]
    joiner = unknot.spawn(target.join, 10)
    unknot.sleep(0.02)  # the joiner checked, sent its registration and parked
    assert not target.done() and not joiner.done()
    gate.set()  # the target runs first, then the hub's loop gets to the registration
    t0 = time.monotonic()
    assert joiner.join(timeout=10) == "value"
    assert time.monotonic() - t0 < PROMPT


@pytest.mark.unknot
def test_many_fibers_of_another_hub_finish_while_being_joined(other: OtherHub) -> None:
    # Fibers finishing one after another while they are joined in turn: no wake-up is lost.
    def sleep_then(seconds: float, value: int) -> int:
        unknot.sleep(seconds)
        return value

    targets = other.call(lambda: [unknot.spawn(sleep_then, 0.001 * i, i) for i in range(60)])
    t0 = time.monotonic()
    assert [t.join(timeout=10) for t in targets] == list(range(60))
    assert time.monotonic() - t0 < PROMPT


# -- from a plain thread -------------------------------------------------------------------------


def test_a_plain_thread_blocks_until_the_fiber_finishes(other: OtherHub) -> None:
    release = threading.Event()
    target = other.spawn(released_value, release)
    threading.Timer(0.05, release.set).start()
    t0 = time.monotonic()
    assert target.join(timeout=10) == "value"
    assert 0.04 < time.monotonic() - t0 < PROMPT


def test_a_plain_thread_gets_the_error_or_fiber_cancelled(other: OtherHub) -> None:
    release = threading.Event()
    failing = other.spawn(released_value, release, ValueError("boom"))
    threading.Timer(0.02, release.set).start()
    with pytest.raises(ValueError, match="boom"):
        failing.join(timeout=10)
    sleeper = other.spawn(unknot.sleep, 3600)
    threading.Timer(0.02, other.call, (sleeper.cancel,)).start()
    t0 = time.monotonic()
    with pytest.raises(unknot.FiberCancelled):
        sleeper.join(timeout=10)
    assert time.monotonic() - t0 < PROMPT


def test_a_plain_thread_times_out_and_leaves_nothing_behind(other: OtherHub) -> None:
    release = threading.Event()
    target = other.spawn(released_value, release)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        target.join(timeout=0.05)
    assert 0.04 < time.monotonic() - t0 < PROMPT
    assert not target.done()
    assert nothing_left_on(target, other)
    release.set()
    assert target.join(timeout=10) == "value"


def test_outside_a_fiber_on_the_fibers_own_hub_thread_is_an_error(other: OtherHub) -> None:
    # The hub's thread would wait for a fiber only that thread can run.
    release = threading.Event()
    target = other.spawn(released_value, release)
    outcome: list[BaseException] = []
    done = threading.Event()

    def callback() -> None:  # in the hub's thread, outside any fiber
        try:
            target.join(timeout=10)
        except BaseException as e:
            outcome.append(e)
        done.set()

    other.loop.call_soon_threadsafe(callback)  # type: ignore[union-attr]
    assert done.wait(PROMPT)
    assert isinstance(outcome[0], RuntimeError)
    assert "use 'await fiber' in asyncio code" in str(outcome[0])
    assert nothing_left_on(target, other)
    release.set()
    assert target.join(timeout=10) == "value"


# -- the fiber's hub ends first ------------------------------------------------------------------


def test_a_hub_that_ends_cancels_the_fiber_its_joiners_get_fiber_cancelled() -> None:
    # As for a joiner on the same hub: the hub unwinds its fibers as it shuts down.
    other = OtherHub()
    other.start()
    target = other.spawn(unknot.sleep, 3600)
    threading.Timer(0.05, other.stop).start()
    with pytest.raises(unknot.FiberCancelled):
        target.join(timeout=10)
    other.stop()


def test_a_hub_closed_with_the_fiber_unfinished_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A loop closed from another thread leaves its fibers as they are: they never finish, and
    # a joiner in another thread (a plain one, a fiber of another hub) must not wait for ever.
    monkeypatch.setattr(_fiber, "_CLOSED_POLL", 0.02)
    loop = unknot.new_event_loop()
    keep: list[unknot.Fiber] = []

    async def start_target() -> None:
        started = asyncio.get_running_loop().create_future()

        def forever() -> None:
            started.set_result(None)
            unknot.Event().wait()

        keep.append(unknot.spawn(forever))
        await started

    loop.run_until_complete(start_target())  # the loop stops; the target waits in it
    target = keep[0]
    outcomes: dict[str, BaseException | str] = {}

    def join_from(name: str) -> None:
        try:
            outcomes[name] = repr(target.join(timeout=30))
        except BaseException as e:
            outcomes[name] = e

    joined = threading.Barrier(3, timeout=30)

    def in_a_fiber() -> None:
        unknot.to_thread(joined.wait)
        join_from("fiber")

    def in_a_thread() -> None:
        joined.wait()
        join_from("thread")

    threads = [
        threading.Thread(target=in_a_thread),
        threading.Thread(target=unknot.run, args=(in_a_fiber,)),
    ]
    for t in threads:
        t.start()
    joined.wait()
    time.sleep(0.05)  # both wait now
    assert not outcomes
    closer = threading.Thread(target=loop.close)  # (from another thread: no unwinding)
    t0 = time.monotonic()
    closer.start()
    closer.join(10)
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert time.monotonic() - t0 < PROMPT
    for name in ("thread", "fiber"):
        err = outcomes[name]
        assert isinstance(err, RuntimeError), (name, err)
        assert "was closed" in str(err)
    assert not target.done()
    with pytest.raises(RuntimeError, match="was closed"):  # and at once, once it is closed
        threading_join(target)


def threading_join(target: unknot.Fiber) -> Any:
    """``target.join()`` in a thread of its own (its hub's thread would be refused)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(target.join(timeout=10))
        except BaseException as e:
            box.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]
