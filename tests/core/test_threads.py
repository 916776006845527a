"""to_thread and from_thread: bridges between fibers and OS threads."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

import unknot

var: contextvars.ContextVar[str] = contextvars.ContextVar("thread_var", default="unset")


@pytest.mark.unknot
def test_to_thread_runs_in_another_thread() -> None:
    hub_thread = threading.get_ident()
    worker_thread = unknot.to_thread(threading.get_ident)
    assert worker_thread != hub_thread


@pytest.mark.unknot
def test_to_thread_args_kwargs_result() -> None:
    assert unknot.to_thread(lambda a, b=0: a * b, 6, b=7) == 42


@pytest.mark.unknot
def test_to_thread_exception() -> None:
    def fail() -> None:
        raise ValueError("in worker")

    with pytest.raises(ValueError, match="in worker"):
        unknot.to_thread(fail)


@pytest.mark.unknot
def test_to_thread_other_fibers_keep_running() -> None:
    ticked = threading.Event()
    ticks = 0

    def ticker() -> None:
        nonlocal ticks
        while ticks < 3:
            ticks += 1
            unknot.sleep(0.001)
        ticked.set()

    unknot.spawn(ticker)
    # The worker can only return once the ticker fiber has run while this fiber waits.
    assert unknot.to_thread(ticked.wait, 30) is True
    assert ticks == 3


@pytest.mark.unknot
def test_to_thread_concurrent_calls() -> None:
    barrier = threading.Barrier(3, timeout=30)
    # three workers that can only finish if they run at the same time
    with unknot.TaskGroup() as tg:
        fibers = [tg.spawn(unknot.to_thread, barrier.wait) for _ in range(3)]
    assert sorted(f.result() for f in fibers) == [0, 1, 2]


@pytest.mark.unknot
def test_to_thread_copies_contextvars() -> None:
    var.set("from fiber")

    def in_worker() -> str:
        seen = var.get()
        var.set("changed in worker")
        return seen

    assert unknot.to_thread(in_worker) == "from fiber"
    assert var.get() == "from fiber"


@pytest.mark.unknot
def test_to_thread_cancel_abandons_safely() -> None:
    release = threading.Event()
    finished = threading.Event()

    def blocking() -> str:
        release.wait(30)
        finished.set()
        return "discarded"

    t0 = time.monotonic()
    with unknot.move_on_after(0.05) as scope:
        unknot.to_thread(blocking)
    assert scope.cancelled_caught
    assert time.monotonic() - t0 < 10  # did not wait for the worker
    assert not finished.is_set()
    # the hub keeps running normally while the abandoned call is still in its thread
    assert unknot.spawn(lambda: (unknot.sleep(0.01), "alive")[1]).join() == "alive"
    assert unknot.to_thread(lambda: "second call") == "second call"
    release.set()
    assert unknot.to_thread(finished.wait, 30) is True
    unknot.sleep(0.01)  # its late result is delivered to nobody, harmlessly


@pytest.mark.unknot
def test_to_thread_in_cancelled_scope_does_not_start() -> None:
    ran: list[int] = []
    with unknot.CancelScope() as scope:
        scope.cancel()
        unknot.to_thread(ran.append, 1)
    assert scope.cancelled_caught
    time.sleep(0.01)
    assert ran == []


def test_to_thread_abandoned_when_hub_exits() -> None:
    release = threading.Event()
    done = threading.Event()

    def slow() -> None:
        release.wait(30)
        done.set()

    def main() -> None:
        with unknot.move_on_after(0.01):
            unknot.to_thread(slow)

    unknot.run(main)  # returns although the worker still runs
    release.set()
    assert done.wait(30)
    time.sleep(0.01)  # the worker's late delivery to a closed loop must be harmless


def test_to_thread_outside_fiber() -> None:
    with pytest.raises(unknot.NotInFiberError):
        unknot.to_thread(lambda: None)


# -- from_thread -------------------------------------------------------------------------------


@pytest.mark.unknot
def test_from_thread_in_to_thread_worker() -> None:
    hub_thread = threading.get_ident()

    def fiber_side(x: int) -> tuple[int, bool, int]:
        unknot.sleep(0.001)  # a real fiber: it can block cooperatively
        return x * 2, unknot.current() is not None, threading.get_ident()

    def worker() -> tuple[int, bool, int]:
        return unknot.from_thread(fiber_side, 21)

    value, in_fiber, thread = unknot.to_thread(worker)
    assert value == 42
    assert in_fiber
    assert thread == hub_thread


@pytest.mark.unknot
def test_from_thread_exception_reaches_thread() -> None:
    def fail() -> None:
        raise KeyError("from fiber")

    def worker() -> str:
        try:
            unknot.from_thread(fail)
        except KeyError as e:
            return f"caught {e}"
        return "not raised"

    assert unknot.to_thread(worker) == "caught 'from fiber'"


@pytest.mark.unknot
def test_from_thread_plain_thread_with_loop() -> None:
    loop = asyncio.get_running_loop()
    results: list[object] = []
    ev = unknot.Event()

    def in_fiber(x: int) -> int:
        ev.set()
        return x + 1

    def thread_main() -> None:
        try:
            results.append(unknot.from_thread(in_fiber, 1, loop=loop))
        except BaseException as e:  # report instead of dying silently
            results.append(e)

    t = threading.Thread(target=thread_main)
    t.start()
    assert ev.wait(timeout=30)
    unknot.to_thread(t.join, 30)
    assert results == [2]


@pytest.mark.unknot
def test_from_thread_many_threads() -> None:
    loop = asyncio.get_running_loop()
    counter = {"n": 0}
    lock = unknot.Lock()

    def bump() -> int:
        with lock:
            counter["n"] += 1
            unknot.sleep(0)
            return counter["n"]

    out: list[int] = []

    def thread_main() -> None:
        for _ in range(20):
            out.append(unknot.from_thread(bump, loop=loop))

    threads = [threading.Thread(target=thread_main) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        unknot.to_thread(t.join, 30)
    assert counter["n"] == 80
    assert sorted(out) == list(range(1, 81))


@pytest.mark.unknot
def test_from_thread_on_hub_thread_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="hub's own thread"):
        unknot.from_thread(lambda: None)


def test_from_thread_without_hub() -> None:
    with pytest.raises(RuntimeError, match="no unknot hub is running"):
        unknot.from_thread(lambda: None)


def test_from_thread_rejects_foreign_loop() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="not an unknot event loop"):
            unknot.from_thread(lambda: None, loop=loop)
    finally:
        loop.close()


def test_from_thread_finds_the_only_running_hub() -> None:
    # A plain thread started before run(): it finds the only running hub by itself.
    started = threading.Event()
    results: list[object] = []

    def thread_main() -> None:
        started.wait(30)
        results.append(unknot.from_thread(lambda: "found the hub"))

    t = threading.Thread(target=thread_main)
    t.start()

    def main() -> None:
        started.set()
        unknot.to_thread(t.join, 30)

    unknot.run(main)
    assert results == ["found the hub"]


def test_from_thread_does_not_hang_when_the_loop_closes_first() -> None:
    # The request is queued on a loop that closes without ever running it (what happens to a
    # call that races with unknot.run() shutting down): the thread must get an error.
    loop = unknot.new_event_loop()
    outcome: list[BaseException | str] = []

    def thread_main() -> None:
        try:
            unknot.from_thread(lambda: "never runs", loop=loop)
            outcome.append("returned")
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=thread_main, daemon=True)  # daemon: a regression must not hang
    try:
        t.start()
        deadline = time.monotonic() + 30
        while not loop._ready and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.001)  # wait until the request is queued
    finally:
        loop.close()
    t.join(30)
    assert not t.is_alive()
    assert isinstance(outcome[0], RuntimeError)
    assert "shut down" in str(outcome[0])
