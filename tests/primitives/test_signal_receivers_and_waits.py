"""Several open_signal_receiver blocks for one signal (exiting in any order), and
unknot.wait / unknot.as_completed over pending concurrent.futures futures."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pool_helpers import loop_signal_handler

import unknot

pytestmark = pytest.mark.timeout(30)

needs_sigusr = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")


def take(received: Any, timeout: float = 2.0) -> int | None:
    """The next signal of ``received``, or None if none came within ``timeout``."""
    with unknot.move_on_after(timeout):
        return int(next(received))
    return None


def settle() -> None:
    """Give the loop time to run the handler of a signal just sent."""
    unknot.sleep(0.02)


@pytest.fixture
def python_handler() -> Iterator[list[int]]:
    """A Python handler for SIGUSR1 recording the signals it gets (restored afterwards)."""
    handled: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: handled.append(signum))
    try:
        yield handled
    finally:
        signal.signal(signal.SIGUSR1, previous)


# -- open_signal_receiver: several receivers for one signal ---------------------------------


@needs_sigusr
@pytest.mark.unknot
def test_receivers_exiting_out_of_order_leave_the_original_handler(
    python_handler: list[int],
) -> None:
    handler = signal.getsignal(signal.SIGUSR1)
    a_open, a_may_close, a_closed = unknot.Event(), unknot.Event(), unknot.Event()
    got_b: list[int | None] = []

    def watcher_a() -> None:
        with unknot.open_signal_receiver(signal.SIGUSR1):
            a_open.set()
            a_may_close.wait()
        a_closed.set()

    def watcher_b() -> None:
        a_open.wait()
        with unknot.open_signal_receiver(signal.SIGUSR1) as received:
            a_may_close.set()  # A exits while B is still open
            a_closed.wait()
            os.kill(os.getpid(), signal.SIGUSR1)
            got_b.append(take(received))

    with unknot.TaskGroup() as tg:
        tg.spawn(watcher_a)
        tg.spawn(watcher_b)
    assert got_b == [signal.SIGUSR1]  # B still receives once A has gone
    assert python_handler == []
    assert signal.getsignal(signal.SIGUSR1) is handler
    os.kill(os.getpid(), signal.SIGUSR1)
    settle()
    assert python_handler == [signal.SIGUSR1]


@needs_sigusr
@pytest.mark.unknot
def test_every_open_receiver_gets_the_signal(python_handler: list[int]) -> None:
    with unknot.open_signal_receiver(signal.SIGUSR1) as outer:
        with unknot.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as inner:
            os.kill(os.getpid(), signal.SIGUSR1)
            assert take(inner) == signal.SIGUSR1
            assert take(outer) == signal.SIGUSR1
        # the inner one has gone: the outer one still receives
        os.kill(os.getpid(), signal.SIGUSR1)
        assert take(outer) == signal.SIGUSR1
        assert python_handler == []
    os.kill(os.getpid(), signal.SIGUSR1)
    settle()
    assert python_handler == [signal.SIGUSR1]


@needs_sigusr
@pytest.mark.unknot
def test_a_signal_taken_by_another_open_receiver_is_not_raised_again(
    python_handler: list[int],
) -> None:
    with unknot.open_signal_receiver(signal.SIGUSR1) as first:
        with unknot.open_signal_receiver(signal.SIGUSR1) as second:
            os.kill(os.getpid(), signal.SIGUSR1)
            assert take(second) == signal.SIGUSR1
            # leaves it untaken, but ``first`` had it too: neither redelivered nor lost
        assert take(first) == signal.SIGUSR1
        assert take(first, 0.05) is None  # once only
    settle()
    assert python_handler == []


@needs_sigusr
@pytest.mark.unknot
def test_an_untaken_signal_goes_to_a_receiver_opened_after_it_came(
    python_handler: list[int],
) -> None:
    a_has_it, b_open, a_closed = unknot.Event(), unknot.Event(), unknot.Event()
    got_b: list[int | None] = []

    def watcher_a() -> None:
        with unknot.open_signal_receiver(signal.SIGUSR1):
            os.kill(os.getpid(), signal.SIGUSR1)
            settle()  # received by A's receiver, never taken
            a_has_it.set()
            b_open.wait()
        a_closed.set()

    def watcher_b() -> None:
        a_has_it.wait()
        with unknot.open_signal_receiver(signal.SIGUSR1) as received:
            b_open.set()
            a_closed.wait()
            got_b.append(take(received))
            got_b.append(take(received, 0.05))

    with unknot.TaskGroup() as tg:
        tg.spawn(watcher_a)
        tg.spawn(watcher_b)
    assert got_b == [signal.SIGUSR1, None]
    settle()
    assert python_handler == []


@needs_sigusr
@pytest.mark.unknot
def test_the_last_receiver_to_exit_redelivers_what_it_did_not_take(
    python_handler: list[int],
) -> None:
    first_exit = unknot.Event()

    def watcher() -> None:
        with unknot.open_signal_receiver(signal.SIGUSR1):
            first_exit.wait()

    with unknot.TaskGroup() as tg:
        tg.spawn(watcher)
        unknot.sleep(0.01)
        with unknot.open_signal_receiver(signal.SIGUSR1):
            first_exit.set()
            unknot.sleep(0.01)  # the first one has gone
            os.kill(os.getpid(), signal.SIGUSR1)
            settle()
            assert python_handler == []
    settle()
    assert python_handler == [signal.SIGUSR1]


@needs_sigusr
@pytest.mark.unknot
def test_a_loop_handler_comes_back_after_out_of_order_exits() -> None:
    with loop_signal_handler(signal.SIGUSR1) as loop_got:
        a_may_close = unknot.Event()

        def watcher_a(opened: unknot.Event) -> None:
            with unknot.open_signal_receiver(signal.SIGUSR1):
                opened.set()
                a_may_close.wait()

        a_open = unknot.Event()
        with unknot.TaskGroup() as tg:
            tg.spawn(watcher_a, a_open)
            a_open.wait()
            with unknot.open_signal_receiver(signal.SIGUSR1):
                a_may_close.set()
                unknot.sleep(0.01)
        os.kill(os.getpid(), signal.SIGUSR1)
        with unknot.fail_after(2):
            while not loop_got:
                unknot.sleep(0.001)
        assert loop_got == [signal.SIGUSR1]


@pytest.mark.unknot
def test_ctrl_c_routing_comes_back_after_out_of_order_exits() -> None:
    unknot_handler = signal.getsignal(signal.SIGINT)
    a_open, a_may_close = unknot.Event(), unknot.Event()

    def watcher_a() -> None:
        with unknot.open_signal_receiver(signal.SIGINT):
            a_open.set()
            a_may_close.wait()

    with unknot.TaskGroup() as tg:
        tg.spawn(watcher_a)
        a_open.wait()
        with unknot.open_signal_receiver(signal.SIGINT) as received:
            a_may_close.set()
            unknot.sleep(0.01)
            try:
                os.kill(os.getpid(), signal.SIGINT)
                got = take(received)
            except KeyboardInterrupt:
                pytest.fail("Ctrl-C was not routed to the receiver still open")
            assert got == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is unknot_handler
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C goes to the root fiber again
        signal.raise_signal(signal.SIGINT)


@needs_sigusr
@pytest.mark.unknot
def test_a_failed_registration_leaves_the_others_installed(python_handler: list[int]) -> None:
    handler = signal.getsignal(signal.SIGUSR1)
    with unknot.open_signal_receiver(signal.SIGUSR1) as received:
        with pytest.raises((ValueError, RuntimeError, OSError)):
            with unknot.open_signal_receiver(signal.SIGUSR1, signal.SIGKILL):
                pass
        os.kill(os.getpid(), signal.SIGUSR1)
        assert take(received) == signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) is handler


# -- wait and as_completed over concurrent.futures futures ------------------------------------


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        yield ex


@pytest.mark.unknot
def test_wait_on_pending_concurrent_futures(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    pending = [executor.submit(time.sleep, 0.02), executor.submit(time.sleep, 0.04)]
    start = time.monotonic()
    done, not_done = unknot.wait(pending, timeout=5)
    assert done == set(pending) and not_done == set()
    assert time.monotonic() - start < 2  # woken by the worker thread, not by the timeout


@pytest.mark.unknot
def test_wait_first_completed_on_concurrent_futures_then_a_late_completion(
    executor: concurrent.futures.ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    quick = executor.submit(time.sleep, 0.01)
    slow = executor.submit(release.wait, 5)
    done, not_done = unknot.wait([quick, slow], timeout=5, return_when=unknot.FIRST_COMPLETED)
    assert done == {quick} and not_done == {slow}
    release.set()  # completes after wait() has stopped watching it
    assert slow.result(timeout=5) is True
    unknot.sleep(0.02)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.unknot
def test_wait_times_out_on_a_pending_concurrent_future(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    release = threading.Event()
    slow = executor.submit(release.wait, 5)
    try:
        done, not_done = unknot.wait([slow], timeout=0.02)
        assert done == set() and not_done == {slow}
    finally:
        release.set()


@pytest.mark.unknot
def test_as_completed_on_pending_concurrent_futures(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    later = executor.submit(lambda: (time.sleep(0.04), "later")[1])
    sooner = executor.submit(lambda: (time.sleep(0.01), "sooner")[1])
    got = [f.result() for f in unknot.as_completed([later, sooner], timeout=5)]
    assert got == ["sooner", "later"]


@pytest.mark.unknot
def test_as_completed_left_early_on_concurrent_futures(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    release = threading.Event()
    quick = executor.submit(time.sleep, 0.01)
    slow = executor.submit(release.wait, 5)
    it = unknot.as_completed([quick, slow], timeout=5)
    assert next(it) is quick
    it.close()  # stops watching ``slow``, which has no remove_done_callback
    release.set()
    assert slow.result(timeout=5) is True
    unknot.sleep(0.02)  # the late callback, run in the worker thread, is ignored
