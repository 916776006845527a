"""The asyncio bridge: `await_` (a fiber waits for an awaitable) and ``await fiber``.

Cancellation crosses in both directions: cancelling a fiber blocked in `await_` cancels the
asyncio task it waits for (and waits for that task to unwind); cancelling an asyncio task that
awaits a fiber cancels the fiber (and waits for it to unwind) before the task sees
`asyncio.CancelledError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from ._fiber import Fiber
from ._hub import require_fiber

T = TypeVar("T")


def await_(awaitable: Awaitable[T]) -> T:
    """Wait, in a fiber, for an awaitable (coroutine, task or future) run on the hub's loop.

    Returns its result or raises its exception. Lets blocking-style code call asyncio
    libraries: ``data = unknot.await_(reader.read(100))``.
    """
    try:
        f = require_fiber()
    except BaseException:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()  # it will never run: no "never awaited" warning on top
        raise
    hub = f._hub
    fut = asyncio.ensure_future(awaitable, loop=hub.loop)
    if not fut.done():

        def wake(_fut: asyncio.Future[Any]) -> None:
            hub.wake(f)

        fut.add_done_callback(wake)
        try:
            while not fut.done():
                hub.park(f)
        except BaseException:
            if not fut.done():
                fut.cancel()
                while not fut.done():  # let the task unwind before we go on
                    hub.park(f, cancellable=False)
            raise
        finally:
            fut.remove_done_callback(wake)
    return fut.result()


def _done_future(
    loop: asyncio.AbstractEventLoop, fiber: Fiber
) -> tuple[asyncio.Future[None], Callable[[Fiber], None]]:
    """A future resolved when ``fiber`` finishes, and the callback to remove afterwards."""
    fut: asyncio.Future[None] = loop.create_future()

    def finished(_f: Fiber) -> None:
        if not fut.done():
            fut.set_result(None)

    fiber.add_done_callback(finished)
    return fut, finished


def await_fiber(fiber: Fiber) -> Generator[Any, None, Any]:
    """The body of ``Fiber.__await__``."""
    if not fiber.done():
        loop = asyncio.get_running_loop()
        if loop is not fiber._hub.loop:
            raise RuntimeError(f"{fiber!r} belongs to another event loop")
        fut, finished = _done_future(loop, fiber)
        try:
            yield from fut
        except asyncio.CancelledError:
            fiber.cancel()
            while not fiber.done():  # let the fiber unwind, then report the cancellation
                inner, inner_finished = _done_future(loop, fiber)
                try:
                    yield from inner
                except asyncio.CancelledError:
                    pass
                finally:
                    fiber.remove_done_callback(inner_finished)
            raise
        finally:
            fiber.remove_done_callback(finished)
    if fiber.cancelled():
        fiber._retrieved = True
        raise asyncio.CancelledError(f"{fiber.name} was cancelled")
    return fiber.result()
