"""`multiprocessing.reduction` (POSIX) for unknot's sockets: a mirror of the stdlib module.

Every name of the stdlib module is here. ``ForkingPickler`` is the stdlib's class: `unknot.patch`
(group ``subprocess``) installs `_forking_pickler_init` below as its ``__init__``, so that
multiprocessing sends unknot's sockets to another process as it sends the stdlib's (they
arrive there as sockets: ``conn.send(sock)``, a socket in a queue or in a pool's task).

The stdlib registers its socket reducer for the class that ``socket.socket`` is when
``multiprocessing.reduction`` is imported, and a pickler looks its table up by exact type:
imported before the patch (as in every "spawn" or "forkserver" child, which imports it before
its main module), the table knows only the stdlib's class, and a socket made while patched,
unknot's, could not be sent (``TypeError: cannot pickle 'socket' object``); imported while
patched, only unknot's. Each pickler's table gets the reducer for both classes; and importing
this module (which applying the row does) registers it for the stdlib's class as the stdlib
would have, so that after `unknot.unpatch` (``ForkingPickler.__init__`` the stdlib's again) the
stdlib's sockets can still be sent.
"""

from __future__ import annotations

import multiprocessing.reduction as _stdlib
from multiprocessing.reduction import *  # noqa: F403 - this module mirrors the whole stdlib module
from typing import Any

from .. import socket as _usocket

__all__ = list(_stdlib.__all__)
# The public names the stdlib's __all__ leaves out (DupFd, sendfds, recvfds...).
globals().update(
    {k: v for k, v in vars(_stdlib).items() if not k.startswith("_") and k not in globals()}
)

_std_forking_pickler_init: Any = _stdlib.ForkingPickler.__dict__["__init__"]
_SOCKET: type = _usocket.socket
_STD_SOCKET: type = _usocket.socket.__mro__[1]  # the stdlib's socket.socket


def _forking_pickler_init(self: Any, *args: Any) -> None:
    """``ForkingPickler.__init__``: the stdlib's, then the socket reducer for unknot's socket
    class and the stdlib's alike (see the module docs)."""
    _std_forking_pickler_init(self, *args)
    table = self.dispatch_table
    reduce = table.get(_STD_SOCKET) or table.get(_SOCKET)
    if reduce is not None:
        table.setdefault(_STD_SOCKET, reduce)
        table.setdefault(_SOCKET, reduce)


# Imported while patched, the stdlib registered its reducer for unknot's class only: register
# it for the stdlib's too, for the picklers made after `unknot.unpatch`.
_extra_reducers: dict[type, Any] = _stdlib.ForkingPickler.__dict__["_extra_reducers"]
if _SOCKET in _extra_reducers:
    _extra_reducers.setdefault(_STD_SOCKET, _extra_reducers[_SOCKET])
