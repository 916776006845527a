"""An `unknot.Future`'s done callbacks run in the thread of the hub it belongs to, handed over
through the hub's loop when another thread completes it. Before, once that loop was closed
they were silently dropped. Now, as `concurrent.futures` does, they run in the completing
thread when the loop is closed already, and in the thread that closes it when it closes with
them still queued: a callback is never lost."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import unknot

pytestmark = pytest.mark.timeout(30)


def future_of_a_finished_hub() -> tuple[unknot.Future[int], list[tuple[Any, int]]]:
    """A future made, with a done callback, by a fiber of a hub run (and closed) in a thread."""
    made: list[unknot.Future[int]] = []
    calls: list[tuple[Any, int]] = []

    def record(f: unknot.Future[int]) -> None:
        calls.append(("cancelled" if f.cancelled() else f.result(), threading.get_ident()))

    def main() -> None:
        fut: unknot.Future[int] = unknot.Future()
        fut.add_done_callback(record)
        made.append(fut)

    t = threading.Thread(target=unknot.run, args=(main,))
    t.start()
    t.join(10)
    assert not t.is_alive()
    return made[0], calls


def test_a_closed_hubs_callbacks_run_in_the_completing_thread() -> None:
    fut, calls = future_of_a_finished_hub()
    fut.set_result(7)  # (this test's thread: no hub; the future's hub is gone)
    assert calls == [(7, threading.get_ident())]


def test_the_same_when_completed_by_another_plain_thread_or_cancelled() -> None:
    fut, calls = future_of_a_finished_hub()
    done = threading.Event()
    ident: list[int] = []

    def complete() -> None:
        ident.append(threading.get_ident())
        fut.set_result(8)
        done.set()

    threading.Thread(target=complete).start()
    assert done.wait(10)
    assert calls == [(8, ident[0])]
    fut2, calls2 = future_of_a_finished_hub()
    assert fut2.cancel()
    assert calls2 == [("cancelled", threading.get_ident())]


def test_callbacks_queued_on_a_loop_that_closes_without_running_them_still_run() -> None:
    # The completion hands them to the hub's loop, which is closed before it runs them (as
    # when it races with the hub's shutdown): they run as the loop drops them, not never.
    made: list[asyncio.AbstractEventLoop] = []
    maker = threading.Thread(target=lambda: made.append(unknot.new_event_loop()))
    maker.start()
    maker.join(10)
    loop = made[0]
    fut: unknot.Future[int] = unknot.Future()
    fut._hub = loop.hub  # type: ignore[attr-defined]  # (as if a fiber of that hub made it)
    calls: list[int] = []
    fut.add_done_callback(lambda f: calls.append(f.result()))
    fut.set_result(9)
    assert calls == []  # handed to the loop, which is not running
    loop.close()
    assert calls == [9]
