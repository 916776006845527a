"""Deadlock detection: a hub with every fiber blocked and nothing that could wake one
raises DeadlockError (with each fiber's stack) instead of hanging; timers, worker threads,
asyncio callbacks and foreign threads are possible wakers, not deadlocks."""

from __future__ import annotations

import _thread
import asyncio
import threading
import time

import pytest

import unknot
from unknot.testing import MockClock


def _blocked_forever_on_event(ev: unknot.Event) -> None:
    ev.wait()


@pytest.mark.usefixtures("no_foreign_threads")
def test_deadlock_reported_not_hung(backend: str) -> None:
    def main() -> None:
        ev = unknot.Event()
        unknot.spawn(_blocked_forever_on_event, ev, name="helper-fiber")
        lock = unknot.Lock()
        lock.acquire()
        unknot.spawn(lock.acquire, name="lock-waiter")
        ev.wait()

    t0 = time.monotonic()
    with pytest.raises(unknot.DeadlockError) as info:
        unknot.run(main)
    assert time.monotonic() - t0 < 30
    msg = str(info.value)
    assert "deadlock" in msg
    assert "3 fibers" in msg
    assert "root (root):" in msg
    assert "helper-fiber:" in msg
    assert "lock-waiter:" in msg
    assert "_blocked_forever_on_event" in msg  # the blocked fiber's stack
    assert "ev.wait()" in msg
    assert "in main" in msg


@pytest.mark.usefixtures("no_foreign_threads")
def test_deadlock_root_joining_blocked_child() -> None:
    def child() -> None:
        unknot.Queue().get()

    def main() -> None:
        unknot.spawn(child, name="stuck-child").join()

    with pytest.raises(unknot.DeadlockError, match="stuck-child"):
        unknot.run(main)


@pytest.mark.usefixtures("no_foreign_threads")
def test_deadlock_in_taskgroup_cancels_children() -> None:
    log: list[str] = []

    def child() -> None:
        try:
            unknot.Event().wait()
        finally:
            log.append("child finally")

    def main() -> None:
        with unknot.TaskGroup() as tg:
            tg.spawn(child)
            tg.spawn(child)

    with pytest.raises(unknot.DeadlockError):
        unknot.run(main)
    assert log == ["child finally", "child finally"]


@pytest.mark.usefixtures("no_foreign_threads")
def test_deadlock_can_be_caught_and_resolved() -> None:
    def main() -> str:
        ev = unknot.Event()
        waiter = unknot.spawn(ev.wait)
        try:
            ev.wait()
        except unknot.DeadlockError:
            ev.set()
        return "resolved" if waiter.join() else "no"

    assert unknot.run(main) == "resolved"


@pytest.mark.usefixtures("no_foreign_threads")
def test_deadlock_with_mock_clock(autojump_clock: MockClock) -> None:
    def main() -> None:
        unknot.sleep(100)  # timers are not a deadlock
        unknot.Event().wait()

    with pytest.raises(unknot.DeadlockError):
        unknot.run(main, clock=autojump_clock)
    assert autojump_clock.time() == pytest.approx(100)


def test_no_false_deadlock_while_timer_thread_or_task_pending() -> None:
    def main() -> list[str]:
        log: list[str] = []
        ev = unknot.Event()
        unknot.spawn(lambda: (unknot.sleep(0.02), ev.set()))
        ev.wait()
        log.append("timer")
        ev.clear()
        unknot.spawn(lambda: (unknot.to_thread(time.sleep, 0.02), ev.set()))
        ev.wait()
        log.append("thread")
        ev.clear()
        asyncio.get_running_loop().call_later(0.02, ev.set)
        ev.wait()
        log.append("asyncio timer")
        return log

    assert unknot.run(main) == ["timer", "thread", "asyncio timer"]


def test_no_false_deadlock_while_plain_thread_alive() -> None:
    def main() -> str:
        loop = asyncio.get_running_loop()
        ev = unknot.Event()
        t = threading.Thread(
            target=lambda: (time.sleep(0.05), unknot.from_thread(ev.set, loop=loop))
        )
        t.start()
        ev.wait()
        t.join()
        return "woken by the thread"

    assert unknot.run(main) == "woken by the thread"


def test_no_false_deadlock_while_raw_thread_alive() -> None:
    # A thread started with _thread.start_new_thread (CPython's test_socket does, so do C
    # extensions) is not in threading.enumerate(), but it can wake a fiber all the same.
    def main() -> str:
        loop = asyncio.get_running_loop()
        ev = unknot.Event()
        done = _thread.allocate_lock()
        done.acquire()

        def thread_body() -> None:
            time.sleep(0.1)
            unknot.from_thread(ev.set, loop=loop)
            done.release()

        _thread.start_new_thread(thread_body, ())
        ev.wait()
        done.acquire()
        return "woken by the raw thread"

    assert unknot.run(main) == "woken by the raw thread"


def test_a_thread_not_yet_running_counts_as_a_waker(monkeypatch: pytest.MonkeyPatch) -> None:
    # threading.Thread.start() lists the thread (in threading._limbo) before it has an ident;
    # with no blocking detector running, its ident (None) must not be taken for the detector's.
    from unknot._core import _deadlock, _monitor

    monkeypatch.setattr(_monitor._monitor, "thread", None)
    starting = threading.Thread(target=lambda: None)  # (never started: ident None)
    monkeypatch.setattr(threading, "enumerate", lambda: [threading.main_thread(), starting])
    assert starting.ident is None
    assert _deadlock._foreign_threads_alive()
