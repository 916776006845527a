"""A `MockClock` that moves only when jumped (rate 0, no autojump): fibers that wait only for
its timers, with nothing else that could jump it, are deadlocked. ``run`` reports it (a
`DeadlockError` naming the fibers and saying the clock is not advancing) instead of sleeping
for good; a jump from another fiber, from `to_thread`, from an executor job or from a foreign
thread still fires the timers.

Each test that could hang without the fix has its own short timeout (pytest-timeout)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import unknot
from unknot.testing import MockClock

pytestmark = [pytest.mark.usefixtures("no_foreign_threads"), pytest.mark.timeout(20)]


@pytest.mark.timeout(3)
def test_a_sleep_alone_on_a_still_clock_is_a_deadlock() -> None:
    # Before: the hub slept with no timeout, for good.
    t0 = time.monotonic()
    with pytest.raises(unknot.DeadlockError) as info:
        unknot.run(unknot.sleep, 5, clock=MockClock())
    assert time.monotonic() - t0 < 5
    message = str(info.value)
    assert "the MockClock is not advancing" in message
    assert "autojump_clock" in message and "clock.jump()" in message
    assert "the next is due at 5; the clock reads 0" in message
    assert "  root (root):" in message


@pytest.mark.timeout(3)
def test_the_report_names_the_sleeping_fibers() -> None:
    def main() -> None:
        sleeper = unknot.spawn(unknot.sleep, 30, name="sleeper")
        sleeper.join()

    with pytest.raises(unknot.DeadlockError) as info:
        unknot.run(main, clock=MockClock())
    message = str(info.value)
    assert "all 2 fibers are blocked and only timers could wake them" in message
    assert "  sleeper:" in message and "sleep" in message
    assert "the next is due at 30;" in message


@pytest.mark.timeout(3)
def test_an_asyncio_timer_alone_on_a_still_clock_is_a_deadlock() -> None:
    with pytest.raises(unknot.DeadlockError, match="the MockClock is not advancing"):
        unknot.run(lambda: unknot.await_(asyncio.sleep(7)), clock=MockClock())


@pytest.mark.timeout(3)
def test_a_timeout_on_a_still_clock_is_a_deadlock() -> None:
    def main() -> None:
        unknot.Event().wait(timeout=3)

    with pytest.raises(unknot.DeadlockError, match="the next is due at 3;"):
        unknot.run(main, clock=MockClock())


def test_a_jump_from_another_fiber_fires_the_timers() -> None:
    clock = MockClock()

    def jumper() -> None:
        unknot.sleep(0)
        clock.jump(10)

    def main() -> float:
        unknot.spawn(jumper)
        unknot.sleep(10)
        return unknot.current_time()

    assert unknot.run(main, clock=clock) == 10


@pytest.mark.parametrize("how", ["to_thread", "executor"])
def test_a_jump_from_a_worker_thread_fires_the_timers(how: str) -> None:
    clock = MockClock()

    def jump_later() -> None:
        time.sleep(0.3)  # (longer than the deadlock grace)
        clock.jump(10)

    def main() -> float:
        if how == "to_thread":
            unknot.spawn(unknot.to_thread, jump_later)
        else:
            loop = asyncio.get_running_loop()
            unknot.spawn(unknot.await_, loop.run_in_executor(None, jump_later))
        unknot.sleep(10)
        return unknot.current_time()

    assert unknot.run(main, clock=clock) == 10


def test_a_jump_from_a_foreign_thread_fires_the_timers() -> None:
    # A thread the hub knows nothing of: it may jump the clock (no deadlock is reported while
    # it runs), and the timer fires after that.
    clock = MockClock()
    thread = threading.Thread(target=lambda: (time.sleep(0.2), clock.jump(10)))

    def main() -> float:
        thread.start()
        unknot.sleep(10)
        return unknot.current_time()

    try:
        assert unknot.run(main, clock=clock) == 10
    finally:
        thread.join()


def test_a_clock_with_a_rate_is_no_deadlock() -> None:
    def main() -> float:
        unknot.sleep(5)  # (5 ms of real time)
        return unknot.current_time()

    assert unknot.run(main, clock=MockClock(rate=1000)) >= 5


# -- under the pytest plugin's mock_clock fixture ----------------------------------------------

PLUGIN_TESTS = """
    import threading
    import time
    import pytest
    import unknot

    @pytest.mark.unknot
    def test_sleeps_on_the_mock_clock(mock_clock):
        unknot.sleep(5)

    @pytest.mark.unknot
    def test_a_thread_jumps_the_mock_clock(mock_clock):
        thread = threading.Thread(target=lambda: (time.sleep(0.2), mock_clock.jump(5)))
        thread.start()
        unknot.sleep(5)
        thread.join()
        assert unknot.current_time() == 5
"""


def test_a_mock_clock_test_that_only_sleeps_fails_promptly(pytester: pytest.Pytester) -> None:
    # Before: the first test hung until its timeout. (In a subprocess that pytester kills if it
    # outlives its own timeout, so that a hang cannot hang this run.)
    pytester.makepyfile(test_stalled_mock_clock=PLUGIN_TESTS)
    t0 = time.monotonic()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:randomly", "-o", "timeout=3", timeout=15
    )
    assert time.monotonic() - t0 < 10, result.stdout.str()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*DeadlockError: deadlock: all 1 fibers are blocked and only timers could wake them*"
            "the MockClock is not advancing*",
        ]
    )
    assert "Timeout" not in result.stdout.str()
