"""The asyncio bridge: `await_` (a fiber waits for an awaitable) and ``await fiber``.

Cancellation crosses in both directions: cancelling a fiber blocked in `await_` cancels the
asyncio task it waits for (and waits for that task to unwind); cancelling an asyncio task that
awaits a fiber cancels the fiber (and waits for it to unwind) before the task sees
`asyncio.CancelledError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from ._cancel import Cancelled, effectively_cancelled
from ._lookup import require_fiber

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
    hub = f.hub
    if hub.ncancel and effectively_cancelled(f._scope):
        if asyncio.iscoroutine(awaitable):
            awaitable.close()  # it will never run
        raise Cancelled()  # a call that can block is a cancellation point
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
