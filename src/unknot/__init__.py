"""unknot: plain blocking-style Python, made concurrent.

Each task runs in a *fiber* (a greenlet); a blocking call suspends only that fiber while one
event loop, a real asyncio loop, serves all the others on one OS thread::

    import unknot

    def main():
        with unknot.TaskGroup() as tg:
            for i in range(3):
                tg.spawn(unknot.sleep, 1)      # three one-second sleeps, one second in all

    unknot.run(main)
"""

# First: decides whether the mypyc-compiled modules or their sources run (before either loads).
from ._compiled import COMPILED as compiled  # noqa: I001 - must come first

# The cooperative mirrors of stdlib modules; unknot.select is also the channel select().
from . import lowlevel, select, socket
from ._channel import Channel, ChannelClosed, Operation
from ._core import (
    BlockingReport,
    Cancelled,
    CancelScope,
    DeadlockError,
    Fiber,
    FiberCancelled,
    FiberInfo,
    HubEventLoop,
    LoopStats,
    NotInFiberError,
    TaskGroup,
    await_,
    checkpoint,
    checkpoint_if_cancelled,
    current,
    current_time,
    dump,
    dump_on_signal,
    fail_after,
    fibers,
    from_thread,
    move_on_after,
    new_event_loop,
    run,
    set_debug,
    sleep,
    spawn,
    start_monitor,
    stats,
    stop_monitor,
    to_thread,
    wait_readable,
    wait_writable,
)
from ._fileio import open
from ._future import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    Future,
    as_completed,
    spawn_later,
    wait,
)
from ._local import local
from ._patch import is_patched, patch, unpatch
from ._pool import Pool
from ._queue import Empty, Full, LifoQueue, PriorityQueue, Queue, ShutDown
from ._signals import open_signal_receiver
from ._sync import BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore
from ._tcp import TCPServer, serve_tcp
from ._udp import UDPServer, serve_udp

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # unknot.http is imported on first use: programs that serve no HTTP don't load its parser;
    # unknot.backdoor (a debugging console) likewise.
    if name in ("http", "backdoor"):
        import importlib

        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'unknot' has no attribute {name!r}")


__all__ = [
    "compiled",
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "BlockingReport",
    "BoundedSemaphore",
    "CancelScope",
    "Cancelled",
    "Channel",
    "ChannelClosed",
    "Condition",
    "DeadlockError",
    "Empty",
    "Event",
    "Fiber",
    "FiberCancelled",
    "FiberInfo",
    "Full",
    "Future",
    "HubEventLoop",
    "LifoQueue",
    "Lock",
    "LoopStats",
    "NotInFiberError",
    "Operation",
    "Pool",
    "PriorityQueue",
    "Queue",
    "RLock",
    "Semaphore",
    "ShutDown",
    "TCPServer",
    "TaskGroup",
    "UDPServer",
    "as_completed",
    "await_",
    "backdoor",
    "checkpoint",
    "checkpoint_if_cancelled",
    "current",
    "current_time",
    "dump",
    "dump_on_signal",
    "fail_after",
    "fibers",
    "from_thread",
    "http",
    "is_patched",
    "local",
    "lowlevel",
    "move_on_after",
    "new_event_loop",
    "open",
    "open_signal_receiver",
    "patch",
    "run",
    "select",
    "serve_tcp",
    "serve_udp",
    "set_debug",
    "sleep",
    "socket",
    "spawn",
    "spawn_later",
    "start_monitor",
    "stats",
    "stop_monitor",
    "to_thread",
    "unpatch",
    "wait",
    "wait_readable",
    "wait_writable",
]
