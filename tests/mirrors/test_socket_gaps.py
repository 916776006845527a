"""unknot.socket against the stdlib: MSG_WAITALL on the other receiving calls, connecting a
connected socket again, and the errors for arguments of the wrong type. Each test compares with
the stdlib or states what the stdlib does, and fails on the code before its fix.

The tests run in fibers on each hub backend and, where the call blocks outside fibers too, in a
plain thread (the ``where`` fixture). Loopback only, bounded in time.
"""

from __future__ import annotations

import array
import errno
import os
import socket as std
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from fiber_helpers import FullBacklog, Where, wait_consumed

import unknot
import unknot.socket as us

pytestmark = pytest.mark.timeout(60)

WAITALL = std.MSG_WAITALL


def tcp_pair(mod: Any) -> tuple[Any, Any]:
    with mod.create_server(("127.0.0.1", 0)) as listener:
        client = mod.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def unix_pair(mod: Any) -> tuple[Any, Any]:
    a, b = mod.socketpair()
    return a, b


PAIRS = {"tcp": tcp_pair, "unix": unix_pair}


# -- MSG_WAITALL ----------------------------------------------------------------------------------


def _recvfrom(sock: Any, n: int) -> bytes:
    data, _ = sock.recvfrom(n, WAITALL)
    return bytes(data)


def _recvfrom_into(sock: Any, n: int) -> bytes:
    buf = bytearray(n + 4)
    got, _ = sock.recvfrom_into(buf, n, WAITALL)
    return bytes(buf[:got])


def _recvfrom_into_keywords(sock: Any, n: int) -> bytes:
    buf = bytearray(n)
    got, _ = sock.recvfrom_into(buffer=buf, flags=WAITALL)
    return bytes(buf[:got])


def _recvmsg(sock: Any, n: int) -> bytes:
    data, ancdata, flags, _ = sock.recvmsg(n, 0, WAITALL)
    assert ancdata == [] and flags == 0
    return bytes(data)


def _recvmsg_into(sock: Any, n: int) -> bytes:
    # Three buffers (an iterator of them, as the stdlib takes): the bytes fill them in order.
    bufs = [bytearray(1), bytearray(n - 3), bytearray(2)]
    got, ancdata, flags, _ = sock.recvmsg_into(iter(bufs), 0, WAITALL)
    assert ancdata == [] and flags == 0
    return bytes(b"".join(bufs)[:got])


CALLS: dict[str, Callable[[Any, int], bytes]] = {
    "recvfrom": _recvfrom,
    "recvfrom_into": _recvfrom_into,
    "recvfrom_into-keywords": _recvfrom_into_keywords,
    "recvmsg": _recvmsg,
    "recvmsg_into": _recvmsg_into,
}


@pytest.mark.parametrize("kind", sorted(PAIRS))
@pytest.mark.parametrize("call", sorted(CALLS))
def test_msg_waitall_on_a_blocking_stream_waits_for_every_byte(
    where: Where, call: str, kind: str
) -> None:
    # On a blocking stream socket the stdlib's calls with MSG_WAITALL return all the bytes asked
    # for (the kernel waits for them), as its recv does; unknot returned the first piece.
    receive = CALLS[call]

    def main() -> None:
        a, b = PAIRS[kind](us)
        with a, b:
            reader = where.start(receive, a, 12)
            for piece in (b"abcd", b"efgh"):
                b.sendall(piece)
                wait_consumed(where, a, reader)  # (the reader took the piece and waits on)
            b.sendall(b"ijkl")
            assert reader.join() == b"abcdefghijkl"

            # At EOF it returns what came, as the kernel does.
            b.sendall(b"xyz")
            b.shutdown(std.SHUT_WR)
            assert receive(a, 12) == b"xyz"

    where.run(main)


@pytest.mark.parametrize("call", sorted(CALLS))
def test_msg_waitall_cancelled_returns_what_came(backend: str, call: str) -> None:
    # As recv's: a cancellation after part of the bytes came returns them (nothing is lost).
    receive = CALLS[call]

    def main() -> None:
        a, b = us.socketpair()
        with a, b:
            got: list[bytes] = []
            reader = unknot.spawn(lambda: got.append(receive(a, 10)))
            b.sendall(b"abc")
            wait_consumed(Where(f"fiber-{backend}"), a, reader)
            reader.cancel()
            reader.join()
            assert got == [b"abc"]

    unknot.run(main)


def test_msg_waitall_with_a_timeout_or_on_datagrams_is_the_kernels(where: Where) -> None:
    # With a timeout the stdlib's fd is non-blocking: the kernel returns what is there. On a
    # datagram socket the flag changes nothing: one datagram.
    def main() -> None:
        a, b = us.socketpair()
        with a, b:
            a.settimeout(5)
            b.sendall(b"abc")
            assert a.recvfrom(10, WAITALL)[0] == b"abc"
            b.sendall(b"def")
            assert a.recvmsg(10, 0, WAITALL)[0] == b"def"
        a, b = us.socketpair(std.AF_UNIX, std.SOCK_DGRAM)
        with a, b:
            b.send(b"one")
            b.send(b"two")
            assert a.recvfrom(10, WAITALL)[0] == b"one"
            assert a.recvmsg(10, 0, WAITALL)[0] == b"two"

    where.run(main)


def _fds_then_more(mod: Any) -> list[Any]:
    """What a blocking ``recvmsg(6, ..., MSG_WAITALL)`` returns when a message carrying a
    descriptor follows plain bytes on an AF_UNIX stream, all of it sent before the call."""
    a, b = mod.socketpair()
    r, w = os.pipe()
    try:
        with a, b:
            b.sendall(b"ab")
            b.sendmsg([b"cd"], [(std.SOL_SOCKET, std.SCM_RIGHTS, array.array("i", [r]))])
            b.sendall(b"ef")
            data, ancdata, flags, _ = a.recvmsg(6, std.CMSG_SPACE(4), WAITALL)
            for _level, _type, fds in ancdata:
                os.close(array.array("i", fds)[0])
            return [data, len(ancdata), flags, a.recv(10)]
    finally:
        os.close(r)
        os.close(w)


def test_msg_waitall_recvmsg_stops_at_descriptors_as_the_kernel(where: Where) -> None:
    # The kernel's blocking AF_UNIX read ends after a message that carries descriptors.
    expected = _fds_then_more(std)
    assert expected == [b"abcd", 1, 0, b"ef"]
    assert where.run(_fds_then_more, us) == expected


# -- connecting a connected socket ----------------------------------------------------------------


def _errno(call: Callable[..., Any], *args: Any) -> Any:
    try:
        result = call(*args)
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, e.errno) if e.errno else type(e).__name__
    return "ok" if not result else errno.errorcode.get(result, result)  # (connect_ex: 0)


def _connects(mod: Any, timeout: float | None) -> list[Any]:
    """connect and connect_ex, each three times, on connected and refused sockets."""
    with mod.create_server(("127.0.0.1", 0)) as listener:
        address = listener.getsockname()
        dead = std.socket()
        dead.bind(("127.0.0.1", 0))
        refused = dead.getsockname()
        dead.close()
        out = []
        for target in (address, refused):
            for name in ("connect", "connect_ex"):
                with mod.socket() as s:
                    s.settimeout(timeout)
                    out.append([_errno(getattr(s, name), target) for _ in range(3)])
        with mod.socket() as s:  # refused, then a listener there: the next connect connects
            s.settimeout(timeout)
            out.append([_errno(s.connect_ex, t) for t in (refused, address, address)])
        return out


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["blocking", "timeout"])
def test_connect_again_is_the_stdlibs(where: Where, timeout: float | None) -> None:
    # A blocking socket's second connect raised nothing (Linux leaves a socket whose
    # non-blocking connect completed "connecting" until the next connect call, which then
    # succeeds), and after a refused connection said ECONNABORTED instead of trying again. The
    # stdlib's socket with a timeout has a non-blocking fd and keeps that quirk: so does unknot.
    expected = _connects(std, timeout)
    if timeout is None:
        assert expected[:2] == [["ok", "EISCONN", "EISCONN"], ["ok", "EISCONN", "EISCONN"]]
    assert where.run(_connects, us, timeout) == expected


def _connect_under_way(mod: Any) -> list[Any]:
    """A connect that timed out (its SYN dropped: the accept queue is full), then another."""
    backlog = FullBacklog()
    try:
        with mod.socket() as s:
            s.settimeout(0.05)
            return [
                _errno(s.connect, backlog.address),
                _errno(s.connect, backlog.address),
                _errno(s.connect_ex, backlog.address),
            ]
    finally:
        backlog.close()


def test_connect_with_a_timeout_while_one_is_under_way_says_ealready(where: Where) -> None:
    # The stdlib's socket with a timeout waits only for the connection it starts (EINPROGRESS):
    # for one an earlier call started it says EALREADY at once. unknot waited again, until
    # its timeout.
    expected = _connect_under_way(std)
    assert expected == ["TimeoutError", "EALREADY", "EALREADY"]
    assert where.run(_connect_under_way, us) == expected


# -- arguments of the wrong type -------------------------------------------------------------------

BAD_ARGUMENTS: list[tuple[str, tuple[Any, ...]]] = [
    ("recv_into", ("text",)),
    ("recv_into", (None, 4)),
    ("recv_into", (b"read-only",)),
    ("recv_into", (bytearray(4), 9)),
    ("recv_into", (bytearray(4), -1)),
    ("recv", (-1,)),
    ("recvfrom", ("text",)),
    ("recvfrom", (4, "text")),
    ("recvfrom_into", ("text",)),
    ("recvfrom_into", (bytearray(4), "text")),
    ("recvfrom_into", (bytearray(4), 9)),
    ("recvmsg", ("text",)),
    ("send", ("text",)),
    ("send", (5,)),
    ("sendall", ("text",)),
    ("sendall", (None,)),
    ("sendto", ("text", ("127.0.0.1", 9))),
    ("sendto", (b"x", "text", ("127.0.0.1", 9))),
]


def _bad_calls(mod: Any, kind: str, timeout: float | None) -> list[Any]:
    out = []
    for name, args in BAD_ARGUMENTS:
        a, b = PAIRS[kind](mod)
        with a, b:
            a.settimeout(timeout)
            b.sendall(b"data")
            a.recv(1)  # (unknot: the socket's fd record, the hot path of later calls)
            try:
                getattr(a, name)(*args)
            except Exception as e:
                out.append((name, args, type(e).__name__, str(e)))
            else:
                out.append((name, args, "no error"))
    return out


@pytest.mark.parametrize("timeout", [None, 5.0, 0.0])
@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_argument_errors_are_the_stdlibs(where: Where, kind: str, timeout: float | None) -> None:
    # recv_into of what is not a buffer raised memoryview's error ("memoryview: a bytes-like
    # object is required, not 'str'"), not the stdlib's.
    expected = _bad_calls(std, kind, timeout)
    assert all(e[2] != "no error" for e in expected if e[0] != "sendto")
    assert where.run(_bad_calls, us, kind, timeout) == expected


# -- a compiled build without unknot._nbio ---------------------------------------------------------


def test_socket_module_imports_where_the_compiled_calls_cannot_be_bound() -> None:
    # Compiled _sockio functions without unknot._nbio to bind them: the class keeps its own
    # one-line methods. The module's import ended in NameError (``del _name, _body`` of names
    # no loop had bound).
    code = """if True:
        import functools, importlib, sys
        import unknot._sockio as sockio
        sockio.recv = functools.partial(sockio.recv)   # (not a Python function: "compiled")
        sockio._NBIO = None
        del sys.modules["unknot.socket"]
        us = importlib.import_module("unknot.socket")
        a, b = us.socketpair()
        b.sendall(b"hi")
        assert a.recv(2) == b"hi"
        print("ok")
    """
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.stdout.strip() == "ok", out.stderr
