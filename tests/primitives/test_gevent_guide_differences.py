"""The differences from gevent that docs/gevent.md's porting table must state, each checked
against unknot's behaviour: a row that maps a gevent API to an unknot one with a different
signature or result, and says nothing, ports code that then fails or silently misbehaves."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import unknot

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "gevent.md"


def _row(gevent_name: str) -> str:
    """The porting table's row whose first cell starts with ``gevent_name``."""
    rows = [ln for ln in GUIDE.read_text().splitlines() if ln.startswith(f"| `{gevent_name}")]
    assert rows, f"docs/gevent.md has no row for {gevent_name}"
    return rows[0]


def _echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


@pytest.mark.unknot
def test_spawn_takes_name_keyword_and_the_guide_says_so() -> None:
    # gevent.spawn(fn, name="bob") calls fn(name="bob").
    assert unknot.spawn(_echo, name="bob").join() == ((), {})
    assert "`name=`" in _row("gevent.spawn(fn")


@pytest.mark.unknot
def test_pool_apply_takes_the_arguments_themselves_and_the_guide_says_so() -> None:
    # gevent: pool.apply(fn, (1, 2), {"c": 3}) calls fn(1, 2, c=3).
    pool = unknot.Pool(2)
    assert pool.apply(_echo, (1, 2), {"c": 3}) == (((1, 2), {"c": 3}), {})
    assert pool.apply(_echo, 1, 2, c=3) == ((1, 2), {"c": 3})
    row = _row("gevent.pool.Pool.map")
    assert "apply(fn, args, kwds)" in row
    with pytest.raises(TypeError):
        pool.imap(str, range(3), maxsize=10)  # type: ignore[call-arg]
    assert "maxsize=" in row


@pytest.mark.unknot
def test_pool_cancel_cancels_the_body_and_the_guide_says_so() -> None:
    body_cancelled = False
    with unknot.Pool(2) as pool:
        pool.spawn(unknot.sleep, 10)
        pool.cancel()  # gevent's pool.kill() leaves the caller running
        try:
            unknot.sleep(0)
        except unknot.Cancelled:
            body_cancelled = True
            raise
    assert body_cancelled
    assert "body" in _row("gevent.pool.Pool.kill")


@pytest.mark.unknot
def test_pool_block_raises_for_a_failing_spawn_and_the_guide_says_so() -> None:
    # gevent's pool.join() returns and leaves the other greenlets running.
    def boom() -> None:
        raise ValueError

    with pytest.raises(ExceptionGroup):
        with unknot.Pool(2) as pool:
            other = pool.spawn(unknot.sleep, 10)
            pool.spawn(boom)
    assert other.cancelled()
    assert "ExceptionGroup" in _row("gevent.pool.Pool.spawn")


@pytest.mark.unknot
def test_queue_join_and_iteration_differences_are_in_the_guide() -> None:
    q: unknot.Queue[Any] = unknot.Queue()
    q.put(1)
    with pytest.raises(TypeError):
        q.join(timeout=0.01)  # type: ignore[call-arg]
    with unknot.move_on_after(0.01) as scope:  # what the guide says to write instead
        q.join()
    assert scope.cancelled_caught
    q.put(StopIteration)  # gevent's iteration ends here
    q.shutdown()
    assert list(q) == [1, StopIteration]
    row = _row("gevent.queue.Queue")
    assert "join(timeout)" in row
    assert "`StopIteration` item" in row


@pytest.mark.unknot
def test_channel_methods_and_timeouts_are_in_the_guide() -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    assert not hasattr(ch, "put") and not hasattr(ch, "get")
    with pytest.raises(TimeoutError):
        ch.send(1, timeout=0)  # gevent's put_nowait raises Full
    row = _row("gevent.queue.Channel")
    assert "`recv`" in row and "`TimeoutError`" in row


@pytest.mark.unknot
def test_future_wait_returns_a_bool_and_the_guide_says_so() -> None:
    fut: unknot.Future[int] = unknot.Future()
    assert fut.wait(0) is False  # gevent's AsyncResult.wait returns None
    fut.set_result(7)
    assert fut.wait() is True  # gevent's returns 7
    assert "returns True" in _row("gevent.event.AsyncResult.set")


def test_semaphore_counter_is_value_and_the_guide_says_so() -> None:
    sem = unknot.Semaphore(1)
    assert sem.acquire()
    assert sem.value == 0
    assert not hasattr(sem, "counter") and not hasattr(sem, "locked")
    assert sem.release() is None  # type: ignore[func-returns-value]
    assert "`counter`" in _row("gevent.lock.Semaphore")


@pytest.mark.unknot
def test_timeout_none_is_math_inf_and_the_guide_says_so() -> None:
    with pytest.raises(TypeError):
        with unknot.fail_after(None):  # type: ignore[arg-type]
            pass
    with unknot.fail_after(math.inf):
        unknot.sleep(0)
    assert "math.inf" in _row("gevent.Timeout(s)")


@pytest.mark.unknot
def test_pool_calls_share_a_workers_local_and_the_guide_says_so() -> None:
    loc = unknot.local()

    def call(i: int) -> int | None:
        seen: int | None = getattr(loc, "seen", None)
        loc.seen = i
        return seen

    # One worker serves the three calls (none blocks); gevent gives each a fresh namespace.
    assert unknot.Pool(1).map(call, range(3)) == [None, 0, 1]
    assert "worker" in _row("gevent.local.local")
