"""Cooperative `multiprocessing.queues` (POSIX): a mirror of the stdlib module.

Every name of the stdlib module is here. ``Queue``, ``JoinableQueue`` and ``SimpleQueue`` are
the stdlib's classes: `unknot.patch` (group ``subprocess``) installs on them the methods below,
so that a fiber blocked in ``get`` or ``put`` suspends only itself. Outside fibers, and for a
non-blocking call (``block=False``, ``get_nowait``...), each is the stdlib's code.

A queue's locks (``_rlock`` for readers, ``_wlock`` for writers, and ``Queue``'s ``_sem``
counting free places) are semaphores shared between processes, which the stdlib acquires in C,
blocking the thread. A fiber never waits in them: it only ever tries to acquire one, and
between tries it waits on the hub.

* ``Queue.get`` (blocking, with or without a timeout) repeats the stdlib's non-blocking
  ``get``: when the queue's pipe has nothing to read, the fiber waits until it becomes
  readable; when it has, but another reader holds ``_rlock`` (a reader in another process or
  thread waiting there for the next item holds it all that time), the fiber sleeps, from 1 ms
  up to 50 ms, and tries again. ``SimpleQueue.get`` waits the same way.
* ``Queue.put`` and ``JoinableQueue.put`` on a full queue (``maxsize``) repeat the stdlib's
  non-blocking ``put`` with the same sleeps until a place is free (a ``get`` elsewhere frees
  one; nothing signals it to this process). ``SimpleQueue.put`` tries ``_wlock`` so.
* A message being read from or written to the pipe is read or written whole: see
  `unknot.multiprocessing.connection`. Results and errors (`queue.Empty`, `queue.Full`,
  ``ValueError`` on a closed queue, `EOFError` once every writer has gone) are the stdlib's.

Not cooperative: ``JoinableQueue.join`` and ``task_done`` (a condition shared between
processes, waited for in C), the locks, semaphores, events and conditions of
`multiprocessing.synchronize` used directly, and managers' proxies.
"""

from __future__ import annotations

import multiprocessing.queues as _stdlib
from collections.abc import Callable, Iterator
from multiprocessing.queues import *  # noqa: F403 - this module mirrors the whole stdlib module
from queue import Empty, Full
from typing import Any

from greenlet import getcurrent

from .._mirror import poll_fd
from ..lowlevel import Fiber, sleep
from ..select import BUSY_POLL

__all__ = list(_stdlib.__all__)
# The public names the stdlib's __all__ leaves out (Empty, Full...).
globals().update(
    {k: v for k, v in vars(_stdlib).items() if not k.startswith("_") and k not in globals()}
)

#: The longest sleep between two tries of a lock, or of a full queue.
_MAX_DELAY = 0.05


def _delays() -> Iterator[float]:
    """The sleeps between two tries of a lock, or of a full queue: 1 ms, doubling up to
    `_MAX_DELAY`."""
    delay = 0.001
    while True:
        yield delay
        delay = min(delay * 2, _MAX_DELAY)


_std_queue_get: Any = _stdlib.Queue.__dict__["get"]
_std_queue_put: Any = _stdlib.Queue.__dict__["put"]
_std_joinable_queue_put: Any = _stdlib.JoinableQueue.__dict__["put"]
_std_simple_queue_get: Any = _stdlib.SimpleQueue.__dict__["get"]
_std_simple_queue_put: Any = _stdlib.SimpleQueue.__dict__["put"]


def _pickler() -> Any:
    """The pickler the stdlib's queues use (looked up when used, as they do)."""
    return vars(_stdlib)["_ForkingPickler"]


def _queue_get(self: Any, block: bool = True, timeout: float | None = None) -> Any:
    """``Queue.get``: in a fiber, a blocking get waits on the hub (see the module docs)."""
    f = getcurrent()
    if type(f) is not Fiber or not block:
        return _std_queue_get(self, block, timeout)
    hub = f.hub
    deadline = None if timeout is None else hub.time() + timeout
    delays = _delays()
    while True:
        try:
            return _std_queue_get(self, False)
        except Empty:
            pass
        remaining = None if deadline is None else deadline - hub.time()
        if remaining is not None and not remaining > 0:
            raise Empty
        fd = self._reader.fileno()
        if not poll_fd(fd, True, False):
            hub.wait_fds(f, (fd,), (), remaining, BUSY_POLL)
        else:  # something to read, but another reader holds the lock
            delay = next(delays)
            sleep(delay if remaining is None else min(delay, remaining))


def _cooperative_put(original: Callable[..., Any]) -> Callable[..., Any]:
    def put(self: Any, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        f = getcurrent()
        if type(f) is not Fiber or not block:
            original(self, obj, block, timeout)
            return
        hub = f.hub
        deadline = None if timeout is None else hub.time() + timeout
        delays = _delays()
        while True:
            try:
                original(self, obj, False)
                return
            except Full:
                pass
            remaining = None if deadline is None else deadline - hub.time()
            if remaining is not None and not remaining > 0:
                raise Full
            delay = next(delays)
            sleep(delay if remaining is None else min(delay, remaining))

    put.__doc__ = "As the stdlib's put: in a fiber, a full queue waits on the hub (see above)."
    put.__qualname__ = original.__qualname__
    return put


_queue_put = _cooperative_put(_std_queue_put)
_joinable_queue_put = _cooperative_put(_std_joinable_queue_put)


def _simple_queue_get(self: Any) -> Any:
    """``SimpleQueue.get``: in a fiber, waits on the hub (see the module docs)."""
    f = getcurrent()
    if type(f) is not Fiber:
        return _std_simple_queue_get(self)
    delays = _delays()
    while True:
        fd = self._reader.fileno()  # (OSError "handle is closed", as the stdlib's get)
        if not poll_fd(fd, True, False):
            f.hub.wait_fds(f, (fd,), (), None, BUSY_POLL)
            continue
        if not self._rlock.acquire(False):
            sleep(next(delays))  # another reader holds the lock
            continue
        try:
            if not poll_fd(fd, True, False):
                continue  # another reader took it first
            res = self._reader.recv_bytes()
        finally:
            self._rlock.release()
        # unserialize the data after having released the lock (as the stdlib)
        return _pickler().loads(res)


def _simple_queue_put(self: Any, obj: Any) -> None:
    """``SimpleQueue.put``: in a fiber, waits for the writers' lock on the hub."""
    f = getcurrent()
    if type(f) is not Fiber or self._wlock is None:
        _std_simple_queue_put(self, obj)
        return
    data = _pickler().dumps(obj)  # serialize the data before acquiring the lock
    delays = _delays()
    while not self._wlock.acquire(False):
        sleep(next(delays))
    try:
        self._writer.send_bytes(data)
    finally:
        self._wlock.release()
