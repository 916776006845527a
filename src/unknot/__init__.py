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

# The cooperative mirrors of stdlib modules; unknot.select is also the channel select().
from . import select, socket
from ._bridge import await_
from ._cancel import Cancelled, CancelScope, current_time, fail_after, move_on_after
from ._channel import Channel, ChannelClosed, Operation
from ._fiber import Fiber, FiberCancelled
from ._fibers import (
    checkpoint,
    checkpoint_if_cancelled,
    current,
    sleep,
    spawn,
    wait_readable,
    wait_writable,
)
from ._hub import DeadlockError, NotInFiberError
from ._loop import HubEventLoop, new_event_loop, run
from ._patch import is_patched, patch, unpatch
from ._queue import Empty, Full, LifoQueue, PriorityQueue, Queue
from ._server import TCPServer, serve_tcp
from ._sync import BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore
from ._taskgroup import TaskGroup
from ._threads import from_thread, to_thread

__version__ = "0.1.0"

__all__ = [
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
    "Full",
    "HubEventLoop",
    "LifoQueue",
    "Lock",
    "NotInFiberError",
    "Operation",
    "PriorityQueue",
    "Queue",
    "RLock",
    "Semaphore",
    "TCPServer",
    "TaskGroup",
    "await_",
    "checkpoint",
    "checkpoint_if_cancelled",
    "current",
    "current_time",
    "fail_after",
    "is_patched",
    "from_thread",
    "move_on_after",
    "new_event_loop",
    "patch",
    "run",
    "select",
    "serve_tcp",
    "sleep",
    "socket",
    "spawn",
    "to_thread",
    "unpatch",
    "wait_readable",
    "wait_writable",
]
