"""The low-level face of unknot's core, for code that extends it.

Driver integrations, the HTTP server, new primitives and third-party libraries build on these;
everything here is public and stable. Application code rarely needs it: use `unknot`'s own names.

The model in four lines: a fiber waits by *parking* on its hub (`park`, or the `Hub` methods
below); something else *wakes* it (`wake`, `throw`, a timer, an fd becoming ready); the first
wake-up wins and later ones return False; a cancellable park is a *checkpoint*, raising
`unknot.Cancelled` in a cancelled scope.

Parking and waking::

    from unknot import lowlevel

    lot = lowlevel.ParkingLot()           # a fair FIFO wait queue

    def waiter():
        f = lowlevel.current_fiber()
        value = lot.park(f, timeout=5)    # lowlevel.TIMED_OUT after 5 s
        ...

    def giver():
        lot.unpark("hello")               # wakes the longest-waiting fiber with "hello"

Waiting on file descriptors: `wait_fds` waits for any of several fds with a timeout; `Hub.wait_fd`
is the fast path for an fd a socket-like object owns (register once with `Hub.fd_record`, drop
with `Hub.forget_fd` before closing the fd: waiters are then woken with EBADF).

`Hub` methods meant for extenders (call them only on the current fiber's hub, ``fiber.hub``, from
its thread): ``park(f, timeout=None, cancellable=True, interruptible=None)``, ``wake(f, value)``,
``throw(f, exc)``, ``time()``, ``add_timer(deadline, fn, arg)``/``cancel_timer(entry)``,
``fd_record(fd)``, ``forget_fd(rec)`` (the record's ``fd`` is then -1),
``wait_fd(f, rec, write, timeout)``,
``wait_raw_fd(f, fd, write, timeout)``, ``wait_fds(f, reads, writes, timeout, busy_poll=None)``,
``cede(f)``, ``call_batched(f, fn, *args)``, ``yield_now(f)``; ``io_budget`` (blocking I/O
calls the running fiber may still begin on the fast path: an I/O module tests it at each call's
entry, decrements it if nonzero, and otherwise takes its slow path, which checks for
cancellation and yields once the streak is used up; a cancellation in force holds it at 0; see
`unknot._sockio.entry`); read-only: ``ncancel`` (nonzero while any
cancellation is in force: test it before the costlier `is_cancelled`), ``ready`` and ``calls``
(true when fibers are ready or calls are batched), ``loop``, ``thread`` (the OS thread that
runs it), ``root``, ``fibers`` (the live fibers: a dict used as an ordered set, spawn order),
``running`` (the fiber it last switched to: ``hub.running is greenlet.getcurrent()`` is true
only in one of its fibers, a cheaper test than ``fiber.hub is hub`` from compiled code).

Spawning: `spawn_named(fn, args, template, arg)` is `spawn` with a name made when first read
(``template.format(arg)``), for a server naming a fiber per connection.

Observing: `fiber_info` (one fiber as `unknot.fibers` describes it); `Instrument` with
`add_instrument`/`remove_instrument` (callbacks on a hub's scheduling events);
`unretrieved_error` (a fiber's error that nobody retrieved, for test runners) and
`add_unretrieved_hook`/`remove_unretrieved_hook` (told of each such error as the core reports it,
whatever the logging configuration).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Besides the low-level names, the public calls (also in `unknot`: Cancelled, CancelScope,
# DeadlockError, FiberCancelled, TaskGroup, current, current_time, fail_after, move_on_after,
# run, sleep, spawn, to_thread), for unknot's own modules built on the core, which cannot
# import the `unknot` package while it is imported.
from ._core import (
    NOT_PARKED,
    PARKED_CANCELLABLE,
    PARKED_INTERRUPTIBLE,
    PARKED_SHIELDED,
    TIMED_OUT,
    Cancelled,
    CancelScope,
    DeadlockError,
    FdWait,
    Fiber,
    FiberCancelled,
    Hub,
    Instrument,
    ParkedFiber,
    ParkingLot,
    TaskGroup,
    add_instrument,
    add_unretrieved_hook,
    checkpoint,
    checkpoint_if_cancelled,
    current,
    current_fiber,
    current_time,
    fail_after,
    fiber_info,
    get_hub,
    is_cancelled,
    move_on_after,
    must_finish,
    raise_pending_interrupt,
    remove_instrument,
    remove_unretrieved_hook,
    require_fiber,
    run,
    run_to_finish,
    running_hubs,
    sleep,
    spawn,
    spawn_named,
    timeout_seconds,
    to_thread,
    unretrieved_error,
)
from ._core import (
    enable_monitor_by_default as enable_by_default,
)


def enable_monitor_by_default() -> None:
    """Turn the blocking detector (`unknot.start_monitor`) on for hubs started from now on,
    unless ``UNKNOT_MONITOR`` or `unknot.stop_monitor` says otherwise. Test runners and debug
    tools call this; unknot's pytest plugin does. The thread starts with the first hub."""
    enable_by_default()


def current_hub() -> Hub | None:
    """The hub of the current context: the fiber's, the running unknot loop's, or a hub attached
    to a foreign running asyncio loop; None outside all of them."""
    return get_hub()


def park(
    timeout: float | None = None, *, cancellable: bool = True, interruptible: bool | None = None
) -> Any:
    """Park the current fiber until `wake` or `throw`; return the value it was woken with, or
    `TIMED_OUT`. A cancellable park is a checkpoint. Prefer a `ParkingLot` to keep track of who
    waits: a fiber parked here is woken only by someone holding a reference to it."""
    f = require_fiber()
    return f.hub.park(f, timeout, cancellable, interruptible)


def wake(fiber: Fiber, value: Any = None) -> bool:
    """Resume a parked ``fiber`` with ``value`` (from its hub's thread). False if it is not
    parked (something else woke it first)."""
    return fiber.hub.wake(fiber, value)


def throw(fiber: Fiber, exc: BaseException) -> bool:
    """Resume a parked ``fiber`` by raising ``exc`` in it. False if it is not parked."""
    return fiber.hub.throw(fiber, exc)


def wait_fds(reads: Iterable[int], writes: Iterable[int], timeout: float | None = None) -> bool:
    """Wait in the current fiber until an fd of ``reads`` is readable or one of ``writes`` is
    writable; False once ``timeout`` seconds passed first.

    It does not say which fd fired, and readiness can be spurious: poll them again. Call it only
    after such a poll found none ready. A checkpoint. Where another fiber already waits on one
    of the fds in the same direction, this one queues behind it (`unknot.wait_readable`).
    `RuntimeError` if asyncio watches one of the fds.
    """
    f = require_fiber()
    if timeout is not None:
        timeout = timeout_seconds(timeout)
    return f.hub.wait_fds(f, reads, writes, timeout) is not TIMED_OUT


__all__ = [
    "CancelScope",
    "Cancelled",
    "DeadlockError",
    "FiberCancelled",
    "TaskGroup",
    "current",
    "current_time",
    "fail_after",
    "move_on_after",
    "run",
    "sleep",
    "spawn",
    "to_thread",
    "NOT_PARKED",
    "PARKED_CANCELLABLE",
    "PARKED_INTERRUPTIBLE",
    "PARKED_SHIELDED",
    "TIMED_OUT",
    "FdWait",
    "Fiber",
    "Hub",
    "Instrument",
    "ParkedFiber",
    "ParkingLot",
    "add_instrument",
    "add_unretrieved_hook",
    "checkpoint",
    "checkpoint_if_cancelled",
    "current_fiber",
    "current_hub",
    "enable_monitor_by_default",
    "fiber_info",
    "is_cancelled",
    "park",
    "must_finish",
    "raise_pending_interrupt",
    "run_to_finish",
    "remove_instrument",
    "remove_unretrieved_hook",
    "require_fiber",
    "running_hubs",
    "spawn_named",
    "throw",
    "unretrieved_error",
    "wait_fds",
    "wake",
]
