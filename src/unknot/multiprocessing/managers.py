"""Cooperative `multiprocessing.managers` (POSIX): a mirror of the stdlib module.

Every name of the stdlib module is here. ``BaseProxy`` is the stdlib's class: `unknot.patch`
(group ``subprocess``) installs `_callmethod` below on it, through which every call of a
manager's proxy goes (``proxy.method(...)``, ``q.get()`` on a ``manager.Queue()``...). A call
sends its request on a connection to the manager and waits for the reply; with the cooperative
`unknot.multiprocessing.connection`, the wait suspends only the calling fiber, and two things
keep the replies with their calls:

* **a connection per fiber**, as the stdlib has one per thread: the proxy keeps its
  connections in a ``threading.local`` (``multiprocessing.util.ForkAwareLocal``), which is
  fiber-local only if ``multiprocessing.util`` was imported after `patch` (in a "spawn" or
  "forkserver" child it never is: the child imports it before the main module). Otherwise
  the proxy's is replaced, in a fiber, by a fiber-local one (cleared in a forked child, as
  the stdlib's is), so that two fibers never wait for replies on the same connection, the
  manager answering them in turn;
* **a call interrupted between its request and its reply** (the fiber cancelled, a
  `KeyboardInterrupt`, an exception thrown into the fiber) closes its connection: the reply,
  which comes later, would otherwise be taken for the next call's; the next call opens a new
  connection. (An error the manager answered with is raised as in the stdlib, and the
  connection kept.)

A cancelled call leaves the manager's thread in it, though, until it returns. For a queue's
``get`` and ``put`` (a proxy whose referent has ``get``, ``put``, ``get_nowait`` and
``put_nowait``: a manager's ``Queue`` and ``JoinableQueue``, a queue behind a registered
typeid) that would lose an item: the abandoned ``get`` takes the next item put, and its reply
has nowhere to go; the abandoned ``put`` puts its item after the caller gave up. For a lock's,
semaphore's or condition's ``acquire`` it would take the lock for a caller that is gone, and
nobody would release it. So in a fiber a blocking ``get``, ``put`` or ``acquire`` is made as
calls that each wait at most `_SLICE` (0.1 s) in the manager, shielded from cancellation: the
fiber is cancelled between them, and a cancellation waits for the call in flight (what it got,
an item or the lock, is returned). A ``timeout`` is honoured (the last call waits what is left
of it, in real seconds, as the manager counts); non-blocking calls, and timeouts the manager's
call is left to refuse or interpret (negative, NaN), are made as they are. (A
`KeyboardInterrupt` or an exception thrown into the fiber still abandons the call in flight.)
Other blocking calls (``JoinableQueue.join``, ``Event.wait``, ``Condition.wait``...) are
abandoned as described above: they take nothing.

Outside fibers each is the stdlib's code.
"""

from __future__ import annotations

import math
import multiprocessing.managers as _stdlib
import multiprocessing.util as _util
import queue as _queue
import time as _time
from collections.abc import Callable
from multiprocessing.managers import *  # noqa: F403 - this module mirrors the whole stdlib module
from typing import Any
from weakref import WeakKeyDictionary

from greenlet import getcurrent

from .._local import local as _fiber_local
from ..lowlevel import CancelScope, Fiber, checkpoint_if_cancelled

__all__ = list(_stdlib.__all__)
# The public names the stdlib's __all__ leaves out (BaseProxy, Server, Token...).
globals().update(
    {k: v for k, v in vars(_stdlib).items() if not k.startswith("_") and k not in globals()}
)

_std_callmethod: Any = _stdlib.BaseProxy.__dict__["_callmethod"]

#: The fiber-local replacement of each per-thread ``ForkAwareLocal`` (one per manager address).
_fiber_tls: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


class _ForkAwareFiberLocal(_fiber_local):
    """`multiprocessing.util.ForkAwareLocal`, one namespace per fiber, emptied in a forked
    child (whose fiber must not use its parent's connection to the manager). (Registered for
    the fork once, when made: an ``__init__`` would run, and register, once per fiber.)"""

    def __reduce__(self) -> Any:
        return type(self), ()


def _clear_after_fork(tls: _ForkAwareFiberLocal) -> None:
    tls.__dict__.clear()  # (the namespace of the fiber that forked, the child's only one)


def _fiber_tls_for(tls: Any) -> Any:
    """The fiber-local stand-in for the proxy's per-thread ``tls``."""
    try:
        return _fiber_tls[tls]
    except KeyError:
        new = _ForkAwareFiberLocal()
        _util.register_after_fork(new, _clear_after_fork)
        return _fiber_tls.setdefault(tls, new)


def _callmethod(self: Any, methodname: str, args: Any = (), kwds: Any = {}) -> Any:  # noqa: B006 - the stdlib's signature
    """``BaseProxy._callmethod``: in a fiber, over a connection of the fiber's own, closed if
    the call is interrupted; a blocking ``get``, ``put`` or ``acquire`` waiting in short slices
    (see the module docs)."""
    if type(getcurrent()) is not Fiber:
        return _std_callmethod(self, methodname, args, kwds)
    tls = self._tls
    if not isinstance(tls, _fiber_local):
        # Made before the patch: one namespace per thread, shared by its fibers.
        self._tls = tls = _fiber_tls_for(tls)
    if methodname in _SLICED_METHODS:
        result = _sliced(self, methodname, args, kwds)
        if result is not _AS_IT_IS:
            return result
    return _call(self, tls, methodname, args, kwds)


_SLICED_METHODS = frozenset({"get", "put", "acquire"})


def _call(self: Any, tls: Any, methodname: str, args: Any, kwds: Any) -> Any:
    """One call, its connection closed if it is interrupted before its reply is read."""
    try:
        return _std_callmethod(self, methodname, args, kwds)
    except BaseException as exc:
        if isinstance(exc, Exception) and _raised_by_callmethod(exc):
            raise  # the manager's answer, read whole (its error, or a proxy it could not make)
        # Cancelled, interrupted, or failed in the connection, maybe after the request went:
        # its reply must not be read by the next call. (The connection is made again.)
        conn = tls.__dict__.pop("connection", None)
        if conn is not None:
            conn.close()
        raise


def _raised_by_callmethod(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by the stdlib's ``_callmethod`` itself (``raise
    convert_to_error(...)``, after the reply was read), not in a call it made."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code is _std_callmethod.__code__


#: The longest a blocking ``get``, ``put`` or ``acquire`` waits in the manager in one call (real
#: seconds): how long a cancellation may wait for the call in flight.
_SLICE = 0.1
#: A proxy whose referent has these methods is a queue's (``queue.Queue``, a manager's
#: ``Queue`` and ``JoinableQueue``, a ``multiprocessing`` queue behind a registered typeid).
_QUEUE_METHODS = frozenset({"get", "put", "get_nowait", "put_nowait"})
_QUEUE_WAITS = frozenset({"get", "put"})
#: A proxy exposing these is a lock's or semaphore's (``AcquirerProxy``: a manager's ``Lock``,
#: ``RLock``, ``Semaphore``, ``BoundedSemaphore``), or a condition's (``ConditionProxy``).
_ACQUIRER_METHODS = frozenset({"acquire", "release"})


def _sliced(self: Any, methodname: str, args: Any, kwds: Any) -> Any:
    """The result of a blocking call made in slices (see `_in_slices`), or `_AS_IT_IS`."""
    exposed = getattr(self, "_exposed_", ())
    if methodname in _QUEUE_WAITS and _QUEUE_METHODS.issubset(exposed):
        queue_wait = _sliced_queue_wait(methodname, args, kwds)
        if queue_wait is not None:
            head, timeout = queue_wait
            expired = _queue.Empty if methodname == "get" else _queue.Full

            def queue_slice(wait: float) -> tuple[bool, Any]:
                try:
                    return True, _call(self, self._tls, methodname, (*head, True, wait), {})
                except expired:
                    return False, None

            done, result = _in_slices(queue_slice, timeout)
            if not done:
                raise expired
            return result
    elif methodname == "acquire" and _ACQUIRER_METHODS.issubset(exposed):
        acquire_timeout = _sliced_acquire(args, kwds)
        if acquire_timeout is not None:

            def acquire_slice(wait: float) -> tuple[bool, Any]:
                acquired = _call(self, self._tls, "acquire", (True, wait), {})
                return bool(acquired), acquired

            return _in_slices(acquire_slice, acquire_timeout)[1]
    return _AS_IT_IS


_AS_IT_IS = object()


def _sliced_queue_wait(
    methodname: str, args: Any, kwds: Any
) -> tuple[tuple[Any, ...], float] | None:
    """For a queue's blocking ``get(block, timeout)`` or ``put(item, block, timeout)``: the
    arguments before ``block`` and the timeout (``inf``: none); None for a call made as it is
    (non-blocking, arguments it does not know, a timeout the manager rejects)."""
    head = 1 if methodname == "put" else 0
    if not isinstance(args, tuple) or not isinstance(kwds, dict) or len(args) < head:
        return None
    if len(args) > head + 2 or not {"block", "timeout"}.issuperset(kwds):
        return None
    rest = dict(zip(("block", "timeout"), args[head:], strict=False))
    if rest.keys() & kwds.keys():
        return None  # (a TypeError, the manager's)
    rest.update(kwds)
    if not rest.get("block", True):
        return None
    timeout = _slice_timeout(rest.get("timeout"))
    return None if timeout is None else (args[:head], timeout)


def _sliced_acquire(args: Any, kwds: Any) -> float | None:
    """For a blocking ``acquire(blocking, timeout)`` (``AcquirerProxy.acquire`` and
    ``ConditionProxy.acquire`` pass both positionally, the timeout only when given): the
    timeout (``inf``: none); None for a call made as it is."""
    if not isinstance(args, tuple) or kwds or len(args) > 2:
        return None
    if args and not args[0]:
        return None  # non-blocking
    return _slice_timeout(args[1] if len(args) == 2 else None)


def _slice_timeout(timeout: Any) -> float | None:
    """``timeout`` as a float (None: ``inf``); None for a timeout the manager's own call is
    left to refuse or interpret (negative, such as a ``Lock``'s ``-1``, NaN, not a number)."""
    if timeout is None:
        return math.inf
    if type(timeout) not in (int, float) or not timeout >= 0:
        return None
    return float(timeout)


def _in_slices(call_slice: Callable[[float], tuple[bool, Any]], timeout: float) -> tuple[bool, Any]:
    """Make a blocking call as calls ``call_slice(wait)`` that each wait at most `_SLICE` in the
    manager and are shielded from cancellation, the fiber cancellable between them, until one
    is done (``(True, result)``) or ``timeout`` (real seconds, as the manager's) is over (the
    last call's ``(False, result)``): a call abandoned while the manager still waits in it would
    take the next item put (and lose it, its reply having nowhere to go), put its item after the
    caller gave up, or take a lock nobody will release."""
    deadline = _time.monotonic() + timeout
    while True:
        checkpoint_if_cancelled()
        left = deadline - _time.monotonic()
        last = left <= _SLICE
        with CancelScope(shield=True):
            done, result = call_slice(max(left, 0.0) if last else _SLICE)
        if done or last:
            return done, result
