"""`spawn` of an ``async def`` function: before, the fiber called it, got a coroutine nobody
awaited ("coroutine ... was never awaited") and "succeeded" with the coroutine as its result.
Now a `TypeError` pointing to `unknot.await_` and asyncio: at once from `spawn`,
`TaskGroup.spawn` and `Pool.spawn` for an ``async def`` function itself; from `Fiber.join` for
other callables that return a coroutine (a `functools.partial`, a bound method, an object with
an async ``__call__``), the coroutine closed unrun. Never a "never awaited" warning."""

from __future__ import annotations

import functools
import gc
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import unknot

ran: list[str] = []


async def coro_fn(x: int = 0) -> int:
    ran.append("coro_fn")
    return x


class WithAsyncMethod:
    async def method(self) -> int:
        ran.append("method")
        return 1

    async def __call__(self) -> int:
        ran.append("__call__")
        return 2


@pytest.fixture(autouse=True)
def no_never_awaited_warning() -> Iterator[None]:
    ran.clear()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield
        gc.collect()  # (a coroutine nobody awaited warns when it is collected)
    assert [str(w.message) for w in seen if "never awaited" in str(w.message)] == []
    assert ran == []  # the async function's body never ran


@pytest.mark.unknot
def test_spawn_refuses_an_async_function_at_once() -> None:
    with pytest.raises(TypeError, match=r"async function.*unknot\.await_"):
        unknot.spawn(coro_fn, 1)
    assert unknot.current() is not None and len(unknot.fibers()) == 1  # none was made


@pytest.mark.unknot
def test_task_group_and_pool_spawn_refuse_it_at_once() -> None:
    with unknot.TaskGroup() as tg:
        with pytest.raises(TypeError, match="async function"):
            tg.spawn(coro_fn)
    with unknot.Pool(1) as pool:
        with pytest.raises(TypeError, match="async function"):
            pool.spawn(coro_fn)
        assert pool.free_count() == 1  # (the slot was given back)


@pytest.mark.unknot
@pytest.mark.parametrize(
    "make",
    [
        lambda: functools.partial(coro_fn, 1),
        lambda: WithAsyncMethod().method,
        lambda: WithAsyncMethod(),
        lambda: lambda: coro_fn(1),
    ],
    ids=["partial", "bound-method", "async-call", "lambda-returning-a-coroutine"],
)
def test_other_callables_fail_the_fiber_when_it_returns_a_coroutine(
    make: Callable[[], Any],
) -> None:
    f = unknot.spawn(make())
    with pytest.raises(TypeError, match=r"returned a coroutine.*unknot\.await_"):
        f.join()
    assert isinstance(f.exception(), TypeError)


@pytest.mark.unknot
def test_in_a_task_group_the_failure_is_the_groups() -> None:
    with pytest.raises(ExceptionGroup) as info:
        with unknot.TaskGroup() as tg:
            tg.spawn(functools.partial(coro_fn, 2))
    assert info.group_contains(TypeError, match="returned a coroutine")


@pytest.mark.unknot
def test_a_plain_function_and_a_coroutine_passed_as_argument_are_untouched() -> None:
    async def later() -> str:
        return "awaited"

    def takes(c: Any) -> str:
        return unknot.await_(c)

    assert unknot.spawn(takes, later()).join() == "awaited"
    assert unknot.spawn(lambda: 3).join() == 3


class _Yield:
    def __await__(self) -> Iterator[None]:
        yield


async def _suspends() -> None:
    await _Yield()


@pytest.mark.unknot
def test_a_coroutine_already_started_or_finished_stays_the_result() -> None:
    # Not an async function's fresh coroutine: something else runs it (or ran it).
    started = _suspends()
    started.send(None)
    finished = _suspends()
    finished.close()
    try:
        assert unknot.spawn(lambda: started).join() is started
        assert unknot.spawn(lambda: finished).join() is finished
        assert started.cr_suspended  # (not closed)
    finally:
        started.close()


@pytest.mark.unknot
def test_spawn_later_refuses_it_at_once_too() -> None:
    with pytest.raises(TypeError, match=r"spawn_later\(\).*async function"):
        unknot.spawn_later(0, coro_fn)
    with pytest.raises(TypeError, match=r"spawn_later\(\).*async function"):
        unknot.spawn_later(0, functools.partial(coro_fn, 1))
