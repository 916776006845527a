"""unknot.Future (set once, from fibers, threads and asyncio; waited on by fibers, threads and
coroutines), as_completed, wait and spawn_later."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import CancelledError, InvalidStateError
from typing import Any

import pytest

import unknot
from unknot.testing import MockClock

pytestmark = pytest.mark.timeout(30)


def set_from_thread(fut: unknot.Future[Any], value: Any, delay: float = 0.02) -> threading.Thread:
    def body() -> None:
        time.sleep(delay)
        fut.set_result(value)

    t = threading.Thread(target=body)
    t.start()
    return t


# -- Future: completing and waiting in fibers -----------------------------------------------


@pytest.mark.unknot
def test_every_waiting_fiber_gets_the_result() -> None:
    fut: unknot.Future[str] = unknot.Future()
    assert not fut.done()
    with unknot.TaskGroup() as tg:
        waiters = [tg.spawn(fut.result) for _ in range(5)]
        unknot.sleep(0.01)
        assert not any(w.done() for w in waiters)
        fut.set_result("hello")
    assert [w.result() for w in waiters] == ["hello"] * 5
    assert fut.done() and fut.result() == "hello" and fut.exception() is None
    assert fut.wait() is True
    assert "hello" in repr(fut)


@pytest.mark.unknot
def test_an_exception_is_raised_by_result_and_returned_by_exception() -> None:
    fut: unknot.Future[int] = unknot.Future()
    waiter = unknot.spawn(fut.result)
    unknot.sleep(0)
    fut.set_exception(KeyError("k"))
    with pytest.raises(KeyError):
        waiter.join()
    with pytest.raises(KeyError):
        fut.result()
    assert isinstance(fut.exception(), KeyError)
    other: unknot.Future[int] = unknot.Future()
    other.set_exception(ValueError)  # a class is instantiated
    assert type(other.exception()) is ValueError
    with pytest.raises(TypeError):
        unknot.Future().set_exception("not an exception")  # type: ignore[arg-type]


@pytest.mark.unknot
def test_completing_twice_raises_invalid_state_error() -> None:
    fut: unknot.Future[int] = unknot.Future()
    fut.set_result(1)
    with pytest.raises(InvalidStateError):
        fut.set_result(2)
    with pytest.raises(InvalidStateError):
        fut.set_exception(ValueError())
    assert fut.result() == 1
    failed: unknot.Future[int] = unknot.Future()
    failed.set_exception(ValueError())
    with pytest.raises(InvalidStateError):
        failed.set_result(3)


@pytest.mark.unknot
def test_timeouts(autojump_clock: MockClock) -> None:
    fut: unknot.Future[int] = unknot.Future()
    assert fut.wait(5) is False
    assert unknot.current_time() == pytest.approx(5)
    with pytest.raises(TimeoutError):
        fut.result(timeout=1)
    with pytest.raises(TimeoutError):
        fut.exception(timeout=1)
    assert unknot.current_time() == pytest.approx(7)
    assert fut.wait(-1) is False  # (a negative timeout is 0, as in concurrent.futures)
    assert unknot.current_time() == pytest.approx(7)
    with pytest.raises(ValueError):
        fut.wait(float("nan"))


@pytest.mark.unknot
def test_fail_after_around_a_wait_raises_timeout_error(autojump_clock: MockClock) -> None:
    fut: unknot.Future[int] = unknot.Future()
    with pytest.raises(TimeoutError):
        with unknot.fail_after(3):
            fut.result()
    assert unknot.current_time() == pytest.approx(3)
    fut.set_result(1)  # the cancelled waiter left nothing behind that breaks completion
    assert fut.result() == 1


# -- Future: across threads and hubs --------------------------------------------------------


@pytest.mark.unknot
def test_set_from_another_os_thread_wakes_the_idle_hub() -> None:
    fut: unknot.Future[str] = unknot.Future()
    start = time.monotonic()
    t = set_from_thread(fut, "from a thread")
    with unknot.fail_after(5):  # the hub sleeps in its poll: the setter must wake it
        assert fut.result() == "from a thread"
    assert time.monotonic() - start < 2
    t.join()


@pytest.mark.unknot
def test_set_from_another_os_thread_while_the_hub_is_busy() -> None:
    fut: unknot.Future[str] = unknot.Future()
    t = set_from_thread(fut, "from a thread")
    others = [unknot.spawn(unknot.sleep, 0.001 * i) for i in range(3)]
    assert fut.result(timeout=5) == "from a thread"
    t.join()
    for f in others:
        f.join()


@pytest.mark.unknot
def test_set_from_a_to_thread_worker_and_a_race_of_two_setters() -> None:
    fut: unknot.Future[int] = unknot.Future()
    errors: list[BaseException] = []

    def setter(value: int) -> None:
        try:
            fut.set_result(value)
        except InvalidStateError as e:
            errors.append(e)

    with unknot.TaskGroup() as tg:
        tg.spawn(unknot.to_thread, setter, 1)
        tg.spawn(unknot.to_thread, setter, 2)
        got = fut.result(timeout=5)
    assert got in (1, 2) and len(errors) == 1  # exactly one completion won


@pytest.mark.unknot
def test_an_os_thread_blocks_in_result_until_a_fiber_sets_it() -> None:
    fut: unknot.Future[str] = unknot.Future()
    waiter = unknot.spawn(unknot.to_thread, fut.result, 5)
    unknot.sleep(0.02)
    assert not waiter.done()
    fut.set_result("to the thread")
    assert waiter.join() == "to the thread"
    slow: unknot.Future[str] = unknot.Future()
    assert unknot.to_thread(slow.wait, 0.01) is False


def test_outside_any_hub_result_blocks_the_thread() -> None:
    fut: unknot.Future[int] = unknot.Future()
    t = set_from_thread(fut, 42)
    assert fut.result(timeout=5) == 42
    t.join()
    with pytest.raises(TimeoutError):
        unknot.Future().result(timeout=0.01)


@pytest.mark.unknot
def test_a_fiber_of_another_hub_sets_it() -> None:
    fut: unknot.Future[str] = unknot.Future()

    def other_hub() -> None:
        unknot.sleep(0.02)
        fut.set_result("from the other hub")

    t = threading.Thread(target=unknot.run, args=(other_hub,))
    t.start()
    assert fut.result(timeout=5) == "from the other hub"
    t.join()


@pytest.mark.unknot
def test_done_callbacks_run_on_the_futures_hub_even_when_set_from_a_thread() -> None:
    fut: unknot.Future[int] = unknot.Future()
    calls: list[tuple[int, bool]] = []
    here = threading.get_ident()

    def callback(f: unknot.Future[int]) -> None:
        calls.append((f.result(), threading.get_ident() == here))

    fut.add_done_callback(callback)
    fut.add_done_callback(lambda f: 1 / 0)  # logged, and the others still run
    removed = lambda f: calls.append((-1, False))  # noqa: E731
    fut.add_done_callback(removed)
    fut.remove_done_callback(removed)
    set_from_thread(fut, 7).join()
    unknot.sleep(0.01)
    assert calls == [(7, True)]
    fut.add_done_callback(callback)  # already done: at once
    assert calls == [(7, True), (7, True)]


@pytest.mark.unknot
def test_await_future_from_a_coroutine_on_the_hub_loop() -> None:
    fut: unknot.Future[str] = unknot.Future()

    async def waiter() -> str:
        return await fut

    task = asyncio.get_running_loop().create_task(waiter())
    unknot.sleep(0.01)
    assert not task.done()
    fut.set_result("awaited")
    assert unknot.await_(task) == "awaited"
    failed: unknot.Future[str] = unknot.Future()
    failed.set_exception(OSError("x"))
    with pytest.raises(OSError):
        unknot.await_(waiter_of(failed))


async def waiter_of(fut: unknot.Future[Any]) -> Any:
    return await fut


def test_await_on_a_stock_asyncio_loop_set_from_a_thread() -> None:
    async def main() -> str:
        fut: unknot.Future[str] = unknot.Future()
        t = set_from_thread(fut, "stock loop")
        try:
            return await asyncio.wait_for(waiter_of(fut), 5)
        finally:
            t.join()

    assert asyncio.run(main()) == "stock loop"


@pytest.mark.unknot
def test_set_from_an_asyncio_callback() -> None:
    fut: unknot.Future[str] = unknot.Future()
    asyncio.get_running_loop().call_later(0.01, fut.set_result, "from asyncio")
    assert fut.result(timeout=5) == "from asyncio"


@pytest.mark.unknot
def test_cancelled_coroutine_leaves_the_future_usable() -> None:
    fut: unknot.Future[str] = unknot.Future()
    task = asyncio.get_running_loop().create_task(waiter_of(fut))
    unknot.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        unknot.await_(task)
    assert fut._loop_waiters == []
    fut.set_result("still fine")
    assert fut.result() == "still fine"


@pytest.mark.unknot
def test_waiting_on_a_complete_future_is_a_cancellation_point() -> None:
    fut: unknot.Future[int] = unknot.Future()
    fut.set_result(1)
    failed: unknot.Future[int] = unknot.Future()
    failed.set_exception(KeyError("k"))
    with unknot.CancelScope() as scope:
        scope.cancel()
        for call in (fut.result, fut.exception, fut.wait, failed.result):
            with pytest.raises(unknot.Cancelled):
                call()
        # Not a blocking call: unknot.wait whose condition already holds.
        done = unknot.wait([fut, failed], return_when=unknot.FIRST_EXCEPTION).done
        assert done == {fut, failed}
    assert fut.result() == 1  # outside the scope


@pytest.mark.unknot
def test_done_callbacks_read_the_result_in_a_cancelled_fiber() -> None:
    # A cancelled fiber completing a future (in its cleanup, say): the callbacks that read the
    # outcome all run, and no Cancelled comes out of set_result or add_done_callback.
    fut: unknot.Future[int] = unknot.Future()
    seen: list[Any] = []
    fut.add_done_callback(lambda f: seen.append(f.result()))
    fut.add_done_callback(lambda f: seen.append(f.exception()))
    with unknot.CancelScope() as scope:
        scope.cancel()
        fut.set_result(5)
        fut.add_done_callback(lambda f: seen.append(f.result()))  # already done: at once
    assert seen == [5, None, 5]


def test_result_outside_fibers_and_from_asyncio_callbacks() -> None:
    fut: unknot.Future[int] = unknot.Future()
    fut.set_result(3)
    assert fut.result() == 3 and fut.wait() and fut.exception() is None
    seen: list[int] = []

    def main() -> None:
        with unknot.CancelScope() as scope:
            scope.cancel()
            asyncio.get_running_loop().call_soon(lambda: seen.append(fut.result()))
            unknot.sleep(0)  # (raises Cancelled: the scope swallows it)
        unknot.sleep(0.01)

    unknot.run(main)
    assert seen == [3]


# -- Future.cancel (concurrent.futures semantics) -----------------------------------------------


@pytest.mark.unknot
def test_cancel_a_pending_future_and_not_a_complete_one() -> None:
    fut: unknot.Future[int] = unknot.Future()
    assert fut.cancelled() is False
    assert fut.cancel() is True
    assert fut.cancelled() and fut.done() and fut.wait() is True
    assert fut.cancel() is True  # already cancelled: still True, as concurrent.futures says
    assert "cancelled" in repr(fut)
    with pytest.raises(CancelledError):
        fut.result()
    with pytest.raises(CancelledError):
        fut.exception()
    with pytest.raises(InvalidStateError):
        fut.set_result(1)
    with pytest.raises(InvalidStateError):
        fut.set_exception(KeyError("k"))
    assert fut.cancelled()
    done: unknot.Future[int] = unknot.Future()
    done.set_result(7)
    failed: unknot.Future[int] = unknot.Future()
    failed.set_exception(KeyError("k"))
    assert done.cancel() is False and failed.cancel() is False  # complete: unchanged
    assert not done.cancelled() and done.result() == 7
    assert not failed.cancelled() and isinstance(failed.exception(), KeyError)


@pytest.mark.unknot
def test_cancel_wakes_fibers_threads_coroutines_and_runs_callbacks() -> None:
    fut: unknot.Future[int] = unknot.Future()
    seen: list[Any] = []
    fut.add_done_callback(lambda f: seen.append(("callback", f.cancelled())))

    def fiber_waiter() -> None:
        try:
            fut.result()
        except CancelledError:
            seen.append("fiber")

    fibers = [unknot.spawn(fiber_waiter) for _ in range(2)]
    thread_waiter = unknot.spawn(unknot.to_thread, fut.result, 5)
    task = asyncio.get_running_loop().create_task(waiter_of(fut))
    for _ in range(5000):  # until every waiter waits (the thread needs real time to start)
        if len(fut._lots or {}) and fut._thread_waiters and fut._loop_waiters:
            break
        unknot.sleep(0.001)
    assert fut._thread_waiters and fut._loop_waiters and not any(f.done() for f in fibers)
    assert fut.cancel() is True
    for f in fibers:
        f.join()
    with pytest.raises(CancelledError):  # concurrent.futures' CancelledError, in the thread
        thread_waiter.join()
    with pytest.raises(asyncio.CancelledError):  # a coroutine sees asyncio's: its task ends
        unknot.await_(task)
    assert task.cancelled()
    assert sorted(map(str, seen)) == ["('callback', True)", "fiber", "fiber"]


def test_await_a_future_cancelled_from_a_thread_on_a_stock_loop() -> None:
    async def main() -> tuple[bool, bool]:
        fut: unknot.Future[str] = unknot.Future()
        task = asyncio.get_running_loop().create_task(waiter_of(fut))
        await asyncio.sleep(0)  # the task waits
        t = threading.Thread(target=fut.cancel)
        t.start()
        try:
            await asyncio.wait_for(task, 5)
        except asyncio.CancelledError:
            pass
        t.join()
        return task.cancelled(), fut.cancelled()

    assert asyncio.run(main()) == (True, True)


def test_cancel_racing_set_result_in_threads_exactly_one_wins() -> None:
    for _ in range(50):
        fut: unknot.Future[int] = unknot.Future()
        outcome: dict[str, Any] = {}

        def setter(fut: unknot.Future[int] = fut, outcome: dict[str, Any] = outcome) -> None:
            try:
                fut.set_result(1)
                outcome["set"] = True
            except InvalidStateError:
                outcome["set"] = False

        def canceller(fut: unknot.Future[int] = fut, outcome: dict[str, Any] = outcome) -> None:
            outcome["cancel"] = fut.cancel()

        threads = [threading.Thread(target=setter), threading.Thread(target=canceller)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcome["set"] != outcome["cancel"]
        assert fut.cancelled() is outcome["cancel"]
        if outcome["set"]:
            assert fut.result(timeout=1) == 1


@pytest.mark.unknot
def test_as_completed_and_wait_count_a_cancelled_future_as_done_not_failed() -> None:
    cancelled: unknot.Future[int] = unknot.Future()
    later: unknot.Future[int] = unknot.Future()
    unknot.spawn(cancelled.cancel)
    assert list(unknot.as_completed([cancelled])) == [cancelled]
    fresh: unknot.Future[int] = unknot.Future()
    unknot.spawn(fresh.cancel)
    done, not_done = unknot.wait([fresh, later], return_when=unknot.FIRST_COMPLETED)
    assert done == {fresh} and not_done == {later}

    def set_later() -> None:
        unknot.sleep(0)
        later.set_result(2)

    unknot.spawn(set_later)
    # A cancelled future did not raise: FIRST_EXCEPTION waits for the other one.
    done, not_done = unknot.wait([cancelled, later], return_when=unknot.FIRST_EXCEPTION)
    assert done == {cancelled, later} and not_done == set()


# -- as_completed -------------------------------------------------------------------------------


@pytest.mark.unknot
def test_as_completed_yields_fibers_and_futures_in_completion_order(
    autojump_clock: MockClock,
) -> None:
    fut: unknot.Future[str] = unknot.Future()
    unknot.spawn_later(2.5, fut.set_result, "future")
    fibers = [unknot.spawn(lambda d=d: unknot.sleep(d) or d) for d in (3, 1, 2)]
    done_already = unknot.spawn(lambda: "early")
    unknot.sleep(0)
    order = []
    for w in unknot.as_completed([*fibers, fut, done_already, fibers[0]]):
        order.append(w.result())
    assert order == ["early", 1, 2, "future", 3]  # the duplicate once
    assert fut._callbacks == []  # as_completed removed its callbacks


@pytest.mark.unknot
def test_as_completed_timeout_raises_timeout_error(autojump_clock: MockClock) -> None:
    fibers = [unknot.spawn(unknot.sleep, d) for d in (1, 10)]
    got = []
    with pytest.raises(TimeoutError, match="1 of 2"):
        for f in unknot.as_completed(fibers, timeout=5):
            got.append(f)
    assert got == [fibers[0]]
    assert unknot.current_time() == pytest.approx(5)  # counted from the call
    fibers[1].cancel()


@pytest.mark.unknot
def test_fail_after_around_as_completed_raises_timeout_error(autojump_clock: MockClock) -> None:
    futures: list[unknot.Future[int]] = [unknot.Future() for _ in range(3)]
    futures[1].set_result(1)
    got = []
    with pytest.raises(TimeoutError):
        with unknot.fail_after(2):
            for f in unknot.as_completed(futures):
                got.append(f.result())
    assert got == [1]
    assert all(f._callbacks == [] for f in futures)


@pytest.mark.unknot
def test_as_completed_with_futures_set_from_threads() -> None:
    futures: list[unknot.Future[int]] = [unknot.Future() for _ in range(4)]
    threads = [set_from_thread(f, i, 0.005 * (4 - i)) for i, f in enumerate(futures)]
    got = [f.result() for f in unknot.as_completed(futures, timeout=5)]
    assert sorted(got) == [0, 1, 2, 3]
    for t in threads:
        t.join()


# -- wait ---------------------------------------------------------------------------------------


@pytest.mark.unknot
def test_wait_all_completed(autojump_clock: MockClock) -> None:
    fibers = [unknot.spawn(unknot.sleep, d) for d in (1, 3)]
    done, not_done = unknot.wait(fibers)
    assert done == set(fibers) and not_done == set()
    assert unknot.current_time() == pytest.approx(3)


@pytest.mark.unknot
def test_wait_first_completed(autojump_clock: MockClock) -> None:
    slow = unknot.spawn(unknot.sleep, 10)
    fut: unknot.Future[None] = unknot.Future()
    unknot.spawn_later(2, fut.set_result, None)
    done, not_done = unknot.wait([slow, fut], return_when=unknot.FIRST_COMPLETED)
    assert done == {fut} and not_done == {slow}
    assert unknot.current_time() == pytest.approx(2)
    slow.cancel()


@pytest.mark.unknot
def test_wait_first_exception(autojump_clock: MockClock) -> None:
    def fails_after(d: float) -> None:
        unknot.sleep(d)
        raise ValueError(d)

    ok = unknot.spawn(unknot.sleep, 1)
    bad = unknot.spawn(fails_after, 2)
    slow = unknot.spawn(unknot.sleep, 10)
    done, not_done = unknot.wait([ok, bad, slow], return_when=unknot.FIRST_EXCEPTION)
    assert done == {ok, bad} and not_done == {slow}
    assert unknot.current_time() == pytest.approx(2)
    # with no exception it waits for all
    cancelled = unknot.spawn(unknot.sleep, 10)
    cancelled.cancel()
    done, not_done = unknot.wait([slow, cancelled], return_when=unknot.FIRST_EXCEPTION)
    assert not_done == set() and unknot.current_time() == pytest.approx(10)


@pytest.mark.unknot
def test_wait_timeout_returns_what_is_done(autojump_clock: MockClock) -> None:
    quick = unknot.spawn(unknot.sleep, 1)
    slow = unknot.spawn(unknot.sleep, 10)
    done, not_done = unknot.wait([quick, slow], timeout=4)
    assert done == {quick} and not_done == {slow}
    assert unknot.current_time() == pytest.approx(4)
    done, not_done = unknot.wait([slow], timeout=0)  # a poll
    assert not_done == {slow} and unknot.current_time() == pytest.approx(4)
    with pytest.raises(ValueError):
        unknot.wait([slow], return_when="SOMETIME")
    slow.cancel()


# -- spawn_later --------------------------------------------------------------------------------


@pytest.mark.unknot
def test_spawn_later_calls_after_the_delay(autojump_clock: MockClock) -> None:
    calls: list[tuple[float, Any]] = []

    def record(a: int, *, b: int) -> int:
        calls.append((unknot.current_time(), (a, b)))
        return a + b

    f = unknot.spawn_later(5, record, 1, b=2, name="later")
    assert isinstance(f, unknot.Fiber) and f.name == "later"
    unknot.sleep(4)
    assert calls == []
    assert f.join() == 3
    assert calls == [(pytest.approx(5), (1, 2))]


@pytest.mark.unknot
def test_spawn_later_cancelled_during_the_delay_never_calls(autojump_clock: MockClock) -> None:
    called: list[int] = []
    f = unknot.spawn_later(5, called.append, 1)
    unknot.sleep(1)
    f.cancel()
    with pytest.raises(unknot.FiberCancelled):
        f.join()
    unknot.sleep(10)
    assert called == []
    with pytest.raises(ValueError):
        unknot.spawn_later(-1, called.append, 1)
