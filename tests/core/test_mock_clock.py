"""MockClock: virtual time for fibers and asyncio alike (autojump, manual jumps, rate,
threshold), and a plain function as the hub's clock."""

from __future__ import annotations

import asyncio
import time

import pytest

import unknot
from unknot.testing import MockClock


@pytest.mark.unknot
def test_autojump_sleep_is_instant(autojump_clock: MockClock) -> None:
    t0 = time.monotonic()
    unknot.sleep(3600)
    assert unknot.current_time() == pytest.approx(3600)
    assert autojump_clock.time() == pytest.approx(3600)
    assert time.monotonic() - t0 < 5


@pytest.mark.unknot
def test_virtual_timers_fire_in_order(autojump_clock: MockClock) -> None:
    log: list[tuple[int, float]] = []

    def sleeper(n: int) -> None:
        unknot.sleep(n)
        log.append((n, unknot.current_time()))

    with unknot.TaskGroup() as tg:
        for n in (30, 10, 20, 10, 5):
            tg.spawn(sleeper, n)
    assert [n for n, _ in log] == [5, 10, 10, 20, 30]
    assert all(t == pytest.approx(n) for n, t in log)


@pytest.mark.unknot
def test_asyncio_sleep_follows_virtual_clock(autojump_clock: MockClock) -> None:
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    unknot.await_(asyncio.sleep(1000))
    assert loop.time() == pytest.approx(1000)

    async def wait_for_too_long() -> None:
        await asyncio.wait_for(asyncio.sleep(100), timeout=10)

    with pytest.raises(TimeoutError):
        unknot.await_(wait_for_too_long())
    assert loop.time() == pytest.approx(1010)
    assert time.monotonic() - t0 < 5


@pytest.mark.unknot
def test_mixed_fiber_and_asyncio_virtual_timers(autojump_clock: MockClock) -> None:
    log: list[str] = []

    async def task(n: int) -> None:
        await asyncio.sleep(n)
        log.append(f"task {n}")

    def fiber(n: int) -> None:
        unknot.sleep(n)
        log.append(f"fiber {n}")

    with unknot.TaskGroup() as tg:
        for n in (4, 2):
            tg.spawn(fiber, n)
        for n in (3, 1):
            tg.spawn(unknot.await_, task(n))
    assert log == ["task 1", "fiber 2", "task 3", "fiber 4"]


@pytest.mark.unknot
def test_mock_clock_moves_only_when_jumped(mock_clock: MockClock) -> None:
    sleeper = unknot.spawn(unknot.sleep, 10)
    unknot.sleep(0)
    assert unknot.current_time() == 0
    mock_clock.jump(5)
    unknot.sleep(0)
    assert not sleeper.done()
    mock_clock.jump(5)
    sleeper.join()
    assert unknot.current_time() == pytest.approx(10)


def test_mock_clock_rate() -> None:
    clock = MockClock(rate=100)

    def main() -> float:
        t0 = time.monotonic()
        unknot.sleep(10)  # 0.1 s of real time
        return time.monotonic() - t0

    real = unknot.run(main, clock=clock)
    assert clock.time() >= 10
    assert real < 5


def test_mock_clock_autojump_threshold() -> None:
    clock = MockClock(autojump_threshold=0.01)

    def main() -> float:
        t0 = time.monotonic()
        unknot.sleep(1000)
        return time.monotonic() - t0

    assert unknot.run(main, clock=clock) < 5
    assert clock.time() == pytest.approx(1000)


def test_mock_clock_validation() -> None:
    with pytest.raises(ValueError):
        MockClock(rate=-1)
    with pytest.raises(ValueError):
        MockClock(autojump_threshold=-1)
    clock = MockClock()
    with pytest.raises(ValueError):
        clock.jump(-1)
    clock.jump(2.5)
    assert clock.time() == 2.5
    assert "2.5" in repr(clock)


def test_changing_the_rate_keeps_the_virtual_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # trio's MockClock.rate setter: time goes on from where it is. Setting the attribute used
    # to apply the new rate to all the real time since the clock was made (or last jumped):
    # time leapt forward, or went back to where it stood.
    import types

    import unknot.testing

    real = [1000.0]
    monkeypatch.setattr(unknot.testing, "time", types.SimpleNamespace(monotonic=lambda: real[0]))
    clock = MockClock()
    real[0] += 5  # standing still
    clock.rate = 2
    assert clock.time() == 0
    real[0] += 1
    assert clock.time() == 2
    clock.rate = 0
    assert clock.time() == 2  # not back to 0
    real[0] += 3
    assert clock.time() == 2
    clock.rate = 1
    real[0] += 1
    clock.jump(10)
    assert clock.time() == 13
    with pytest.raises(ValueError):
        clock.rate = -1
    with pytest.raises(ValueError):
        clock.autojump_threshold = -1
    assert (clock.rate, clock.autojump_threshold) == (1, float("inf"))


def test_plain_function_as_clock() -> None:
    fake = [100.0]

    def main() -> float:
        return unknot.current_time()

    assert unknot.run(main, clock=lambda: fake[0]) == 100.0
