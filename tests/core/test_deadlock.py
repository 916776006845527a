"""Deadlock detection: a hub with every fiber blocked and nothing that could wake one
raises DeadlockError (with each fiber's stack) instead of hanging; timers, worker threads,
asyncio callbacks and foreign threads are possible wakers, not deadlocks."""

from __future__ import annotations

import _thread
import asyncio
import json
import os
import signal
import subprocess
import threading
import time

import pytest
from fiber_helpers import run_script

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


# Run in a child process: the group used to wait again after each DeadlockError, for ever (a
# new report every DEADLOCK_GRACE), and neither a watchdog thread (a live thread is a possible
# waker: no deadlock would be reported) nor pytest-timeout's SIGALRM (its exception is thrown
# into the same wait) can stop that in this process.
_GROUP_WAITING_FOR_A_STUCK_CHILD = """
import json, logging, unknot

logging.disable(logging.WARNING)  # (run's notice of the abandoned child)

def stuck(log):
    try:
        unknot.Event().wait()
    finally:
        with unknot.CancelScope(shield=True):  # a clean-up that can never finish
            log.append("stuck")
            unknot.Event().wait()

def unwinds(log):
    try:
        unknot.Event().wait()
    finally:
        log.append("unwound")

def fails():
    raise ValueError("child failed")

def main(failing):
    log = []
    try:
        with unknot.TaskGroup() as tg:
            s = tg.spawn(stuck, log, name="stuck-child")
            u = tg.spawn(unwinds, log)
            if failing:  # the group is cancelled before the deadlock: one report ends the wait
                tg.spawn(fails)
    except unknot.DeadlockError as e:
        return ["DeadlockError", "stuck-child" in str(e), sorted(log), s.done(), u.cancelled()]
    return "no error"

for failing in (False, True):
    print(json.dumps(unknot.run(main, failing)))
"""


def test_deadlock_while_a_group_waits_for_a_child_stuck_in_a_shield() -> None:
    # The group's owner (the root) waits uncancellably for its children; the deadlock report
    # thrown into that wait cancels them, but one is stuck in a shielded scope: a second report
    # must end the wait and come out of the with-block, not make it wait again.
    (out,) = run_script(_GROUP_WAITING_FOR_A_STUCK_CHILD)  # (it used to run until killed)
    # Out of the with-block, naming the stuck child; the other child was cancelled and has
    # unwound; the stuck one is left behind (run abandons it at its end).
    outcome = ["DeadlockError", True, ["stuck", "unwound"], False, True]
    assert [json.loads(line) for line in out.splitlines()] == [outcome, outcome]


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
def test_a_fiber_that_ignores_cancellation_at_shutdown_is_abandoned_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A leftover fiber that waits in a shielded scope cannot be cancelled: run's shutdown logs
    # it as abandoned and returns the root's result. It used to raise the DeadlockError anyway
    # (the loop's shutdown_asyncgens waited for the same fiber again, uncaught).
    log: list[str] = []

    def stubborn() -> None:
        with unknot.CancelScope(shield=True):
            unknot.Event().wait()

    def cleanup() -> None:
        try:
            unknot.sleep(3600)
        finally:
            log.append("unwound")

    def main() -> str:
        unknot.spawn(stubborn, name="stubborn")
        unknot.spawn(cleanup)
        unknot.sleep(0.01)
        return "root's result"

    with caplog.at_level("WARNING", logger="unknot"):
        assert unknot.run(main) == "root's result"
    assert log == ["unwound"]
    assert "abandoned" in caplog.text and "stubborn" in caplog.text
    assert "destroyed but it is pending" not in caplog.text


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
@pytest.mark.usefixtures("no_foreign_threads")
def test_no_false_deadlock_while_a_python_signal_handler_is_set() -> None:
    # Nothing unknot or asyncio knows of will wake the root: another process's signal will,
    # and its Python handler sets the Event. It used to be reported as a deadlock after
    # DEADLOCK_GRACE (0.1 s).
    def main() -> str:
        stop = unknot.Event()
        previous = signal.signal(signal.SIGUSR1, lambda _signum, _frame: stop.set())
        try:
            sender = subprocess.Popen(["sh", "-c", f"sleep 0.5; kill -USR1 {os.getpid()}"])
            try:
                stop.wait()
            finally:
                sender.wait()
            return "woken by the signal"
        finally:
            signal.signal(signal.SIGUSR1, previous)

    assert unknot.run(main) == "woken by the signal"


@pytest.mark.usefixtures("no_foreign_threads")
def test_an_alarm_handler_without_its_timer_does_not_hide_a_deadlock() -> None:
    # A SIGALRM handler counts as a possible waker only while its timer runs (see
    # tests/core/test_core_edges.py): here it is stopped (pytest-timeout's, put back after).
    def alarm(_signum: int, _frame: object) -> None:
        raise AssertionError("timed out")

    previous = signal.signal(signal.SIGALRM, alarm)
    timer = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        with pytest.raises(unknot.DeadlockError):
            unknot.run(lambda: unknot.Event().wait())
    finally:
        signal.signal(signal.SIGALRM, previous)
        if timer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *timer)


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


@pytest.mark.usefixtures("no_foreign_threads")
def test_a_raw_thread_that_ended_does_not_hide_a_deadlock() -> None:
    # (Placed after the test above, whose raw thread is gone by now: the fixture used to fail
    # here with "cannot join a dummy thread", the thread's threading._DummyThread.)
    # A raw thread that called into threading (as from_thread does, or logging) is listed as a
    # _DummyThread, on Python 3.11 even after it ended: it used to count as a possible waker
    # for good, and every later deadlock hung instead of being reported.
    seen: list[threading.Thread] = []
    done = _thread.allocate_lock()
    done.acquire()

    def thread_body() -> None:
        seen.append(threading.current_thread())
        done.release()

    _thread.start_new_thread(thread_body, ())
    done.acquire()
    assert isinstance(seen[0], threading._DummyThread)
    from unknot._core._deadlock import _foreign_threads_alive

    deadline = time.monotonic() + 10
    while _foreign_threads_alive():  # (until the raw thread has ended: nothing to join)
        assert time.monotonic() < deadline, "an ended raw thread still counts as a waker"
        time.sleep(0.01)
    with pytest.raises(unknot.DeadlockError):
        unknot.run(lambda: unknot.Event().wait())


def test_a_thread_not_yet_running_counts_as_a_waker(monkeypatch: pytest.MonkeyPatch) -> None:
    # threading.Thread.start() lists the thread (in threading._limbo) before it has an ident;
    # with no blocking detector running, its ident (None) must not be taken for the detector's.
    from unknot._core import _deadlock, _monitor

    monkeypatch.setattr(_monitor._monitor, "thread", None)
    starting = threading.Thread(target=lambda: None)  # (never started: ident None)
    monkeypatch.setattr(threading, "enumerate", lambda: [threading.main_thread(), starting])
    assert starting.ident is None
    assert _deadlock._foreign_threads_alive()
