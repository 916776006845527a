"""What the stdlib mirrors share: rebinding the stdlib's own functions to cooperative names, and
asking the OS once whether an fd is ready.

Both use the originals captured when this module is first imported, so they keep working after
`unknot.patch` has replaced ``select.poll``/``select.select`` with the cooperative versions.
"""

from __future__ import annotations

import select as _select
import types
from typing import Any

_poll = getattr(_select, "poll", None)  # the originals, kept if unknot.patch() replaces them
_select_select = _select.select

POLLIN: int = getattr(_select, "POLLIN", 1)
POLLOUT: int = getattr(_select, "POLLOUT", 4)
POLLERR: int = getattr(_select, "POLLERR", 8)
POLLHUP: int = getattr(_select, "POLLHUP", 16)
POLLNVAL: int = getattr(_select, "POLLNVAL", 32)


def rebind(fn: Any, namespace: dict[str, Any], module: str) -> Any:
    """The stdlib function ``fn`` running with globals ``namespace``: the same code, looking up
    the cooperative names of a mirror module (``module`` becomes its ``__module__``)."""
    new = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__doc__ = fn.__doc__
    new.__qualname__ = fn.__qualname__
    new.__module__ = module
    return new


def poll_fd(fd: int, read: bool, write: bool, timeout: float | None = 0.0) -> int:
    """Poll one fd, blocking the thread up to ``timeout`` seconds (None: no limit; 0: just ask).

    Returns the ``poll(2)`` revents (0: not ready): `POLLIN`/`POLLOUT` for the directions asked,
    plus `POLLERR`/`POLLHUP`/`POLLNVAL` for errors, which count as ready for both. Where ``poll``
    is missing, ``select`` stands in (it reports readability and writability only).
    """
    if _poll is not None:
        p = _poll()
        p.register(fd, (POLLIN if read else 0) | (POLLOUT if write else 0))
        ms = None if timeout is None else max(0.0, timeout) * 1000
        revents = 0
        for _fd, ev in p.poll(ms):
            revents |= ev
        return revents
    r, w, _ = _select_select([fd] if read else [], [fd] if write else [], [], timeout)
    return (POLLIN if r else 0) | (POLLOUT if w else 0)
