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
typeid), that would lose an item: the abandoned ``get`` takes the next item put, and its reply
has nowhere to go; the abandoned ``put`` puts its item after the caller gave up. So in a fiber a
blocking ``get`` or ``put`` is made as calls that each wait at most `_QUEUE_SLICE` (0.1 s) in
the manager, shielded from cancellation: the fiber is cancelled between them, and a
cancellation waits for the call in flight (its item, if it got one, is returned). A
``timeout`` is honoured (the last call waits what is left of it, in real seconds, as the
manager counts); non-blocking calls are made as they are. (A `KeyboardInterrupt` or an
exception thrown into the fiber still abandons the call in flight.) Other blocking calls
(``JoinableQueue.join``, ``Event.wait``, a ``Lock``'s ``acquire``, ``Condition.wait``...) are
abandoned as described above.

Outside fibers each is the stdlib's code.
"""

from __future__ import annotations

import math
import multiprocessing.managers as _stdlib
import multiprocessing.util as _util
import queue as _queue
import time as _time
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
    the call is interrupted; a queue's blocking ``get`` and ``put`` waiting in short slices
    (see the module docs)."""
    if type(getcurrent()) is not Fiber:
        return _std_callmethod(self, methodname, args, kwds)
    tls = self._tls
    if not isinstance(tls, _fiber_local):
        # Made before the patch: one namespace per thread, shared by its fibers.
        self._tls = tls = _fiber_tls_for(tls)
    if methodname in _QUEUE_WAITS and _QUEUE_METHODS.issubset(getattr(self, "_exposed_", ())):
        sliced = _sliced_queue_wait(methodname, args, kwds)
        if sliced is not None:
            return _queue_wait(self, methodname, *sliced)
    return _call(self, tls, methodname, args, kwds)


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


#: The longest a queue's blocking ``get`` or ``put`` waits in the manager in one call (real
#: seconds): how long a cancellation may wait for the call in flight.
_QUEUE_SLICE = 0.1
#: A proxy whose referent has these methods is a queue's (``queue.Queue``, a manager's
#: ``Queue`` and ``JoinableQueue``, a ``multiprocessing`` queue behind a registered typeid).
_QUEUE_METHODS = frozenset({"get", "put", "get_nowait", "put_nowait"})
_QUEUE_WAITS = frozenset({"get", "put"})


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
    timeout = rest.get("timeout")
    if not rest.get("block", True):
        return None
    if timeout is None:
        return args[:head], math.inf
    if type(timeout) not in (int, float) or not timeout >= 0:
        return None  # (negative, NaN, not a number: the manager's error)
    return args[:head], float(timeout)


def _queue_wait(self: Any, methodname: str, head: tuple[Any, ...], timeout: float) -> Any:
    """A queue's blocking ``get`` or ``put``, as calls that each wait at most `_QUEUE_SLICE` in
    the manager and are shielded from cancellation, the fiber cancellable between them: a
    call abandoned while the manager still waits in it would take the next item put (and lose
    it, its reply having nowhere to go), or put its item after the caller gave up. The timeout
    (real seconds, as the manager's) is honoured: the last call waits what is left of it."""
    empty = _queue.Empty if methodname == "get" else _queue.Full
    deadline = _time.monotonic() + timeout
    while True:
        checkpoint_if_cancelled()
        left = deadline - _time.monotonic()
        last = left <= _QUEUE_SLICE
        wait = max(left, 0.0) if last else _QUEUE_SLICE
        with CancelScope(shield=True):
            try:
                return _call(self, self._tls, methodname, (*head, True, wait), {})
            except empty:
                if last:
                    raise
