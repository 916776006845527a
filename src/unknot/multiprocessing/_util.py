"""``multiprocessing.util.ForkAwareLocal.__init__``, registered once per object.

The stdlib's ``__init__`` registers the local to be emptied in a forked child
(``register_after_fork``). A ``threading.local``'s ``__init__`` runs again in each thread that
uses it, and after `unknot.patch` in each fiber (``threading.local`` is fiber-local): every run
added an entry to ``multiprocessing.util``'s registry, kept as long as the local (200 fibers
calling a manager's proxy: 200 entries). `unknot.patch` (group ``subprocess``) installs
`_fork_aware_local_init` in its place when ``multiprocessing.util`` is imported.
"""

from __future__ import annotations

import multiprocessing.util as _util
from typing import Any
from weakref import WeakSet

#: The locals registered for the fork: once each.
_registered: WeakSet[Any] = WeakSet()


def _clear(obj: Any) -> None:
    obj.__dict__.clear()  # (the namespace of the thread or fiber that forked: the child's)


def _fork_aware_local_init(self: Any) -> None:
    """``ForkAwareLocal.__init__``: the stdlib's registration, on the first run only."""
    if self not in _registered:
        _registered.add(self)
        _util.register_after_fork(self, _clear)
