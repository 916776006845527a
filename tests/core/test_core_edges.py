"""Core edges: the asyncio bridge when a side catches its cancellation, and await cycles;
`HubEventLoop.close` with fibers left; deadlock reports and shielded waits, foreign threads
that end without waking the hub, and SIGALRM handlers with their timer running."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import pytest
from fiber_helpers import await_cycle_errors, run_on_hub_loop, run_script

import unknot

# -- a side of the bridge that catches its cancellation ------------------------------------------


def _fiber_that_catches_its_cancellation(started: asyncio.Future[None], then: str) -> str:
    started.set_result(None)
    try:
        unknot.sleep(3600)
    except unknot.Cancelled:
        if then == "raise":
            raise KeyError("raised while unwinding") from None
        return "caught, returned"
    return "slept"


@pytest.mark.parametrize("then", ["return", "raise"])
def test_await_fiber_gives_the_outcome_of_a_fiber_that_caught_its_cancellation(
    then: str,
) -> None:
    # As with an asyncio task awaiting a task that catches CancelledError and returns: the
    # awaiting task gets that value (or that error). It used to raise CancelledError anyway.
    async def main() -> tuple[Any, unknot.Fiber]:
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        fiber = unknot.spawn(_fiber_that_catches_its_cancellation, started, then)

        async def awaiter() -> Any:
            return await fiber

        task = loop.create_task(awaiter())
        await started  # (the task runs first: it was scheduled before this wait)
        task.cancel()
        try:
            return await task, fiber
        except KeyError as e:
            return f"KeyError: {e.args[0]}", fiber

    outcome, fiber = run_on_hub_loop(main)
    if then == "return":
        assert outcome == "caught, returned"
        assert fiber.result() == "caught, returned"
    else:
        assert outcome == "KeyError: raised while unwinding"


@pytest.mark.unknot
def test_await_fiber_still_raises_cancelled_error_for_a_fiber_that_unwinds() -> None:
    awaiting = unknot.Event()

    async def awaiter(fiber: unknot.Fiber) -> Any:
        awaiting.set()
        return await fiber

    fiber = unknot.spawn(unknot.sleep, 3600)
    task = asyncio.ensure_future(awaiter(fiber))
    awaiting.wait()
    task.cancel("stop it")
    with pytest.raises(asyncio.CancelledError, match="stop it"):
        unknot.await_(task)
    assert fiber.cancelled()


@pytest.mark.unknot
@pytest.mark.parametrize("then", ["return", "raise"])
def test_await_gives_the_outcome_of_a_task_that_caught_its_cancellation(then: str) -> None:
    # The mirror case: a fiber in await_ is cancelled, the task it waits for catches the
    # CancelledError and returns a value: await_ returns it (the fiber's cancellation stays in
    # force for its next blocking call). It used to raise Cancelled and drop the value.
    started = unknot.Event()
    log: list[Any] = []

    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if then == "raise":
                raise KeyError("raised while unwinding") from None
            return "caught, returned"
        return "slept"

    def waiter() -> None:
        try:
            log.append(unknot.await_(stubborn()))
        except KeyError as e:
            log.append(f"KeyError: {e.args[0]}")
        try:
            unknot.sleep(0)
        except unknot.Cancelled:
            log.append("still cancelled")
            raise

    w = unknot.spawn(waiter)
    started.wait()
    w.cancel()
    with pytest.raises(unknot.FiberCancelled):
        w.join()
    expected = "caught, returned" if then == "return" else "KeyError: raised while unwinding"
    assert log == [expected, "still cancelled"]


# -- await cycles ----------------------------------------------------------------------------------


def test_a_task_awaiting_a_fiber_that_waits_for_it_is_refused() -> None:
    # The fiber waits (await_) for the task first; the task then awaits the fiber: nothing could
    # ever end that (cancelling either side waited for the other, for ever). Refused at once.
    task_msg, fiber_msg = await_cycle_errors(lambda fiber: fiber)
    assert "cannot await" in task_msg and "neither could ever finish" in task_msg
    assert fiber_msg == task_msg


def test_a_fiber_waiting_for_a_task_that_awaits_it_is_refused() -> None:
    # The other order: the task awaits the fiber first, then the fiber calls await_(task).
    async def main() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        go = unknot.Event()
        box: dict[str, Any] = {}

        async def task_body() -> Any:
            loop.call_soon(go.set)  # (runs once this task waits for the fiber)
            return await box["fiber"]

        def fiber_body() -> Any:
            go.wait()
            return unknot.await_(box["task"])

        box["fiber"] = fiber = unknot.spawn(fiber_body)
        box["task"] = task = loop.create_task(task_body())
        done, _ = await asyncio.wait([task], timeout=30)  # (a bound: it used to hang)
        assert done and fiber.done()
        with pytest.raises(RuntimeError) as fiber_error:
            fiber.result()
        with pytest.raises(RuntimeError) as task_error:  # the fiber's error, through await
            task.result()
        return str(fiber_error.value), str(task_error.value)

    fiber_msg, task_msg = run_on_hub_loop(main)
    assert "cannot wait for" in fiber_msg and "neither could ever finish" in fiber_msg
    assert task_msg == fiber_msg


def test_a_cycle_through_a_task_awaiting_a_task_is_refused() -> None:
    # fiber -> await_(outer) -> outer awaits inner -> inner awaits the fiber.
    async def main() -> str:
        loop = asyncio.get_running_loop()
        go: asyncio.Future[None] = loop.create_future()
        box: dict[str, Any] = {}

        async def inner() -> Any:
            await go
            return await box["fiber"]

        async def outer() -> Any:
            return await box["inner"]

        def fiber_body() -> Any:
            loop.call_soon(go.set_result, None)
            return unknot.await_(box["outer"])

        box["inner"] = loop.create_task(inner())
        box["outer"] = outer_task = loop.create_task(outer())
        box["fiber"] = unknot.spawn(fiber_body)
        done, _ = await asyncio.wait([outer_task], timeout=30)
        assert done
        with pytest.raises(RuntimeError) as error:
            outer_task.result()
        return str(error.value)

    assert "neither could ever finish" in run_on_hub_loop(main)


@pytest.mark.unknot
def test_awaiting_a_task_without_a_cycle_is_not_refused() -> None:
    async def sleeper() -> str:
        await asyncio.sleep(0.001)
        return "slept"

    async def awaits_other(f: unknot.Fiber) -> Any:
        return await f

    task = asyncio.ensure_future(sleeper())
    other = unknot.spawn(unknot.await_, task)  # another fiber waits for the same task
    assert unknot.await_(task) == "slept"
    assert unknot.await_(awaits_other(other)) == "slept"


# -- HubEventLoop.close with fibers left -----------------------------------------------------------


def test_close_unwinds_the_fibers_left_on_the_loop() -> None:
    # A loop run and closed by hand (not by unknot.run or asyncio.run): the fibers left on it
    # are cancelled and unwound by close(). Their finally blocks used to never run.
    log: list[str] = []

    def waits_for_ever(started: asyncio.Future[None]) -> None:
        started.set_result(None)
        try:
            unknot.Event().wait()
        finally:
            with unknot.CancelScope(shield=True):
                unknot.sleep(0.001)  # (a blocking call in the clean-up works)
            log.append("unwound")

    async def main() -> None:
        started = asyncio.get_running_loop().create_future()
        unknot.spawn(waits_for_ever, started)
        await started

    loop = unknot.new_event_loop()
    loop.run_until_complete(main())
    loop.close()
    assert log == ["unwound"]
    assert loop.is_closed() and not loop.hub.fibers


@pytest.mark.usefixtures("no_foreign_threads")
def test_close_abandons_a_fiber_that_ignores_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No root fiber, yet a fiber stuck in a shielded wait does not make close() hang: the
    # deadlock is detected while close unwinds, and the fiber is logged and abandoned.
    log: list[str] = []

    def stubborn(started: asyncio.Future[None]) -> None:
        started.set_result(None)
        with unknot.CancelScope(shield=True):
            unknot.Event().wait()

    def unwinds() -> None:
        try:
            unknot.Event().wait()
        finally:
            log.append("unwound")

    async def main() -> None:
        started = asyncio.get_running_loop().create_future()
        unknot.spawn(stubborn, started, name="stubborn")
        unknot.spawn(unwinds)
        await started

    loop = unknot.new_event_loop()
    loop.run_until_complete(main())
    with caplog.at_level(logging.WARNING, logger="unknot"):
        loop.close()
    assert loop.is_closed()
    assert log == ["unwound"]
    assert "abandoned" in caplog.text and "stubborn" in caplog.text


def test_close_of_a_loop_without_fibers_is_unchanged() -> None:
    loop = unknot.new_event_loop()
    assert loop.run_until_complete(asyncio.sleep(0, "done")) == "done"
    loop.close()
    loop.close()  # (twice: nothing to do)
    assert loop.is_closed()


# -- deadlock reports and shielded waits -----------------------------------------------------------


@pytest.mark.usefixtures("no_foreign_threads")
def test_a_deadlock_is_not_thrown_into_a_condition_waits_reacquire() -> None:
    # The root is woken from Condition.wait but the notifier keeps the lock and blocks for
    # ever: the root's re-acquire is a shielded wait. The DeadlockError used to be thrown
    # into it: wait() left without the lock, and the root's with-block released the lock the
    # other fiber held. Now it comes out of run() and the shutdown cancels the holder, whose
    # release hands the lock to the root: both leave holding it, as they should.
    cond = unknot.Condition()
    log: list[tuple[str, bool]] = []

    def holder() -> None:
        with cond:
            cond.notify()
            try:
                unknot.Event().wait()
            finally:
                log.append(("holder leaves", cond._is_owned()))

    def main() -> None:
        with cond:
            unknot.spawn(holder, name="holder")
            try:
                cond.wait()
            finally:
                log.append(("root leaves wait", cond._is_owned()))

    with pytest.raises(unknot.DeadlockError) as info:
        unknot.run(main)
    assert "holder" in str(info.value)
    assert log == [("holder leaves", True), ("root leaves wait", True)]
    assert not cond._lock.locked()


@pytest.mark.usefixtures("no_foreign_threads")
def test_a_deadlock_is_still_thrown_into_a_cancellable_wait() -> None:
    def main() -> str:
        try:
            unknot.Event().wait()
        except unknot.DeadlockError:
            return "thrown into the root"
        return "no"

    assert unknot.run(main) == "thrown into the root"


# -- foreign threads that end without waking anything --------------------------------------------


# In a child process: the blocking detector, on under the pytest plugin, posts a callback to
# the loop a few times a second, which ends the hub's wait (and hid the bug); there a hang
# is bounded (run_script's minute) and no thread of the test runner counts as a waker.
_A_THREAD_THAT_ENDS_WITHOUT_WAKING = """
import threading, time, unknot

def main():
    thread = threading.Thread(target=time.sleep, args=(0.3,))
    thread.start()
    unknot.Event().wait()

try:
    unknot.run(main)
except unknot.DeadlockError:
    print("DeadlockError")
"""


def test_a_deadlock_is_reported_once_a_foreign_thread_ends_without_waking_the_hub() -> None:
    # The hub looks for a deadlock while the thread runs (a possible waker), then the thread
    # ends without waking anything. The hub used to sleep for good: nothing woke its poll.
    assert run_script(_A_THREAD_THAT_ENDS_WITHOUT_WAKING) == ["DeadlockError"]


# -- SIGALRM handlers with their timer running ---------------------------------------------------


@pytest.fixture
def own_alarm() -> Any:
    """SIGALRM's handler and timer for the test (pytest-timeout's are put back after it)."""
    handler = signal.getsignal(signal.SIGALRM)
    timer = signal.setitimer(signal.ITIMER_REAL, 0)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, handler)
    if timer[0] > 0:
        signal.setitimer(signal.ITIMER_REAL, *timer)


needs_setitimer = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no setitimer")


@needs_setitimer
@pytest.mark.usefixtures("no_foreign_threads", "own_alarm")
@pytest.mark.parametrize("how", ["setitimer", "alarm"])
def test_an_alarm_handler_with_its_timer_running_is_a_waker(how: str) -> None:
    # Only the alarm's handler will set the Event: that is no deadlock. It used to be reported
    # after DEADLOCK_GRACE (0.1 s): SIGALRM handlers were all taken for a timeout's.
    def main() -> str:
        ev = unknot.Event()
        signal.signal(signal.SIGALRM, lambda _signum, _frame: ev.set())
        if how == "alarm":
            signal.alarm(1)
        else:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
        ev.wait()
        return "woken by the alarm"

    assert unknot.run(main) == "woken by the alarm"


@needs_setitimer
@pytest.mark.usefixtures("no_foreign_threads", "own_alarm")
def test_an_alarm_that_wakes_nothing_does_not_hide_the_deadlock() -> None:
    fired: list[int] = []

    def main() -> None:
        signal.signal(signal.SIGALRM, lambda signum, _frame: fired.append(signum))
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        unknot.Event().wait()

    with pytest.raises(unknot.DeadlockError):
        unknot.run(main)
    assert fired == [signal.SIGALRM]


@needs_setitimer
@pytest.mark.usefixtures("no_foreign_threads", "own_alarm")
def test_a_timeouts_alarm_handler_is_not_a_waker() -> None:
    # pytest-timeout's handler (with its timer running for every test) raises when it fires:
    # it is no waker, and a deadlock is reported at once, not when the test times out.
    def timeout_handler(_signum: int, _frame: object) -> None:
        raise AssertionError("timed out")

    timeout_handler.__module__ = "pytest_timeout"
    signal.signal(signal.SIGALRM, timeout_handler)
    signal.setitimer(signal.ITIMER_REAL, 60)
    with pytest.raises(unknot.DeadlockError):
        unknot.run(lambda: unknot.Event().wait())
