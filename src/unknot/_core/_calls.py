"""The module-level calls: `spawn`, `current`, `sleep`, `checkpoint`, fd waits, timeouts.

Each is a thin face on `Hub` methods for the current fiber's hub."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from time import monotonic as _monotonic
from time import sleep as _thread_sleep  # the original, even after unknot.patch()
from typing import Any

from greenlet import getcurrent

from ._cancel import Cancelled, CancelScope, TimeoutScope, effectively_cancelled
from ._exceptions import NotInFiberError
from ._fiber import Fiber
from ._hub import TIMED_OUT
from ._interrupt import must_finish
from ._lookup import get_hub, require_fiber
from ._timers import timeout_seconds


# (``fn`` positional-only beside ``**kwargs``: compiled by mypyc 2.4, ``spawn(f, fn=1)`` would
# still raise TypeError, "given by name and position"; this module, like every public entry
# point with such a signature, is not compiled.)
def spawn(fn: Callable[..., Any], /, *args: Any, name: str | None = None, **kwargs: Any) -> Fiber:
    """Start ``fn(*args, **kwargs)`` in a new fiber on the current hub and return the `Fiber`.

    The fiber starts at the spawner's next blocking call (spawn itself never switches). It gets a
    copy of the spawner's `contextvars`. An exception the fiber raises is kept for `Fiber.join`;
    if nobody ever retrieves it, it is logged with the place the fiber was spawned.

    Callable from a fiber, or from asyncio code running on a loop (the fiber then runs on that
    loop). For fibers whose lifetime is tied to a block, use `TaskGroup`.

    ``fn`` is positional-only, so ``spawn(f, fn=1)`` calls ``f(fn=1)``; ``name`` (the fiber's
    name) is spawn's own and never passed on.
    """
    hub = get_hub()
    if hub is None:
        raise NotInFiberError(
            "spawn() needs a running hub: start one with unknot.run(main) "
            "or spawn from asyncio code running on an event loop"
        )
    return hub.spawn(fn, args, kwargs, name)


def spawn_named(fn: Callable[..., Any], /, args: tuple[Any, ...], template: str, arg: Any) -> Fiber:
    """`spawn` ``fn(*args)``, the fiber named ``template.format(arg)``, made when first read.

    For a server naming a fiber per connection (``"conn-{}"`` and the peer's address): no
    string is kept per connection until something (a dump, a log line) asks for the name.
    """
    hub = get_hub()
    if hub is None:
        raise NotInFiberError("spawn_named() needs a running hub")
    return hub.spawn(fn, args, None, template, None, arg)


def current() -> Fiber | None:
    """The `Fiber` running this code, or None outside fibers (the hub, asyncio callbacks)."""
    cur = getcurrent()
    return cur if type(cur) is Fiber else None


def sleep(seconds: float = 0) -> None:
    """Suspend the current fiber for ``seconds``; ``sleep(0)`` lets the other fibers run once.

    A blocking call: raises `Cancelled` in a cancelled scope. Outside any fiber and event loop it
    is `time.sleep`.
    """
    try:
        refused = seconds != seconds or seconds < 0
    except TypeError:  # (a string, None: "'<' not supported between...")
        raise TypeError(
            f"sleep length must be a number of seconds, not {type(seconds).__name__}"
        ) from None
    if refused:
        raise ValueError(f"sleep length must be a non-negative number, got {seconds!r}")
    f = getcurrent()
    if type(f) is not Fiber:
        if asyncio._get_running_loop() is not None:
            require_fiber()  # raises: sleeping here would block the whole loop
        _thread_sleep(seconds)
        return
    hub = f.hub
    if seconds == 0:
        hub.yield_now(f)
        return
    if seconds == math.inf:
        hub.park(f)
        return
    if hub.park(f, seconds) is TIMED_OUT:
        return
    # Woken spuriously (`unknot.lowlevel.wake`; nothing else holds a sleeping fiber): sleep the
    # rest. The clock is read only now, against when the park began (which it noted, on the
    # hub's clock), so the usual path reads it no more than the park does.
    deadline = f._wait_began + hub.seconds(seconds)
    while True:
        left = deadline - hub.time()
        if left <= 0 or hub.park(f, left) is TIMED_OUT:
            return


def checkpoint() -> None:
    """Raise `Cancelled` if the current fiber is cancelled; otherwise let others run once."""
    f = require_fiber()
    f.hub.yield_now(f)


def checkpoint_if_cancelled() -> None:
    """Raise `Cancelled` if the current fiber is cancelled; never switches."""
    f = getcurrent()
    if type(f) is Fiber and f.hub.ncancel and effectively_cancelled(f._scope):
        raise Cancelled()


def is_cancelled(fiber: Fiber | None = None) -> bool:
    """Whether ``fiber`` (default: the current fiber) is effectively cancelled: its next
    checkpoint would raise `Cancelled`. Never switches. False outside fibers."""
    f = fiber if fiber is not None else getcurrent()
    return type(f) is Fiber and bool(f.hub.ncancel) and effectively_cancelled(f._scope)


def raise_pending_interrupt() -> None:
    """In the root fiber, raise now a Ctrl-C (or a signal handler's exception) that arrived
    during a wait nothing could interrupt; elsewhere, inside `run_to_finish`, or with none
    pending, do nothing."""
    f = getcurrent()
    if type(f) is Fiber:
        hub = f.hub
        if hub.interrupt_pending and f is hub.root and not must_finish(f):
            raise hub.take_interrupt()


def _fileno(fd: Any) -> int:
    if isinstance(fd, int):
        return fd
    try:
        return int(fd.fileno())
    except AttributeError:
        raise TypeError(
            f"expected a file descriptor or an object with fileno(), got {fd!r}"
        ) from None


def _wait(fd: Any, write: bool, timeout: float | None) -> None:
    f = require_fiber()
    fileno = _fileno(fd)
    if fileno < 0:
        raise ValueError(f"invalid file descriptor {fileno}")
    if timeout is not None:
        timeout = timeout_seconds(timeout)
    hub = f.hub
    if hub.wait_raw_fd(f, fileno, write, timeout) is TIMED_OUT:
        what = "writable" if write else "readable"
        raise TimeoutError(f"fd {fileno} did not become {what} within {timeout} s")


def wait_readable(fd: Any, timeout: float | None = None) -> None:
    """Suspend the current fiber until ``fd`` (an int or object with ``fileno()``) is readable.

    Raises `TimeoutError` after ``timeout`` seconds, `Cancelled` if cancelled, `OSError` if the fd
    is closed by unknot while waiting. Readiness can be spurious: retry the non-blocking call.
    """
    _wait(fd, False, timeout)


def wait_writable(fd: Any, timeout: float | None = None) -> None:
    """Like `wait_readable`, for writability."""
    _wait(fd, True, timeout)


# -- timeouts --------------------------------------------------------------------------------


def current_time() -> float:
    """The current time on the running hub's clock (``loop.time()``; virtual under `MockClock`)."""
    hub = get_hub()
    if hub is None:
        return _monotonic()
    return hub.time()


def move_on_after(seconds: float, *, shield: bool = False) -> CancelScope:
    """A `CancelScope` that cancels its block after ``seconds``; execution continues after it.

    Check ``scope.cancelled_caught`` to learn whether the time ran out.
    """
    seconds = timeout_seconds(seconds)
    return CancelScope(deadline=current_time() + seconds, shield=shield)


def fail_after(seconds: float, *, shield: bool = False) -> CancelScope:
    """Like `move_on_after`, but raises `TimeoutError` if the block runs out of time."""
    seconds = timeout_seconds(seconds)
    return TimeoutScope(deadline=current_time() + seconds, shield=shield)
