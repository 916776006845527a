"""The asyncio bridge: `await_` (a fiber waits for an awaitable) and ``await fiber``.

Cancellation crosses in both directions: cancelling a fiber blocked in `await_` cancels the
asyncio task it waits for (and waits for that task to unwind); cancelling an asyncio task that
awaits a fiber cancels the fiber (and waits for it to unwind) before the task sees
`asyncio.CancelledError`. Either way, as when an asyncio task awaits another, a side that
catches its cancellation and returns a value (or raises) gives the waiter that outcome. A wait
that would close a cycle (a fiber awaiting a task that awaits it, directly or through other
tasks, fibers and `asyncio.gather`) is refused with `RuntimeError`: nothing could end it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from ._cancel import Cancelled, effectively_cancelled
from ._fiber import FIBER_AWAITS, Fiber, waits_for
from ._hub import Hub
from ._lookup import require_fiber

T = TypeVar("T")


def await_(awaitable: Awaitable[T]) -> T:
    """Wait, in a fiber, for an awaitable (coroutine, task or future) run on the hub's loop.

    Returns its result or raises its exception. Lets blocking-style code call asyncio
    libraries: ``data = unknot.await_(reader.read(100))``. Cancelled meanwhile, it cancels the
    task and waits for it to unwind: `Cancelled` if it ended cancelled, else its outcome (it
    caught its cancellation), the fiber's cancellation staying in force.
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
    if fut is awaitable and not fut.done() and waits_for(fut, f):
        raise RuntimeError(
            f"{f!r} cannot wait for {fut!r}: that task waits (await fiber) for this fiber, "
            "and neither could ever finish"
        )
    if not fut.done():
        # The fiber to wake, cleared when this wait ends: once asyncio has scheduled the done
        # callback, removing it no longer stops it, and a late call must not wake the fiber
        # out of whatever it waits for next.
        waiter: list[Fiber | None] = [f]

        def wake(_fut: asyncio.Future[Any]) -> None:
            w = waiter[0]
            if w is not None:
                hub.wake(w)

        fut.add_done_callback(wake)
        FIBER_AWAITS[f] = fut
        try:
            while not fut.done():
                hub.park(f)
        except Cancelled:
            if fut.done():
                # The outcome arrived before the cancellation: a result is returned, not
                # dropped (the cancellation stays in force for the next blocking call).
                if not fut.cancelled() and fut.exception() is None:
                    return fut.result()
                raise
            _cancel_and_unwind(hub, f, fut)
            if fut.cancelled():
                raise
            # The task caught its cancellation and returned (or raised something else): its
            # outcome, as asyncio gives a task awaiting it (the cancellation stays in force).
            return fut.result()
        except BaseException:
            if not fut.done():
                _cancel_and_unwind(hub, f, fut)
            raise
        finally:
            waiter[0] = None
            fut.remove_done_callback(wake)
            FIBER_AWAITS.pop(f, None)
    return fut.result()


def _cancel_and_unwind(hub: Hub, f: Fiber, fut: asyncio.Future[Any]) -> None:
    """Cancel ``fut`` and wait, uncancellably, until it is done (its task has unwound)."""
    fut.cancel()
    while not fut.done():  # (woken by the done callback)
        hub.park(f, cancellable=False)
