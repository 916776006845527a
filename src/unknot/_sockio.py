"""The hot paths of `unknot.socket`'s blocking calls (``recv``, ``sendall``) and their entry.

A module of its own so that mypyc can compile them (`unknot._compiled.MODULES`):
`unknot.socket.socket` derives from the C type ``_socket.socket``, so its methods stay
interpreted, and with the hub compiled they would reach its attributes (``io_budget``, the fd
record's readiness hints) through Python's generic attribute lookup. Compiled, these functions
read them as C struct fields and call `Hub.wait_fd` directly.

Each function takes the socket as its first argument and is the method's whole body. In the
pure-Python build they are plain functions, which `unknot.socket.socket` takes as its methods
as they are (no frame more than a method of its own: docs/internals.md, "Memory per idle
connection"); in the compiled build a one-line method calls them.
"""

from __future__ import annotations

import _socket
import os
import time as _time
from typing import Any, Final

from greenlet import getcurrent

from ._compiled import nbio
from .lowlevel import TIMED_OUT, Cancelled, FdWait, Fiber, Hub, is_cancelled

# The C methods, called as functions (no attribute lookup on the type per call).
_c_recv: Final = _socket.socket.recv
_c_send: Final = _socket.socket.send

# The TCP sockets' syscalls without flags: `unknot._nbio`'s recv(2) and send(2) in the compiled
# build (os.read and os.write on a socket, keeping the GIL: src/unknot/_nbio.c says why),
# os.read and os.write otherwise.
_NBIO: Final = nbio()
_tcp_recv: Final = os.read if _NBIO is None else _NBIO.recv
_tcp_send: Final = os.write if _NBIO is None else _NBIO.send
_BlockingIOError: Final = BlockingIOError
# Compiled, a Final name is a C static; other module-level names are looked up at each use.
_getcurrent: Final = getcurrent
_Fiber: Final = Fiber

# MSG_DONTWAIT: the call must not wait on a blocking socket (timeout None), where the stdlib's
# fd is blocking and the flag makes the kernel say EAGAIN; with a timeout the stdlib waits for
# readiness and retries, as for any call.
# A plain int: `flags & DONTWAIT` runs on every call, and with the MsgFlag enum it costs ~0.5 us.
DONTWAIT: Final = int(getattr(_socket, "MSG_DONTWAIT", 0))


class SocketState:
    """What `unknot.socket.socket` keeps beside the C socket, in one native object (the
    socket's ``_state``): compiled, `recv` and `sendall` read it with one generic attribute
    access, its fields as C struct fields."""

    __slots__ = ("timeout", "rec", "stream", "tcp", "client")

    def __init__(self, timeout: float | None, stream: bool, tcp: bool) -> None:
        #: The emulated timeout: None blocks, 0.0 never blocks, else seconds (the OS socket
        #: itself always stays non-blocking).
        self.timeout = timeout
        #: The hub's record of the fd (`FdWait`, which knows its hub), made at the first wait
        #: (or at the first blocking `recv` in a fiber).
        self.rec: FdWait | None = None
        #: A SOCK_STREAM socket.
        self.stream = stream
        #: A TCP socket. Only TCP promises that a short read drained the buffer: an AF_UNIX
        #: stream read stops early at a message carrying SCM_RIGHTS fds (or other credentials)
        #: with data queued behind it, and no new edge would announce that data.
        self.tcp = tcp
        #: Connected by this process (``connect``): its blocking sends first let the ready
        #: fibers run, so that the requests of many clients of one server leave together
        #: (``socket._after_ready``).
        self.client = False


def entry(hub: Hub) -> None:
    """A blocking call begins on ``hub``: a cancellation point even when it will not wait, and
    a step of the fairness rule (`Hub.IO_STREAK_MAX`). Nearly free: one test of the hub's I/O
    budget, which a cancellation in force holds at 0 (so that the slow path checks it)."""
    # INLINED-ORIGINAL(io-entry): copied into recv and sendall; change them together.
    n = hub.io_budget
    if n:
        hub.io_budget = n - 1
    else:
        entry_slow(hub)


def entry_slow(hub: Hub) -> None:
    f = _getcurrent()
    if type(f) is not _Fiber or f.hub is not hub:
        return  # another thread's call on a socket this hub once waited on
    if hub.ncancel:
        if is_cancelled(f):
            raise Cancelled()
        # The budget stays at 0 while cancellations are in force: count the streak here.
        n = hub.io_streak + 1
        if n < hub.IO_STREAK_MAX:
            hub.io_streak = n
            return
        hub.io_streak = 0
    hub.yield_now(f)  # the others run; the budget is full again


def entry_here() -> None:
    """`entry` for the current fiber's hub (nothing outside fibers)."""
    f = _getcurrent()
    if type(f) is _Fiber:
        entry(f.hub)


def recv(sock: Any, bufsize: int, flags: int = 0) -> bytes:
    """As `socket.socket.recv`, suspending only the calling fiber."""
    st: SocketState = sock._state
    timeout = st.timeout
    # INLINED-ORIGINAL(never-waits): this test is copied into socket.recv_into and
    # socket.send; change them together.
    if (timeout is not None and timeout == 0.0) or (flags & DONTWAIT and timeout is None):
        # Never waits: the C method as it is (drivers poll like this on every command).
        # The readiness hint is left as it is: still set only means "try the syscall".
        return _c_recv(sock, bufsize, flags)
    if flags:
        return _recv_io(sock, bufsize, flags, False)
    maybe = st.rec
    if maybe is not None:
        # The hot path (a socket with a record, in a fiber of its own hub).
        rec: FdWait = maybe  # (compiled, the attributes of an FdWait, not of a union, are fields)
        # INLINED-COPY-BEGIN(socket-recv): socket._io and socket._wait, same rules (the
        # hint, short TCP reads, the deadline set at the first wait); the timeout (None, or
        # seconds) bounds the whole call. Anything else falls back to _io below.
        hub = rec.hub
        # INLINED-COPY-BEGIN(io-entry): entry (the cancellation point, the streak)
        n = hub.io_budget
        if n:
            hub.io_budget = n - 1
        else:
            entry_slow(hub)
        # INLINED-COPY-END(io-entry)
        # (``moved``: other fibers may have run since ``rec`` was read, and closed the socket.)
        moved = n == 0
        deadline: float | None = None
        while True:
            if rec.readable or not rec.hints or bufsize <= 0:
                try:
                    if st.tcp and bufsize > 0:
                        # read(2) is recv(2) without flags on a stream, and os.read (or
                        # _nbio.recv) parses its two arguments in a few instructions where
                        # socket.recv's PyArg_ParseTuple (and its argument tuple) takes about
                        # 450. ``rec.fdobj`` is the socket's fd, or -1 once closed
                        # (`Hub.forget_fd`): EBADF, as the socket's own method would raise.
                        data: bytes = _tcp_recv(rec.fdobj, bufsize)
                    else:
                        data = _c_recv(sock, bufsize)
                except _BlockingIOError:
                    pass
                else:
                    if 0 < len(data) < bufsize and rec.hints and st.tcp:
                        rec.readable = False
                    return data
            f = hub.running
            if f is None or f is not _getcurrent() or (moved and st.rec is not rec):
                break  # (not a fiber this hub runs; or the socket closed while others ran)
            moved = True
            if timeout is None:
                hub.wait_readable(f, rec)  # (compiled: a smaller C stack kept while idle)
                continue
            now = _time.monotonic()
            if deadline is None:
                deadline = now + timeout
            if now >= deadline or hub.wait_fd(f, rec, False, deadline - now) is TIMED_OUT:
                raise TimeoutError("timed out")
        # INLINED-COPY-END(socket-recv)
        return _recv_io(sock, bufsize, 0, True)
    f = getcurrent()
    if type(f) is Fiber:
        fd = sock.fileno()
        if fd >= 0:
            # The first blocking recv in a fiber makes the record before any wait (`_wait`
            # would at the first EAGAIN) and takes the hot path: a connection idle in a
            # later recv then waits in `Hub.wait_readable` called from here, three frames
            # shallower than through _io and _wait (docs/internals.md, "Memory per idle
            # connection").
            st.rec = f.hub.fd_record(fd)
            return sock.recv(bufsize)
    return _recv_io(sock, bufsize, 0, False)


def _recv_io(sock: Any, bufsize: int, flags: int, entered: bool) -> bytes:
    """``recv`` by the general path (`socket._io`). A function of its own: compiled, the
    arguments of these calls would take room in ``recv``'s C frame, which stays on the stack of
    every fiber idle in ``recv`` (docs/internals.md, "Memory per idle connection")."""
    if flags:
        return sock._io(False, _c_recv, None, (bufsize, flags), entered=entered)
    return sock._io(False, _c_recv, bufsize, (bufsize,), entered=entered)


def sendall(sock: Any, data: Any, flags: int = 0) -> None:
    """Send all of ``data``; the timeout bounds the whole call (as in the stdlib).

    On a blocking (timeout None or seconds) client socket, one this process connected, the
    fibers already ready to run go first, so that the requests many fibers write to one
    server leave together (see `Hub.cede`): such a send is a point where the fiber may be
    switched out even when it need not wait. Sockets from `accept` do not do this: a
    server's replies go to many peers, and delaying them would only add latency.
    """
    sent = 0
    st: SocketState = sock._state
    timeout = st.timeout
    if (timeout is None or timeout != 0.0) and not flags & DONTWAIT:
        rec = st.rec
        if rec is not None:
            known: FdWait = rec  # (compiled: its fields, not a union's attributes)
            hub = known.hub
            # INLINED-COPY-BEGIN(io-entry): entry (the cancellation point, the streak)
            n = hub.io_budget
            if n:
                hub.io_budget = n - 1
            else:
                entry_slow(hub)
            # INLINED-COPY-END(io-entry)
        else:
            entry_here()
        if st.client:
            sent = sock._after_ready(data, flags)
            if sent and sent == len(data):  # (sent is nonzero only for bytes)
                return
            rec = st.rec  # (the others ran meanwhile)
        if not sent and type(data) is bytes:
            # The hot path: one try of the syscall, unless the hint says the buffer is
            # full. The deadline is set only if the call has to wait (with a timeout, the
            # call may so end later than the stdlib's by the duration of this syscall).
            # INLINED-COPY-BEGIN(socket-sendall): the first try of socket._io: the same
            # hint test, and the same rule for clearing it (a short write on a stream).
            write_fd: Any = None
            if rec is None:
                go = True
            else:
                known = rec
                go = known.writable or not known.hints
                if st.tcp and not flags:
                    write_fd = known.fdobj  # (-1 once closed: EBADF, as the socket's send)
            if go:
                size = len(data)
                try:
                    if write_fd is not None:
                        sent = _tcp_send(write_fd, data)  # (as in recv: no flags)
                    else:
                        sent = _c_send(sock, data, flags)
                except _BlockingIOError:
                    pass
                else:
                    if sent == size:
                        return
                    if sent and rec is not None and rec.hints and st.stream:
                        rec.writable = False  # a short write: the buffer is full
            # INLINED-COPY-END(socket-sendall)
    deadline = sock._deadline()
    if type(data) is bytes and not sent:
        size = len(data)
        sent = sock._io(True, _c_send, size, (data, flags), deadline)
        if sent == size:
            return
    with memoryview(data) as view, view.cast("B") as buf:
        total = len(buf)
        while sent < total:
            sent += sock._io(True, _c_send, total - sent, (buf[sent:], flags), deadline)
