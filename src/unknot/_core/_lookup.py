"""Finding the hub and the fiber: from a fiber, from asyncio code, or from another thread."""

from __future__ import annotations

import asyncio

from greenlet import getcurrent

from ._exceptions import NotInFiberError
from ._fiber import Fiber
from ._foreign import ForeignHub
from ._hub import Hub

_running: dict[Hub, None] = {}  # hubs whose loop is running, in any thread (see _loop)


def running_hubs() -> list[Hub]:
    """The hubs whose event loop is running right now (any thread)."""
    return list(_running)


def get_hub() -> Hub | None:
    """The hub for the current context: the fiber's own, or the running loop's, or None."""
    cur = getcurrent()
    hub = cur.hub if type(cur) is Fiber else None
    if hub is not None:
        return hub
    loop = asyncio._get_running_loop()
    if loop is None:
        return None
    hub = getattr(loop, "_unknot_hub", None)
    if hub is None:
        hub = ForeignHub.attach(loop)
    return hub


def current_fiber() -> Fiber | None:
    """The running `Fiber`, or None outside fibers."""
    cur = getcurrent()
    return cur if type(cur) is Fiber else None


def require_fiber() -> Fiber:
    """The running fiber, or a clear `NotInFiberError`."""
    cur = getcurrent()
    if type(cur) is Fiber:
        return cur
    if asyncio._get_running_loop() is not None:
        raise NotInFiberError(
            "this blocking call was made from asyncio code running on an event loop; "
            "await an async equivalent instead, or run the code in a fiber (unknot.spawn)"
        )
    raise NotInFiberError("this call must be made inside a fiber: start one with unknot.run(fn)")
