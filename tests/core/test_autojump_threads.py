"""A MockClock's autojump waits for work under way in threads: a `to_thread` call's or an
executor job's result comes in real time, and a jump past a timeout meanwhile would fire it."""

from __future__ import annotations

import asyncio
import time

import pytest

import unknot
from unknot.testing import MockClock

pytestmark = pytest.mark.timeout(30)


def test_no_jump_past_a_timeout_while_to_thread_runs() -> None:
    def main() -> tuple[bool, float]:
        with unknot.move_on_after(5) as scope:
            unknot.to_thread(time.sleep, 0.05)
        return scope.cancelled_caught, unknot.current_time()

    timed_out, now = unknot.run(main, clock=MockClock(autojump_threshold=0))
    assert not timed_out
    assert now < 5  # (virtual time did not run to the deadline)


def test_no_jump_past_a_timeout_while_an_executor_job_runs() -> None:
    def main() -> bool:
        loop = asyncio.get_running_loop()
        with unknot.move_on_after(5) as scope:
            unknot.await_(loop.run_in_executor(None, time.sleep, 0.05))
        return scope.cancelled_caught

    assert unknot.run(main, clock=MockClock(autojump_threshold=0)) is False


def test_time_jumps_again_once_the_thread_is_done() -> None:
    def main() -> float:
        unknot.to_thread(time.sleep, 0.01)
        start = unknot.current_time()
        real = time.monotonic()
        unknot.sleep(3600)
        assert time.monotonic() - real < 1
        return unknot.current_time() - start

    assert unknot.run(main, clock=MockClock(autojump_threshold=0)) == 3600


def test_a_thread_that_outlasts_the_timeout_still_times_out_in_real_time() -> None:
    """Held off, not cancelled: with a rate of 1 the deadline comes as the thread still runs."""

    def main() -> bool:
        with unknot.move_on_after(0.05) as scope:
            unknot.to_thread(time.sleep, 0.3)
        return scope.cancelled_caught

    assert unknot.run(main, clock=MockClock(rate=1, autojump_threshold=0)) is True
