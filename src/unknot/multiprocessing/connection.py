"""Cooperative `multiprocessing.connection` (POSIX): a mirror of the stdlib module.

Every name of the stdlib module is here; `wait` is cooperative in a fiber. ``Connection`` is
the stdlib's class: `unknot.patch` (group ``subprocess``) installs on it the methods below,
which make ``recv``, ``recv_bytes``, ``recv_bytes_into``, ``send``, ``send_bytes`` and
``poll`` suspend only the calling fiber. Outside fibers each is the stdlib's code.

* ``_recv`` and ``_send``: the stdlib's code, reading and writing with `unknot.os.read` and
  `unknot.os.write` (the class binds ``os.read`` and ``os.write`` as default arguments when it
  is created, so no patch of `os` would reach them);
* ``_recv_bytes`` and ``_send_bytes``, which every receive and send goes through: the fiber
  waits until the connection is readable (writable), and a cancellation there comes before any
  byte of the message is read (written); then the whole message is read (written) in a
  shielded scope, so a cancellation never leaves half a message in the pipe: it is raised at
  the fiber's next blocking call. A writer that goes away midway gives the stdlib's errors
  (``OSError("got end of file during message")``, `BrokenPipeError`);
* ``_poll``: ``poll(timeout)`` waits on the hub.

`wait` is the stdlib's code over `unknot.selectors.PollSelector` (in a fiber).
"""

from __future__ import annotations

import multiprocessing.connection as _stdlib
from multiprocessing.connection import *  # noqa: F403 - this module mirrors the whole stdlib module
from typing import Any

from greenlet import getcurrent

from .. import os as _os
from .. import selectors as _selectors
from .._mirror import poll_fd, rebind
from ..lowlevel import CancelScope, Fiber
from ..select import BUSY_POLL

__all__ = list(_stdlib.__all__)
# The public names the stdlib's __all__ leaves out (Connection, Listener's helpers...).
globals().update(
    {k: v for k, v in vars(_stdlib).items() if not k.startswith("_") and k not in globals()}
)

_Connection: Any = _stdlib.Connection
_std_recv_bytes: Any = _Connection.__dict__["_recv_bytes"]
_std_send_bytes: Any = _Connection.__dict__["_send_bytes"]
_std_poll: Any = _Connection.__dict__["_poll"]
_std_wait: Any = _stdlib.wait

# The stdlib's own loops, with the cooperative read and write as their default arguments.
_recv: Any = rebind(_Connection.__dict__["_recv"], vars(_stdlib), __name__)
_recv.__defaults__ = (_os.read,)
_send: Any = rebind(_Connection.__dict__["_send"], vars(_stdlib), __name__)
_send.__defaults__ = (_os.write,)


def _recv_bytes(self: Any, maxsize: int | None = None) -> Any:
    """``Connection._recv_bytes``: in a fiber, wait until readable (cancellable), then read
    the whole message, shielded from cancellation."""
    f = getcurrent()
    if type(f) is not Fiber:
        return _std_recv_bytes(self, maxsize)
    _os._wait_ready(f, self._handle, False)
    with CancelScope(shield=True):
        return _std_recv_bytes(self, maxsize)


def _send_bytes(self: Any, buf: Any) -> None:
    """``Connection._send_bytes``: in a fiber, wait until writable (cancellable), then write
    the whole message, shielded from cancellation."""
    f = getcurrent()
    if type(f) is not Fiber:
        _std_send_bytes(self, buf)
        return
    _os._wait_ready(f, self._handle, True)
    with CancelScope(shield=True):
        _std_send_bytes(self, buf)


def _poll(self: Any, timeout: float | None) -> bool:
    """``Connection._poll``: whether there is something to read (or end of file) within
    ``timeout`` seconds (None: no limit); in a fiber, waiting on the hub."""
    f = getcurrent()
    if type(f) is not Fiber:
        return bool(_std_poll(self, timeout))
    fd = self._handle
    if poll_fd(fd, True, False):
        return True
    hub = f.hub
    deadline = None if timeout is None else hub.time() + timeout
    while True:
        remaining = None if deadline is None else deadline - hub.time()
        if remaining is not None and not remaining > 0:
            return False
        hub.wait_fds(f, (fd,), (), remaining, BUSY_POLL)
        if poll_fd(fd, True, False):
            return True


_wait_globals = dict(vars(_stdlib))
_wait_globals["_WaitSelector"] = getattr(_selectors, "PollSelector", _selectors.SelectSelector)
_cooperative_wait: Any = rebind(_std_wait, _wait_globals, __name__)


def wait(object_list: Any, timeout: float | None = None) -> list[Any]:
    """As `multiprocessing.connection.wait`: the objects of ``object_list`` (connections,
    sockets, process sentinels, fds) ready to read within ``timeout`` seconds; in a fiber,
    suspends only that fiber."""
    if type(getcurrent()) is not Fiber:
        return _std_wait(object_list, timeout)
    return _cooperative_wait(object_list, timeout)
