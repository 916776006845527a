"""The hub's asyncio loop as a demanding user meets it: cases a review found wrong (each test
fails on the code before its fix)."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest

import unknot


@pytest.mark.parametrize(
    "fn",
    [5, "main", None],
    ids=["int", "str", "None"],
)
def test_run_refusing_its_function_closes_the_loop_it_made(fn: Any) -> None:
    # unknot.run made its loop, then spawn refused the function (TypeError) and the loop was
    # left open for the garbage collector: "unclosed event loop" (a ResourceWarning), its
    # epoll fd and self-pipe open until then.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(TypeError):
            unknot.run(fn)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert asyncio._get_running_loop() is None


def test_run_of_a_coroutine_object_is_refused_and_leaves_nothing_open() -> None:
    # A coroutine object (asyncio.run's argument) is not a function: TypeError, the loop
    # closed. (The coroutine itself is the caller's: closed here to keep the test quiet.)
    async def main() -> None:
        await asyncio.sleep(0)

    coro = main()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(TypeError):
            unknot.run(coro)  # type: ignore[arg-type]
        coro.close()
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_run_of_an_async_function_is_refused_with_a_hint() -> None:
    # Called in the root fiber, an async function returns a coroutine that nobody awaits: run()
    # returned it (with a "never awaited" warning later). It is refused before anything runs,
    # saying what to use instead.
    ran = []

    async def main() -> int:
        ran.append(1)
        return 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match="async function.*loop_factory=unknot.new_event_loop"):
            unknot.run(main)
        gc.collect()
    assert ran == []
    assert not [w for w in caught if issubclass(w.category, (ResourceWarning, RuntimeWarning))]
