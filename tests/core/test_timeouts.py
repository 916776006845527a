"""Timeouts across the blocking calls: any real number is taken (the same in both builds), and
NaN is refused with `ValueError` before it can reach the hub's timer heap (where it would break
the heap's order: the timers behind it would never fire, and the loop would spin)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

import unknot
from unknot import lowlevel, socket
from unknot.lowlevel import TIMED_OUT, ParkingLot

NAN = float("nan")


def _held_lock() -> unknot.Lock:
    lock = unknot.Lock()
    unknot.spawn(lambda: (lock.acquire(), unknot.sleep(60)))
    unknot.sleep(0)
    assert lock.locked()
    return lock


def _owned_condition_wait(timeout: Any) -> bool:
    cond = unknot.Condition()
    with cond:
        try:
            return cond.wait(timeout)
        finally:
            assert cond._is_owned()  # re-acquired (or never released) whatever happened


def _lot_park(timeout: Any) -> Any:
    f = lowlevel.current_fiber()
    assert f is not None
    return ParkingLot().park(f, timeout)


def _quiet_fd(wait: Callable[[int, Any], Any], timeout: Any) -> Any:
    """``wait`` on the read end of a pair nobody writes to."""
    a, b = socket.socketpair()
    with a, b:
        return wait(a.fileno(), timeout)


def _scope_runs_out(scope: Any) -> None:
    """Wait in ``scope`` until it cancels its block (a `TimeoutError` out of `fail_after`)."""
    with scope:
        unknot.sleep(60)


#: A timed wait that cannot succeed, by name: each call times out (or raises) after ``timeout``.
WAITS: dict[str, Callable[[Any], Any]] = {
    "Event.wait": lambda t: unknot.Event().wait(t),
    "Lock.acquire": lambda t: _held_lock().acquire(timeout=t),
    "Semaphore.acquire": lambda t: unknot.Semaphore(0).acquire(timeout=t),
    "Condition.wait": _owned_condition_wait,
    "Queue.get": lambda t: unknot.Queue().get(timeout=t),
    "Queue.put": lambda t: (lambda q: (q.put(1), q.put(2, timeout=t)))(unknot.Queue(1)),
    "Fiber.join": lambda t: unknot.spawn(unknot.sleep, 60).join(timeout=t),
    "Channel.recv": lambda t: unknot.Channel().recv(timeout=t),
    "Channel.send": lambda t: unknot.Channel().send(1, timeout=t),
    "select": lambda t: unknot.select(unknot.Channel().recv_op(), timeout=t),
    "Future.wait": lambda t: unknot.Future().wait(t),
    "sleep": unknot.sleep,
    "lowlevel.park": lambda t: lowlevel.park(t),
    "ParkingLot.park": _lot_park,
    "wait_readable": lambda t: _quiet_fd(unknot.wait_readable, t),
    "lowlevel.wait_fds": lambda t: _quiet_fd(lambda fd, t: lowlevel.wait_fds([fd], [], t), t),
    "move_on_after": lambda t: _scope_runs_out(unknot.move_on_after(t)),
    "fail_after": lambda t: _scope_runs_out(unknot.fail_after(t)),
}


@pytest.mark.unknot
@pytest.mark.parametrize("name", list(WAITS))
def test_nan_timeout_is_refused(name: str) -> None:
    hub = lowlevel.current_hub()
    with pytest.raises(ValueError, match="(?i)nan"):
        WAITS[name](NAN)
    assert not any(e[0] != e[0] for e in hub.timers)  # nothing NaN reached the heap


@pytest.mark.unknot
@pytest.mark.parametrize("name", list(WAITS))
@pytest.mark.parametrize("timeout", [Fraction(1, 100), Decimal("0.01"), 0.01])
def test_any_real_timeout_is_taken(name: str, timeout: Any) -> None:
    t0 = unknot.current_time()
    try:
        r = WAITS[name](timeout)
    except (TimeoutError, unknot.Empty, unknot.Full):
        r = None
    assert r in (None, False, TIMED_OUT)
    assert unknot.current_time() - t0 >= 0.009


@pytest.mark.unknot
def test_a_refused_nan_wait_leaves_the_other_timers_working() -> None:
    woke: list[float] = []
    t0 = unknot.current_time()
    waiter = unknot.spawn(unknot.Event().wait, NAN)
    sleeper = unknot.spawn(lambda: (unknot.sleep(0.02), woke.append(unknot.current_time() - t0)))
    with pytest.raises(ValueError):
        waiter.join()
    with unknot.fail_after(5):
        sleeper.join()
    assert woke and woke[0] < 5


@pytest.mark.unknot
def test_hub_timers_refuse_a_nan_deadline() -> None:
    hub = lowlevel.current_hub()
    with pytest.raises(ValueError):
        hub.add_timer(NAN, print, None)
    f = lowlevel.current_fiber()
    with pytest.raises(ValueError):
        hub.park(f, NAN)
    with pytest.raises(ValueError):
        hub.park(f, Decimal("NaN"))
    assert not any(e[0] != e[0] for e in hub.timers)


@pytest.mark.unknot
def test_a_string_timeout_is_a_type_error() -> None:
    f = lowlevel.current_fiber()
    with pytest.raises(TypeError):
        lowlevel.current_hub().park(f, "1")  # type: ignore[arg-type]
    for name in ("wait_readable", "lowlevel.wait_fds", "move_on_after", "fail_after"):
        with pytest.raises(TypeError):
            WAITS[name]("0.01")


@pytest.mark.unknot
def test_lock_acquire_refuses_nan_even_when_free() -> None:
    # As threading.Lock does: the argument is checked before the lock is looked at.
    lock = unknot.Lock()
    with pytest.raises(ValueError):
        lock.acquire(timeout=NAN)
    assert not lock.locked()
    with pytest.raises(ValueError):
        unknot.Semaphore(1).acquire(timeout=NAN)


@pytest.mark.unknot
def test_condition_wait_refuses_nan_without_releasing_the_lock() -> None:
    cond = unknot.Condition(unknot.Lock())
    released: list[bool] = []
    with cond:
        unknot.spawn(lambda: released.append(cond.acquire(blocking=False)))
        with pytest.raises(ValueError):
            cond.wait(NAN)
        unknot.sleep(0)
        assert released == [False]  # nobody could take the lock meanwhile


@pytest.mark.parametrize("length", ["1", None, b"1"])
def test_sleep_of_what_is_no_number_is_a_type_error_naming_it(length: object) -> None:
    with pytest.raises(TypeError) as info:
        unknot.run(unknot.sleep, length)
    if not unknot.compiled:  # (compiled, the call's own check: "float object expected")
        assert str(info.value) == (
            f"sleep length must be a number of seconds, not {type(length).__name__}"
        )
