"""Fibers left running on a loop that is not unknot's (stock asyncio, uvloop) when its runner
shuts it down: the hub's keeper task (`unknot._core._foreign`) has them cancelled and unwound,
as `HubEventLoop.shutdown_asyncgens` does on unknot's own loop (docs/asyncio.md, "Which loop?").
They used to be abandoned silently: no ``finally`` block run, no warning."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

import unknot
import unknot.socket
from unknot import lowlevel

T = TypeVar("T")

KEEPER = "unknot: fibers still running on this loop (cancelled with its tasks)"


def _factories() -> list[Any]:
    params = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        params.append(pytest.param(None, id="uvloop", marks=pytest.mark.skip("no uvloop")))
    else:
        # libuv opens a process-wide pipe (its signal pipe) with the first loop and never closes
        # it: opened now, at collection, it is open before the session's fd-leak check starts
        # (conftest.py, no_fd_leaks), which would report it.
        uvloop.new_event_loop().close()
        params.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return params


@pytest.fixture(params=_factories())
def new_loop(request: pytest.FixtureRequest) -> Callable[[], asyncio.AbstractEventLoop]:
    factory: Callable[[], asyncio.AbstractEventLoop] = request.param
    return factory


def run(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
    main: Callable[[], Coroutine[Any, Any, T]],
) -> T:
    """``asyncio.run(main())`` on a loop from ``new_loop`` (Python 3.11's asyncio.run has no
    loop_factory; it is this Runner's run and close)."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main())


def keepers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == KEEPER]


def test_leftover_fibers_unwind_when_the_runner_shuts_the_loop_down(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    log: list[str] = []

    def parked(what: str, wait: Callable[[], Any]) -> None:
        try:
            wait()
            log.append(f"{what}: returned")
        except unknot.Cancelled:
            log.append(f"{what}: cancelled")
            raise
        finally:
            log.append(f"{what}: finally")

    a, b = unknot.socket.socketpair()
    event = unknot.Event()

    async def main() -> None:
        assert not isinstance(asyncio.get_running_loop(), unknot.HubEventLoop)
        unknot.spawn(parked, "sleep", lambda: unknot.sleep(100))
        unknot.spawn(parked, "event", event.wait)
        unknot.spawn(parked, "recv", lambda: a.recv(10))
        await asyncio.sleep(0.01)  # all three park
        assert log == []

    with a, b:
        run(new_loop, main)
    assert sorted(log) == sorted(
        f"{what}: {how}" for what in ("sleep", "event", "recv") for how in ("cancelled", "finally")
    )


def test_a_fiber_may_block_in_its_finally_at_shutdown(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    log: list[str] = []

    def helped() -> str:
        try:
            unknot.sleep(0.01)
        except unknot.Cancelled:
            pass
        return "helped"

    def stubborn() -> None:
        try:
            unknot.sleep(100)
        except unknot.Cancelled:
            log.append("caught")
        finally:
            with unknot.CancelScope(shield=True):  # (the fiber stays cancelled: shielded)
                unknot.sleep(0.01)  # the loop runs on until the fiber is done
                helper = unknot.spawn(helped)
                log.append(helper.join())  # spawned meanwhile: cancelled (it caught it)
            log.append("finally done")

    async def main() -> None:
        unknot.spawn(stubborn)
        await asyncio.sleep(0.01)

    run(new_loop, main)
    assert log == ["caught", "helped", "finally done"]


def test_fibers_spawned_during_the_shutdown_are_cancelled_too(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    log: list[str] = []

    def late(n: int) -> None:
        try:
            unknot.sleep(100)
        finally:
            log.append(f"late {n} unwound")

    def first() -> None:
        try:
            unknot.sleep(100)
        finally:
            unknot.spawn(late, 1)  # spawned while the keeper unwinds the fibers
            with unknot.CancelScope(shield=True):
                unknot.sleep(0.01)
            unknot.spawn(late, 2)  # ...and once more, the first one already cancelled
            log.append("first unwound")

    async def main() -> None:
        unknot.spawn(first)
        await asyncio.sleep(0.01)

    run(new_loop, main)
    assert sorted(log) == ["first unwound", "late 1 unwound", "late 2 unwound"]


def test_the_keeper_lives_as_long_as_the_fibers_and_leaves_no_task(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def main() -> list[int]:
        counts = [len(keepers())]
        f = unknot.spawn(unknot.sleep, 0.01)
        g = unknot.spawn(unknot.sleep, 0.02)
        counts.append(len(keepers()))  # one for both
        await f
        counts.append(len(keepers()))
        await g
        # No task of unknot's left once the last fiber has finished (nothing to cancel, nothing
        # for asyncio to report), as before any fiber ran.
        assert asyncio.all_tasks() == {asyncio.current_task()}
        counts.append(len(keepers()))
        h = unknot.spawn(unknot.sleep, 0)  # busy again: a keeper again
        counts.append(len(keepers()))
        await h
        assert asyncio.all_tasks() == {asyncio.current_task()}
        return counts

    assert run(new_loop, main) == [0, 1, 1, 0, 1]


def test_no_task_destroyed_message_when_fibers_end_or_are_unwound(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
    caplog: pytest.LogCaptureFixture,
) -> None:
    unwound: list[str] = []

    def leftover() -> None:
        try:
            unknot.sleep(100)
        finally:
            unwound.append("leftover")

    async def main() -> None:
        await unknot.spawn(unknot.sleep, 0)
        unknot.spawn(leftover)
        assert len(keepers()) == 1
        await asyncio.sleep(0.01)

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        run(new_loop, main)
        gc.collect()
    assert unwound == ["leftover"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_cancelling_every_task_unwinds_the_fibers_and_the_loop_goes_on(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    # Not only a runner's shutdown: code that cancels all tasks (a framework's own shutdown)
    # cancels the fibers with them; fibers spawned later get a keeper of their own.
    async def main() -> list[str]:
        log: list[str] = []

        def fiber() -> None:
            try:
                unknot.sleep(100)
            finally:
                with unknot.CancelScope(shield=True):
                    unknot.sleep(0.01)
                log.append("unwound")

        f = unknot.spawn(fiber)
        await asyncio.sleep(0.01)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert [t.get_name() for t in others] == [KEEPER]
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        assert f.cancelled() and log == ["unwound"]
        later = unknot.spawn(unknot.sleep, 0)
        assert [t not in others for t in keepers()] == [True]  # a keeper of its own
        await later
        return log

    assert run(new_loop, main) == ["unwound"]


def test_a_keeper_cancelled_again_while_unwinding_leaves_a_new_one(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    log: list[str] = []

    def slow_to_unwind() -> None:
        try:
            unknot.sleep(100)
        finally:
            with unknot.CancelScope(shield=True):
                unknot.sleep(0.05)
            log.append("unwound")

    async def main() -> None:
        unknot.spawn(slow_to_unwind)
        await asyncio.sleep(0.01)
        (first,) = keepers()
        first.cancel()
        await asyncio.sleep(0.01)  # the fiber unwinds...
        first.cancel()  # ...and the keeper is cancelled again: it ends
        await asyncio.gather(first, return_exceptions=True)
        assert first.cancelled() and log == []
        (second,) = keepers()  # the fiber still runs: it has a keeper
        assert second is not first
        await second
        assert log == ["unwound"]

    run(new_loop, main)


def test_the_loop_and_hub_are_freed_after_an_unwinding_shutdown(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    # The keeper holds its hub weakly (the fibers hold it): once they have unwound, nothing of
    # unknot's keeps the loop or its hub, as in test_foreign_hub.py.
    unwound: list[str] = []

    def leftover() -> None:
        try:
            unknot.sleep(100)
        finally:
            unwound.append("leftover")

    refs: list[weakref.ref[Any]] = []

    async def main() -> None:
        refs.append(weakref.ref(asyncio.get_running_loop()))
        refs.append(weakref.ref(lowlevel.current_hub()))
        unknot.spawn(leftover)
        await asyncio.sleep(0.01)

    run(new_loop, main)
    gc.collect()
    assert unwound == ["leftover"]
    assert [r() for r in refs] == [None, None]


def test_a_loop_closed_by_hand_unwinds_nothing_and_its_keeper_is_reported(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The remaining limit (docs/asyncio.md, "Caveats"): nothing cancels the tasks of a loop
    # closed by hand, so its fibers are not unwound: they stay suspended, and so does the
    # keeper. When it goes (here the fiber is ended by hand), asyncio names the cause.
    unwound: list[str] = []

    def leftover() -> None:
        try:
            unknot.sleep(100)
        finally:
            unwound.append("leftover")

    async def main() -> unknot.Fiber:
        f = unknot.spawn(leftover)
        await asyncio.sleep(0.01)
        return f

    loop = new_loop()
    ref = weakref.ref(loop)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        try:
            fiber = loop.run_until_complete(main())
        finally:
            loop.close()
        assert unwound == []
        assert [t.get_name() for t in asyncio.all_tasks(loop)] == [KEEPER]
        del loop
        fiber.throw()  # (GreenletExit: what freeing a parked fiber's greenlet would do)
        assert unwound == ["leftover"]
        del fiber
        gc.collect()
    messages = [r.getMessage() for r in caplog.records]
    assert any("Task was destroyed but it is pending" in m and KEEPER in m for m in messages)
    assert ref() is None
