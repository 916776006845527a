"""The blocking calls of `unknot.socket`'s sockets: the hot paths (``recv``, ``sendall``), their
entry, and the general path every other call takes (``recv_into``, ``send``, ``accept``...).

A module of its own so that mypyc can compile them (`unknot._compiled.MODULES`):
`unknot.socket.socket` derives from the C type ``_socket.socket``, so its methods stay
interpreted, and with the hub compiled they would reach its attributes (``io_budget``, the fd
record's readiness hints) through Python's generic attribute lookup. Compiled, these functions
read them as C struct fields and call `Hub.wait_fd` directly.

Each function takes the socket as its first argument and is the method's whole body. In the
pure-Python build they are plain functions, which `unknot.socket.socket` takes as its methods
as they are (no frame more than a method of its own: docs/internals.md, "Memory per idle
connection"); in the compiled build `unknot._nbio.method` binds them without a frame (where that
extension is missing, a one-line method of the class calls them). The private ones
(`general_io` as ``socket._io``, `wait_ready` as ``socket._wait``, `after_ready`,
`accept_fd` as ``socket._accept``) are bound the same way, for `unknot.ssl` and the other
calls of `unknot.socket` that use them.
"""

from __future__ import annotations

import _socket
import errno
import operator
import os
import select as _select
import time as _time
from typing import Any, Final

from greenlet import getcurrent

from ._compiled import nbio, slot_reader
from ._mirror import poll_fd
from .lowlevel import TIMED_OUT, Cancelled, FdWait, Fiber, Hub, is_cancelled

# The C methods, called as functions (no attribute lookup on the type per call).
_c_recv: Final = _socket.socket.recv
_c_recv_into: Final = _socket.socket.recv_into
_c_send: Final = _socket.socket.send
_c_accept: Final = _socket.socket._accept  # type: ignore[attr-defined]
_c_sendall: Final = _socket.socket.sendall

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
# ``sock._state`` for the blocking calls: compiled, one C load (`unknot._compiled.slot_reader`)
# where the attribute would be a generic access (``unknot.socket.socket`` derives from the C
# type ``_socket.socket``, so mypyc cannot lay it out). Interpreted, the attribute is faster
# than any call: the pure build keeps it (``_SLOTS_IN_C`` False).
_SLOTS_IN_C: Final = _NBIO is not None
_state_of: Final = slot_reader("_state")

# MSG_DONTWAIT: the call must not wait on a blocking socket (timeout None), where the stdlib's
# fd is blocking and the flag makes the kernel say EAGAIN; with a timeout the stdlib waits for
# readiness and retries, as for any call.
# A plain int: `flags & DONTWAIT` runs on every call, and with the MsgFlag enum it costs ~0.5 us.
DONTWAIT: Final = int(getattr(_socket, "MSG_DONTWAIT", 0))
# MSG_WAITALL (without MSG_PEEK): on a blocking socket the stdlib's recv waits in the kernel until
# all the bytes asked for came; on unknot's non-blocking fd the kernel returns what is there, so
# `recv_waitall` waits for the rest.
WAITALL: Final = int(getattr(_socket, "MSG_WAITALL", 0))
PEEK: Final = int(getattr(_socket, "MSG_PEEK", 0))


class SocketState:
    """What `unknot.socket.socket` keeps beside the C socket, in one native object (the
    socket's ``_state``): compiled, `recv` and `sendall` read it with one C load (``_state_of``),
    its fields as C struct fields."""

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
        #: (`after_ready`).
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
    st: SocketState = _state_of(sock) if _SLOTS_IN_C else sock._state
    timeout = st.timeout
    # INLINED-ORIGINAL(never-waits): this test is copied into recv_into and send; change them
    # together.
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
        # INLINED-COPY-BEGIN(socket-recv): general_io and wait_ready, same rules (the
        # hint, short TCP reads, the deadline set at the first wait); the timeout (None, or
        # seconds) bounds the whole call. Anything else falls back to general_io below.
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
    """``recv`` by the general path (`general_io`). A function of its own: compiled, the
    arguments of these calls would take room in ``recv``'s C frame, which stays on the stack of
    every fiber idle in ``recv`` (docs/internals.md, "Memory per idle connection")."""
    if flags:
        if flags & WAITALL and not flags & PEEK and bufsize > 0:
            st: SocketState = sock._state
            if st.stream and st.timeout is None:
                buf = bytearray(bufsize)
                n = recv_waitall(sock, buf, bufsize, flags)
                return bytes(buf) if n == bufsize else bytes(memoryview(buf)[:n])
        data: bytes = general_io(sock, False, _c_recv, None, (bufsize, flags), False, entered)
    else:
        data = general_io(sock, False, _c_recv, bufsize, (bufsize,), False, entered)
    return data


def sendall(sock: Any, data: Any, flags: int = 0) -> None:
    """Send all of ``data``; the timeout bounds the whole call (as in the stdlib).

    On a blocking (timeout None or seconds) client socket, one this process connected, the
    fibers already ready to run go first, so that the requests many fibers write to one
    server leave together (see `Hub.cede`): such a send is a point where the fiber may be
    switched out even when it need not wait. Sockets from `accept` do not do this: a
    server's replies go to many peers, and delaying them would only add latency.
    """
    sent = 0
    st: SocketState = _state_of(sock) if _SLOTS_IN_C else sock._state
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
            sent = after_ready(sock, data, flags)
            if sent and sent == len(data):  # (sent is nonzero only for bytes)
                return
            rec = st.rec  # (the others ran meanwhile)
        if not sent and type(data) is bytes:
            # The hot path: one try of the syscall, unless the hint says the buffer is
            # full. The deadline is set only if the call has to wait (with a timeout, the
            # call may so end later than the stdlib's by the duration of this syscall).
            # INLINED-COPY-BEGIN(socket-sendall): the first try of general_io: the same
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
    elif timeout is None:
        # MSG_DONTWAIT on a blocking socket: the stdlib's sendall sends what fits and raises
        # BlockingIOError (its fd is blocking; the flag makes the kernel say EAGAIN). The C
        # method does that on unknot's non-blocking fd.
        _c_sendall(sock, data, flags)
        return
    deadline = deadline_of(st)
    if type(data) is bytes and not sent:
        size = len(data)
        sent = general_io(sock, True, _c_send, size, (data, flags), deadline)
        if sent == size:
            return
    # Not a bytes-like object, or not a contiguous one: the C method raises its own error
    # (TypeError, BufferError), before it sends anything.
    try:
        view = memoryview(data)
    except TypeError:
        _c_sendall(sock, data, flags)
        return
    if not view.c_contiguous:
        view.release()
        _c_sendall(sock, data, flags)
        return
    with view, view.cast("B") as buf:
        total = len(buf)
        while sent < total:
            sent += general_io(sock, True, _c_send, total - sent, (buf[sent:], flags), deadline)


# -- the general path: every other blocking call, and the fallbacks of recv and sendall --------

#: What `attempt` returns for a call that would block.
AGAIN: Final[Any] = object()


def attempt(op: Any, sock: Any, args: tuple[Any, ...]) -> Any:
    """``op(sock, *args)``, or `AGAIN` if it would block.

    A function of its own for memory's sake: in the pure-Python build a frame that catches an
    exception gets a frame object (for the traceback) that lives as long as the frame, and
    `general_io`'s frame lives on while its fiber waits: some 300 bytes more per idle
    connection. This frame ends at once.
    """
    try:
        return op(sock, *args)
    except _BlockingIOError:
        return AGAIN


def deadline_of(st: SocketState) -> float | None:
    """When a call starting now must end, by the socket's timeout (None: never)."""
    t = st.timeout
    return None if t is None else _time.monotonic() + t


def wait_ready(sock: Any, write: bool, deadline: float | None) -> None:
    """Wait until ``sock`` is ready to read (or to write); raise `TimeoutError` once
    ``deadline`` passed. In a fiber the hub waits (making the socket's fd record if it has
    none); outside fibers the thread blocks in ``poll``. (``socket._wait``.)"""
    # INLINED-ORIGINAL(socket-recv): copied, with general_io, into recv; change them together.
    timeout = None if deadline is None else deadline - _time.monotonic()
    if timeout is not None and timeout <= 0:
        raise TimeoutError("timed out")
    f = _getcurrent()
    if type(f) is _Fiber:
        hub = f.hub
        st: SocketState = sock._state
        rec = st.rec
        if rec is None or rec.hub is not hub:
            fd = sock.fileno()
            if fd < 0:
                raise OSError(9, "Bad file descriptor")
            rec = st.rec = hub.fd_record(fd)
        if hub.wait_fd(f, rec, write, timeout) is TIMED_OUT:
            raise TimeoutError("timed out")
    elif not poll_fd(sock.fileno(), not write, write, timeout):
        raise TimeoutError("timed out")


def general_io(
    sock: Any,
    write: bool,
    op: Any,
    size: int | None,
    args: tuple[Any, ...],
    deadline: Any = False,
    entered: bool = False,
) -> Any:
    """Run the C method ``op(sock, *args)`` moving up to ``size`` bytes, cooperatively.
    (``socket._io``.)

    Uses and maintains the record's readiness hints (see `unknot.lowlevel.FdWait`): a short
    write on a stream socket (or a short read on a TCP one) clears the hint, and a cleared
    hint means wait for the next edge before trying the syscall again. ``size`` None: the
    call may move fewer bytes without draining the buffer (flags such as MSG_PEEK). A
    call moving no bytes at all never waits first: it returns at once, as in the stdlib.
    A call that may block begins at `entry` (a cancellation point) unless the caller
    already did that (``entered``, or a ``deadline`` given: a continuation).
    """
    # INLINED-ORIGINAL(socket-recv, socket-sendall): copied into recv (with wait_ready) and into
    # sendall (its first try); change them together.
    st: SocketState = sock._state
    rec = st.rec
    if deadline is False and not entered and st.timeout != 0.0:
        if rec is not None:
            entry(rec.hub)
        else:
            entry_here()
    if rec is not None and st.timeout != 0.0 and (size is None or size > 0):
        if rec.hints and not (rec.writable if write else rec.readable):
            if deadline is False:
                deadline = deadline_of(st)
            wait_ready(sock, write, deadline)
    while True:
        if st.timeout == 0.0:
            result = op(sock, *args)  # (raises BlockingIOError, as in the stdlib)
        else:
            result = attempt(op, sock, args)
        if result is AGAIN:
            if deadline is False:
                deadline = deadline_of(st)
            wait_ready(sock, write, deadline)
            continue
        n = result if type(result) is int else len(result)
        if size is not None and 0 < n < size and (st.stream if write else st.tcp):
            rec = st.rec
            if rec is not None and rec.hints:
                if write:
                    rec.writable = False
                else:
                    rec.readable = False
        return result


def recv_into(sock: Any, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
    """As `socket.socket.recv_into`, suspending only the calling fiber."""
    st: SocketState = _state_of(sock) if _SLOTS_IN_C else sock._state
    timeout = st.timeout
    # INLINED-COPY-BEGIN(never-waits): recv's test
    if (timeout is not None and timeout == 0.0) or (flags & DONTWAIT and timeout is None):
        # Never waits: the C method as it is (see recv)
        return _c_recv_into(sock, buffer, nbytes, flags)
    # INLINED-COPY-END(never-waits)
    if flags:
        if flags & WAITALL and not flags & PEEK and timeout is None and st.stream:
            return recv_waitall(sock, buffer, nbytes, flags)
        size = None
    else:
        size = writable_size(buffer, nbytes)
        if size < 0:
            # Arguments the C method refuses (a read-only or not a buffer, ``nbytes`` negative,
            # past the buffer or not an integer): its own error, at once, as the stdlib's, not
            # after a wait for data. (It checks them before any I/O; should it not refuse them
            # after all, its read is what this returns.)
            return _c_recv_into(sock, buffer, nbytes, flags)
    return general_io(sock, False, _c_recv_into, size, (buffer, nbytes, flags))


def writable_size(buffer: Any, nbytes: Any) -> int:
    """The size in bytes ``recv_into(buffer, nbytes)`` receives at most: ``nbytes``, or the
    buffer's size if 0; -1 for arguments its C method refuses (not a writable C-contiguous
    buffer, ``nbytes`` not an integer from 0 to the buffer's size)."""
    try:
        view = memoryview(buffer)  # (released at once, with the last reference)
    except TypeError:
        return -1
    if view.readonly or not view.c_contiguous or type(nbytes) is not int:
        return -1
    size = view.nbytes
    if nbytes == 0:
        return size
    return nbytes if 0 < nbytes <= size else -1


def recv_waitall(sock: Any, buffer: Any, nbytes: int, flags: int) -> int:
    """``recv_into(buffer, nbytes, flags)`` with MSG_WAITALL on a blocking (timeout None) stream
    socket: as the stdlib's, it returns once ``nbytes`` (or the buffer's size) came, or at EOF.

    The kernel returns only what is there on unknot's non-blocking fd, so this receives the rest
    with more calls. As the kernel's own MSG_WAITALL returns what it has when a signal or an
    error interrupts it, a cancellation (or an error, such as the socket closed by another
    fiber) that comes after some of the bytes returns those bytes: none is lost, and the
    cancellation, still in force, is raised by the next blocking call.
    """
    # The first call as it is: the C method checks the arguments with its own errors.
    total: int = general_io(sock, False, _c_recv_into, None, (buffer, nbytes, flags))
    if total == 0:
        return 0
    with memoryview(buffer) as mv, mv.cast("B") as view:
        wanted = nbytes or view.nbytes
        while total < wanted:
            n: int | None = more(sock, _c_recv_into, (view[total:], wanted - total, flags))
            if n is None:
                return total  # (interrupted)
            if n == 0:
                break  # EOF
            total += n
    return total


# -- MSG_WAITALL for the other receiving calls (the methods `unknot.socket` wraps) -------------

_c_recvfrom: Final = _socket.socket.recvfrom
_c_recvfrom_into: Final = _socket.socket.recvfrom_into
_c_recvmsg: Final[Any] = getattr(_socket.socket, "recvmsg", None)
_c_recvmsg_into: Final[Any] = getattr(_socket.socket, "recvmsg_into", None)


def wants_waitall(sock: Any, flags: Any) -> bool:
    """Whether a receiving call with ``flags`` on ``sock`` must wait for all the bytes asked
    for, as the stdlib's blocking socket would (`recv_waitall`): MSG_WAITALL without MSG_PEEK,
    on a blocking (timeout None) stream socket. Flags the C method refuses say no (it raises
    its own error)."""
    st: SocketState = sock._state
    if st.timeout is not None or not st.stream:
        return False
    try:
        f = operator.index(flags)
    except TypeError:
        return False
    return bool(f & WAITALL) and not f & PEEK


def more(sock: Any, op: Any, args: tuple[Any, ...]) -> Any:
    """``op(sock, *args)`` for bytes a MSG_WAITALL call still waits for, waiting for them without
    limit; None if a cancellation or an error (the socket closed by another fiber) came first,
    as in `recv_waitall`: the call then returns what it has."""
    try:
        return general_io(sock, False, op, None, args, None)
    except (Cancelled, OSError):
        return None


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], at: int, name: str, default: Any) -> Any:
    return args[at] if len(args) > at else kwargs.get(name, default)


def recvfrom_waitall(sock: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``recvfrom(bufsize, flags)`` with MSG_WAITALL (`wants_waitall`): the bytes until
    ``bufsize`` came, or EOF, and the address the first call gave."""
    # The first call as it is: the C method checks the arguments with its own errors.
    data, address = retry_call(sock, _c_recvfrom, "recvfrom", False, 1, (), args, kwargs)
    bufsize = operator.index(args[0])
    total = len(data)
    if total == 0 or total >= bufsize:
        return data, address
    chunks = [data]
    while total < bufsize:
        got = more(sock, _c_recvfrom, (bufsize - total, args[1]))
        if got is None or not got[0]:
            break  # (interrupted, or EOF)
        chunks.append(got[0])
        total += len(got[0])
    return b"".join(chunks), address


def recvfrom_into_waitall(sock: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``recvfrom_into(buffer, nbytes, flags)`` with MSG_WAITALL (`wants_waitall`)."""
    n, address = retry_call(sock, _c_recvfrom_into, "recvfrom_into", False, 2, (), args, kwargs)
    if n == 0:
        return n, address
    flags = _arg(args, kwargs, 2, "flags", 0)
    total: int = n
    with memoryview(_arg(args, kwargs, 0, "buffer", None)) as mv, mv.cast("B") as view:
        wanted = operator.index(_arg(args, kwargs, 1, "nbytes", 0)) or view.nbytes
        while total < wanted:
            got = more(sock, _c_recvfrom_into, (view[total:], wanted - total, flags))
            if got is None or got[0] == 0:
                break
            total += got[0]
    return total, address


def recvmsg_waitall(sock: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``recvmsg(bufsize, ancbufsize, flags)`` with MSG_WAITALL (`wants_waitall`): the bytes
    until ``bufsize`` came, or EOF, or ancillary data came on a socket other than TCP (an
    AF_UNIX socket's blocking call stops there: after a message that carries descriptors,
    and between messages of writers of other credentials); the message flags of the calls
    together, the ancillary data of the last call that had any, the first call's address."""
    first = retry_call(sock, _c_recvmsg, "recvmsg", False, 2, (), args, kwargs)
    data, ancdata, msg_flags, address = first
    bufsize = operator.index(args[0])
    tcp = sock._state.tcp
    total = len(data)
    if total == 0 or total >= bufsize or (ancdata and not tcp):
        return first
    chunks = [data]
    while total < bufsize:
        got = more(sock, _c_recvmsg, (bufsize - total, args[1], args[2]))
        if got is None or not got[0]:
            break
        chunks.append(got[0])
        total += len(got[0])
        msg_flags |= got[2]
        if got[1]:
            ancdata = got[1]
            if not tcp:
                break
    return b"".join(chunks), ancdata, msg_flags, address


def recvmsg_into_waitall(sock: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``recvmsg_into(buffers, ancbufsize, flags)`` with MSG_WAITALL: as `recvmsg_waitall`,
    until the buffers are full."""
    args = reusable(args, (0,))  # (the buffers, once more for the next calls)
    first = retry_call(sock, _c_recvmsg_into, "recvmsg_into", False, 2, (), args, kwargs)
    total, ancdata, msg_flags, address = first
    tcp = sock._state.tcp
    if total == 0 or (ancdata and not tcp):
        return first
    views = [memoryview(b).cast("B") for b in args[0]]
    try:
        wanted = sum([v.nbytes for v in views])
        while total < wanted:
            got = more(sock, _c_recvmsg_into, (_unfilled(views, total), args[1], args[2]))
            if got is None or got[0] == 0:
                break
            total += got[0]
            msg_flags |= got[2]
            if got[1]:
                ancdata = got[1]
                if not tcp:
                    break
    finally:
        for v in views:
            v.release()
    return total, ancdata, msg_flags, address


def _unfilled(views: list[memoryview], filled: int) -> list[memoryview]:
    """What remains of ``views`` (byte views, in order) once ``filled`` bytes went into them."""
    out = []
    for v in views:
        if filled >= v.nbytes:
            filled -= v.nbytes
        else:
            out.append(v[filled:])
            filled = 0
    return out


def send(sock: Any, data: Any, flags: int = 0) -> int:
    """As `socket.socket.send`, suspending only the calling fiber.

    On a blocking client socket the fibers already ready to run go first (see `sendall`).
    """
    st: SocketState = _state_of(sock) if _SLOTS_IN_C else sock._state
    timeout = st.timeout
    # INLINED-COPY-BEGIN(never-waits): recv's test
    if (timeout is not None and timeout == 0.0) or (flags & DONTWAIT and timeout is None):
        # Never waits: the C method as it is (see recv)
        return _c_send(sock, data, flags)
    # INLINED-COPY-END(never-waits)
    if st.client and not flags & DONTWAIT:
        entry_here()
        n = after_ready(sock, data, flags)
        if n:
            return n
        size = len(data) if type(data) is bytes else buffer_size(data)
        return general_io(sock, True, _c_send, size, (data, flags), False, True)
    size = len(data) if type(data) is bytes else buffer_size(data)
    return general_io(sock, True, _c_send, size, (data, flags))


def buffer_size(data: Any) -> int:
    """The size in bytes of ``data``, a buffer for `send`; for what is not one, the `TypeError`
    the C method raises (``memoryview``'s own message is another)."""
    try:
        return memoryview(data).nbytes  # (the view is released at once: no `with`, it costs)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'") from None


def after_ready(sock: Any, data: Any, flags: int) -> int:
    """Start a blocking send on a client socket: go after the fibers already ready.
    (``socket._after_ready``.)

    With other fibers ready (or sends already batched), bytes are handed to the hub, which
    sends them once those fibers have run, back to back with the other fibers' requests
    (`Hub.call_batched`); the bytes it sent are returned (0 if the buffer was full). Other
    data types just cede (`Hub.cede`) and 0 is returned, as it is when nobody else is
    ready: the caller then sends itself.
    """
    f = _getcurrent()
    if type(f) is not _Fiber:
        return 0
    hub: Hub = f.hub
    if not (hub.ready or hub.calls):
        return 0
    if type(data) is not bytes:
        hub.cede(f)
        return 0
    try:
        sent: int = hub.call_batched(f, _c_send, sock, data, flags)
    except _BlockingIOError:
        return 0
    return sent


def reusable(args: tuple[Any, ...], positions: tuple[int, ...]) -> tuple[Any, ...]:
    """``args`` with the iterables at ``positions`` made lists, so that a retry sees them whole.

    The C method consumes an iterator there (``recvmsg_into``'s buffers, ``sendmsg``'s buffers
    and ancillary data) at its first try, even when the syscall then says EAGAIN; retried with
    the same, now empty, iterator, it would receive into no buffer or send nothing (a datagram
    lost either way). What ``list`` refuses is left for the C method to refuse in its own words.
    """
    out = list(args)
    for i in positions:
        if i < len(out) and type(out[i]) not in (list, tuple):
            try:
                out[i] = list(out[i])
            except TypeError:
                pass
    return tuple(out)


def retry_call(
    sock: Any,
    c_method: Any,
    name: str,
    write: bool,
    flags_at: int | None,
    iterables: tuple[int, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """``c_method(sock, *args, **kwargs)``, the C socket method ``name``, retried after waiting
    for readiness (as the socket's timeout says): the body of `accept_fd` and of the methods
    `unknot.socket` wraps generically (``recvfrom``, ``sendmsg``...).

    ``flags_at``: the position of its ``flags`` argument (which may also be passed by name):
    with MSG_DONTWAIT there, a blocking socket's call does not wait. ``iterables``: the
    positions of arguments the C method consumes as iterators (`reusable`).
    """
    st: SocketState = sock._state
    deadline: Any = False
    if st.timeout != 0.0:
        if iterables:
            args = reusable(args, iterables)
        rec = st.rec
        if rec is not None:
            entry(rec.hub)
        else:
            entry_here()
    while True:
        try:
            return c_method(sock, *args, **kwargs)
        except _BlockingIOError:
            if st.timeout == 0.0:
                raise
            if st.timeout is None and flags_at is not None:
                flags = args[flags_at] if len(args) > flags_at else kwargs.get("flags", 0)
                if name == "sendto" and len(args) == 2:
                    flags = 0  # sendto(data, address)
                if flags & DONTWAIT:
                    raise
        if deadline is False:
            deadline = deadline_of(st)
        wait_ready(sock, write, deadline)


def accept_fd(sock: Any) -> tuple[int, Any]:
    """``socket._accept``: the new connection's fd and address, waiting for one cooperatively
    (as the socket's timeout says)."""
    st: SocketState = sock._state
    if st.timeout is None and st.stream and not st.tcp and _POLLRDHUP:
        return accept_blocking_unix(sock)
    return retry_call(sock, _c_accept, "_accept", False, None, (), (), {})


# (the poll(2) constructor and its flag, captured before `unknot.patch` could replace them)
_poll: Final[Any] = getattr(_select, "poll", None)
_POLLRDHUP: Final = int(getattr(_select, "POLLRDHUP", 0)) if _poll is not None else 0
_AF_UNIX: Final = int(getattr(_socket, "AF_UNIX", -1))
_EINVAL: Final = errno.EINVAL


def accept_blocking_unix(sock: Any) -> tuple[int, Any]:
    """`accept_fd` for a blocking (timeout None) stream socket other than TCP: as the
    stdlib's blocking ``accept`` on an ``AF_UNIX`` listener shut down for reading (before or
    while it waits: the usual way to stop an accept loop), raise ``OSError(EINVAL)``.

    The kernel's blocking accept says so; on unknot's non-blocking fd the accept says EAGAIN
    and the fd polls readable, for ever. A listener's poll reports ``POLLRDHUP`` only once it
    was shut down for reading: after an EAGAIN, that one ``poll`` (no wait) tells the two
    apart, before each wait.
    """
    st: SocketState = sock._state
    rec = st.rec
    if rec is not None:
        entry(rec.hub)
    else:
        entry_here()
    unix = sock.family == _AF_UNIX
    while True:
        try:
            result: tuple[int, Any] = _c_accept(sock)
            return result
        except _BlockingIOError:
            if st.timeout is not None:  # (changed by another fiber meanwhile)
                return retry_call(sock, _c_accept, "_accept", False, None, (), (), {})
        if unix and read_shut_down(sock.fileno()):
            raise OSError(_EINVAL, os.strerror(_EINVAL))
        wait_ready(sock, False, None)


def read_shut_down(fd: int) -> bool:
    """Whether the socket ``fd`` was shut down for reading (its poll says ``POLLRDHUP``)."""
    p = _poll()
    p.register(fd, _POLLRDHUP)
    return any(ev & _POLLRDHUP for _fd, ev in p.poll(0))
