"""unknot.wait(FIRST_EXCEPTION) looks at each completed fiber or future once, not at all the done
ones again at every wake-up (which was quadratic in the number of items)."""

from __future__ import annotations

from typing import Any

import pytest

import unknot
import unknot._future
from unknot.testing import MockClock

pytestmark = pytest.mark.timeout(30)

N = 300


def _fail_after(delay: float) -> None:
    unknot.sleep(delay)
    raise ValueError("late")


@pytest.mark.unknot
def test_first_exception_checks_each_item_once(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    original = unknot._future._failed

    def counting(w: Any) -> bool:
        nonlocal calls
        calls += 1
        return original(w)

    monkeypatch.setattr(unknot._future, "_failed", counting)
    # One fiber finishes per wake-up (distinct deadlines), none fails.
    fibers = [unknot.spawn(unknot.sleep, i + 1) for i in range(N)]
    done, not_done = unknot.wait(fibers, return_when=unknot.FIRST_EXCEPTION)
    assert len(done) == N and not_done == set()
    assert calls < 3 * N  # (was about N * N / 2)


@pytest.mark.unknot
def test_first_exception_returns_at_a_late_failure(autojump_clock: MockClock) -> None:
    # A cancelled one early does not count as failed; the failure comes after many successes.
    cancelled = unknot.spawn(unknot.sleep, 1000)
    cancelled.cancel()
    ok = [unknot.spawn(unknot.sleep, i + 1) for i in range(N)]
    bad = unknot.spawn(_fail_after, N + 0.5)
    slow = [unknot.spawn(unknot.sleep, N + 10 + i) for i in range(5)]
    start = unknot.current_time()
    done, not_done = unknot.wait([cancelled, *ok, bad, *slow], return_when=unknot.FIRST_EXCEPTION)
    assert unknot.current_time() - start == pytest.approx(N + 0.5)
    assert done == {cancelled, *ok, bad} and not_done == set(slow)
    # Already failed before the call: it returns at once.
    done, not_done = unknot.wait([bad, *slow], return_when=unknot.FIRST_EXCEPTION)
    assert done == {bad} and not_done == set(slow)
    # Without a failure FIRST_EXCEPTION waits for all.
    done, not_done = unknot.wait(slow, return_when=unknot.FIRST_EXCEPTION)
    assert done == set(slow) and not_done == set()
