"""Cooperative `selectors`: a drop-in mirror of the stdlib module; ``select()`` suspends a fiber.

Every name of the stdlib module is here. `SelectSelector`, `PollSelector` and `EpollSelector`
(where the platform has them) are the stdlib classes themselves, unchanged, with the OS
primitive they call swapped for the cooperative one of `unknot.select`: ``select.select``, a
`unknot.select.poll` object, a `unknot.select.epoll` object. Keys, events, timeouts and errors
are therefore the stdlib's own; in a fiber ``select(timeout)`` suspends only that fiber, and
elsewhere it blocks the thread exactly like the stdlib's.

`DefaultSelector` is the best of these: epoll, else poll, else select. (On BSD and macOS the
stdlib's default is ``KqueueSelector``, which is re-exported unchanged and is *not*
cooperative; unknot's `DefaultSelector` picks poll there.)
"""

from __future__ import annotations

import selectors as _stdlib
import sys as _sys
from selectors import *  # noqa: F403 - this module mirrors the whole stdlib module
from typing import Any

from . import select as _cooperative


class SelectSelector(_stdlib.SelectSelector):
    """`selectors.SelectSelector` over the cooperative `unknot.select.select`."""

    if _sys.platform == "win32":

        def _select(self, r: Any, w: Any, _: Any, timeout: Any = None) -> Any:
            r, w, x = _cooperative.select(r, w, w, timeout)
            return r + w, []

    else:
        _select = staticmethod(_cooperative.select)  # type: ignore[assignment]


_Default: type[_stdlib.BaseSelector] = SelectSelector

if hasattr(_cooperative, "poll"):

    class PollSelector(_stdlib.PollSelector):
        """`selectors.PollSelector` over a cooperative `unknot.select.poll` object."""

        _selector_cls = _cooperative.poll

    _Default = PollSelector

if hasattr(_cooperative, "epoll"):

    class EpollSelector(_stdlib.EpollSelector):
        """`selectors.EpollSelector` over a cooperative `unknot.select.epoll` object."""

        _selector_cls = _cooperative.epoll

    _Default = EpollSelector

#: The most efficient cooperative selector available here.
DefaultSelector = _Default  # type: ignore[misc,assignment]
