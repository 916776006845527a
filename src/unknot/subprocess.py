"""Cooperative `subprocess`: a drop-in mirror of the stdlib module; waits suspend only a fiber.

Every name of the stdlib module is here. In a fiber, a `Popen`'s ``wait``, ``communicate`` and
the reads and writes of its ``stdin``/``stdout``/``stderr`` suspend only the calling fiber;
`run`, `call`, `check_call`, `check_output`, `getoutput` and `getstatusoutput` are built on that
`Popen`. Outside fibers everything blocks the thread exactly like the stdlib.

Most of the code *is* the stdlib's: `Popen` subclasses `subprocess.Popen`, and its
``__init__`` and ``_communicate`` and the module functions are the stdlib functions' own code
objects, rebound to globals in which the blocking pieces are cooperative (as `unknot.socket`
does for ``create_connection``):

* pipe files: ``Popen.__init__`` opens the parent's pipe ends with `io.open`, here replaced by
  `_open_pipe`, which builds the same buffered (or, with ``bufsize=0``, raw) file objects over
  `PipeIO`, a `io.FileIO` whose reads and writes wait through the helpers of `unknot.os` (a
  readiness poll, then the syscall; the pipes stay in blocking mode, so a pipe handed on to
  another child, as in ``Popen(..., stdin=p1.stdout)``, is an ordinary blocking pipe there);
* ``communicate`` multiplexes the pipes with the stdlib's own loop (``_communicate``) over a
  selector, here `unknot.selectors.PollSelector`, whose ``select()`` suspends the fiber; its
  reads and writes happen only on fds the selector reported ready (writes in ``PIPE_BUF``
  chunks), so they never block. Large inputs and outputs both ways cannot deadlock, and
  ``TimeoutExpired`` carries the output read so far, exactly as in the stdlib. In a fiber the
  loop is used even where the stdlib takes a shortcut (one pipe, no timeout), because it keeps
  its progress on the `Popen`;
* ``wait``: on Linux 5.3+ the fiber waits for the process's pidfd (``os.pidfd_open``) to
  become readable, then reaps it with ``waitpid(WNOHANG)``; where pidfds are unavailable
  (other systems, old kernels, seccomp sandboxes) it polls ``waitpid(WNOHANG)`` with sleeps
  growing from 1 ms to 50 ms, as the stdlib's own ``wait(timeout)`` does. No SIGCHLD handler
  is installed.

Cancellation (`unknot.Cancelled`, e.g. from `unknot.move_on_after`) never leaves a zombie:

* a cancelled ``wait()``, ``communicate()`` or pipe read/write leaves the process alone: it
  keeps running, still owned by its `Popen`, and a later ``wait()`` reaps it (as after a
  ``KeyboardInterrupt`` in the stdlib). A later ``communicate()`` continues where the cancelled
  one stopped, losing nothing, as after ``TimeoutExpired`` (both send the rest of the first
  call's input, which CPython 3.11's loop forgets: gh-141473; a cancellation while
  ``communicate`` first flushes ``stdin`` leaves it not started); a cancelled read of a pipe
  file (``p.stdout.read()``) loses what it had read so far, as a ``KeyboardInterrupt`` does;
  a cancelled write of one returns what it wrote, if anything (a short write: the buffered
  file above it writes no byte twice), and the next wait raises `Cancelled`;
* leaving a ``with Popen(...)`` block because of cancellation (or a cancellation while the
  block's end waits for the process) kills the process (SIGKILL),
  closes the pipes and reaps it before `Cancelled` propagates (the stdlib's ``__exit__`` would
  wait for the process, which cancellation must not do indefinitely). `run`, `call`,
  `check_call`, `check_output` and `getoutput` therefore kill and reap their process when
  cancelled, as the stdlib's `run` does on any exception.

``preexec_fn`` runs in the forked child in a plain greenlet, as outside fibers: the child is a
copy of the parent, hub and fibers included, and a cooperative call there would run the
parent's other fibers in the child.
"""

from __future__ import annotations

import io as _io
import subprocess as _stdlib
import sys as _sys
import types as _types
import warnings as _warnings
from collections.abc import Callable
from operator import index as _index
from subprocess import *  # noqa: F403 - this module mirrors the whole stdlib module

# Public names of the stdlib module that its __all__ leaves out, and the private one run() uses.
from subprocess import _mswindows, list2cmdline  # type: ignore[attr-defined]  # noqa: F401
from time import monotonic as _monotonic
from typing import Any

from greenlet import getcurrent, greenlet

from . import os as _os
from . import selectors as _selectors
from ._fileio import FiberSafeReader as _FiberSafeReader
from ._fileio import FiberSafeText as _FiberSafeText
from ._fileio import FiberSafeWriter as _FiberSafeWriter
from ._mirror import rebind
from .lowlevel import Cancelled, CancelScope, Fiber, is_cancelled

__all__ = list(_stdlib.__all__)

_StdPopen = _stdlib.Popen
_FileIO = _io.FileIO
_READ_CHUNK = 65536


class PipeIO(_io.FileIO):
    """The raw file of a `Popen` pipe: a `io.FileIO` that waits cooperatively in a fiber.

    Reads wait until the pipe is readable, writes write everything, waiting until the pipe has
    room for each chunk (`unknot.os.read`/`unknot.os.write` rules); zero-size reads and writes
    return at once. Outside fibers, and for a pipe the user put in non-blocking mode, it is
    exactly `io.FileIO`. The buffered files over it (``bufsize`` other than 0) are
    `unknot._fileio.FiberSafeReader`/``FiberSafeWriter`` (and ``FiberSafeText`` in text mode):
    several fibers may use one at once.
    """

    def readinto(self, buffer: Any, /) -> int | None:
        """As `io.FileIO.readinto`; in a fiber, wait cooperatively for data."""
        f = getcurrent()
        if type(f) is not Fiber or not self.readable():
            return _FileIO.readinto(self, buffer)
        try:
            with memoryview(buffer) as view:
                empty = view.nbytes == 0
        except TypeError:
            empty = True  # (not a buffer: the stdlib's error, at once)
        if empty:
            return _FileIO.readinto(self, buffer)  # 0 at once for an empty buffer, as FileIO
        return _os._cooperative_read(f, self.fileno(), _FileIO.readinto, self, buffer)

    def read(self, size: int | None = -1, /) -> Any:
        """As `io.FileIO.read`; in a fiber, wait cooperatively for data."""
        f = getcurrent()
        if type(f) is not Fiber or not self.readable():
            return _FileIO.read(self, size)
        if size is None:
            return self.readall()
        try:
            n = _index(size)
        except TypeError:
            return _FileIO.read(self, size)  # the stdlib's error, at once
        if n < 0:
            return self.readall()
        if n == 0 or n > _sys.maxsize:
            return _FileIO.read(self, size)  # b"" for 0, and the stdlib's error, at once
        return _os._cooperative_read(f, self.fileno(), _FileIO.read, self, n)

    def readall(self) -> bytes:
        """As `io.FileIO.readall`: read until end of file; in a fiber, cooperatively."""
        f = getcurrent()
        if type(f) is not Fiber or not self.readable():
            return _FileIO.readall(self)
        chunks: list[bytes] = []
        fd = self.fileno()
        while True:
            chunk = _os._cooperative_read(f, fd, _FileIO.read, self, _READ_CHUNK)
            if not chunk:
                if chunk is None and not chunks:
                    return None  # type: ignore[return-value]  # non-blocking fd, nothing yet
                return b"".join(chunks)
            chunks.append(chunk)

    def write(self, data: Any, /) -> int:
        """As `io.FileIO.write`; in a fiber, write all of ``data`` cooperatively (cancelled
        after writing part of it, return that count: the buffered file above must not write
        it again)."""
        f = getcurrent()
        if type(f) is not Fiber or not self.writable():
            return _FileIO.write(self, data)
        return _os._cooperative_write(
            f, self.fileno(), data, lambda chunk: _FileIO.write(self, chunk), stream=True, raw=True
        )


def _open_pipe(fd: int, mode: str, buffering: int = -1) -> Any:
    """What ``io.open(fd, mode, buffering)`` returns for a `Popen` pipe, over a `PipeIO`."""
    if buffering == 1:
        _warnings.warn(
            "line buffering (buffering=1) isn't supported in binary mode, "
            "the default buffer size will be used",
            RuntimeWarning,
            stacklevel=3,
        )
        buffering = -1
    raw = PipeIO(fd, "w" if "w" in mode else "r")
    if buffering == 0:
        return raw
    if buffering < 0:
        buffering = getattr(raw, "_blksize", _io.DEFAULT_BUFFER_SIZE)
    # (subclasses of io.BufferedWriter and io.BufferedReader that several fibers may use at once)
    if "w" in mode:
        return _FiberSafeWriter(raw, buffering)
    return _FiberSafeReader(raw, buffering)


def _rebind(fn: Any, namespace: dict[str, Any]) -> Any:
    """The stdlib function ``fn`` running with globals ``namespace``: same code, our names."""
    return rebind(fn, namespace, __name__)


# The globals of the rebound Popen methods: the stdlib module's, with io.open making PipeIO
# files and the communicate() selector cooperative. (A copy, made once: the module constants
# those methods read do not change.)
_popen_globals = dict(vars(_stdlib))
_popen_globals["io"] = _types.SimpleNamespace(open=_open_pipe, TextIOWrapper=_FiberSafeText)
_popen_globals["_PopenSelector"] = getattr(_selectors, "PollSelector", _selectors.SelectSelector)


def _outside_fibers(fn: Callable[[], Any]) -> Callable[[], None]:
    """``preexec_fn`` for a child forked by a fiber: ``fn`` runs there in a plain greenlet.

    The forked child is a copy of the parent, hub and fibers included, resumed inside the
    fiber that forked it: a cooperative call in ``fn`` (a patched ``time.sleep``, a lock)
    would switch to the copy of the hub, which would run the parent's other fibers in the
    child before it execs. In a plain greenlet, such calls are the stdlib's, as in a thread.
    """

    def preexec() -> None:
        greenlet(fn).switch()  # (its exception, if any, comes out here, to _fork_exec)

    return preexec


def _in_cancelled_fiber() -> bool:
    return is_cancelled()


class Popen(_StdPopen):
    """`subprocess.Popen` whose waits and pipe I/O suspend only the calling fiber.

    Same constructor, attributes and methods as the stdlib's. See the module docstring for how
    waiting works and what cancellation does.
    """

    __init__ = _rebind(_StdPopen.__init__, _popen_globals)
    if not _mswindows:
        _communicate = _rebind(_StdPopen._communicate, _popen_globals)  # type: ignore[attr-defined]

        def _execute_child(self, args: Any, executable: Any, preexec_fn: Any, *rest: Any) -> None:
            # (The stdlib's __init__ passes them all positionally, in this order.)
            if preexec_fn is not None and type(getcurrent()) is Fiber:
                preexec_fn = _outside_fibers(preexec_fn)
            _StdPopen._execute_child(self, args, executable, preexec_fn, *rest)  # type: ignore[attr-defined]

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        """As `subprocess.Popen.communicate`; in a fiber, suspends only that fiber.

        In a fiber it always runs the stdlib's multiplexed loop (the stdlib skips the loop when
        at most one pipe is open and no timeout is given), which keeps the input sent and the
        output read so far on the Popen: after a cancellation, as after `TimeoutExpired`,
        calling ``communicate()`` again continues where it stopped and loses nothing. Called
        again after it finished, it gives what the stdlib's gives: the output again after the
        stdlib's loop, `ValueError` (a closed pipe) after its shortcut.
        """
        if type(getcurrent()) is not Fiber or _mswindows:
            return _StdPopen.communicate(self, input, timeout)
        started: bool = self._communication_started  # type: ignore[has-type]
        if started and input:
            raise ValueError("Cannot send input after starting communication")
        # The stdlib's shortcut (no timeout, at most one pipe) never marks the communication
        # started, so calling communicate() again takes it again, on a pipe it closed: reading
        # stdout (or stderr) raises ValueError, and so does writing input to stdin. The loop
        # below would return the output again instead, as the stdlib does after its loop.
        shortcut = (
            timeout is None
            and not started
            and [self.stdin, self.stdout, self.stderr].count(None) >= 2
        )
        if shortcut and all(p is None or p.closed for p in (self.stdin, self.stdout, self.stderr)):
            return _StdPopen.communicate(self, input, timeout)  # nothing there can block
        endtime = None if timeout is None else _monotonic() + timeout
        try:
            if started and input is None:
                # Resumed after a cancellation or TimeoutExpired: the stdlib's loop sends input
                # only when given some, so the rest of the first call's input would never be
                # sent and stdin never closed (CPython gh-141473, fixed in later versions).
                input = self._unsent_input()
            stdout, stderr = self._communicate(input, endtime, timeout)
        except KeyboardInterrupt:
            # As the stdlib: give the child, which got the same SIGINT, a moment to exit.
            sigint_timeout = self._sigint_wait_secs  # type: ignore[has-type]
            if endtime is not None:
                sigint_timeout = min(sigint_timeout, self._remaining_time(endtime))  # type: ignore[attr-defined]
            self._sigint_wait_secs = 0
            try:
                self._wait(timeout=sigint_timeout)
            except TimeoutExpired:  # noqa: F405
                pass
            raise
        finally:
            # The stdlib's loop first flushes what the caller wrote to stdin, which may wait;
            # then it makes its table of outputs. Interrupted before that table exists (in the
            # flush: a cancellation), the communication has not started: the next call starts
            # it afresh, with its input.
            if started or hasattr(self, "_fileobj2output"):
                self._communication_started = True
        self.wait(timeout=self._remaining_time(endtime))  # type: ignore[attr-defined]
        if shortcut:  # leave it as the stdlib's shortcut does (see above)
            self._communication_started = False
            self.__dict__.pop("_fileobj2output", None)
        return (stdout, stderr)

    def _unsent_input(self) -> Any:
        """The input of an interrupted communication, if some of it is still to be sent."""
        pending = getattr(self, "_input", None)
        if (
            pending
            and self.stdin
            and not self.stdin.closed
            and getattr(self, "_input_offset", 0) < len(pending)
        ):
            return pending
        return None

    def __exit__(self, exc_type: Any, value: Any, traceback: Any) -> None:
        """Close the pipes and wait for the process; if the fiber is cancelled (before, or
        while this waits), kill and reap it (`Cancelled` then propagates)."""
        if self.returncode is None and _in_cancelled_fiber():
            self._kill_and_reap()
            return
        try:
            _StdPopen.__exit__(self, exc_type, value, traceback)
        except Cancelled:
            # Cancelled while flushing stdin or waiting for the process: as when the block is
            # left because of cancellation, the process must not outlive the block.
            if self.returncode is None:
                self._kill_and_reap()
            raise

    def _kill_and_reap(self) -> None:
        try:
            self.kill()
        except OSError:
            pass
        for stream in (self.stdout, self.stderr, self.stdin):
            if stream:
                try:
                    stream.close()  # a flush that would have to wait fails; the fd is closed
                except (OSError, ValueError, Cancelled):
                    pass
        with CancelScope(shield=True):
            self.wait()  # SIGKILL cannot be ignored: brief

    def _wait(self, timeout: float | None) -> int | None:
        """Wait for the process to exit, cooperatively in a fiber (pidfd, else polling)."""
        if self.returncode is not None:
            return self.returncode
        f = getcurrent()
        if type(f) is not Fiber or _mswindows:  # (Windows: not cooperative)
            return _StdPopen._wait(self, timeout)  # type: ignore[attr-defined]
        hub = f.hub
        deadline = None if timeout is None else hub.time() + timeout
        lock = self._waitpid_lock  # type: ignore[attr-defined]
        pidfd: int | None = None
        use_pidfd = _os._pidfd_open is not None
        delay = 0.0005
        try:
            while True:
                locked = lock.acquire(False)
                if locked:
                    try:
                        if self.returncode is not None:
                            break  # reaped by someone else
                        pid, sts = self._try_wait(_os.WNOHANG)  # type: ignore[attr-defined]
                        if pid == self.pid:
                            self._handle_exitstatus(sts)  # type: ignore[attr-defined]
                            break
                        if pidfd is None and use_pidfd:
                            # Opened while we hold the lock and the child is unreaped: the pid
                            # cannot have been reused. An exit from now on makes it readable.
                            try:
                                pidfd = _os._pidfd_open(self.pid)  # type: ignore[misc]
                            except OSError:
                                use_pidfd = False  # ENOSYS, EPERM...: poll instead
                    finally:
                        lock.release()
                remaining = None if deadline is None else deadline - hub.time()
                if remaining is not None and remaining <= 0:
                    assert timeout is not None
                    raise TimeoutExpired(self.args, timeout)  # noqa: F405
                if pidfd is not None and locked:
                    hub.wait_fds(f, (pidfd,), (), remaining, _os.BUSY_POLL)
                else:
                    delay = min(delay * 2, 0.05)
                    if remaining is not None:
                        delay = min(delay, remaining)
                    hub.park(f, delay)
        finally:
            if pidfd is not None:
                _os.close(pidfd)
        return self.returncode


def _function(fn: Any) -> Any:
    """The stdlib module function ``fn`` looking up `Popen`, `run`... in this module."""
    return _rebind(fn, globals())


run = _function(_stdlib.run)
call = _function(_stdlib.call)
check_call = _function(_stdlib.check_call)
check_output = _function(_stdlib.check_output)
getstatusoutput = _function(_stdlib.getstatusoutput)
getoutput = _function(_stdlib.getoutput)
