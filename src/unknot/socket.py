"""Cooperative sockets: a drop-in mirror of the stdlib `socket` module.

Every name of the stdlib module is here. The differences are where it blocks: in a fiber,
``accept``, ``connect``, ``recv*``, ``send*``, ``sendall`` and ``sendfile`` suspend only the
calling fiber, and DNS look-ups (`getaddrinfo`, `gethostbyname`...) run on unknot's thread pool.
Timeouts behave exactly as the stdlib's (`settimeout`, `setblocking`, `TimeoutError` with the
message "timed out"); outside fibers the socket blocks the thread like a stdlib socket.

How: the OS-level socket is always non-blocking. Each call first tries the syscall; only if it
would block does the fiber wait on the hub for readiness (an edge-triggered epoll registration
made once per socket) and try again.

Closing a socket other fibers are waiting on wakes them with `OSError` (EBADF); ``shutdown``
wakes them to try their calls again (`socket.shutdown`). Several fibers may wait to read (or to
write) the same socket at once, as threads may: they queue, and each that stops waiting wakes
the next to try its call again (`unknot.lowlevel.Hub.wait_fd`).
"""

from __future__ import annotations

import _socket
import _thread
import errno
import functools
import io as _io
import math
import os
import socket as _stdlib
import sys
import time as _time
from collections.abc import Callable
from socket import *  # noqa: F403 - this module mirrors the whole stdlib module

# _GLOBAL_DEFAULT_TIMEOUT, and the public names of the stdlib module that its __all__ leaves out.
from socket import (  # type: ignore[attr-defined]  # noqa: F401
    _GLOBAL_DEFAULT_TIMEOUT,
    EAGAIN,
    EBADF,
    EWOULDBLOCK,
    AddressInfo,
    MsgFlag,
    SocketIO,
)
from types import FunctionType
from typing import Any

from greenlet import getcurrent

from . import _fileio, _sockio
from ._mirror import rebind
from .lowlevel import Cancelled, Fiber
from .lowlevel import sleep as _fiber_sleep

__all__ = list(_stdlib.__all__)

_Csocket = _socket.socket
_StdSocket = _stdlib.socket
# The stdlib's own functions, captured before unknot.patch() can replace them in the stdlib
# module (this module calls them; looking them up there later would recurse).
_std_socketpair = _stdlib.socketpair
_std_getaddrinfo = _stdlib.getaddrinfo
_std_gethostbyname = _stdlib.gethostbyname
_std_gethostbyname_ex = _stdlib.gethostbyname_ex
_std_gethostbyaddr = _stdlib.gethostbyaddr
_std_getnameinfo = _stdlib.getnameinfo
_BlockingIOError = BlockingIOError


# The entry of a blocking call (the cancellation point and the fairness streak), the blocking
# calls' bodies and the general path they share live in unknot._sockio, which mypyc compiles.
_entry_here = _sockio.entry_here
_sockio_recv = _sockio.recv
_retry_call = _sockio.retry_call
_SocketState = _sockio.SocketState
_NBIO = _sockio._NBIO  # (unknot._nbio when the compiled build runs with it, else None)


_NS = 10**9
_INT_TIMEOUT_MAX = (2**63 - 1) // _NS  # whole seconds that fit CPython's nanosecond clock


def _parse_timeout(value: float) -> float:
    """What ``gettimeout()`` returns after the C ``settimeout(value)``, for plain numbers.

    CPython stores the timeout as whole nanoseconds, rounding up (``_PyTime_ROUND_TIMEOUT``),
    and converts back with ``_PyTime_AsSecondsDouble``: an exact division when the count is
    whole seconds, else ``ns / 1e9`` in double precision. The same IEEE operations here give the
    same bits. Callers pass a float in [0, 1e9) or an int in [0, _INT_TIMEOUT_MAX]; larger
    values overflow in C, with a message that differs between Python versions.
    """
    if type(value) is int:
        return float(value)
    ns = math.ceil(value * 1e9)
    if ns % _NS == 0:
        return float(ns // _NS)
    return float(ns) / 1e9


class socket(_StdSocket):
    """A `socket.socket` whose blocking operations suspend only the calling fiber."""

    # Everything unknot keeps per socket is one `unknot._sockio.SocketState` (its timeout, the
    # hub's record of its fd, what kind of socket it is): compiled, the blocking calls read it
    # with one generic attribute access, and the rest as C fields.
    __slots__ = ("_state",)

    def __init__(
        self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None
    ) -> None:
        _StdSocket.__init__(self, family, type, proto, fileno)
        nonblock = getattr(_stdlib, "SOCK_NONBLOCK", 0)
        stream = self.type == _stdlib.SOCK_STREAM
        self._state = _SocketState(
            0.0 if type != -1 and type & nonblock else _stdlib.getdefaulttimeout(),
            stream,
            stream and self.family in (_stdlib.AF_INET, _stdlib.AF_INET6),
        )
        _Csocket.settimeout(self, 0.0)

    # -- timeouts: emulated, the OS socket stays non-blocking ---------------------------------

    def settimeout(self, value: float | None) -> None:
        """As `socket.socket.settimeout`: None blocks, 0 never blocks, else seconds."""
        # The OS socket is always non-blocking; the value is only stored. Drivers call this
        # twice per command (redis-py), so plain numbers are parsed here, as the C method
        # would (see _parse_timeout); anything else is parsed by the C method itself.
        t = type(value)
        if (
            value is None
            or (t is float and 0.0 <= value < 1e9)
            or (t is int and 0 <= value <= _INT_TIMEOUT_MAX)
        ):
            # No syscall (the OS socket is already non-blocking): the one difference from the
            # stdlib is that a descriptor closed behind the socket's back is reported by the
            # next I/O call, not here (as in gevent). A closed socket raises EBADF here.
            if _Csocket.fileno(self) == -1:
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            self._state.timeout = None if value is None else _parse_timeout(value)
            return
        # Other values (Decimal, bool, NaN, negative, huge): the C method parses them with the
        # stdlib's errors and rounding; then the OS socket is put back in non-blocking mode.
        _Csocket.settimeout(self, value)
        value = _Csocket.gettimeout(self)
        _Csocket.settimeout(self, 0.0)
        self._state.timeout = value

    def gettimeout(self) -> float | None:
        """The timeout in seconds (None: blocking, 0.0: non-blocking)."""
        return self._state.timeout

    def setblocking(self, flag: bool) -> None:
        """``setblocking(True)`` is ``settimeout(None)``; ``False`` is ``settimeout(0.0)``."""
        if type(flag) is bool:
            _Csocket.settimeout(self, 0.0)  # as in settimeout: errors for a dead descriptor
            self._state.timeout = None if flag else 0.0
            return
        # Other values: let the C method parse ``flag`` (its rules differ between Python
        # versions: 3.13 accepts None) and raise what it raises (EBADF once closed); then read
        # back what it decided and put the OS socket back in non-blocking mode.
        _Csocket.setblocking(self, flag)
        blocking = _Csocket.gettimeout(self) is None
        _Csocket.settimeout(self, 0.0)
        self._state.timeout = None if blocking else 0.0

    def getblocking(self) -> bool:
        """False only in non-blocking mode (timeout 0.0)."""
        return self._state.timeout != 0.0

    # -- waiting ------------------------------------------------------------------------------

    def _deadline(self) -> float | None:
        return _sockio.deadline_of(self._state)

    # The waiting and the general path are unknot._sockio's functions, bound as these methods
    # below the class (as recv and sendall are: see there).

    def _wait(self, write: bool, deadline: float | None) -> None:
        """Wait until the socket is ready; raise `TimeoutError` once ``deadline`` passed."""
        _sockio.wait_ready(self, write, deadline)

    def _forget(self) -> None:
        rec = self._state.rec
        if rec is not None:
            self._state.rec = None
            rec.hub.forget_fd(rec)

    def _real_close(self, _ss: Any = _Csocket) -> None:
        self._forget()
        _ss.close(self)

    def shutdown(self, how: int) -> None:
        """As `socket.socket.shutdown`; then the fibers waiting on the socket try their calls
        again (`_wake_waiters`), as the kernel's shutdown ends blocked calls.

        Some shutdowns end a blocked syscall with no poll event at all: an ``AF_UNIX``
        ``SHUT_WR`` while a ``sendall`` waits for room (the stdlib's fails with
        `BrokenPipeError`), ``SHUT_RDWR`` on an ``AF_UNIX`` listener while an ``accept`` waits
        (``OSError(EINVAL)``, the usual way to stop an accept loop). A fiber whose call still
        would block waits again.
        """
        _Csocket.shutdown(self, how)
        rec = self._state.rec
        if rec is not None:
            _wake_waiters(rec)

    def detach(self) -> int:
        """Stop managing the fd and return it (it is left open).

        As the stdlib's: the fd of a blocking socket (timeout None) comes back blocking. unknot
        keeps every socket's fd non-blocking while it manages it; what takes the fd over
        (``multiprocessing.Pipe``'s connections, ``socket.fromfd`` of the stdlib, a child
        process) expects the stdlib's fd, and a read would fail with EAGAIN instead of waiting.
        """
        self._forget()
        timeout = self._state.timeout
        fd = super().detach()
        if fd >= 0 and timeout is None:
            try:
                os.set_blocking(fd, True)
            except OSError:
                pass  # (closed behind the socket's back: detach itself never fails)
        return fd

    # -- connection set-up ----------------------------------------------------------------------

    def _accept(self) -> tuple[int, Any]:
        """The C ``_accept``, waiting for a connection cooperatively: its fd and address."""
        return _sockio.accept_fd(self)

    def accept(self) -> tuple[socket, Any]:
        """Wait for a connection; return ``(socket, address)``."""
        fd, addr = self._accept()
        sock = socket(self.family, self.type, self.proto, fileno=fd)
        if _stdlib.getdefaulttimeout() is None and self._state.timeout:
            sock.setblocking(True)
        return sock, addr

    def connect(self, address: Any) -> None:
        """Connect to ``address``, waiting (cooperatively) for the handshake."""
        # Not self.connect_ex: subclasses (ssl.SSLSocket) override it in terms of connect().
        err = self._connect(address, False)
        if err:
            raise OSError(err, os.strerror(err))

    def connect_ex(self, address: Any) -> int:
        """Like `connect` but return an errno instead of raising (EWOULDBLOCK on timeout)."""
        return self._connect(address, True)

    def _connect(self, address: Any, ex: bool) -> int:
        st = self._state
        timeout = st.timeout
        if timeout != 0.0:
            _entry_here()
        if self.family in _INET_FAMILIES and _in_fiber():
            address = _resolve_host(self.family, address)
        # (after the look-up, as the C method's timeout starts after its own)
        deadline = self._deadline()
        err = _Csocket.connect_ex(self, address)
        st.client = True
        if timeout == 0.0:
            return err
        if err == errno.EAGAIN and self.family == _AF_UNIX:
            return self._connect_again(address, deadline, ex)
        # The stdlib's socket with a timeout (a non-blocking fd) waits only for a connection
        # under way (EINPROGRESS), and says EALREADY for one an earlier call started; a
        # blocking socket's connect waits in the kernel for either.
        if err in _CONNECT_IN_PROGRESS or (timeout is None and err in _CONNECT_ALREADY):
            try:
                self._wait(True, deadline)
            except TimeoutError:
                if ex:
                    return errno.EWOULDBLOCK  # what the stdlib's connect_ex returns
                raise
            err = self.getsockopt(_stdlib.SOL_SOCKET, _stdlib.SO_ERROR)
            if timeout is None and _SETTLE_CONNECT and st.tcp and self.proto in _TCP_PROTOS:
                err = self._settle_connect(address, err)
        return err

    def _settle_connect(self, address: Any, err: int) -> int:
        """After a blocking socket's connection finished (``err``: 0 or why it failed), leave
        the socket as the stdlib's blocking ``connect`` leaves it; return ``err``, or the
        error of a connection reset meanwhile.

        Linux keeps a TCP socket whose non-blocking connect completed "connecting" until the
        next ``connect`` call, which then succeeds (or reports the failure, ECONNABORTED
        once SO_ERROR was read) and leaves it connected (or unconnected): a second
        ``connect`` of a connected socket would succeed once instead of raising EISCONN, and
        one after a refused connection would say ECONNABORTED instead of trying again. The
        kernel's blocking connect leaves the socket connected, or unconnected, at once; this
        one more call (which starts no connection: the socket is still "connecting") does
        the same. (A socket with a timeout keeps the quirk: the stdlib's fd is non-blocking
        then, and its connect leaves the socket as this does.)
        """
        again = _Csocket.connect_ex(self, address)
        if err:
            return err
        return 0 if again == errno.EISCONN else again

    def _connect_again(self, address: Any, deadline: float | None, ex: bool) -> int:
        """An AF_UNIX ``connect`` said EAGAIN: the listener's accept queue is full.

        Unlike EINPROGRESS, no connection is under way and no event will say when there is
        room: the stdlib's blocking connect waits in the kernel for it (and, with a timeout,
        raises `BlockingIOError` at once, its fd being non-blocking). Here the call tries again
        after a pause, longer each time (1 ms up to 50 ms), until it connects, fails otherwise,
        or the timeout runs out (`TimeoutError`; ``connect_ex`` returns EWOULDBLOCK).
        """
        pause = 0.001
        while True:
            if deadline is not None:
                left = deadline - _time.monotonic()
                if left <= 0:
                    if ex:
                        return errno.EWOULDBLOCK
                    raise TimeoutError("timed out")
                pause = min(pause, left)
            if _in_fiber():
                _fiber_sleep(pause)  # (a cancellation point)
            else:
                _time.sleep(pause)
            err = _Csocket.connect_ex(self, address)
            if err != errno.EAGAIN:
                return err
            pause = min(pause * 2, 0.05)

    # -- files --------------------------------------------------------------------------------

    def makefile(
        self,
        mode: str = "r",
        buffering: int | None = None,
        *,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> Any:
        """As `socket.socket.makefile` (the stdlib's code), with two differences a fiber needs:

        * several fibers may use the file at once, as threads may: they take turns (the C
          buffered file's own lock belongs to the OS thread, and a second fiber got
          ``RuntimeError("reentrant call")``). The files are subclasses of the stdlib's
          (`io.BufferedReader`, `io.BufferedWriter`, `io.BufferedRWPair`,
          `io.TextIOWrapper`: `unknot._fileio.FiberSafeReader`...);
        * a buffered read cancelled while it waits for the socket may have taken bytes from
          the socket already (the start of a line), which the C buffered file drops: like
          the stdlib's file after a timeout, the file then refuses to read on, with
          `OSError` (`_SocketIO`), instead of returning the rest of the line. The raw file
          (``buffering=0``) loses nothing and stays usable.
        """
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        binary = "b" in mode
        rawmode: Any = ("r" if reading else "") + ("w" if writing else "")
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = _io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            raw = SocketIO(self, rawmode)
            self._io_refs += 1  # type: ignore[attr-defined]
            return raw
        raw = _SocketIO(self, rawmode)
        self._io_refs += 1  # type: ignore[attr-defined]
        buffer: Any
        if reading and writing:
            buffer = _fileio.FiberSafeRWPair(raw, raw, buffering)
        elif reading:
            buffer = _fileio.FiberSafeReader(raw, buffering)
        else:
            buffer = _fileio.FiberSafeWriter(raw, buffering)
        if binary:
            return buffer
        encoding = _io.text_encoding(encoding)
        text = _fileio.FiberSafeText(buffer, encoding, errors, newline)
        text.mode = mode
        return text

    # -- data transfer ------------------------------------------------------------------------

    def _io(self, *args: Any) -> Any:
        """Run a C method of the socket cooperatively: `unknot._sockio.general_io`, whose
        arguments (after the socket) these are."""
        return _sockio.general_io(self, *args)

    # The blocking calls are unknot._sockio's functions: in the pure-Python build they are the
    # methods themselves (set below the class: no frame more); in the compiled build they are
    # too, wrapped by `unknot._nbio.method` (a mypyc function does not bind as a method). These
    # one-line methods run only in a compiled build without that extension.

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """As `socket.socket.recv`, suspending only the calling fiber."""
        return _sockio_recv(self, bufsize, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send all of ``data``; the timeout bounds the whole call (as in the stdlib).

        See `unknot._sockio.sendall`: on a blocking client socket the fibers already ready go
        first.
        """
        _sockio.sendall(self, data, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """As `socket.socket.recv_into`, suspending only the calling fiber."""
        return _sockio.recv_into(self, buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        """As `socket.socket.send`, suspending only the calling fiber.

        On a blocking client socket the fibers already ready to run go first (see `sendall`).
        """
        return _sockio.send(self, data, flags)

    def _after_ready(self, data: Any, flags: int) -> int:
        """Start a blocking send on a client socket: go after the fibers already ready
        (`unknot._sockio.after_ready`)."""
        return _sockio.after_ready(self, data, flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Send a file with ``os.sendfile`` where possible, else with `send`; cooperative."""
        try:
            return self._sendfile_zero_copy(file, offset, count)
        except _stdlib._GiveupOnSendfile:  # type: ignore[attr-defined]
            return self._sendfile_use_send(file, offset, count)  # type: ignore[attr-defined]

    def _sendfile_zero_copy(self, file: Any, offset: int, count: int | None) -> int:
        giveup = _stdlib._GiveupOnSendfile  # type: ignore[attr-defined]
        if not hasattr(os, "sendfile"):
            raise giveup("os.sendfile() not available")
        self._check_sendfile_params(file, offset, count)  # type: ignore[attr-defined]
        try:
            fileno = file.fileno()
            fsize = os.fstat(fileno).st_size
        except (AttributeError, OSError, ValueError) as err:
            raise giveup(err) from None
        if self._state.timeout != 0.0:
            _entry_here()
        elif fsize:  # (an empty file returns 0 first, as in the stdlib)
            raise ValueError("non-blocking sockets are not supported")
        if not fsize:
            return 0
        sockno = self.fileno()
        if sockno < 0:  # closed: as the stdlib's, whose selector refuses the fd -1
            raise ValueError(f"Invalid file descriptor: {sockno}")
        blocksize = min(count or fsize, 2**30)
        total = 0
        try:
            while not count or total < count:
                n = min(blocksize, count - total) if count else blocksize
                try:
                    sent = os.sendfile(self.fileno(), fileno, offset, n)
                except _BlockingIOError:
                    # The timeout bounds each wait, as in the stdlib's sendfile (unlike
                    # sendall, whose timeout bounds the whole call).
                    self._wait(True, self._deadline())
                    continue
                except OSError as err:
                    if total == 0:
                        raise giveup(err) from None  # e.g. not a regular file
                    raise
                if sent == 0:
                    break  # EOF
                offset += sent
                total += sent
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset)


class _SocketIO(SocketIO):
    """The raw file under a buffered `socket.makefile` file: a read cancelled while it waited
    makes it refuse further reads (`OSError`), as the stdlib's does after a timeout ("cannot
    read from timed out object"): the buffered file above may have dropped bytes it had
    already taken from the socket, and reading on would return a stream with a hole."""

    _cancelled = False

    def readinto(self, b: Any) -> int | None:
        """As `socket.SocketIO.readinto`; after a cancelled read, `OSError`."""
        if self._cancelled:
            self._checkClosed()
            self._checkReadable()  # type: ignore[attr-defined]
            raise OSError(
                "cannot read from a socket file whose read was cancelled "
                "(the bytes it had taken are lost)"
            )
        try:
            return SocketIO.readinto(self, b)
        except Cancelled:
            self._cancelled = True
            raise


def _wake_waiters(rec: Any) -> None:
    """Wake the fibers waiting on the socket whose fd record is ``rec`` to try their calls again
    (after a `socket.shutdown`); from another OS thread, through the hub's loop.

    Only the record's reader and writer are woken: each, leaving its wait, wakes the first
    fiber queued behind it (`unknot.lowlevel.Hub.wait_fd`), which retries in turn. The
    readiness hints are set ("try the syscall"), so that a woken ``recv`` does not wait again
    for an edge first. A spurious wake-up costs a syscall that says EAGAIN, then the fiber
    waits again.
    """
    hub = rec.hub

    def wake() -> None:
        rec.readable = rec.writable = True
        for f in (rec.reader, rec.writer):
            if f is not None:
                hub.wake(f)

    cur = getcurrent()
    if (type(cur) is Fiber and cur.hub is hub) or hub.thread.ident == _thread.get_ident():
        wake()
        return
    loop = hub.loop
    if loop is not None:
        try:
            loop.call_soon_threadsafe(wake)
        except RuntimeError:
            pass  # (the loop is closed: none of its fibers will run again)


def _cede() -> None:
    """Before a blocking TLS write on the client side: go after the fibers already ready."""
    f = getcurrent()
    if type(f) is Fiber:
        f.hub.cede(f)  # (which does nothing when no fiber is ready and no call is batched)


_AF_UNIX = getattr(_stdlib, "AF_UNIX", None)

# What a non-blocking connect says of a connection it started (Windows: WSAEWOULDBLOCK), and of
# one an earlier call started and that is still under way.
_CONNECT_IN_PROGRESS = frozenset(
    getattr(errno, name) for name in ("EINPROGRESS", "WSAEWOULDBLOCK") if hasattr(errno, name)
)
_CONNECT_ALREADY = frozenset(
    getattr(errno, name) for name in ("EALREADY", "WSAEALREADY") if hasattr(errno, name)
)
# Where a blocking socket's connect needs `socket._settle_connect` (Linux TCP and MPTCP).
_SETTLE_CONNECT = sys.platform.startswith("linux")
_TCP_PROTOS = frozenset(
    {0, _stdlib.IPPROTO_TCP, getattr(_stdlib, "IPPROTO_MPTCP", _stdlib.IPPROTO_TCP)}
)


def _cooperative(
    name: str, write: bool, flags_at: int | None, iterables: tuple[int, ...] = ()
) -> Any:
    """A method that retries the C socket method ``name`` after waiting for readiness.

    ``flags_at``: the position of its ``flags`` argument (which may also be passed by name).
    ``iterables``: the positions of arguments the C method consumes as iterators (see
    `unknot._sockio.retry_call`, the method's body).
    """
    c_method = getattr(_Csocket, name)
    address_at = _ADDRESS_AT.get(name)
    waitall = _WAITALL.get(name)
    if waitall is not None:
        assert flags_at is not None
        at_flags: int = flags_at

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            if (len(args) > at_flags or kwargs) and _sockio.wants_waitall(
                self, args[at_flags] if len(args) > at_flags else kwargs.get("flags", 0)
            ):
                return waitall(self, args, kwargs)  # (MSG_WAITALL on a blocking stream)
            return _retry_call(self, c_method, name, write, flags_at, iterables, args, kwargs)

    elif address_at is None:

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return _retry_call(self, c_method, name, write, flags_at, iterables, args, kwargs)

    else:
        at = address_at

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            # A host name in the address is resolved off the hub (as `connect` does): the C
            # method would resolve it with a blocking getaddrinfo on the hub's thread.
            i = at(len(args))
            if i is not None and _in_fiber():
                family = _c_family(self)
                if family in _INET_FAMILIES:
                    address = args[i]
                    resolved = _resolve_host(family, address)
                    if resolved is not address:
                        args = (*args[:i], resolved, *args[i + 1 :])
            return _retry_call(self, c_method, name, write, flags_at, iterables, args, kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"As `socket.socket.{name}`, suspending only the calling fiber."
    return method


# The position of the address among the positional arguments of the calls that take one (by
# their number): sendto(data, address) or sendto(data, flags, address); sendmsg(buffers,
# ancdata, flags, address).
_ADDRESS_AT = {
    "sendto": lambda n: n - 1 if n in (2, 3) else None,
    "sendmsg": lambda n: 3 if n >= 4 else None,
}
# The receiving calls' MSG_WAITALL on a blocking stream socket (see unknot._sockio.recv_waitall).
_WAITALL = {
    "recvfrom": _sockio.recvfrom_waitall,
    "recvfrom_into": _sockio.recvfrom_into_waitall,
    "recvmsg": _sockio.recvmsg_waitall,
    "recvmsg_into": _sockio.recvmsg_into_waitall,
}
_c_family = _Csocket.family.__get__  # (the C attribute: the stdlib's property makes an enum)

for _name, _write, _flags_at, _iterables in (
    ("recvfrom", False, 1, ()),
    ("recvfrom_into", False, 2, ()),
    ("recvmsg", False, 2, ()),
    ("recvmsg_into", False, 2, (0,)),
    ("sendto", True, 1, ()),
    ("sendmsg", True, 2, (0, 1)),
):
    if hasattr(_Csocket, _name):
        setattr(socket, _name, _cooperative(_name, _write, _flags_at, _iterables))
del _name, _write, _flags_at, _iterables

# The methods whose bodies are unknot._sockio's functions (see socket.recv).
_BODIES = {
    "recv": _sockio.recv,
    "sendall": _sockio.sendall,
    "recv_into": _sockio.recv_into,
    "send": _sockio.send,
    "_io": _sockio.general_io,
    "_wait": _sockio.wait_ready,
    "_after_ready": _sockio.after_ready,
    "_accept": _sockio.accept_fd,
}
if isinstance(_sockio_recv, FunctionType):  # the pure-Python build: the functions themselves
    for _name, _body in _BODIES.items():
        setattr(socket, _name, _body)
    del _name, _body
elif _NBIO is not None:
    # The compiled build: the mypyc functions as methods, through `unknot._nbio.method`, which
    # binds like a Python function and calls them without a frame of its own.
    for _name, _body in _BODIES.items():
        setattr(socket, _name, _NBIO.method(_body, getattr(socket, _name).__doc__))
    del _name, _body

SocketType: Any = socket


def socketpair(
    family: int | None = None, type: int = _stdlib.SOCK_STREAM, proto: int = 0
) -> tuple[socket, socket]:
    """A pair of connected cooperative sockets (AF_UNIX where available).

    As the stdlib's: ``SOCK_NONBLOCK`` in ``type`` makes both non-blocking (timeout 0.0), and
    ``SOCK_CLOEXEC`` is the kernel's (the fds are not inherited either way, as Python's)."""
    if family is None:
        family = getattr(_stdlib, "AF_UNIX", _stdlib.AF_INET)
    a, b = _std_socketpair(family, type, proto)
    # The type as given, as the stdlib's socketpair passes it: a socket's ``type`` attribute
    # has the SOCK_NONBLOCK and SOCK_CLOEXEC bits stripped, and SOCK_NONBLOCK sets the timeout.
    return (
        socket(a.family, type, a.proto, a.detach()),
        socket(b.family, type, b.proto, b.detach()),
    )


def fromfd(fd: int, family: int, type: int, proto: int = 0) -> socket:
    """A cooperative socket on a duplicate of ``fd``."""
    return socket(family, type, proto, os.dup(fd))


# -- DNS: numeric addresses are resolved inline, names on the thread pool ----------------------


def _in_fiber() -> bool:
    return type(getcurrent()) is Fiber


def _offload(fn: Any, *args: Any) -> Any:
    if _in_fiber():
        from .lowlevel import to_thread

        return to_thread(fn, *args)
    return fn(*args)


_INET_FAMILIES = (_stdlib.AF_INET, _stdlib.AF_INET6)


def _resolve_host(family: int, address: Any) -> Any:
    """``address`` with its host name resolved off the hub, as the C socket would resolve it.

    The C ``connect`` resolves a name with a blocking ``getaddrinfo`` (the first result of the
    socket's family); this does the same look-up on the thread pool. IP literals, and anything
    that is not a ``(str, ...)`` tuple (left for the C method to accept or reject), pass as is.
    """
    if type(address) is not tuple or not address or type(address[0]) is not str:
        return address
    host = address[0]
    if host in ("", "<broadcast>"):
        return address
    try:
        _stdlib.inet_pton(family, host if "%" not in host else host.partition("%")[0])
        return address  # numeric
    except (OSError, ValueError):
        pass
    return (getaddrinfo(host, None, family)[0][4][0], *address[1:])


def getaddrinfo(
    host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> list[tuple[Any, ...]]:
    """As `socket.getaddrinfo`; in a fiber, name resolution does not block the hub."""
    if _in_fiber() and not flags & _stdlib.AI_NUMERICHOST:
        try:  # an IP literal (or None): answered at once, no thread hop
            return _std_getaddrinfo(host, port, family, type, proto, flags | _stdlib.AI_NUMERICHOST)
        except _stdlib.gaierror:
            pass
    return _offload(_std_getaddrinfo, host, port, family, type, proto, flags)


def gethostbyname(hostname: str) -> str:
    """As `socket.gethostbyname`, without blocking the hub."""
    return _offload(_std_gethostbyname, hostname)


def gethostbyname_ex(hostname: str) -> tuple[str, list[str], list[str]]:
    """As `socket.gethostbyname_ex`, without blocking the hub."""
    return _offload(_std_gethostbyname_ex, hostname)


def gethostbyaddr(ip_address: str) -> tuple[str, list[str], list[str]]:
    """As `socket.gethostbyaddr`, without blocking the hub."""
    return _offload(_std_gethostbyaddr, ip_address)


def getnameinfo(sockaddr: tuple[Any, ...], flags: int) -> tuple[str, str]:
    """As `socket.getnameinfo`, without blocking the hub."""
    return _offload(_std_getnameinfo, sockaddr, flags)


def _rebind(fn: Any) -> Any:
    """The stdlib function ``fn`` with this module's globals: same code, cooperative names."""
    return rebind(fn, globals(), __name__)


# create_connection and create_server (and getfqdn) are the stdlib's own code, looking up
# `socket`, `getaddrinfo` and `gethostbyaddr` here instead of in the stdlib module;
# create_connection within a wrapper that closes the socket of an attempt a cancellation ended.
_create_connection = _rebind(_stdlib.create_connection)


def closing_interrupted_attempts(create: Callable[..., Any]) -> Callable[..., Any]:
    """``create``, the stdlib's ``create_connection`` code (this module's copy, or the stdlib's
    function itself, which `unknot.patch` wraps so), closing the socket of an attempt that an
    exception other than `OSError` interrupts: its code closes that socket on an `OSError`
    only, and a cancellation (or Ctrl-C) in the middle of a connect left it to the garbage
    collector, with a `ResourceWarning`."""

    @functools.wraps(create)
    def create_connection(*args: Any, **kwargs: Any) -> Any:
        try:
            return create(*args, **kwargs)
        except BaseException as e:
            if not isinstance(e, OSError):
                _close_attempt(e)
            raise

    return create_connection


def _close_attempt(e: BaseException) -> None:
    """Close the socket of the attempt that ``e`` interrupted in the stdlib's create_connection:
    the function's local ``sock``, in its frame on the traceback (the same code in both
    copies)."""
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is _create_connection.__code__:
            sock = tb.tb_frame.f_locals.get("sock")
            if isinstance(sock, _StdSocket):
                sock.close()
            return
        tb = tb.tb_next


create_connection = closing_interrupted_attempts(_create_connection)
create_server = _rebind(_stdlib.create_server)
getfqdn = _rebind(_stdlib.getfqdn)
