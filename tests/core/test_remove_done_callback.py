"""`Fiber.remove_done_callback` and `unknot.Future.remove_done_callback` behave as asyncio's
`Future.remove_done_callback`: every registration of the callback goes, and the call returns how
many there were. (Before, a fiber's lost one registration only, and both returned None.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import unknot


def _pending_fiber() -> tuple[Any, Callable[[], None]]:
    go = unknot.Event()
    f = unknot.spawn(go.wait)

    def finish() -> None:
        go.set()
        f.join()

    return f, finish


def _pending_future() -> tuple[Any, Callable[[], None]]:
    fut: unknot.Future[int] = unknot.Future()
    return fut, lambda: fut.set_result(1)


@pytest.mark.unknot
@pytest.mark.parametrize("pending", [_pending_fiber, _pending_future], ids=["fiber", "future"])
def test_every_registration_is_forgotten_and_counted(
    pending: Callable[[], tuple[Any, Callable[[], None]]],
) -> None:
    target, finish = pending()
    called: list[str] = []

    def cb(_: Any) -> None:
        called.append("cb")

    def other(_: Any) -> None:
        called.append("other")

    def unknown(_: Any) -> None:
        called.append("unknown")

    target.add_done_callback(cb)
    target.add_done_callback(other)
    target.add_done_callback(cb)
    assert target.remove_done_callback(cb) == 2
    assert target.remove_done_callback(cb) == 0
    assert target.remove_done_callback(unknown) == 0
    finish()
    assert called == ["other"]
    assert target.remove_done_callback(other) == 0  # (complete: none left)


@pytest.mark.unknot
def test_a_fiber_with_one_callback_and_none() -> None:
    go = unknot.Event()
    f = unknot.spawn(go.wait)
    called: list[Any] = []
    assert f.remove_done_callback(called.append) == 0
    f.add_done_callback(called.append)
    assert f.remove_done_callback(called.append) == 1
    f.add_done_callback(called.append)
    f.add_done_callback(called.append)
    assert f.remove_done_callback(called.append) == 2
    go.set()
    f.join()
    assert called == []
