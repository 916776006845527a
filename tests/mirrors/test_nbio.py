"""`unknot._nbio` (src/unknot/_nbio.c) agrees with os.read, os.write and select.epoll.poll.

The compiled build's TCP sockets receive and send through `unknot._nbio`: os.read and os.write
on a socket written again in C, with recv(2) and send(2) for read(2) and write(2), keeping the
GIL and (for reads up to 64 KiB) reading into one shared buffer.
Each scenario here runs through both and compares what comes back: the bytes or the count, or
the exception's type and errno. Where the extension is not installed (the pure-Python dev
install) it is compiled from its source for these tests; without a C compiler they skip (and
fail under CI=true); in a compiled install it must be there.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import importlib.machinery
import importlib.util
import inspect
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from drivers_support import unavailable
from fiber_helpers import fill

import unknot

pytestmark = pytest.mark.timeout(60)

SOURCE = Path(__file__).resolve().parents[2] / "src" / "unknot" / "_nbio.c"
BUFFER = 65536  # READ_BUFFER in _nbio.c


def _compile(tmp: Path) -> ModuleType:
    """Build _nbio.c with the compiler Python was built with, and load it."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    target = tmp / ("_nbio" + importlib.machinery.EXTENSION_SUFFIXES[0])
    argv = [
        *cc,
        "-shared",
        "-fPIC",
        "-O2",
        "-I",
        sysconfig.get_paths()["include"],
        str(SOURCE),
        "-o",
        str(target),
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except OSError as exc:
        unavailable(f"no C compiler to build _nbio.c ({exc})")
    assert done.returncode == 0, done.stderr
    spec = importlib.util.spec_from_file_location("unknot._nbio", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def nbio(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    try:
        from unknot import _nbio
    except ImportError:
        assert not unknot.compiled, "a compiled install must have unknot._nbio"
        return _compile(tmp_path_factory.mktemp("nbio"))
    return _nbio


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """What a call gives: ("ok", value) or ("raise", (type, errno))."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the exception is the outcome being compared
        return ("raise", (type(exc), getattr(exc, "errno", None)))


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        a = socket.create_connection(server.getsockname())
        b, _ = server.accept()
    a.setblocking(False)
    b.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _refill(sender: socket.socket, data: bytes) -> None:
    sender.setblocking(True)
    sender.sendall(data)
    sender.setblocking(False)
    time.sleep(0.05)  # loopback delivers at once; this only makes it certain


class Stop(Exception):
    """What `alarm`'s handler raises when asked to."""


@contextlib.contextmanager
def alarm(after: float, raises: bool = False) -> Iterator[list[int]]:
    """SIGALRM ``after`` seconds from now; its handler records it (the list yielded) and raises
    `Stop` if ``raises``."""
    seen: list[int] = []

    def handler(signum: int, frame: object) -> None:
        seen.append(signum)
        if raises:
            raise Stop

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, after)
    try:
        yield seen
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize(
    ("available", "length"),
    [
        (1024, 65536),  # a short read, the echo benchmark's shape
        (1024, 1024),
        (1024, 100),  # less than is there: the rest stays for the next read
        (70000, BUFFER),  # exactly the shared buffer's size
        (70000, BUFFER + 1),  # past it: the os.read way (allocate, shrink)
        (150000, 200000),
        (10, 0),
    ],
)
def test_read_returns_what_os_read_returns(
    nbio: ModuleType, tcp_pair: tuple[socket.socket, socket.socket], available: int, length: int
) -> None:
    a, b = tcp_pair
    payload = os.urandom(available)
    results = []
    for read in (os.read, nbio.recv):
        _refill(a, payload)
        got = b""
        first = read(b.fileno(), length)
        got += first
        # What the first call left is the same for both: drain it with os.read.
        while True:
            try:
                more = os.read(b.fileno(), 1 << 20)
            except BlockingIOError:
                break
            got += more
        assert got == payload
        results.append(first)
    if length:
        assert 0 < len(results[1]) <= length
    if available <= 50000:
        # All of it is in the receive buffer at once: both read the same bytes. (How much of
        # a larger payload one read finds depends on the kernel's buffer sizes at that moment.)
        assert results[0] == results[1]


def test_a_short_read_after_a_long_one_returns_only_its_own_bytes(
    nbio: ModuleType, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    # The shared buffer still holds the first read's bytes: the second must not show them.
    a, b = tcp_pair
    _refill(a, b"x" * 5000)
    assert nbio.recv(b.fileno(), BUFFER) == b"x" * 5000
    _refill(a, b"yz")
    assert nbio.recv(b.fileno(), BUFFER) == b"yz"


def test_read_at_end_of_file_and_when_nothing_is_ready(
    nbio: ModuleType, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = tcp_pair
    for length in (1024, BUFFER + 1):
        empty = [outcome(r, b.fileno(), length) for r in (os.read, nbio.recv)]
        assert empty[0] == empty[1] == ("raise", (BlockingIOError, errno.EAGAIN))
    a.shutdown(socket.SHUT_WR)
    time.sleep(0.05)
    for length in (1024, BUFFER + 1):
        assert nbio.recv(b.fileno(), length) == os.read(b.fileno(), length) == b""


@pytest.mark.parametrize(
    "args",
    [
        (-1, 10),  # EBADF
        ("fd", 10),  # TypeError
        (0, 1.5),  # TypeError
        (2**40, 10),  # OverflowError
        (0, 2**70),  # OverflowError
        (0, -1),  # EINVAL
    ],
)
def test_read_rejects_what_os_read_rejects(nbio: ModuleType, args: tuple[Any, Any]) -> None:
    theirs, ours = outcome(os.read, *args), outcome(nbio.recv, *args)
    assert theirs[0] == "raise"
    assert ours == theirs


def test_read_on_a_closed_fd(nbio: ModuleType) -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    assert outcome(nbio.recv, r, 10) == outcome(os.read, r, 10) == ("raise", (OSError, errno.EBADF))
    assert outcome(nbio.recv, r, BUFFER + 10) == ("raise", (OSError, errno.EBADF))


def test_an_fd_that_is_not_a_socket(nbio: ModuleType) -> None:
    # recv(2) and send(2), not read(2) and write(2): a pipe is refused, where os.read and
    # os.write would use it. (unknot calls them only on its TCP sockets.)
    r, w = os.pipe()
    try:
        os.write(w, b"data")
        assert outcome(nbio.recv, r, 10) == ("raise", (OSError, errno.ENOTSOCK))
        assert outcome(nbio.recv, r, BUFFER + 10) == ("raise", (OSError, errno.ENOTSOCK))
        assert outcome(nbio.send, w, b"more") == ("raise", (OSError, errno.ENOTSOCK))
        assert os.read(r, 10) == b"data"  # nothing was consumed
    finally:
        os.close(r)
        os.close(w)


def test_argument_counts(nbio: ModuleType) -> None:
    for fn in (nbio.recv, nbio.send):
        for args in ((), (1,), (1, 2, 3)):
            assert outcome(fn, *args)[1][0] is TypeError
    with pytest.raises(TypeError):
        nbio.recv(fd=1, length=2)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_write_sends_what_os_write_sends(
    nbio: ModuleType, tcp_pair: tuple[socket.socket, socket.socket], kind: type
) -> None:
    a, b = tcp_pair
    payload = os.urandom(3000)
    for write in (os.write, nbio.send):
        assert write(a.fileno(), kind(payload)) == len(payload)
        time.sleep(0.05)
        assert os.read(b.fileno(), 1 << 20) == payload


def test_write_when_the_buffer_is_full_and_to_a_closed_peer(
    nbio: ModuleType, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = tcp_pair
    chunk = b"z" * 65536
    fill(a.fileno())  # the send and the receive buffers
    full = [outcome(w, a.fileno(), chunk) for w in (os.write, nbio.send)]
    assert full[0] == full[1] == ("raise", (BlockingIOError, errno.EAGAIN))
    b.close()
    time.sleep(0.05)
    broken = [outcome(w, a.fileno(), b"after") for w in (os.write, nbio.send)]
    # The reset peer: ECONNRESET first (its unread data), then EPIPE.
    assert broken[0][0] == broken[1][0] == "raise"
    again = [outcome(w, a.fileno(), b"again") for w in (os.write, nbio.send)]
    assert again[0] == again[1] == ("raise", (BrokenPipeError, errno.EPIPE))


@pytest.mark.parametrize("args", [(-1, b"x"), ("fd", b"x"), (1, "text"), (1, 12), (2**40, b"")])
def test_write_rejects_what_os_write_rejects(nbio: ModuleType, args: tuple[Any, Any]) -> None:
    theirs, ours = outcome(os.write, *args), outcome(nbio.send, *args)
    assert theirs[0] == "raise"
    assert ours == theirs


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
@pytest.mark.parametrize("length", [10, BUFFER + 10])
@pytest.mark.parametrize("handler_raises", [False, True])
def test_a_signal_during_the_syscall_runs_its_handler_then_retries_or_raises(
    nbio: ModuleType, length: int, handler_raises: bool
) -> None:
    # PEP 475, as os.read: EINTR runs the handlers; the read goes on unless one raised. The
    # read blocks (a blocking socket, which unknot's own never are) until a child writes.
    for read in (os.read, nbio.recv):
        r, w = socket.socketpair()
        child = subprocess.Popen(
            [sys.executable, "-c", "import os, time; time.sleep(0.5); os.write(1, b'late')"],
            stdout=w.fileno(),
        )
        w.close()
        try:
            with alarm(0.1, handler_raises) as seen:
                if handler_raises:
                    with pytest.raises(Stop):
                        read(r.fileno(), length)
                else:
                    assert read(r.fileno(), length) == b"late"
            assert seen == [signal.SIGALRM]
        finally:
            child.wait(timeout=10)
            r.close()


def test_send_retries_after_a_signal(nbio: ModuleType) -> None:
    # A send blocked on a full blocking socket, a signal, then a child drains the socket.
    r, w = socket.socketpair()
    w.setblocking(False)
    fill(w.fileno())
    w.setblocking(True)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time; time.sleep(0.5)\nwhile os.read(0, 65536): pass",
        ],
        stdin=r.fileno(),
    )
    r.close()
    try:
        with alarm(0.1) as seen:
            assert nbio.send(w.fileno(), b"after the signal") == len(b"after the signal")
        assert seen == [signal.SIGALRM]
    finally:
        w.close()
        child.wait(timeout=10)


def test_the_sockets_use_it_exactly_in_the_compiled_build() -> None:
    from unknot import _sockio

    if unknot.compiled:
        from unknot import _nbio

        assert (_sockio._tcp_recv, _sockio._tcp_send) == (_nbio.recv, _nbio.send)
    else:
        assert (_sockio._tcp_recv, _sockio._tcp_send) == (os.read, os.write)


# -- method: a function as a method without a frame of its own --------------------------------


def _py_func(self: Any, x: Any, y: Any = 0) -> tuple[Any, Any, Any]:
    """A Python function: the generic path (PyObject_Vectorcall)."""
    return (self, x, y)


def _raises(self: Any) -> None:
    raise KeyError(self)


def _methods(nbio: ModuleType) -> tuple[type, type]:
    """The same class twice: its methods as Python functions, and through nbio.method."""

    class Plain(list):  # type: ignore[type-arg]
        f = _py_func
        raises = _raises

        def s(self, *args: Any, **kwargs: Any) -> Any:
            return sorted(self, *args, **kwargs)

    class Wrapped(list):  # type: ignore[type-arg]
        f = nbio.method(_py_func)
        raises = nbio.method(_raises)
        # sorted is a METH_FASTCALL | METH_KEYWORDS builtin, as mypyc's functions are: the
        # direct C call.
        s = nbio.method(sorted, "sorted, as a method")

    return Plain, Wrapped


def test_method_calls_as_a_python_function_method_does(nbio: ModuleType) -> None:
    plain, wrapped = _methods(nbio)
    for cls in (plain, wrapped):
        obj = cls([3, 1, 2])
        assert obj.f(1) == (obj, 1, 0)
        assert obj.f(1, y=2) == (obj, 1, 2)
        assert obj.f(x=5) == (obj, 5, 0)
        assert cls.f(obj, 1, 2) == (obj, 1, 2)
        bound = obj.f  # a bound method, called later
        assert bound(7) == (obj, 7, 0)
        assert obj.s() == [1, 2, 3]
        assert obj.s(reverse=True) == [3, 2, 1]
        assert obj.s(key=lambda v: -v) == [3, 2, 1]
        with pytest.raises(KeyError) as info:
            obj.raises()
        assert info.value.args == (obj,)
        with pytest.raises(TypeError):
            obj.f()  # x missing: the function's own error
        with pytest.raises(TypeError):
            obj.s(1, 2)  # sorted takes one positional argument
        with pytest.raises(TypeError):
            obj.s(nope=1)


def test_method_binds_as_a_python_function_does(nbio: ModuleType) -> None:
    _, wrapped = _methods(nbio)
    obj = wrapped([1])
    bound = obj.f
    assert isinstance(bound, types.MethodType)
    assert bound.__self__ is obj
    assert bound.__func__ is wrapped.__dict__["f"]
    assert bound(4, 5) == (obj, 4, 5)
    assert wrapped.f is wrapped.__dict__["f"]  # on the class: the descriptor itself
    assert wrapped.__dict__["f"].__get__(None, wrapped) is wrapped.__dict__["f"]
    assert wrapped.f(obj, 1) == (obj, 1, 0)
    assert functools.partial(wrapped.f, obj)(3) == (obj, 3, 0)
    assert wrapped.f.__func__ is _py_func and wrapped.f.__wrapped__ is _py_func


def test_method_reads_the_function_names_and_doc(nbio: ModuleType) -> None:
    _, wrapped = _methods(nbio)
    m = wrapped.__dict__["f"]
    assert (m.__name__, m.__qualname__, m.__module__) == (
        "_py_func",
        "_py_func",
        __name__,
    )
    assert m.__doc__ == _py_func.__doc__
    s = wrapped.__dict__["s"]
    assert s.__doc__ == "sorted, as a method" and s.__name__ == "sorted"
    assert repr(m) == f"<unknot._nbio.method of {_py_func!r}>"
    assert inspect.signature(m) == inspect.signature(_py_func)  # (through __wrapped__)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1,), {}), ((len, 5), {}), ((len, None, 1), {}), ((len,), {"doc": "x"})],
)
def test_method_rejects_bad_arguments(
    nbio: ModuleType, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(TypeError):
        nbio.method(*args, **kwargs)


def test_method_frees_a_cycle_through_it(nbio: ModuleType) -> None:
    def func(self: Any) -> None:
        pass

    holder: list[Any] = [nbio.method(func)]
    func.holder = holder  # type: ignore[attr-defined]  # func -> holder -> method -> func
    ref = weakref.ref(func)
    del func, holder
    gc.collect()
    assert ref() is None


def test_method_calls_leak_no_references(nbio: ModuleType) -> None:
    _, wrapped = _methods(nbio)
    obj = wrapped([2, 1])
    arg = object()
    for _ in range(100):
        obj.f(arg)
        obj.s(key=id)
    before = (sys.getrefcount(obj), sys.getrefcount(arg))
    for _ in range(1000):
        obj.f(arg)
        obj.f(arg, y=arg)
        obj.s(key=id)
        obj.f  # noqa: B018  (a bound method, made and dropped)
    assert (sys.getrefcount(obj), sys.getrefcount(arg)) == before


def test_the_socket_methods_use_it_exactly_in_the_compiled_build() -> None:
    from unknot import _sockio
    from unknot import socket as usocket

    recv = usocket.socket.__dict__["recv"]
    sendall = usocket.socket.__dict__["sendall"]
    if unknot.compiled:
        from unknot import _nbio

        assert type(recv) is _nbio.method and recv.__wrapped__ is _sockio.recv
        assert type(sendall) is _nbio.method and sendall.__wrapped__ is _sockio.sendall
        assert recv.__doc__ and sendall.__doc__  # the methods' own docstrings, kept
    else:
        assert (recv, sendall) == (_sockio.recv, _sockio.sendall)
    a, b = usocket.socketpair()
    with a, b:

        def main() -> tuple[bytes, bytes]:
            a.sendall(b"ping")
            first = b.recv(16)
            a.sendall(b"pong", 0)
            return first, b.recv(16, flags=0)

        assert unknot.run(main) == (b"ping", b"pong")


#: The socket methods whose bodies are unknot._sockio's functions (session 18: the general path).
BODIES = {
    "recv_into": "recv_into",
    "send": "send",
    "_io": "general_io",
    "_wait": "wait_ready",
    "_after_ready": "after_ready",
    "_accept": "accept_fd",
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_the_general_path_is_the_compiled_function_in_either_build(name: str) -> None:
    from unknot import _sockio
    from unknot import socket as usocket

    body = getattr(_sockio, BODIES[name])
    method = usocket.socket.__dict__[name]
    if unknot.compiled:
        from unknot import _nbio

        # The mypyc function itself, called without a Python frame between.
        assert type(body).__name__ == "builtin_function_or_method"
        assert type(method) is _nbio.method and method.__wrapped__ is body
        assert method.__doc__  # the method's own docstring, kept
    else:
        assert method is body


def test_the_general_path_calls_work_through_the_bound_functions() -> None:
    from unknot import socket as usocket

    srv = usocket.create_server(("127.0.0.1", 0))

    def main() -> tuple[bytes, int, bytes]:
        def serve() -> bytes:
            conn, _ = srv.accept()  # socket._accept: accept_fd, waiting for the connection
            with conn:
                buf = bytearray(8)
                n = conn.recv_into(buf)  # waits: nothing sent yet
                conn.send(bytes(buf[:n]).upper())
                return bytes(buf[:n])

        f = unknot.spawn(serve)
        unknot.sleep(0.01)  # the server waits in accept
        c = usocket.create_connection(srv.getsockname())
        with c:
            unknot.sleep(0.01)  # and then in recv_into
            sent = c.send(b"ping")  # a client socket: after_ready, then the syscall
            got = c.recv(8)
        return f.join(), sent, got

    with srv:
        assert unknot.run(main) == (b"ping", 4, b"PING")


# -- epoll_wait: select.epoll.poll for the compiled epoll hub -----------------------------------

needs_epoll = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux's")


@pytest.fixture
def epoll() -> Iterator[select.epoll]:
    ep = select.epoll()
    try:
        yield ep
    finally:
        ep.close()


def _both(nbio: ModuleType, ep: select.epoll, timeout: float, maxevents: int) -> list[Any]:
    """The outcomes of ep.poll and of nbio.epoll_wait, each list of events sorted."""
    results = []
    for call in (ep.poll, lambda t, m: nbio.epoll_wait(ep.fileno(), t, m)):
        kind, value = outcome(call, timeout, maxevents)
        results.append((kind, sorted(value) if kind == "ok" else value))
    return results


@needs_epoll
def test_epoll_wait_returns_what_poll_returns(nbio: ModuleType, epoll: select.epoll) -> None:
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        for a, _ in pairs:
            epoll.register(a.fileno(), select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP)
        pairs[0][1].send(b"x")
        pairs[1][1].close()  # a hang-up
        time.sleep(0.05)
        theirs, ours = _both(nbio, epoll, 0, 10)
        assert theirs == ours
        masks = dict(ours[1])
        assert masks[pairs[0][0].fileno()] & select.EPOLLIN
        assert masks[pairs[1][0].fileno()] & select.EPOLLRDHUP
        assert masks[pairs[2][0].fileno()] == select.EPOLLOUT
        assert all(type(fd) is int and type(ev) is int for fd, ev in ours[1])
        # maxevents bounds the list, as poll's does
        theirs, ours = _both(nbio, epoll, 0, 2)
        assert theirs[0] == ours[0] == "ok" and len(theirs[1]) == len(ours[1]) == 2
    finally:
        for a, b in pairs:
            a.close()
            b.close()


@needs_epoll
def test_epoll_wait_with_more_events_than_its_stack_holds(
    nbio: ModuleType, epoll: select.epoll
) -> None:
    pairs = [socket.socketpair() for _ in range(300)]  # STACK_EVENTS is 256
    try:
        for a, _ in pairs:
            epoll.register(a.fileno(), select.EPOLLOUT)
        theirs, ours = _both(nbio, epoll, 0, 1000)
        assert theirs == ours
        assert len(ours[1]) == 300
    finally:
        for a, b in pairs:
            a.close()
            b.close()


@needs_epoll
def test_epoll_wait_fills_again_only_the_tuples_nobody_kept(
    nbio: ModuleType, epoll: select.epoll
) -> None:
    (a, a2), (b, b2) = socket.socketpair(), socket.socketpair()
    try:
        epoll.register(a.fileno(), select.EPOLLOUT)
        kept = nbio.epoll_wait(epoll.fileno(), 0, 4)[0]  # the list is gone, the tuple kept
        assert kept == (a.fileno(), select.EPOLLOUT)
        epoll.unregister(a.fileno())
        epoll.register(b.fileno(), select.EPOLLOUT)
        got = nbio.epoll_wait(epoll.fileno(), 0, 4)
        # The kept tuple is left as it was; the new pair is in a tuple of its own.
        assert kept == (a.fileno(), select.EPOLLOUT)
        assert got == [(b.fileno(), select.EPOLLOUT)] and got[0] is not kept
        # One nobody kept is filled again: the same object comes back. (The tuples made in
        # between take any freed tuple's memory, so a new tuple cannot have the old id.)
        # (Not in a build without the GIL, which always makes new tuples.)
        ids = [id(pair) for pair in got]
        del got, kept
        hold = [(i, -i) for i in range(1000)]
        again = nbio.epoll_wait(epoll.fileno(), 0, 4)
        assert again == [(b.fileno(), select.EPOLLOUT)]
        if not sysconfig.get_config_var("Py_GIL_DISABLED"):
            assert [id(pair) for pair in again] == ids
        assert len(hold) == 1000
    finally:
        for s in (a, a2, b, b2):
            s.close()


@needs_epoll
def test_epoll_wait_keeps_at_most_1024_tuples(nbio: ModuleType, epoll: select.epoll) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1200 + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"needs {want} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    a, b = socket.socketpair()
    fds: list[int] = []
    try:
        for _ in range(1200):
            fds.append(os.dup(a.fileno()))
            epoll.register(fds[-1], select.EPOLLOUT)
        theirs, ours = _both(nbio, epoll, 0, 2000)
        assert theirs == ours and len(ours[1]) == 1200
        got = nbio.epoll_wait(epoll.fileno(), 0, 2000)
        assert len(got) == 1200
        # The list's reference, and the module's for the first 1,024 (PAIRS_MAX): the rest are
        # the list's alone, so what the module keeps does not grow with the connections.
        # (sys.getrefcount counts its argument too.)
        kept = 3 if not sysconfig.get_config_var("Py_GIL_DISABLED") else 2
        assert [sys.getrefcount(got[i]) for i in (0, 1023)] == [kept, kept]
        assert [sys.getrefcount(got[i]) for i in (1024, 1199)] == [2, 2]
    finally:
        for fd in fds:
            os.close(fd)
        a.close()
        b.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@needs_epoll
def test_epoll_wait_times_out_as_poll_does(nbio: ModuleType, epoll: select.epoll) -> None:
    r, w = os.pipe()
    try:
        epoll.register(r, select.EPOLLIN)
        for timeout in (0, 0.0001, 0.05):
            for call in (epoll.poll, lambda t, m: nbio.epoll_wait(epoll.fileno(), t, m)):
                began = time.monotonic()
                assert call(timeout, 4) == []
                elapsed = time.monotonic() - began
                assert elapsed >= timeout * 0.9
                assert elapsed < timeout + 1
    finally:
        os.close(r)
        os.close(w)


@needs_epoll
@pytest.mark.parametrize(
    ("fd", "timeout", "maxevents"),
    [
        (None, 0, 0),  # maxevents below 1: ValueError (poll's -1 means "any": not taken)
        (-1, 0, 1),  # EBADF
        ("pipe", 0, 1),  # EINVAL: not an epoll fd
        ("fd", 0, 1),  # TypeError
        (None, "soon", 1),  # TypeError
    ],
)
def test_epoll_wait_rejects_bad_arguments(
    nbio: ModuleType, epoll: select.epoll, fd: Any, timeout: Any, maxevents: int
) -> None:
    r, w = os.pipe()
    try:
        target = {None: epoll.fileno(), "pipe": r}.get(fd, fd)
        kind, (exc_type, code) = outcome(nbio.epoll_wait, target, timeout, maxevents)
        assert kind == "raise"
        if fd == -1:
            assert (exc_type, code) == (OSError, errno.EBADF)
        elif fd == "pipe":
            assert (exc_type, code) == (OSError, errno.EINVAL)
        elif maxevents == 0:
            assert exc_type is ValueError
            assert outcome(epoll.poll, 0, 0)[1][0] is ValueError
        else:
            assert exc_type is TypeError
    finally:
        os.close(r)
        os.close(w)


@needs_epoll
@pytest.mark.parametrize("handler_raises", [False, True])
def test_epoll_wait_after_a_signal_waits_the_time_left_or_raises(
    nbio: ModuleType, epoll: select.epoll, handler_raises: bool
) -> None:
    r, w = os.pipe()
    try:
        epoll.register(r, select.EPOLLIN)
        for call in (epoll.poll, lambda t, m: nbio.epoll_wait(epoll.fileno(), t, m)):
            began = time.monotonic()
            with alarm(0.1, handler_raises) as seen:
                if handler_raises:
                    with pytest.raises(Stop):
                        call(0.6, 4)
                    assert time.monotonic() - began < 0.5
                else:
                    assert call(0.6, 4) == []
                    assert 0.55 <= time.monotonic() - began < 3
            assert seen == [signal.SIGALRM]
    finally:
        os.close(r)
        os.close(w)


@needs_epoll
def test_epoll_wait_lets_other_threads_run_while_it_waits(
    nbio: ModuleType, epoll: select.epoll
) -> None:
    # A hub in one thread waiting in its poll must not stop the hubs of other threads.
    count = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        time.sleep(0.05)
        before = count
        assert nbio.epoll_wait(epoll.fileno(), 0.3, 4) == []
        assert count - before > 1000
    finally:
        stop.set()
        thread.join(timeout=10)


def test_the_epoll_hub_uses_it_exactly_in_the_compiled_build() -> None:
    from unknot._core import _io_epoll

    if unknot.compiled:
        from unknot import _nbio

        assert _io_epoll._EPOLL_WAIT == _nbio.epoll_wait
    else:
        assert _io_epoll._EPOLL_WAIT is None


def test_fd_int_gives_one_object_per_fd_number(nbio: ModuleType) -> None:
    for fd in (0, 3, 257, 1000, 65536, 2**20 - 1):
        first = nbio.fd_int(fd)
        assert type(first) is int and first == fd
        assert nbio.fd_int(fd) is first  # (above 256 CPython itself would make a new one)
    for fd in (-1, 2**20, 2**31 - 1):  # outside the table: the value, a new object each time
        assert nbio.fd_int(fd) == fd
    assert nbio.fd_int(2**20) is not nbio.fd_int(2**20)
    for bad, exc in (("3", TypeError), (3.0, TypeError), (2**31, OverflowError)):
        with pytest.raises(exc):
            nbio.fd_int(bad)
    kept = nbio.fd_int(5000)
    before = sys.getrefcount(kept)
    for _ in range(1000):
        nbio.fd_int(5000)
    assert sys.getrefcount(kept) == before  # each call's reference was given back


def _high_fd(fd: int) -> int:
    """A duplicate of ``fd`` numbered 700 or more (past CPython's cached ints)."""
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 700)


@needs_epoll
def test_epoll_wait_returns_the_fd_int_objects(nbio: ModuleType, epoll: select.epoll) -> None:
    a, b = socket.socketpair()
    high = _high_fd(a.fileno())
    try:
        epoll.register(high, select.EPOLLOUT)
        [(fd, ev)] = nbio.epoll_wait(epoll.fileno(), 0, 4)
        assert fd == high and ev == select.EPOLLOUT
        assert fd is nbio.fd_int(high)
    finally:
        os.close(high)
        a.close()
        b.close()


@pytest.mark.unknot
def test_the_hubs_fd_records_hold_the_fd_int_objects() -> None:
    a, b = socket.socketpair()
    high = _high_fd(a.fileno())
    a.close()
    reader = unknot.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=high)
    try:
        got = unknot.spawn(reader.recv, 1)
        unknot.sleep(0)
        b.send(b"!")
        assert got.join() == b"!"
        rec = reader._state.rec
        assert rec is not None and rec.fd == high
        [key] = [k for k, r in rec.hub.fds.items() if r is rec]
        if unknot.compiled:
            from unknot import _nbio

            # the record's, the table's key and epoll_wait's are one object
            assert rec.fdobj is _nbio.fd_int(high) and key is rec.fdobj
        else:
            assert rec.fdobj == high and key == high
    finally:
        reader.close()
        b.close()
    assert rec.fd == -1 and rec.fdobj == -1  # forgotten: the syscalls get EBADF
    assert all(r is not rec for r in rec.hub.fds.values())


# -- slot: the hub's reads and writes of fiber and socket slots (docs/compiled.md) ----------------


class Slotted:
    __slots__ = ("x", "y")


class SlottedChild(Slotted):
    __slots__ = ("z",)


class WithDict:
    def __init__(self) -> None:
        self.x = "dict"


class Hooked:
    __slots__ = ("x", "log")

    def __getattribute__(self, name: str) -> Any:
        if name == "x":
            return "hooked"
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, "log", (name, value))


class ReadOnly:
    @property
    def x(self) -> str:
        return "property"


def _objects() -> list[Any]:
    unset = Slotted()
    full = Slotted()
    full.x = "slot"
    child = SlottedChild()
    child.x = "child"
    hooked = Hooked()
    return [unset, full, child, WithDict(), hooked, ReadOnly(), object(), 7]


def test_slot_reads_as_getattr_does(nbio: ModuleType) -> None:
    read = nbio.slot("x")
    for _ in range(3):  # first calls learn the types; later ones take the direct load
        for obj in _objects():
            assert outcome(read, obj) == outcome(getattr, obj, "x"), obj
    unset = Slotted()
    with pytest.raises(AttributeError, match="'x'"):
        read(unset)
    assert read.name == "x"


def test_slot_writes_as_setattr_does(nbio: ModuleType) -> None:
    write = nbio.slot("x", True)
    for _ in range(3):
        for obj in _objects():
            mine, theirs = obj, obj
            if type(obj) in (Slotted, SlottedChild, Hooked):
                theirs = type(obj)()  # a twin for setattr
            assert outcome(write, mine, "v") == outcome(setattr, theirs, "x", "v"), obj
            if outcome(getattr, theirs, "x")[0] == "ok":
                assert outcome(getattr, mine, "x") == outcome(getattr, theirs, "x")
            if type(obj) is Hooked:
                assert object.__getattribute__(mine, "log") == ("x", "v")  # the hook ran


def _swap_by_getattr_and_setattr(obj: Any, value: Any) -> Any:
    old = obj.x
    obj.x = value
    return old


def test_slot_swaps_as_getattr_then_setattr_do(nbio: ModuleType) -> None:
    swap = nbio.slot("x", 2)
    for _ in range(3):  # first calls learn the types; later ones take the direct store
        for mine, theirs in zip(_objects(), _objects(), strict=True):  # (twins: a swap changes it)
            assert outcome(swap, mine, "v") == outcome(_swap_by_getattr_and_setattr, theirs, "v")
            assert outcome(getattr, mine, "x") == outcome(getattr, theirs, "x"), mine
            if type(mine) is Hooked:
                assert object.__getattribute__(mine, "log") == ("x", "v")  # the hook ran
    obj = Slotted()
    with pytest.raises(AttributeError, match="'x'"):
        swap(obj, 1)  # an unset slot: getattr's error, and nothing stored
    with pytest.raises(AttributeError):
        obj.x  # noqa: B018
    obj.x = "first"
    assert swap(obj, "second") == "first" and swap(obj, "third") == "second"
    assert obj.x == "third" and swap.cached_type is Slotted


def test_slot_swap_keeps_the_references_right(nbio: ModuleType) -> None:
    swap = nbio.slot("x", 2)
    obj, a, b = Slotted(), object(), object()
    obj.x = a
    swap(obj, b)  # (the type learned)
    swap(obj, a)
    before = (sys.getrefcount(obj), sys.getrefcount(a), sys.getrefcount(b))
    for _ in range(1000):
        assert swap(obj, b) is a
        assert swap(obj, a) is b
    assert (sys.getrefcount(obj), sys.getrefcount(a), sys.getrefcount(b)) == before
    old = WithDict()
    ref = weakref.ref(old)
    obj.x = old
    del old
    returned = swap(obj, None)
    assert ref() is returned  # handed over, not freed while still returned
    del returned
    assert ref() is None  # and not kept by the slot object either


@pytest.mark.parametrize("build", ["compiled", "pure"])
def test_the_slot_accessors_of_either_build_agree(
    build: str, nbio: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`unknot._compiled`'s reader, writer and swapper: `_nbio.slot`s, or their pure fallbacks
    (attrgetter, the member's ``__set__``, the two in turn), with the same results."""
    from unknot import _compiled

    monkeypatch.setattr(_compiled, "nbio", lambda: nbio if build == "compiled" else None)
    read, write = _compiled.slot_reader("x"), _compiled.slot_writer(Slotted, "x")
    swap = _compiled.slot_swapper(Slotted, "x")
    assert (type(swap) is nbio.slot) == (build == "compiled")
    obj = Slotted()
    with pytest.raises(AttributeError):
        read(obj)
    with pytest.raises(AttributeError):
        swap(obj, 1)
    write(obj, 1)
    assert read(obj) == 1
    assert swap(obj, 2) == 1 and swap(obj, 3) == 2 and read(obj) == 3 == obj.x


def test_slot_takes_the_direct_path_only_for_a_type_it_learned(nbio: ModuleType) -> None:
    read, write = nbio.slot("x"), nbio.slot("x", True)
    assert read.cached_type is None and write.cached_type is None
    obj = Slotted()
    write(obj, 1)
    assert read(obj) == 1
    assert read.cached_type is Slotted and write.cached_type is Slotted
    for other in (WithDict(), Hooked(), ReadOnly()):
        outcome(read, other)
        assert read.cached_type is Slotted  # none of them keeps x in a plain slot
    child = SlottedChild()
    write(child, 2)
    assert read(child) == 2 and write.cached_type is SlottedChild


def test_slot_follows_a_change_to_the_learned_type(nbio: ModuleType) -> None:
    class Changing:
        __slots__ = ("x",)

    read, write = nbio.slot("x"), nbio.slot("x", True)
    obj = Changing()
    write(obj, "before")
    assert read(obj) == "before" and read.cached_type is Changing
    member = Changing.__dict__["x"]
    Changing.x = property(lambda self: "property", lambda self, v: None)  # type: ignore[assignment]
    assert read(obj) == "property"
    write(obj, "ignored")  # the property's setter, which drops it
    assert member.__get__(obj) == "before"
    Changing.x = member  # type: ignore[assignment]  # the slot again, under a new version tag
    assert read(obj) == "before"
    write(obj, "after")
    assert member.__get__(obj) == "after" and read(obj) == "after"


def test_slot_calls_leak_no_references(nbio: ModuleType) -> None:
    read, write = nbio.slot("x"), nbio.slot("x", True)
    obj, value = Slotted(), object()
    write(obj, value)
    for _ in range(10):
        read(obj)
    before = (sys.getrefcount(obj), sys.getrefcount(value))
    for _ in range(1000):
        read(obj)
        write(obj, value)
    assert (sys.getrefcount(obj), sys.getrefcount(value)) == before
    old = WithDict()
    ref = weakref.ref(old)
    write(obj, old)
    del old
    write(obj, None)  # the replaced value is released
    assert ref() is None


def test_slot_frees_a_learned_type(nbio: ModuleType) -> None:
    def make() -> Any:
        class Temporary:
            __slots__ = ("x",)

        return Temporary

    read = nbio.slot("x")
    cls = make()
    obj = cls()
    obj.x = 1
    assert read(obj) == 1 and read.cached_type is cls
    ref = weakref.ref(cls)
    holder = [read]
    cls.holder = holder  # a cycle through the slot object: cls -> holder -> read -> cls
    del cls, obj, read, holder
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize(
    ("args", "mode"),
    [((), 0), ((1, 2), 0), ((1,), 1), ((1, 2, 3), 1), ((1,), 2), ((1, 2, 3), 2)],
)
def test_slot_rejects_bad_calls(nbio: ModuleType, args: tuple[Any, ...], mode: int) -> None:
    with pytest.raises(TypeError):
        nbio.slot("x", mode)(*args)
    with pytest.raises(TypeError):
        nbio.slot("x", mode)(Slotted(), key=1)
    with pytest.raises(TypeError):
        nbio.slot(1)
    for bad in (-1, 3):
        with pytest.raises(ValueError, match="mode"):
            nbio.slot("x", bad)


def test_the_hub_and_sockets_read_their_slots_directly_in_the_compiled_build() -> None:
    """The hot paths' accessors are `_nbio.slot`s in the compiled build, and after an echo they
    have learned the fiber and socket types (so the direct loads and stores are the ones run)."""
    import operator

    from unknot import _sockio
    from unknot import socket as usocket
    from unknot._core import _hub
    from unknot.lowlevel import Fiber

    a, b = usocket.socketpair()
    with a, b:

        def echo() -> None:
            b.sendall(b.recv(16))

        def main() -> bytes:
            unknot.spawn(echo)
            unknot.sleep(0)
            a.sendall(b"ping")
            return a.recv(16)

        assert unknot.run(main) == b"ping"
    readers = (_hub._wake_value_of, _sockio._state_of)
    if unknot.compiled:
        from unknot import _nbio

        assert all(type(r) is _nbio.slot for r in readers)
        assert type(_hub._set_parked) is _nbio.slot and type(_hub._swap_parked) is _nbio.slot
        assert _hub._swap_parked.cached_type is Fiber and _hub._set_parked.cached_type is Fiber
        assert _hub._wake_value_of.cached_type is Fiber
        assert _sockio._state_of.cached_type is usocket.socket
    else:
        assert all(type(r) is operator.attrgetter for r in readers)
