"""`Fiber.remove_done_callback` and `unknot.Future.remove_done_callback` behave as asyncio's
`Future.remove_done_callback`: every registration of the callback goes, and the call returns how
many there were. (Before, a fiber's lost one registration only, and both returned None.)"""

from __future__ import annotations

from typing import Any

import pytest

import unknot


@pytest.mark.unknot
def test_a_fiber_forgets_every_registration_and_counts_them() -> None:
    go = unknot.Event()
    f = unknot.spawn(go.wait)
    called: list[str] = []

    def cb(_: Any) -> None:
        called.append("cb")

    def other(_: Any) -> None:
        called.append("other")

    def unknown(_: Any) -> None:
        called.append("unknown")

    f.add_done_callback(cb)
    f.add_done_callback(other)
    f.add_done_callback(cb)
    assert f.remove_done_callback(cb) == 2
    assert f.remove_done_callback(cb) == 0
    assert f.remove_done_callback(unknown) == 0
    go.set()
    f.join()
    assert called == ["other"]
    assert f.remove_done_callback(other) == 0  # (finished: none left)


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


@pytest.mark.unknot
def test_a_future_forgets_every_registration_and_counts_them() -> None:
    fut: unknot.Future[int] = unknot.Future()
    called: list[str] = []

    def cb(_: Any) -> None:
        called.append("cb")

    def other(_: Any) -> None:
        called.append("other")

    def unknown(_: Any) -> None:
        called.append("unknown")

    fut.add_done_callback(cb)
    fut.add_done_callback(other)
    fut.add_done_callback(cb)
    assert fut.remove_done_callback(cb) == 2
    assert fut.remove_done_callback(cb) == 0
    assert fut.remove_done_callback(unknown) == 0
    fut.set_result(1)
    assert called == ["other"]
    assert fut.remove_done_callback(other) == 0
