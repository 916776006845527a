"""What a child process forked while a hub runs keeps of it: POSIX's rule for threads.

``os.fork()`` copies the whole process: the hub, every fiber, and the hub's kernel objects, of
which the child gets a *shared* copy (the epoll instance: an ``epoll_ctl`` in the child changes
the parent's interest set; the loop's self-pipe: either side may read the other's wake-up
byte). As POSIX fork keeps only the thread that called it, the child keeps only the fiber that
called fork (``multiprocessing``'s "fork" start method, a ``ProcessPoolExecutor`` using it, a
plain ``os.fork()``). In the child, before fork returns there (`_after_fork_in_child`):

* every other fiber of that hub never runs again (`Hub._reset_after_fork`): nothing it waited
  for wakes it, and it is out of the hub's table (`run`'s shutdown does not wait for it). It is
  kept alive in `_LEFT_BEHIND`, never collected: greenlet would run its ``finally`` blocks;
* the backend gets a kernel object of its own (`HubSelector._reset_backend_after_fork`); the
  sockets' fd records stay, to be registered in it at their next wait;
* the loop drops the parent's asyncio callbacks, timers, readers, tasks and executor jobs and
  gets a self-pipe of its own (`HubEventLoop._reset_after_fork`). If the parent's loop had made
  its self-pipe the signal wakeup fd (`wake_on_signals`, main thread), the child's is made the
  child's wakeup fd (`_interrupt` clears the parent's in every forked child first), so that a
  signal arriving just before the child's poll still ends it;
* if the forking fiber is not the hub's root fiber, it becomes the child's root (Ctrl-C and
  deadlock reports go to it), and when it finishes the child process exits (`_exit_child`), as
  a single-threaded process ends when its only thread does.

Hubs running in other threads (threads the child does not have) get their epoll fd and
self-pipe closed in the child: nothing there can run their fibers, nor touch the parent's
kernel objects through them. A `to_thread` worker that forked forgets the hub it worked for
(another thread's), so that `from_thread` there says no hub runs instead of waiting for ever.
A fork from outside any fiber (a loop callback, a thread without a hub) keeps no fiber of the
forking thread's hub.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from typing import Any

from greenlet import getcurrent

from ._fiber import CANCELLED, FAILED, Fiber
from ._hub import Hub
from ._interrupt import _our_wakeup_fd
from ._lookup import _running
from ._loop import HubEventLoop
from ._selector_hub import HubSelector
from ._threads import forget_hub_after_fork

#: What a forked child left behind: the other fibers of its hub, the parent's asyncio tasks.
#: Never collected, for the child's life: a collected greenlet that is still suspended gets a
#: `GreenletExit` thrown in, which would run the parent's fibers' ``finally`` blocks here.
_LEFT_BEHIND: list[Any] = []

#: The signal wakeup fd a loop's run had set (`wake_on_signals`) when this process last forked
#: (-1: none); read in the child, where `_interrupt` has cleared it before `_after_fork_in_child`.
_wakeup_fd_at_fork = [-1]


def _before_fork() -> None:
    _wakeup_fd_at_fork[0] = _our_wakeup_fd[0]


def _after_fork_in_child() -> None:
    forget_hub_after_fork()  # (a fork in a `to_thread` worker: its hub is in another thread)
    cur = getcurrent()
    keep = cur if type(cur) is Fiber else None
    me = threading.current_thread()
    mine: Hub | None = keep.hub if keep is not None else None
    for hub in list(_running):
        if hub is mine:
            continue
        if mine is None and hub.thread is me:
            mine = hub  # (the fork was made on this hub, outside its fibers)
            continue
        _running.pop(hub, None)  # another thread's: that thread is not in the child
        if isinstance(hub, HubSelector):
            hub._close_after_fork()
        loop = hub.loop
        if isinstance(loop, HubEventLoop):
            for sock in (loop._ssock, loop._csock):  # type: ignore[attr-defined]
                if sock is not None:
                    sock.close()
    if mine is not None:
        _reset_hub(mine, keep)


def _reset_hub(hub: Hub, keep: Fiber | None) -> None:
    _LEFT_BEHIND.extend(hub._reset_after_fork(keep))
    loop = hub.loop
    if isinstance(hub, HubSelector) and isinstance(loop, HubEventLoop):
        hub._reset_backend_after_fork()
        _LEFT_BEHIND.extend(loop._reset_after_fork())
        _wake_on_signals_again(loop)
    if keep is not None and keep is not hub.root:
        hub.root = keep
        keep.add_done_callback(_exit_child)


def _wake_on_signals_again(loop: HubEventLoop) -> None:
    """The parent's wakeup fd was this loop's self-pipe: make it the child's (the same fd
    number, now the child's own pipe), as the loop's run set it (and will clear it)."""
    fd = _wakeup_fd_at_fork[0]
    csock = loop._csock  # type: ignore[attr-defined]
    if fd == -1 or csock is None or csock.fileno() != fd:
        return  # (none; or another thread's loop's, closed in the child)
    try:
        signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    except ValueError:  # (not the main thread: cannot happen, the forking thread is the child's)
        return
    _our_wakeup_fd[0] = fd


def _exit_child(f: Fiber) -> None:
    """The fiber that forked this process, not the root fiber, finished: end the process, with
    status 0 if it returned, 1 if it raised (its traceback on stderr) or was cancelled, or as
    `SystemExit` says."""
    code = 0
    if f._state == FAILED:
        f._retrieved = True
        err = f._error
        if isinstance(err, SystemExit):
            if err.code is None:
                code = 0
            elif isinstance(err.code, int):
                code = err.code
            else:
                print(err.code, file=sys.stderr)
                code = 1
        else:
            print(
                f"Unhandled exception in fiber {f.name}, which forked process {os.getpid()}:",
                file=sys.stderr,
            )
            if err is not None:
                traceback.print_exception(type(err), err, f._result[1], file=sys.stderr)
            code = 1
    elif f._state == CANCELLED:
        print(f"Fiber {f.name}, which forked process {os.getpid()}, was cancelled", file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: S110 - exiting anyway
            pass
    os._exit(code)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
