"""Every unknot call that *can* block is a cancellation point, even when it would not wait
(trio's rule): in a cancelled scope it raises `Cancelled` at once and has no effect. Calls that
never block (``blocking=False``, ``timeout=0``, ``*_nowait``) are not cancellation points."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import unknot


def _in_cancelled_scope(call: Callable[[], Any]) -> None:
    """``call()`` must raise Cancelled at once inside a cancelled scope (no switch either)."""
    others_ran: list[bool] = []
    unknot.spawn(others_ran.append, True)  # would run if `call` switched to the hub
    with unknot.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(unknot.Cancelled):
            call()
        assert others_ran == []
        raise unknot.Cancelled()  # (leave the scope the normal way)
    assert scope.cancelled_caught


@pytest.mark.unknot
def test_uncontended_lock_acquire() -> None:
    lock = unknot.Lock()
    _in_cancelled_scope(lock.acquire)
    assert not lock.locked()  # the acquire had no effect
    with unknot.CancelScope() as scope:
        scope.cancel()
        assert lock.acquire(blocking=False)  # never blocks: not a cancellation point
        lock.release()


@pytest.mark.unknot
def test_with_lock_and_rlock_and_semaphore() -> None:
    rlock, sem = unknot.RLock(), unknot.Semaphore(2)

    def enter(cm: Any) -> Callable[[], None]:
        def go() -> None:
            with cm:
                pytest.fail("entered")

        return go

    _in_cancelled_scope(enter(unknot.Lock()))
    _in_cancelled_scope(enter(rlock))
    _in_cancelled_scope(sem.acquire)
    assert sem.value == 2
    with rlock:  # the owner re-acquiring cannot block: not a cancellation point
        with unknot.CancelScope() as scope:
            scope.cancel()
            assert rlock.acquire()
            rlock.release()


@pytest.mark.unknot
def test_event_wait_on_a_set_event() -> None:
    ev = unknot.Event()
    ev.set()
    _in_cancelled_scope(ev.wait)


@pytest.mark.unknot
def test_channel_send_and_recv_with_a_partner_waiting() -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    received: list[int] = []

    def receiver() -> None:
        received.append(ch.recv())

    f = unknot.spawn(receiver)
    unknot.sleep(0)  # the receiver waits: a send would complete at once
    _in_cancelled_scope(lambda: ch.send(1))
    ch.send(2)
    f.join()
    assert received == [2]  # the cancelled send delivered nothing

    sender = unknot.spawn(ch.send, 3)
    unknot.sleep(0)
    _in_cancelled_scope(ch.recv)
    assert ch.recv() == 3  # the value stayed with the sender
    sender.join()


@pytest.mark.unknot
def test_select_polling_with_timeout_zero_is_not_a_cancellation_point() -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    with unknot.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(TimeoutError):
            unknot.select(ch.recv_op(), timeout=0)


@pytest.mark.unknot
def test_join_of_a_finished_fiber() -> None:
    f = unknot.spawn(lambda: 42)
    unknot.sleep(0)
    assert f.done()
    _in_cancelled_scope(f.join)
    assert f.join() == 42


@pytest.mark.unknot
def test_await_of_a_done_future() -> None:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(7)
    _in_cancelled_scope(lambda: unknot.await_(fut))
    assert unknot.await_(fut) == 7
