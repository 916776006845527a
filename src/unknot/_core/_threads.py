"""Bridges to OS threads: `to_thread` (blocking work off the hub) and `from_thread` (back in).

`to_thread` uses one process-wide, bounded thread pool (`unknot._core._thread_pool`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from contextvars import copy_context
from typing import TYPE_CHECKING, Any, TypeVar

from greenlet import getcurrent

from . import _fiber
from ._cancel import checkpoint_cancel
from ._fiber import Fiber, FiberCancelled
from ._interrupt import run_to_finish
from ._lookup import require_fiber, running_hubs
from ._thread_pool import get_pool

if TYPE_CHECKING:
    from ._hub import Hub

T = TypeVar("T")

_worker = threading.local()  # .hub: the hub whose to_thread() call this worker is running


def forget_hub_after_fork() -> None:
    """In a child forked in a `to_thread` worker: that worker's hub is the parent's, in a thread
    the child does not have (`unknot._core._fork`); `from_thread` must not send it a call that
    nothing would ever run."""
    _worker.hub = None


def _in_worker(hub: Hub, fn: Callable[..., T], args: tuple[Any, ...], kwargs: Any) -> T:
    _worker.hub = hub
    try:
        return fn(*args, **kwargs)
    finally:
        _worker.hub = None


def to_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a worker thread; the current fiber waits, others run.

    For blocking calls that cannot be made cooperative (C libraries, CPU-heavy work, file
    I/O). The worker sees a copy of the fiber's contextvars. If the fiber is cancelled while
    waiting, it raises `Cancelled` at once; a call that had not started is dropped, one already
    running finishes in the background and its result is discarded. ``fn`` is positional-only:
    every keyword argument goes to it.
    """
    f = require_fiber()
    hub = f.hub
    checkpoint_cancel(f)
    loop = hub.loop
    assert loop is not None
    ctx = copy_context()
    waiter: list[Fiber | None] = [f]

    def deliver(_fut: concurrent.futures.Future[Any]) -> None:
        hub.threads_in_flight -= 1
        w = waiter[0]
        if w is not None:
            hub.wake(w)

    def on_done(fut: concurrent.futures.Future[Any]) -> None:  # runs in the worker
        try:
            loop.call_soon_threadsafe(deliver, fut)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    # (Not cut short by cancellation or Ctrl-C: submit may start a worker thread; see
    # run_to_finish. Either is raised by the park below.)
    fut = run_to_finish(get_pool().submit, ctx.run, _in_worker, hub, fn, args, kwargs)
    hub.threads_in_flight += 1
    fut.add_done_callback(on_done)
    try:
        hub.park(f)
    except BaseException:
        waiter[0] = None
        fut.cancel()
        raise
    return fut.result()


def _hub_for(loop: asyncio.AbstractEventLoop | None) -> Hub:
    if loop is not None:
        hub = getattr(loop, "_unknot_hub", None)
        if hub is None:
            raise ValueError(f"{loop!r} is not an unknot event loop (unknot.new_event_loop())")
        return hub
    hub = getattr(_worker, "hub", None)
    if hub is not None:
        return hub
    hubs = running_hubs()
    if len(hubs) == 1:
        return hubs[0]
    if not hubs:
        raise RuntimeError("from_thread(): no unknot hub is running")
    raise RuntimeError("from_thread(): several hubs are running; pass loop=")


def from_thread(
    fn: Callable[..., T],
    /,
    *args: Any,
    loop: asyncio.AbstractEventLoop | None = None,
    **kwargs: Any,
) -> T:
    """From an OS thread, run ``fn(*args, **kwargs)`` in a new fiber on a hub; return its result.

    The thread blocks until the fiber finishes; the fiber's exception is re-raised here
    (`FiberCancelled` if it was cancelled, for example because the hub shut down; `RuntimeError`
    if the loop closed before the call could finish). The hub is ``loop``'s, else the one that
    started this worker with `to_thread`, else the only running one. ``fn`` is positional-only;
    ``loop`` is this function's own, never passed on. `TypeError` at once if ``fn`` is not
    callable.

    Called from a fiber of another hub (another thread's loop), only that fiber waits, its hub
    running its other fibers meanwhile (as in `Fiber.join` across hubs); it is then a blocking
    call: if the fiber is cancelled while waiting, it raises `Cancelled` at once and the call's
    fiber is cancelled (or never started). From a fiber of the hub itself, or from its thread,
    it is a `RuntimeError`: call ``fn`` directly.
    """
    if not callable(fn):
        raise TypeError(f"from_thread() needs a callable, got {fn!r}")
    hub = _hub_for(loop)
    if hub.thread is threading.current_thread():
        raise RuntimeError("from_thread() was called from the hub's own thread; call fn directly")
    hub_loop = hub.loop
    assert hub_loop is not None
    me = getcurrent()
    if type(me) is Fiber:
        return _from_fiber(me, hub, hub_loop, fn, args, kwargs)
    result: concurrent.futures.Future[T] = concurrent.futures.Future()

    def finished(fiber: Fiber) -> None:
        _take_outcome(fiber, result)

    def start() -> None:  # in the hub's thread
        try:
            fiber = hub.spawn(fn, args, kwargs)
        except BaseException as e:  # (a loop callback: asyncio would only log it)
            result.set_exception(e)
            return
        fiber.add_done_callback(finished)

    try:
        hub_loop.call_soon_threadsafe(start)
    except RuntimeError:  # (closed: as when it closes while this thread waits, below)
        raise RuntimeError(_CLOSED) from None
    # A request that reaches the loop as it shuts down may never run, or start a fiber that is
    # abandoned: once the loop is closed nothing will resolve `result`, so stop waiting.
    while not result.done():
        concurrent.futures.wait((result,), timeout=1.0)
        if not result.done() and hub_loop.is_closed():
            raise RuntimeError(_CLOSED)
    return result.result()


_CLOSED = "from_thread(): the hub shut down before the call finished"


def _take_outcome(fiber: Fiber, result: concurrent.futures.Future[Any]) -> None:
    """Retrieve the finished ``fiber``'s outcome into ``result``."""
    fiber._retrieved = True
    if fiber.cancelled():
        result.set_exception(FiberCancelled(f"{fiber.name} was cancelled"))
    elif fiber._error is not None:
        result.set_exception(fiber._error)
    else:
        result.set_result(fiber._result)


def _from_fiber(
    me: Fiber,
    hub: Hub,
    hub_loop: asyncio.AbstractEventLoop,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    """`from_thread` from a fiber of another hub: that fiber waits (`_fiber.wait_elsewhere`,
    as `Fiber.join` across hubs does) until the call's fiber, on ``hub``, has finished. A
    caller that stops waiting (cancellation, Ctrl-C, the hub's loop closed) has the call
    dropped if it had not started, else its fiber cancelled, with no callback of the caller
    left on it: an error it then raises is nobody's, and is logged when it ends."""
    checkpoint_cancel(me)  # a blocking call: nothing is sent if the caller is cancelled already
    result: concurrent.futures.Future[T] = concurrent.futures.Future()
    started: list[tuple[Fiber, Callable[[Fiber], None]]] = []  # the call's fiber, its callback

    def start(notify: Callable[[Any], None]) -> None:  # in the hub's thread
        try:
            fiber = hub.spawn(fn, args, kwargs)
        except BaseException as e:  # (a loop callback: asyncio would only log it)
            result.set_exception(e)
            notify(None)
            return

        def finished(fiber: Fiber) -> None:  # in the hub's thread
            _take_outcome(fiber, result)
            notify(fiber)

        started.append((fiber, finished))
        fiber.add_done_callback(finished)

    def abandon(_notify: Callable[[Any], None]) -> None:  # in the hub's thread
        for fiber, finished in started:
            if not fiber.done():
                fiber.remove_done_callback(finished)
                fiber.cancel()

    _fiber.wait_elsewhere(me, hub_loop, start, result.done, abandon, _CLOSED)
    return result.result()
