"""Core review follow-ups: a fiber woken from another OS thread, keyword arguments named like
the spawning calls' own parameters, and the traceback of a failed fiber's result."""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

import unknot
from unknot import lowlevel
from unknot._core._monitor import _is_polling

pytestmark = pytest.mark.timeout(60)

#: How long a fiber woken from a thread may take to run before the test calls it a hang.
_HANG = 5.0


def _kw(**kwargs: Any) -> dict[str, Any]:
    return kwargs


# -- waking a fiber from another OS thread --------------------------------------------------


@pytest.fixture
def no_monitor(restore_monitor: None) -> None:
    """The blocking detector off: its loop-lag probes (``call_soon_threadsafe`` four times a
    second) would wake a hub that a wake from another thread left asleep."""
    unknot.stop_monitor()


def _polling(ident: int) -> bool:
    """Whether thread ``ident``'s event loop is asleep in its poll (the blocking detector's
    test: a ``select`` of the hub's, or of the stdlib's selectors, innermost)."""
    frame = sys._current_frames().get(ident)
    return frame is not None and _is_polling(frame)


def _wake_from_a_thread(
    is_waiting: Callable[[], bool], wake: Callable[[], None]
) -> tuple[threading.Thread, dict[str, Any]]:
    """A thread that, once ``is_waiting()`` and the hub's thread (this one) is asleep in its
    poll with no timer pending, calls ``wake()``. If the woken fiber has not reported back
    (``state["back"].set()``) within `_HANG` seconds, it records the hang and wakes the loop
    itself, so that the test ends (with the failure) instead of hanging."""
    hub = lowlevel.current_hub()
    assert hub is not None and hub.loop is not None
    loop = hub.loop
    hub_ident = threading.get_ident()
    state: dict[str, Any] = {"back": threading.Event(), "hung": False, "error": None}

    def body() -> None:
        try:
            deadline = time.monotonic() + _HANG
            # (Bounded polls, from another thread: nothing in the hub can signal "I sleep now".)
            while not (is_waiting() and _polling(hub_ident)):
                assert time.monotonic() < deadline, "the fiber never parked"
                time.sleep(0.001)
            wake()
            if not state["back"].wait(_HANG):
                state["hung"] = True
                loop.call_soon_threadsafe(lambda: None)  # (ends the hang the test found)
        except BaseException as e:  # reported by the test
            state["error"] = e
            loop.call_soon_threadsafe(lambda: None)

    t = threading.Thread(target=body)
    t.start()
    return t, state


@pytest.mark.usefixtures("no_monitor")
def test_a_put_from_an_os_thread_wakes_a_fiber_waiting_in_get() -> None:
    # The root waits in get() with no timeout and no timer pending, so the hub sleeps in its
    # poll with no deadline; the put from the thread must end that sleep (it used to queue
    # the fiber and leave the hub asleep for ever).
    def main() -> tuple[Any, bool, Any]:
        q: unknot.Queue[str] = unknot.Queue()
        t, state = _wake_from_a_thread(lambda: len(q._getters) == 1, lambda: q.put("item"))
        item = q.get()
        state["back"].set()
        unknot.to_thread(t.join)
        return item, state["hung"], state["error"]

    assert unknot.run(main) == ("item", False, None)


@pytest.mark.usefixtures("no_monitor")
def test_an_event_set_from_an_os_thread_wakes_its_waiters() -> None:
    def main() -> tuple[list[bool], bool, Any]:
        ev = unknot.Event()
        other = unknot.spawn(ev.wait)
        t, state = _wake_from_a_thread(lambda: len(ev._waiters) == 2, ev.set)
        got = [ev.wait(), other.join()]
        state["back"].set()
        unknot.to_thread(t.join)
        return got, state["hung"], state["error"]

    assert unknot.run(main) == ([True, True], False, None)


@pytest.mark.usefixtures("no_monitor")
def test_lowlevel_throw_from_an_os_thread_wakes_the_fiber() -> None:
    def main() -> tuple[str, bool, Any]:
        me = lowlevel.current_fiber()
        assert me is not None
        parked: list[bool] = []
        t, state = _wake_from_a_thread(
            lambda: bool(parked), lambda: lowlevel.throw(me, ValueError("from a thread"))
        )
        parked.append(True)
        try:
            lowlevel.park()
            outcome = "not thrown"
        except ValueError as e:
            outcome = str(e)
        state["back"].set()
        unknot.to_thread(t.join)
        return outcome, state["hung"], state["error"]

    assert unknot.run(main) == ("from a thread", False, None)


@pytest.mark.usefixtures("no_monitor")
def test_a_put_from_an_os_thread_wakes_a_fiber_on_a_foreign_asyncio_loop() -> None:
    # The same on the callback-driven hub of a stock asyncio loop: it was told with a plain
    # call_soon from the wrong thread, which does not wake the loop either.
    q: unknot.Queue[str] = unknot.Queue()
    back = threading.Event()
    hung: list[bool] = []

    def getter() -> str:
        return q.get()

    def putter(loop: asyncio.AbstractEventLoop, loop_ident: int) -> None:
        deadline = time.monotonic() + _HANG
        while not (len(q._getters) == 1 and _polling(loop_ident)):
            assert time.monotonic() < deadline
            time.sleep(0.001)
        q.put("item")
        if not back.wait(_HANG):
            hung.append(True)
            loop.call_soon_threadsafe(lambda: None)

    async def main() -> str:
        loop = asyncio.get_running_loop()
        t = threading.Thread(target=putter, args=(loop, threading.get_ident()))
        t.start()
        try:
            return await unknot.spawn(getter)
        finally:
            back.set()
            await loop.run_in_executor(None, t.join)

    assert asyncio.run(main()) == "item"
    assert hung == []


# -- keyword arguments named like our own parameters ------------------------------------------


def test_spawn_passes_fn_through_and_keeps_name() -> None:
    def main() -> tuple[Any, str]:
        f = unknot.spawn(_kw, fn=1, args=2, kwargs=3, name="named")
        return f.join(), f.name

    assert unknot.run(main) == ({"fn": 1, "args": 2, "kwargs": 3}, "named")


def test_task_group_spawn_passes_fn_through_and_keeps_name() -> None:
    def main() -> tuple[Any, str]:
        with unknot.TaskGroup() as tg:
            f = tg.spawn(_kw, fn=1, parent=2, name="child")
        return f.result(), f.name

    assert unknot.run(main) == ({"fn": 1, "parent": 2}, "child")


def test_to_thread_passes_fn_through() -> None:
    def main() -> Any:
        return unknot.to_thread(_kw, fn=1, args=2)

    assert unknot.run(main) == {"fn": 1, "args": 2}


def test_from_thread_passes_fn_through_and_keeps_loop() -> None:
    def main() -> Any:
        loop = asyncio.get_running_loop()
        return unknot.to_thread(lambda: unknot.from_thread(_kw, fn=1, args=2, loop=loop))

    assert unknot.run(main) == {"fn": 1, "args": 2}


def test_run_passes_fn_through_and_keeps_clock() -> None:
    assert unknot.run(_kw, fn=1, args=2) == {"fn": 1, "args": 2}
    assert unknot.run(_kw, fn=1, clock=None) == {"fn": 1}


def test_spawn_named_takes_its_callable_by_position_only() -> None:
    # It passes no keyword arguments on (its `args` is a tuple), so nothing can clash; `fn`
    # is positional-only like everywhere else.
    params = inspect.signature(lowlevel.spawn_named).parameters
    assert params["fn"].kind is inspect.Parameter.POSITIONAL_ONLY

    def main() -> tuple[Any, str]:
        f = lowlevel.spawn_named(_kw, (), "conn-{}", 7)
        return f.join(), f.name

    assert unknot.run(main) == ({}, "conn-7")


# -- a failed fiber's traceback ----------------------------------------------------------------


def _fails() -> None:
    raise ZeroDivisionError("boom")


def test_a_failed_fibers_traceback_does_not_grow_with_each_result_call() -> None:
    def main() -> list[list[str]]:
        f = unknot.spawn(_fails)
        seen = []
        for get in (f.join, f.result, f.result, f.join, f.result):
            try:
                get()
            except ZeroDivisionError as e:
                seen.append([fs.name for fs in traceback.extract_tb(e.__traceback__)])
        return seen

    seen = unknot.run(main)
    # Each call shows the fiber's own frames once, below the calls that raised them (each
    # used to add its frames to the same traceback, for good).
    assert seen == [
        ["main", "join", "result", "_fails"],
        ["main", "result", "_fails"],
        ["main", "result", "_fails"],
        ["main", "join", "result", "_fails"],
        ["main", "result", "_fails"],
    ]
