"""Cooperative `os`: a drop-in mirror of the stdlib module; its blocking calls suspend one fiber.

Every name of the stdlib module is here. Overridden, and cooperative in a fiber (outside fibers
each is exactly the stdlib function, blocking the thread):

* `read` and `write` on pipes, FIFOs and ttys (and sockets, though `unknot.socket` is the
  efficient way to use those);
* `waitpid`, `wait`, `wait3`, `wait4`, `waitid` (waiting for a child process) and `system`;
* `popen`, whose file and ``close()`` are those of `unknot.subprocess`.

**File descriptors keep their mode.** Unlike gevent's ``nb_read``/``nb_write``, which require
the caller to put the fd in non-blocking mode, nothing here changes an fd's flags (O_NONBLOCK
belongs to the open file description, which a child process or another library may share).
Instead, on an fd in *blocking* mode a fiber first checks readiness with a zero-timeout
``poll``, and if the fd is not ready it waits on the hub until it is; only then does it make the
syscall, which readiness guarantees will not block:

* a read returns what is available (at least one byte, or b"" at end of file);
* a write is made in chunks of at most ``select.PIPE_BUF`` bytes, each after the fd polled
  writable (a pipe that polls writable has room for ``PIPE_BUF`` bytes), until all the data is
  written, which is what a blocking write to a pipe does. Writes of up to ``PIPE_BUF`` bytes
  stay atomic. An error after part of the data was written (the reader went away) returns the
  count written so far, as the kernel does; cancellation raises `unknot.Cancelled`, and a prefix
  of the data may have been written.

An fd in *non-blocking* mode is left alone: the call is the stdlib's, raising `BlockingIOError`
when it would block (wait with `unknot.wait_readable` yourself); so is an fd not open for the
operation (reading a pipe's write end fails at once with EBADF, as in the stdlib). Regular files
are always "ready" and are read and written directly (disk I/O cannot be polled; use
`unknot.to_thread` for slow file systems). The one race this leaves is another process
consuming the readiness between the poll and the syscall (two readers of one pipe): the syscall
then blocks the thread, as it would have with threads. Several fibers may wait on one fd: they
queue on the hub, and each that stops waiting wakes the next to poll again.

As a socket's blocking calls, a read or write on a blocking fd is a cancellation point even when
it need not wait, and a fiber whose calls never wait lets the others run after a streak of them
(`Hub.IO_STREAK_MAX`).

Child processes: ``waitpid(pid, 0)``, ``wait4(pid, 0)`` and ``waitid(P_PID, pid, WEXITED)``
for a specific child wait on a pidfd (``os.pidfd_open``, Linux 5.3+), ``waitid(P_PIDFD, fd,
WEXITED)`` on the caller's pidfd; waiting for any child (``wait``, ``wait3``, ``pid <= 0``,
``P_ALL``, ``P_PGID``), for a stop or a continue (``WUNTRACED``/``WSTOPPED``, ``WCONTINUED``),
or where pidfds are unavailable, polls with ``WNOHANG`` with sleeps growing from 1 ms to 50 ms.
With ``WNOHANG`` each is the stdlib's call. Results are the stdlib's (``wait3`` and ``wait4``
return the rusage; ``WNOWAIT`` leaves the child waitable).

`system` runs ``/bin/sh -c command`` with ``posix_spawn``, in the process's C environment (as
C's ``system()``: what ``os.putenv``/``os.unsetenv`` or a C extension changed behind
``os.environ``'s back counts), and waits with `waitpid`. Unlike C's ``system()`` it does not
ignore SIGINT and SIGQUIT, nor block SIGCHLD, in the caller while the shell runs: the other
fibers keep running and Ctrl-C keeps reaching the program. If the fiber is cancelled (or gets
the `KeyboardInterrupt`), the shell is killed and reaped before the exception propagates, so
no zombie is left.
"""

from __future__ import annotations

import os as _stdlib
import select as _select
import stat as _stat
import sys as _sys
from collections.abc import Callable
from operator import index as _index
from os import *  # noqa: F403 - this module mirrors the whole stdlib module

# The public names of the stdlib module that its __all__ leaves out.
from os import (  # noqa: F401
    PathLike,
    supports_bytes_environ,
    supports_dir_fd,
    supports_effective_ids,
    supports_fd,
    supports_follow_symlinks,
)
from typing import TYPE_CHECKING, Any

try:
    import fcntl as _fcntl
except ImportError:  # Windows
    _fcntl = None  # type: ignore[assignment]

from greenlet import getcurrent

if TYPE_CHECKING:
    import resource as _resource

from ._mirror import poll_fd
from ._sockio import entry as _io_entry
from .lowlevel import Cancelled, Fiber
from .select import BUSY_POLL

__all__ = list(_stdlib.__all__)
# Public names missing from the stdlib's __all__ in some versions (3.13's process_cpu_count).
globals().update(
    {k: v for k, v in vars(_stdlib).items() if not k.startswith("_") and k not in globals()}
)

# The stdlib's own functions and constants, captured before unknot.patch() can replace them.
_std_read = _stdlib.read
_std_write = _stdlib.write
_std_waitpid = _stdlib.waitpid
_std_system = _stdlib.system
_std_wait3: Any = getattr(_stdlib, "wait3", None)
_std_wait4: Any = getattr(_stdlib, "wait4", None)
_std_waitid: Any = getattr(_stdlib, "waitid", None)
_get_blocking = _stdlib.get_blocking
_posix_spawn = getattr(_stdlib, "posix_spawn", None)
_pidfd_open = getattr(_stdlib, "pidfd_open", None)
_PIPE_BUF: int = getattr(_select, "PIPE_BUF", 512)
_WNOHANG: int = getattr(_stdlib, "WNOHANG", 1)
# (A pidfd becomes readable when its process exits, not when it stops or continues.)
_NO_PIDFD_OPTIONS: int = (
    getattr(_stdlib, "WUNTRACED", 0)
    | getattr(_stdlib, "WSTOPPED", 0)
    | getattr(_stdlib, "WCONTINUED", 0)
)
_P_PID: Any = getattr(_stdlib, "P_PID", None)
_P_PIDFD: Any = getattr(_stdlib, "P_PIDFD", None)
# Python 3.13's posix_spawn takes env=None for the process's C environment.
_SPAWN_TAKES_NO_ENV = _sys.version_info >= (3, 13)
_c_environ: Any = None  # ctypes' view of C's ``environ`` (char **), once looked up


def _ready(fd: int, write: bool) -> bool:
    """Whether a read (or write) on ``fd`` would not block now (errors count as ready)."""
    return bool(poll_fd(fd, not write, write))


def _wait_ready(f: Fiber, fd: int, write: bool) -> None:
    """Suspend fiber ``f`` until ``fd`` is readable (or writable); at once if it already is.

    Cancellable: raises `unknot.Cancelled` in a cancelled scope when it has to wait.
    """
    while not _ready(fd, write):
        f.hub.wait_fds(f, () if write else (fd,), (fd,) if write else (), None, BUSY_POLL)


def _may_wait(fd: int, write: bool) -> bool:
    """Whether a fiber should wait for ``fd``: it is in blocking mode and open that way.

    (A read from a write-only fd, such as the write end of a pipe, fails at once with EBADF:
    polling it for readability would wait forever instead.)
    """
    try:
        if _fcntl is None:
            return _get_blocking(fd)
        flags = _fcntl.fcntl(fd, _fcntl.F_GETFL)
    except (OSError, ValueError, OverflowError):
        return False  # a bad fd: the stdlib's own call raises its own error for it
    if flags & _stdlib.O_NONBLOCK:
        return False
    mode = flags & _stdlib.O_ACCMODE
    return mode == _stdlib.O_RDWR or mode == (_stdlib.O_WRONLY if write else _stdlib.O_RDONLY)


def _cooperative_read(f: Fiber, fd: int, op: Any, *args: Any) -> Any:
    """``op(*args)``, a read from blocking ``fd``, made after ``fd`` became readable."""
    if _may_wait(fd, False):
        # As a socket's blocking call: a cancellation point, and a step of the hub's fairness
        # rule, so that a fiber whose pipe always has data still lets the others run.
        _io_entry(f.hub)
        _wait_ready(f, fd, False)
    return op(*args)


def _cooperative_write(
    f: Fiber, fd: int, data: Any, op: Any, stream: bool | None = None, raw: bool = False
) -> int:
    """Write all of ``data`` to blocking ``fd`` with ``op(chunk) -> int``, cooperatively.

    ``stream``: True if ``fd`` is known to be a pipe, socket or tty (pollable), None to ask the
    OS. See the module docstring for the chunking rule. ``raw``: the write of a raw file, whose
    caller (a buffered writer) must learn what was written: a cancellation after part of
    ``data`` was written returns that count (a short write) instead of raising, and is raised
    by the next call that waits, as a cancelled scope's calls all raise.
    """
    if not _may_wait(fd, True):
        return op(data)
    _io_entry(f.hub)  # (as in _cooperative_read; nothing is written yet if it raises)
    if stream is None:
        mode = _stdlib.fstat(fd).st_mode
        stream = not (_stat.S_ISREG(mode) or _stat.S_ISBLK(mode) or _stat.S_ISDIR(mode))
    if not stream:
        return op(data)
    try:
        view = memoryview(data)
    except TypeError:
        return op(data)  # the stdlib's own TypeError
    with view:
        nbytes = view.nbytes
        if nbytes == 0:
            return op(data)  # nothing to write: 0 at once, as the stdlib's write
        if nbytes <= _PIPE_BUF or not view.c_contiguous:
            _wait_ready(f, fd, True)
            return op(data)
        with view.cast("B") as buf:
            total = 0
            while total < nbytes:
                try:
                    _wait_ready(f, fd, True)
                except Cancelled:
                    if raw and total:
                        return total  # (a buffered writer would write the prefix again)
                    raise
                try:
                    total += op(buf[total : total + _PIPE_BUF])
                except OSError:
                    if total:
                        return total  # as a blocking write that fails midway: the count so far
                    raise
            return total


def read(fd: int, n: int, /) -> bytes:
    """As `os.read`: in a fiber, wait cooperatively until ``fd`` is readable (blocking fds)."""
    f = getcurrent()
    if type(f) is not Fiber:
        return _std_read(fd, n)
    try:
        fd, n = _index(fd), _index(n)  # (as os.read takes them: numpy integers too)
    except TypeError:
        return _std_read(fd, n)  # the stdlib's error
    if not 0 < n <= _sys.maxsize:
        return _std_read(fd, n)  # b"" for 0, and the stdlib's errors, at once
    return _cooperative_read(f, fd, _std_read, fd, n)


def write(fd: int, data: Any, /) -> int:
    """As `os.write`: in a fiber, write all of ``data`` to a blocking pipe cooperatively (empty
    ``data``: 0 at once, as the stdlib's)."""
    f = getcurrent()
    if type(f) is not Fiber:
        return _std_write(fd, data)
    try:
        fd = _index(fd)
    except TypeError:
        return _std_write(fd, data)  # the stdlib's error
    return _cooperative_write(f, fd, data, lambda chunk: _std_write(fd, chunk))


def _wait_child_with(f: Fiber, attempt: Callable[[], Any], pid: int, fd: int | None = None) -> Any:
    """``attempt()`` (a wait with WNOHANG: None while no child is ready) until it returns a
    result, suspending only fiber ``f`` in between: on ``fd`` (a pidfd of the caller's) if
    given, else on a pidfd of child ``pid`` if ``pid > 0`` and one can be opened, else in
    sleeps growing from 1 ms to 50 ms."""
    from .lowlevel import sleep

    pidfd = None
    if fd is None and pid > 0 and _pidfd_open is not None:
        try:
            pidfd = _pidfd_open(pid)  # before the first attempt: an exit after it is seen
        except OSError:
            pidfd = None  # no such process (the attempt reports it) or no pidfds here: poll
    ready_fd = fd if fd is not None else pidfd
    delay = 0.001
    try:
        while True:
            result = attempt()
            if result is not None:
                return result
            if ready_fd is not None:
                _wait_ready(f, ready_fd, False)
            else:
                sleep(delay)
                delay = min(delay * 2, 0.05)
    finally:
        if pidfd is not None:
            _stdlib.close(pidfd)


def _reaped(result: Any) -> Any:
    """The result of a ``waitpid``/``wait3``/``wait4`` with WNOHANG, or None if it reaped
    nothing (its pid is 0)."""
    return result if result[0] != 0 else None


def _pidfd_target(pid: int, options: int) -> int:
    """``pid`` if a wait for it with ``options`` can wait on its pidfd, else 0 (poll)."""
    return pid if isinstance(pid, int) and pid > 0 and not options & _NO_PIDFD_OPTIONS else 0


def _wait_child(f: Fiber, pid: int, options: int) -> tuple[int, int]:
    """``waitpid(pid, options)`` (options without WNOHANG), suspending only fiber ``f``."""
    result: tuple[int, int] = _wait_child_with(
        f, lambda: _reaped(_std_waitpid(pid, options | _WNOHANG)), _pidfd_target(pid, options)
    )
    return result


def waitpid(pid: int, options: int, /) -> tuple[int, int]:
    """As `os.waitpid`: in a fiber, wait for the child cooperatively (see the module docs)."""
    f = getcurrent()
    if type(f) is not Fiber or not isinstance(options, int) or options & _WNOHANG:
        return _std_waitpid(pid, options)
    return _wait_child(f, pid, options)


if hasattr(_stdlib, "wait"):

    def wait() -> tuple[int, int]:
        """As `os.wait`: wait for any child; in a fiber, cooperatively (by polling)."""
        f = getcurrent()
        if type(f) is not Fiber:
            return _stdlib.wait()
        return _wait_child(f, -1, 0)


if _std_wait3 is not None:

    def wait3(options: int) -> tuple[int, int, _resource.struct_rusage]:
        """As `os.wait3`: wait for any child, with its resource usage; in a fiber,
        cooperatively (by polling)."""
        f = getcurrent()
        if type(f) is not Fiber or not isinstance(options, int) or options & _WNOHANG:
            return _std_wait3(options)
        return _wait_child_with(f, lambda: _reaped(_std_wait3(options | _WNOHANG)), 0)


if _std_wait4 is not None:

    def wait4(pid: int, options: int) -> tuple[int, int, _resource.struct_rusage]:
        """As `os.wait4`: wait for child ``pid``, with its resource usage; in a fiber,
        cooperatively (a pidfd, or polling: see the module docs)."""
        f = getcurrent()
        if type(f) is not Fiber or not isinstance(options, int) or options & _WNOHANG:
            return _std_wait4(pid, options)
        return _wait_child_with(
            f,
            lambda: _reaped(_std_wait4(pid, options | _WNOHANG)),
            _pidfd_target(pid, options),
        )


if _std_waitid is not None:

    def waitid(idtype: int, id: int, options: int, /) -> _stdlib.waitid_result | None:
        """As `os.waitid`: in a fiber, wait cooperatively (a pidfd for ``P_PID`` and
        ``P_PIDFD`` without WSTOPPED/WCONTINUED, else polling). With WNOHANG, the stdlib's:
        None when no child is ready."""
        f = getcurrent()
        if type(f) is not Fiber or not isinstance(options, int) or options & _WNOHANG:
            return _std_waitid(idtype, id, options)
        pid, fd = 0, None
        if isinstance(id, int) and not options & _NO_PIDFD_OPTIONS:
            if _P_PIDFD is not None and idtype == _P_PIDFD:
                fd = id  # the caller's pidfd: readable once the process has exited
            elif _P_PID is not None and idtype == _P_PID:
                pid = id
        return _wait_child_with(f, lambda: _std_waitid(idtype, id, options | _WNOHANG), pid, fd)


def _spawn_env() -> Any:
    """The environment for `system`'s shell: the process's C environment, which
    ``os.putenv``, ``os.unsetenv`` and C code change without ``os.environ`` knowing (C's
    ``system()`` uses it). None (that environment) where ``posix_spawn`` takes it; else a copy
    read through ctypes; `os.environ` if ctypes cannot reach it."""
    global _c_environ
    if _SPAWN_TAKES_NO_ENV:
        return None
    if _c_environ is None:
        try:
            import ctypes

            _c_environ = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
        except (ImportError, OSError, ValueError, AttributeError):
            _c_environ = False
    if _c_environ is False:
        return _stdlib.environ
    env: dict[bytes, bytes] = {}
    i = 0
    while _c_environ and (entry := _c_environ[i]) is not None:  # (NULL after clearenv())
        key, sep, value = entry.partition(b"=")
        if sep and key:
            # (Of a name listed twice the shell keeps the last, as it does under C's system()
            # and posix_spawn(env=None): each entry it reads assigns its variable.)
            env[key] = value
        i += 1
    return env


def system(command: Any) -> int:
    """As `os.system`: run ``command`` in a shell; in a fiber, wait cooperatively.

    Returns the wait status. In a fiber the shell is started with ``posix_spawn``, in the
    process's C environment; if the fiber is cancelled while it runs, the shell is killed and
    reaped, then `Cancelled` propagates. SIGINT and SIGQUIT are not ignored meanwhile (see
    the module docs).
    """
    f = getcurrent()
    if (
        type(f) is not Fiber
        or _posix_spawn is None
        or not isinstance(command, (str, bytes, PathLike))  # (the stdlib raises TypeError)
    ):
        return _std_system(command)
    pid = _posix_spawn("/bin/sh", ["sh", "-c", command], _spawn_env())
    try:
        return _wait_child(f, pid, 0)[1]
    except BaseException:
        _reap_killed(pid)
        raise


def _reap_killed(pid: int) -> None:
    """Kill child ``pid`` and reap it (SIGKILL cannot be ignored, so this is brief)."""
    try:
        _stdlib.kill(pid, 9)
        _std_waitpid(pid, 0)
    except OSError:
        pass  # already reaped


def popen(cmd: str, mode: str = "r", buffering: int = -1) -> Any:
    """As `os.popen`, with a cooperative `unknot.subprocess.Popen` behind the file."""
    if not isinstance(cmd, str):
        raise TypeError(f"invalid cmd type ({type(cmd)}, expected string)")
    if mode not in ("r", "w"):
        raise ValueError(f"invalid mode {mode!r}")
    if buffering == 0 or buffering is None:
        raise ValueError("popen() does not support unbuffered streams")
    from . import subprocess

    if mode == "r":
        proc = subprocess.Popen(
            cmd, shell=True, text=True, stdout=subprocess.PIPE, bufsize=buffering
        )
        return _wrap_close(proc.stdout, proc)
    proc = subprocess.Popen(cmd, shell=True, text=True, stdin=subprocess.PIPE, bufsize=buffering)
    return _wrap_close(proc.stdin, proc)


_wrap_close: Any = _stdlib._wrap_close
