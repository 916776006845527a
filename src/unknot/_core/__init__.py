"""unknot's core: the hub, fibers, cancellation. The only code that touches their internals.

A map for a newcomer (read the modules in this order):

``_fiber``        `Fiber`, a greenlet with an outcome; its states, and how it may be parked.
``_cancel``       `CancelScope`: the tree of scopes, "effectively cancelled", delivery. The hub's
                  count of cancellations in force (``Hub.ncancel``) changes only here.
``_hub``          `Hub`: the ready queue, `park`/`wake`/`throw`, hand-offs, fd waits, batched calls.
``_timers``       the hub's timer heap (a mixin of `Hub`).
``_deadlock``     "nothing can wake any fiber" (a mixin of `Hub`).
``_parking``      `ParkingLot`, the fair wait queue the primitives are built on.
``_selector_hub`` the hub as an asyncio selector; ``_io_epoll`` (edge-triggered, Linux) and
                  ``_io_poll`` (level-triggered poll/select) poll the OS; ``_backends`` picks one.
``_foreign``      the hub driven by callbacks on a loop that is not ours (stock asyncio, uvloop).
``_loop``         `HubEventLoop` (an `asyncio.SelectorEventLoop` whose selector is the hub), `run`.
``_interrupt``    how Ctrl-C and signal handlers' exceptions reach the root fiber.
``_lookup``       finding the current hub and fiber; the registry of running hubs.
``_calls``        the module-level calls: `spawn`, `sleep`, `checkpoint`, fd waits, timeouts.
``_taskgroup``    `TaskGroup` (a trio nursery); ``_bridge`` asyncio <-> fibers; ``_threads``
                  `to_thread`/`from_thread` over the pool in ``_thread_pool``.
``_introspect``   fiber dumps: what each fiber waits on, derived from the hub's tables and the
                  fiber's frames when asked.
``_monitor``      the blocking detector's thread (also samples the loop lag); ``_stats``
                  `stats`; ``_instruments`` scheduling callbacks (a greenlet trace function and
                  a pass hook, set only when used).

Where the loop runs and the order of one pass. asyncio's ``run_forever`` calls
``selector.select(timeout)`` once per iteration; our selector (`HubSelector`) is the hub:

1. it computes the poll timeout: 0 if fibers are ready or asyncio has callbacks, else until the
   next fiber timer; with nothing able to wake anyone, the deadlock check runs;
2. it polls the OS; fds owned by fibers wake their fiber straight from the event list (epoll:
   edge-triggered, registered once per fd), asyncio's own events are returned to asyncio;
3. due timers fire, a pending interrupt is delivered to the root fiber;
4. `Hub._run_ready` resumes the ready fibers (a pass): a parking fiber switches straight to the
   next ready one (`Hub._switch_out`) under a budget (``PASS_EXTRA``), batched calls are made
   when the queue runs dry (`Hub.call_batched`), then control returns to asyncio.

The park/wake rule. Every blocking call ends in `Hub.park`: the fiber records how it is parked
(``Fiber._parked``: `PARKED_CANCELLABLE`, `PARKED_INTERRUPTIBLE`, `PARKED_SHIELDED`) and switches
to the hub. Whoever wakes it first (`Hub.wake`, `Hub.throw`, a timer, an fd event) wins and
clears ``_parked``; later wake-ups see it not parked and return False. That one rule is what
keeps a value handed to a waiter from being lost or duplicated when a timeout or a cancellation
races it.
The winner leaves the value (or a `Raise`, for an exception) in the fiber's ``_wake_value``;
the switch that resumes the fiber carries nothing, and the fiber takes its value where it parked
(`Hub._switch_out`), raising a `Raise`'s exception there.

Where cancellation is delivered. `CancelScope.cancel` (or a deadline) marks the scope and throws
`Cancelled` into every fiber parked cancellably inside it (`deliver_cancel`); a fiber that is
running meets it at its next checkpoint (`Hub.park` checks ``ncancel`` first, then the scope
chain). Scopes swallow their own `Cancelled` on exit.

How Ctrl-C travels: see `unknot._core._interrupt`.

Inlined copies. A few hot paths (here and in `unknot.socket`, `unknot._patch._hybrid`) carry a
copy of another function's code instead of calling it: in CPython the call can cost as much as
the work. Every such copy is marked at both ends, so that whoever changes one side finds the
other (``grep -rn INLINED- src/`` lists them all)::

    # INLINED-COPY-BEGIN(name): what is copied, naming the original function(s)
    ...the copy...
    # INLINED-COPY-END(name)

    # INLINED-ORIGINAL(name[, name...]): copied into <the functions holding the copies>

One name per copied rule (one original may feed several copies, one copy several originals).
``tests/core/test_inlined_copies.py`` checks that the markers pair up and that each side names
the function holding the other, and runs the same scenarios through each copy and through its
original, which must agree; a new name needs its scenarios there.

Everything outside this package uses the core through `unknot.lowlevel` or the public API; the
import-linter contracts in ``pyproject.toml`` keep it so.
"""

# (_fork: imported for its hook; a child forked while a hub runs keeps only the forking fiber.)
from . import _fork  # noqa: F401
from ._bridge import await_
from ._calls import (
    checkpoint,
    checkpoint_if_cancelled,
    current,
    current_time,
    fail_after,
    is_cancelled,
    move_on_after,
    raise_pending_interrupt,
    sleep,
    spawn,
    spawn_named,
    wait_readable,
    wait_writable,
)
from ._cancel import Cancelled, CancelScope, checkpoint_cancel, effectively_cancelled
from ._exceptions import DeadlockError, NotInFiberError
from ._fiber import (
    NOT_PARKED,
    PARKED_CANCELLABLE,
    PARKED_INTERRUPTIBLE,
    PARKED_SHIELDED,
    Fiber,
    FiberCancelled,
    add_unretrieved_hook,
    remove_unretrieved_hook,
    unretrieved_error,
)
from ._hub import TIMED_OUT, FdWait, Hub
from ._instruments import Instrument, add_instrument, remove_instrument
from ._interrupt import must_finish, run_to_finish
from ._introspect import FiberInfo, dump, dump_on_signal, fiber_info, fibers, set_debug
from ._lookup import current_fiber, get_hub, require_fiber, running_hubs
from ._loop import HubEventLoop, new_event_loop, run
from ._monitor import BlockingReport, start_monitor, stop_monitor
from ._monitor import enable_by_default as enable_monitor_by_default
from ._parking import ParkedFiber, ParkingLot
from ._stats import LoopStats, stats
from ._taskgroup import TaskGroup
from ._threads import from_thread, to_thread
from ._timers import timeout_seconds

__all__ = [
    "NOT_PARKED",
    "PARKED_CANCELLABLE",
    "PARKED_INTERRUPTIBLE",
    "PARKED_SHIELDED",
    "TIMED_OUT",
    "BlockingReport",
    "CancelScope",
    "Cancelled",
    "DeadlockError",
    "FdWait",
    "Fiber",
    "FiberCancelled",
    "FiberInfo",
    "Hub",
    "HubEventLoop",
    "Instrument",
    "LoopStats",
    "NotInFiberError",
    "ParkedFiber",
    "ParkingLot",
    "TaskGroup",
    "add_instrument",
    "add_unretrieved_hook",
    "await_",
    "checkpoint",
    "checkpoint_cancel",
    "checkpoint_if_cancelled",
    "current",
    "current_fiber",
    "current_time",
    "dump",
    "dump_on_signal",
    "effectively_cancelled",
    "enable_monitor_by_default",
    "fail_after",
    "fiber_info",
    "fibers",
    "from_thread",
    "get_hub",
    "is_cancelled",
    "move_on_after",
    "new_event_loop",
    "must_finish",
    "raise_pending_interrupt",
    "run_to_finish",
    "remove_instrument",
    "remove_unretrieved_hook",
    "require_fiber",
    "run",
    "running_hubs",
    "set_debug",
    "sleep",
    "spawn",
    "spawn_named",
    "start_monitor",
    "stats",
    "stop_monitor",
    "to_thread",
    "unretrieved_error",
    "wait_readable",
    "wait_writable",
    "timeout_seconds",
]
