"""unknot.socket: a cooperative drop-in for the stdlib socket module.

Most tests run four ways (the ``where`` fixture): in fibers on each hub backend (epoll, poll,
select), and outside fibers, where a peer is an OS thread and the stdlib's blocking semantics
apply. Tests of fiber-only behaviour (cancellation, one fiber closing another's socket, readiness
hints) run as the root fiber on each backend. Everything is loopback and bounded in time.
"""

from __future__ import annotations

import array
import contextlib
import errno
import gc
import io
import os
import random
import socket as std
import struct
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fiber_helpers import FullBacklog, Where
from hypothesis import given, settings
from hypothesis import strategies as st

import unknot
import unknot.socket as us
from unknot._core._backends import BACKENDS

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def default_timeout() -> Iterator[None]:
    """Restore the process-wide default socket timeout after the test."""
    saved = std.getdefaulttimeout()
    try:
        yield
    finally:
        std.setdefaulttimeout(saved)


# -- helpers ------------------------------------------------------------------------------------


def tcp_pair() -> tuple[us.socket, us.socket]:
    """Two connected cooperative TCP sockets (client, server side)."""
    with us.create_server(("127.0.0.1", 0)) as listener:
        client = us.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def recv_exactly(sock: Any, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, f"EOF after {len(buf)} of {n} bytes"
        buf += chunk
    return bytes(buf)


def recv_all(sock: Any) -> bytes:
    """Everything until EOF."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def wait_once(reader: Any, writer: Any) -> None:
    """Make ``reader`` (in a fiber) wait for data once, so that it has its hub fd record."""
    f = unknot.spawn(reader.recv, 1)
    unknot.sleep(0)
    assert not f.done()
    writer.send(b"!")
    assert f.join() == b"!"
    assert reader._state.rec is not None


def elapsed_since(t0: float) -> float:
    return time.monotonic() - t0


def fill_send_buffer(sock: Any) -> int:
    """Write into ``sock`` (made non-blocking for it) until the kernel buffers are full."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    total = 0
    try:
        while True:
            total += sock.send(b"x" * 65536)
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(timeout)
    return total


# -- the module ---------------------------------------------------------------------------------


def test_every_stdlib_public_name_is_here() -> None:
    missing = []
    for name in dir(std):
        if name.startswith("_"):
            continue
        value = getattr(std, name)
        if isinstance(value, types.ModuleType):
            continue  # the stdlib module's own imports (io, os, sys, selectors, array)
        module = getattr(value, "__module__", None)
        if isinstance(value, type | types.FunctionType) and module not in ("socket", "_socket"):
            continue  # imported from elsewhere (enum.IntEnum...)
        if not hasattr(us, name):
            missing.append(name)
    assert not missing
    assert set(us.__all__) == set(std.__all__)
    # Constants and exceptions are the stdlib's very objects.
    assert us.AF_INET is std.AF_INET and us.SOCK_STREAM is std.SOCK_STREAM
    assert us.timeout is std.timeout is TimeoutError
    assert us.gaierror is std.gaierror and us.error is OSError


def test_sockets_are_stdlib_sockets() -> None:
    with us.socket() as s:
        assert isinstance(s, std.socket)
        assert isinstance(s, us.socket)
        assert type(s) is us.socket and us.SocketType is us.socket
        assert (s.family, s.type) == (std.AF_INET, std.SOCK_STREAM)
    a, b = us.socketpair()
    with a, b:
        assert type(a) is us.socket and type(b) is us.socket
    with us.socket(us.AF_INET6 if std.has_ipv6 else us.AF_INET, us.SOCK_DGRAM) as d:
        assert isinstance(d, std.socket) and d.type == std.SOCK_DGRAM


# -- transports ---------------------------------------------------------------------------------


def test_tcp_full_duplex(where: Where) -> None:
    payload = os.urandom(1 << 20)

    def main() -> None:
        client, server = tcp_pair()
        with client, server:

            def echo() -> None:
                while data := server.recv(65536):
                    server.sendall(data)
                server.shutdown(us.SHUT_WR)

            def write() -> None:
                view = memoryview(payload)
                for i in range(0, len(payload), 100_000):
                    client.sendall(view[i : i + 100_000])
                client.shutdown(us.SHUT_WR)

            peers = [where.start(echo), where.start(write)]
            assert recv_all(client) == payload
            for p in peers:
                p.join()

    where.run(main)


def test_udp_sendto_recvfrom(where: Where) -> None:
    def main() -> None:
        with us.socket(us.AF_INET, us.SOCK_DGRAM) as a, us.socket(us.AF_INET, us.SOCK_DGRAM) as b:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))

            def sender() -> None:
                where.sleep(0.05)  # the receiver is blocked in recvfrom by now
                assert b.sendto(b"one", a.getsockname()) == 3
                assert b.sendto(b"two", a.getsockname()) == 3

            peer = where.start(sender)
            assert a.recvfrom(100) == (b"one", b.getsockname())
            buf = bytearray(10)
            assert a.recvfrom_into(buf) == (3, b.getsockname())
            assert buf[:3] == b"two"
            peer.join()
            a.settimeout(0.05)
            with pytest.raises(TimeoutError, match="^timed out$"):
                a.recvfrom(100)

    where.run(main)


def test_unix_stream(where: Where, tmp_path: Any) -> None:
    path = str(tmp_path / "s.sock")

    def main() -> None:
        with us.socket(us.AF_UNIX, us.SOCK_STREAM) as listener:
            listener.bind(path)
            listener.listen()

            def client() -> bytes:
                where.sleep(0.05)  # the server is blocked in accept by now
                with us.socket(us.AF_UNIX, us.SOCK_STREAM) as c:
                    c.connect(path)
                    c.sendall(b"ping")
                    return c.recv(10)

            peer = where.start(client)
            conn, _ = listener.accept()
            with conn:
                assert type(conn) is us.socket
                assert recv_exactly(conn, 4) == b"ping"
                conn.sendall(b"pong")
                assert peer.join() == b"pong"

    where.run(main)


def test_unix_dgram(where: Where, tmp_path: Any) -> None:
    pa, pb = str(tmp_path / "a.sock"), str(tmp_path / "b.sock")

    def main() -> None:
        with us.socket(us.AF_UNIX, us.SOCK_DGRAM) as a, us.socket(us.AF_UNIX, us.SOCK_DGRAM) as b:
            a.bind(pa)
            b.bind(pb)

            def sender() -> None:
                where.sleep(0.05)
                b.sendto(b"datagram", pa)

            peer = where.start(sender)
            assert a.recvfrom(100) == (b"datagram", pb)
            peer.join()

    where.run(main)


@pytest.mark.parametrize("kind", [std.SOCK_STREAM, std.SOCK_DGRAM])
def test_socketpair(where: Where, kind: int) -> None:
    def main() -> None:
        a, b = us.socketpair(type=kind)
        with a, b:
            assert type(a) is us.socket and a.family == std.AF_UNIX and a.type == kind
            assert a.gettimeout() is None and b.gettimeout() is None

            def reply() -> None:
                b.send(b.recv(100).upper())

            peer = where.start(reply)
            where.sleep(0.02)
            a.send(b"hello")
            assert a.recv(100) == b"HELLO"
            peer.join()

    where.run(main)


# -- connecting ---------------------------------------------------------------------------------


def test_create_connection(where: Where) -> None:
    def main() -> None:
        with us.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            with us.create_connection(("127.0.0.1", port), source_address=("127.0.0.1", 0)) as c:
                assert type(c) is us.socket and c.gettimeout() is None
                conn, addr = listener.accept()
                with conn:
                    assert addr == c.getsockname()
                    c.sendall(b"x")
                    assert conn.recv(1) == b"x"
            with us.create_connection(("localhost", port), timeout=5) as c:  # a name: resolved
                assert c.gettimeout() == 5.0
                listener.accept()[0].close()
            with us.socket() as c:
                c.connect(("localhost", port))  # resolved off the hub in a fiber
                assert c.getpeername() == ("127.0.0.1", port)
                listener.accept()[0].close()

    where.run(main)


def test_create_connection_refused(where: Where) -> None:
    def main() -> None:
        with us.socket() as bound:  # bound, not listening: connecting is refused
            bound.bind(("127.0.0.1", 0))
            with pytest.raises(ConnectionRefusedError):
                us.create_connection(bound.getsockname(), timeout=5)
            with us.socket() as s:
                assert s.connect_ex(bound.getsockname()) == errno.ECONNREFUSED
            with us.socket() as s, pytest.raises(ConnectionRefusedError):
                s.connect(bound.getsockname())

    where.run(main)


def test_create_connection_timeout(where: Where) -> None:
    def main() -> None:
        full = FullBacklog()
        try:
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match="^timed out$"):
                us.create_connection(full.address, timeout=0.2)
            assert 0.18 < elapsed_since(t0) < 2.0
            # connect_ex reports a timeout as the stdlib does: EWOULDBLOCK, not an exception
            with us.socket() as s:
                s.settimeout(0.05)
                assert s.connect_ex(full.address) == errno.EWOULDBLOCK
        finally:
            full.close()

    where.run(main)


def test_create_server(where: Where) -> None:
    def main() -> None:
        with us.create_server(("127.0.0.1", 0), reuse_port=True, backlog=5) as listener:
            assert type(listener) is us.socket
            assert listener.getsockopt(us.SOL_SOCKET, us.SO_REUSEPORT)
            peer = where.start(lambda: us.create_connection(listener.getsockname()).close())
            conn, _ = listener.accept()
            conn.close()
            peer.join()
        if us.has_dualstack_ipv6():
            try:
                listener = us.create_server(("::", 0), family=us.AF_INET6, dualstack_ipv6=True)
            except OSError:
                return  # IPv6 configured off
            with listener:
                port = listener.getsockname()[1]
                with us.create_connection(("127.0.0.1", port)):
                    conn, addr = listener.accept()
                    conn.close()
                    assert addr[0] == "::ffff:127.0.0.1"

    where.run(main)


# -- socket objects -----------------------------------------------------------------------------


def test_fromfd_and_dup(where: Where) -> None:
    def main() -> None:
        client, server = tcp_pair()
        with client, server:
            client.settimeout(7)
            dup = client.dup()
            from_fd = us.fromfd(client.fileno(), us.AF_INET, us.SOCK_STREAM)
            with dup, from_fd:
                assert type(dup) is us.socket and type(from_fd) is us.socket
                assert len({client.fileno(), dup.fileno(), from_fd.fileno()}) == 3
                assert dup.gettimeout() == 7  # dup copies the timeout, as in the stdlib
                peer = where.start(lambda: recv_exactly(server, 6))
                dup.sendall(b"du")
                from_fd.sendall(b"pf")
                client.close()  # the duplicates live on
                dup.sendall(b"ok")
                assert peer.join() == b"dupfok"
                # Each duplicate waits cooperatively on its own fd.
                reader = where.start(lambda: from_fd.recv(10))
                where.sleep(0.05)
                server.sendall(b"back")
                assert reader.join() == b"back"

    where.run(main)


def test_makefile_binary(where: Where) -> None:
    def main() -> None:
        client, server = tcp_pair()

        def echo_lines() -> int:  # the seed's handler
            n = 0
            with server:
                f = server.makefile("rwb")
                for line in f:
                    f.write(line)
                    f.flush()
                    n += 1
            return n

        peer = where.start(echo_lines)
        with client:
            f = client.makefile("rwb")
            rf = client.makefile("rb")
            for i in range(50):
                f.write(b"line %d\n" % i)
                f.flush()
                assert rf.readline() == b"line %d\n" % i
            f.write(b"partial")  # no newline: comes back at EOF
            f.flush()
            client.shutdown(us.SHUT_WR)
            assert rf.read() == b"partial"
            f.close()
            rf.close()
        assert peer.join() == 51

    where.run(main)


def test_makefile_text(where: Where) -> None:
    def main() -> None:
        client, server = tcp_pair()

        def writer() -> None:
            with server, server.makefile("w", encoding="utf-8", newline="\r\n") as w:
                w.write("héllo\nwörld\n")
                w.flush()
                where.sleep(0.05)  # the reader blocks meanwhile
                w.write("last\n")

        peer = where.start(writer)
        with client, client.makefile("r", encoding="utf-8", newline=None) as r:
            assert r.readline() == "héllo\n"
            assert list(r) == ["wörld\n", "last\n"]
        peer.join()
        # The socket closes once both it and its files are closed, as in the stdlib.
        assert client.fileno() == -1

    where.run(main)


def test_recv_into(where: Where) -> None:
    def main() -> None:
        client, server = tcp_pair()
        with client, server:
            peer = where.start(lambda: (where.sleep(0.05), server.sendall(b"0123456789")))
            buf = bytearray(20)
            n = client.recv_into(buf, 4)
            assert 1 <= n <= 4 and buf[:n] == b"0123"[:n]
            got = bytes(buf[:n])
            view = memoryview(buf)
            while len(got) < 10:
                k = client.recv_into(view[len(got) :])
                got += bytes(view[len(got) : len(got) + k])
            assert got == b"0123456789"
            # Nothing to move: returns at once (here with the readable hint cleared).
            assert client.recv_into(bytearray(0)) == 0
            assert client.recv(0) == b""
            assert client.send(b"") == 0
            peer.join()

    where.run(main)


def test_sendmsg_recvmsg_passes_fds(where: Where) -> None:
    def main() -> None:
        a, b = us.socketpair()
        r, w = os.pipe()
        try:
            with a, b:

                def receive() -> tuple[bytes, list[int]]:
                    msg, fds, _flags, _addr = us.recv_fds(b, 100, 4)  # recvmsg, blocking
                    return msg, fds

                peer = where.start(receive)
                where.sleep(0.05)
                assert us.send_fds(a, [b"with ", b"fd"], [w]) == 7
                msg, fds = peer.join()
                assert msg == b"with fd" and len(fds) == 1
                os.write(fds[0], b"via passed fd")
                os.close(fds[0])
                assert os.read(r, 100) == b"via passed fd"
                # recvmsg_into with scatter buffers
                a.sendmsg([b"abc", b"def"])
                b1, b2 = bytearray(2), bytearray(10)
                nbytes, _anc, _flags, _addr = b.recvmsg_into([b1, b2])
                assert nbytes == 6 and bytes(b1) + bytes(b2[:4]) == b"abcdef"
        finally:
            os.close(r)
            os.close(w)

    where.run(main)


# -- sendfile -----------------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path: Any) -> tuple[str, bytes]:
    data = os.urandom(600_000 + 123)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return str(path), data


def _sendfile_case(
    where: Where, fileobj: Any, data: bytes, offset: int, count: int | None
) -> tuple[int, bytes]:
    def main() -> tuple[int, bytes]:
        client, server = tcp_pair()
        with client, server:
            # Small buffers and a reader that starts late: the sender must wait, many times.
            client.setsockopt(us.SOL_SOCKET, us.SO_SNDBUF, 32768)
            peer = where.start(lambda: (where.sleep(0.05), recv_all(server))[1])
            sent = client.sendfile(fileobj, offset, count)
            client.shutdown(us.SHUT_WR)
            return sent, peer.join()

    return where.run(main)


@pytest.mark.parametrize("offset,count", [(0, None), (1000, 400_000), (5, 1)])
def test_sendfile_regular_file_zero_copy(
    where: Where,
    data_file: tuple[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
    offset: int,
    count: int | None,
) -> None:
    path, data = data_file
    calls = []
    real = os.sendfile

    def counting_sendfile(*args: Any) -> int:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    with open(path, "rb") as f:
        f.seek(77)  # ignored: sendfile uses offset
        sent, received = _sendfile_case(where, f, data, offset, count)
        expected = data[offset : offset + count] if count else data[offset:]
        assert sent == len(expected) and received == expected
        assert f.tell() == offset + sent  # the file position is updated, as in the stdlib
    assert calls, "os.sendfile was not used"


def test_sendfile_fallback_for_non_regular_files(
    where: Where, data_file: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, data = data_file
    bio = io.BytesIO(data)  # no fileno(): plain send()
    sent, received = _sendfile_case(where, bio, data, 10, 500_000)
    assert sent == 500_000 and received == data[10:500_010] and bio.tell() == 500_010

    # A file os.sendfile refuses (EINVAL, as for files that cannot be mmap'ed): send() too.
    def refuse(*args: Any) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", refuse)
    with open(path, "rb") as f:
        sent, received = _sendfile_case(where, f, data, 3, None)
        assert sent == len(data) - 3 and received == data[3:] and f.tell() == len(data)


def test_sendfile_edge_cases_match_stdlib(data_file: tuple[str, bytes], tmp_path: Any) -> None:
    path, _ = data_file
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    def outcomes(mod: Any) -> list[Any]:
        out = []
        a, b = mod.socketpair()
        u1, u2 = mod.socketpair(type=mod.SOCK_DGRAM)
        with a, b, u1, u2, open(path, "rb") as f, open(empty, "rb") as e:
            for sock, args in [
                (a, (e,)),
                (a, (f, 0, 0)),
                (a, (f, 0, 1.5)),
                (a, (f, -1)),
                (a, (io.StringIO("text"),)),
                (u1, (f,)),
            ]:
                try:
                    out.append(sock.sendfile(*args))
                except Exception as err:
                    out.append((type(err), str(err)))
            a.setblocking(False)
            try:
                a.sendfile(f)
            except ValueError as err:
                out.append(str(err))
        return out

    assert outcomes(us) == outcomes(std)
    assert "non-blocking sockets are not supported" in outcomes(us)


# -- half-close and resets ----------------------------------------------------------------------


def test_shutdown_half_close(where: Where) -> None:
    def main() -> None:
        client, server = tcp_pair()
        with client, server:

            def serve() -> bytes:
                request = recv_all(server)  # blocked until the client's SHUT_WR
                server.sendall(b"reply to " + request)
                return request

            peer = where.start(serve)
            client.sendall(b"request")
            where.sleep(0.05)
            client.shutdown(us.SHUT_WR)
            assert recv_exactly(client, 16) == b"reply to request"
            assert peer.join() == b"request"
            with pytest.raises(BrokenPipeError):
                client.send(b"after SHUT_WR")

    where.run(main)


def test_connection_reset_by_peer(where: Where) -> None:
    def main() -> None:
        client, server = tcp_pair()
        with client:

            def blocked_reader() -> None:
                with pytest.raises(ConnectionResetError):
                    client.recv(100)

            peer = where.start(blocked_reader)
            where.sleep(0.05)
            server.setsockopt(us.SOL_SOCKET, us.SO_LINGER, struct.pack("ii", 1, 0))
            server.close()  # RST
            peer.join()

    where.run(main)


# -- timeouts -----------------------------------------------------------------------------------


def test_timeout_none_blocks_until_ready(where: Where) -> None:
    def main() -> None:
        client, server = tcp_pair()
        with client, server:
            client.settimeout(None)
            assert client.gettimeout() is None and client.getblocking()
            peer = where.start(lambda: (where.sleep(0.1), server.sendall(b"late")))
            t0 = time.monotonic()
            assert client.recv(10) == b"late"
            assert elapsed_since(t0) >= 0.08
            peer.join()

    where.run(main)


def test_timeout_zero_raises_blocking_io_error(where: Where) -> None:
    def main() -> None:
        client, server = tcp_pair()
        with client, server, us.create_server(("127.0.0.1", 0)) as listener:
            for s in (client, listener):
                s.setblocking(False)
                assert s.gettimeout() == 0.0 and not s.getblocking()
            with pytest.raises(BlockingIOError):
                client.recv(10)
            with pytest.raises(BlockingIOError):
                client.recv_into(bytearray(10))
            with pytest.raises(BlockingIOError):
                listener.accept()
            fill_send_buffer(client)
            client.setblocking(False)
            with pytest.raises(BlockingIOError):
                client.send(b"y" * 65536)
            with pytest.raises(BlockingIOError):
                client.sendall(b"y" * 65536)
            full = FullBacklog()
            try:
                with us.socket() as s:
                    s.settimeout(0)
                    assert s.connect_ex(full.address) == errno.EINPROGRESS
                with us.socket() as s:
                    s.settimeout(0)
                    with pytest.raises(BlockingIOError):
                        s.connect(full.address)
            finally:
                full.close()

    where.run(main)


@pytest.mark.skipif(not hasattr(std, "MSG_DONTWAIT"), reason="no MSG_DONTWAIT")
def test_msg_dontwait_never_waits_on_a_blocking_socket(where: Where) -> None:
    # As in the stdlib: on a blocking socket (timeout None) a call with MSG_DONTWAIT raises
    # BlockingIOError instead of waiting; with a timeout it waits for readiness like any call.
    dontwait = std.MSG_DONTWAIT
    buf = bytearray(10)

    def main() -> None:
        client, server = tcp_pair()
        with client, server:
            for call in (
                lambda: server.recv(10, dontwait),
                lambda: server.recv_into(buf, 0, dontwait),
                lambda: server.recvfrom(10, dontwait),
                lambda: server.recvfrom_into(buf, 0, dontwait),
                lambda: server.recvfrom_into(buf, flags=dontwait),
                lambda: server.recvmsg(10, 0, dontwait),
                lambda: server.recvmsg_into([buf], 0, dontwait),
            ):
                with pytest.raises(BlockingIOError):
                    call()
            fill_send_buffer(client)
            assert client.gettimeout() is None
            for call in (
                lambda: client.send(b"y" * 65536, dontwait),
                lambda: client.sendmsg([b"y" * 65536], [], dontwait),
            ):
                with pytest.raises(BlockingIOError):
                    call()
            client.settimeout(0.05)  # (nothing to read on this end)
            with pytest.raises(TimeoutError):
                client.recvmsg(10, 0, dontwait)

    where.run(main)


def test_timeout_raises_timeout_error_after_t(where: Where) -> None:
    def main() -> None:
        client, server = tcp_pair()
        with client, server, us.create_server(("127.0.0.1", 0)) as listener:
            calls: list[tuple[Any, Callable[[], Any]]] = [
                (client, lambda: client.recv(10)),
                (client, lambda: client.recv_into(bytearray(10))),
                (client, lambda: client.makefile("rb").read(10)),
                (listener, lambda: listener.accept()),
            ]
            for sock, call in calls:
                sock.settimeout(0.06)
                assert sock.gettimeout() == 0.06 and sock.getblocking()
                t0 = time.monotonic()
                with pytest.raises(TimeoutError) as info:
                    call()
                assert str(info.value) == "timed out"
                assert 0.055 < elapsed_since(t0) < 1.0
            fill_send_buffer(client)
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match="^timed out$"):
                client.send(b"y" * 65536)
            assert 0.055 < elapsed_since(t0) < 1.0

    where.run(main)


def test_sendall_timeout_bounds_the_whole_call(where: Where) -> None:
    def main() -> None:
        client, server = tcp_pair()
        with client, server:
            client.setsockopt(us.SOL_SOCKET, us.SO_SNDBUF, 16384)
            server.setsockopt(us.SOL_SOCKET, us.SO_RCVBUF, 16384)
            received = [0]
            stop = threading.Event()

            def slow_reader() -> None:  # keeps the sender making progress, slowly
                while not stop.is_set():
                    try:
                        server.setblocking(False)
                        received[0] += len(server.recv(8192))
                    except BlockingIOError:
                        pass
                    where.sleep(0.01)

            peer = where.start(slow_reader)
            client.settimeout(0.3)
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match="^timed out$"):
                client.sendall(b"z" * (64 << 20))  # far more than 0.3 s of slow reading
            took = elapsed_since(t0)
            stop.set()
            peer.join()
            # Each wait was short (the reader drains every 10 ms), but the call as a whole
            # gave up once its 0.3 s were spent.
            assert 0.28 < took < 1.5, took
            assert received[0] > 30_000  # the reader drained all along

    where.run(main)


def test_settimeout_setblocking_match_stdlib() -> None:
    import decimal

    values: list[Any] = [None, 0, 0.0, -0.0, 1, 2.5, True, 1 / 3, 1e-10, -1, float("nan")]
    values += [float("inf"), "1", decimal.Decimal("0.5"), 10**30]

    def outcome(sock: Any, method: str, value: Any) -> Any:
        try:
            getattr(sock, method)(value)
            return sock.gettimeout(), sock.getblocking()
        except Exception as e:
            return type(e), str(e)

    for method, vals in [("settimeout", values), ("setblocking", [True, False, 0, 2, None, "x"])]:
        for value in vals:
            with std.socket() as s1, us.socket() as s2:
                assert outcome(s1, method, value) == outcome(s2, method, value), (method, value)
    closed = [std.socket(), us.socket()]
    for s in closed:
        s.close()
    for method, value in [("settimeout", 1), ("settimeout", None), ("setblocking", True)]:
        assert outcome(closed[0], method, value) == outcome(closed[1], method, value)
    # The OS socket always stays non-blocking; only the timeout is emulated.
    with us.socket() as s:
        for value in (None, 3.0, 0.0):
            s.settimeout(value)
            assert os.get_blocking(s.fileno()) is False


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=0.0, max_value=2e9, allow_nan=False),
        st.floats(min_value=0.0, max_value=1e-6),
        st.integers(min_value=0, max_value=2**64),
    )
)
def test_settimeout_parses_numbers_exactly_as_stdlib(value: float) -> None:
    # unknot parses plain ints and floats itself (no C call, no syscall); the result must be
    # bit-for-bit what the stdlib's C parser gives, errors included.
    def outcome(sock: Any) -> Any:
        try:
            sock.settimeout(value)
            t = sock.gettimeout()
            return t.hex() if isinstance(t, float) else t
        except Exception as e:
            return type(e), str(e)

    with std.socket() as s1, us.socket() as s2:
        assert outcome(s1) == outcome(s2)
        assert os.get_blocking(s2.fileno()) is False


def test_setblocking_fails_on_a_dead_descriptor_as_stdlib() -> None:
    # CPython's test_setblocking_invalidfd: a socket whose fd was closed behind its back
    # (another object owned it) raises OSError, as the stdlib's does. (settimeout makes no
    # syscall in unknot: there the next I/O call reports it, see the next test.)
    for mod in (std, us):
        for method, value in [("setblocking", False), ("setblocking", True)]:
            owner = std.socket()
            sock = mod.socket(std.AF_INET, std.SOCK_STREAM, 0, owner.fileno())
            owner.close()
            try:
                with pytest.raises(OSError) as err:
                    getattr(sock, method)(value)
                assert err.value.errno == errno.EBADF, (mod, method, value)
            finally:
                sock.detach()


def test_settimeout_on_a_dead_descriptor_then_io_raises_ebadf() -> None:
    owner = std.socket()
    sock = us.socket(std.AF_INET, std.SOCK_STREAM, 0, owner.fileno())
    owner.close()
    try:
        sock.settimeout(2.5)  # documented: no syscall here, so no error yet
        assert sock.gettimeout() == 2.5
        with pytest.raises(OSError) as err:
            sock.recv(1)
        assert err.value.errno == errno.EBADF
    finally:
        sock.detach()
    closed = us.socket()
    closed.close()
    with pytest.raises(OSError) as err:
        closed.settimeout(1)
    assert err.value.errno == errno.EBADF


def test_default_timeout_applies_to_new_and_accepted_sockets(
    where: Where, default_timeout: None
) -> None:
    def timeouts(mod: Any) -> list[Any]:
        with mod.create_server(("127.0.0.1", 0)) as listener:
            got = [listener.gettimeout()]
            with mod.create_connection(listener.getsockname()) as c:
                conn, _ = listener.accept()
                with conn:
                    got += [c.gettimeout(), conn.gettimeout()]
            a, b = mod.socketpair()
            with a, b:
                got += [a.gettimeout(), b.gettimeout()]
            with mod.socket(mod.AF_INET, mod.SOCK_STREAM | mod.SOCK_NONBLOCK) as nb:
                got.append(nb.gettimeout())
        return got

    def main() -> None:
        std.setdefaulttimeout(0.15)
        expected = timeouts(std)
        assert expected == [0.15] * 5 + [0.0]
        assert timeouts(us) == expected
        client, server = tcp_pair()
        with client, server:
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match="^timed out$"):
                server.recv(1)  # an accepted socket honours the default timeout
            assert 0.13 < elapsed_since(t0) < 1.0
        # No default timeout, but the listener has one: accepted sockets block (bpo-7995).
        std.setdefaulttimeout(None)
        with us.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(5)
            with us.create_connection(listener.getsockname()):
                conn, _ = listener.accept()
                with conn:
                    assert conn.gettimeout() is None

    where.run(main)


# -- fibers: cancellation, closing, concurrency -------------------------------------------------


@pytest.mark.unknot
def test_cancelled_recv_leaves_socket_usable(backend: str) -> None:
    client, server = tcp_pair()
    with client, server:
        with unknot.move_on_after(0.05) as scope:
            client.recv(100)
        assert scope.cancelled_caught
        server.sendall(b"not lost")
        assert client.recv(100) == b"not lost"
        # Cancelled while the data is arriving: it stays in the socket for the next recv.
        for i in range(20):
            sender = unknot.spawn(lambda i=i: (unknot.sleep(0.001), server.sendall(b"%03d" % i)))
            with unknot.move_on_after(0.001):
                got = client.recv(3)
                assert got == b"%03d" % i
                continue
            assert recv_exactly(client, 3) == b"%03d" % i
            sender.join()


@pytest.mark.unknot
@pytest.mark.parametrize("method", ["recv", "recv_into", "send"])
def test_a_waiting_fiber_keeps_no_exception_alive(backend: str, method: str) -> None:
    # The EAGAIN that sent a call to wait is not kept while it waits (nor its traceback and
    # the frame object it creates): memory per idle connection.
    client, server = tcp_pair()
    with client, server:
        if method == "send":  # fill the buffer first (client has never waited: no record)
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    client.send(b"x" * 65536)
            client.setblocking(True)
        call = {
            "recv": lambda: client.recv(100),
            "recv_into": lambda: client.recv_into(bytearray(100)),
            "send": lambda: client.send(b"y"),
        }[method]
        waiter = unknot.spawn(call)
        unknot.sleep(0.02)
        assert not waiter.done()
        alive = [o for o in gc.get_objects() if isinstance(o, BlockingIOError)]
        waiter.cancel()
        assert alive == []


@pytest.mark.unknot
def test_cancellation_never_loses_stream_data(backend: str) -> None:
    client, server = tcp_pair()
    rng = random.Random(1234)
    payload = os.urandom(300_000)
    with client, server:

        def send() -> None:
            view = memoryview(payload)
            i = 0
            while i < len(payload):
                n = rng.randrange(1, 20_000)
                server.sendall(view[i : i + n])
                i += n
                unknot.sleep(rng.choice([0, 0, 0.0005]))
            server.shutdown(us.SHUT_WR)

        sender = unknot.spawn(send)
        got = bytearray()
        cancels = 0
        while True:
            with unknot.move_on_after(rng.choice([0, 0.0002, 0.001, 0.01])) as scope:
                chunk = client.recv(rng.randrange(1, 50_000))
                if not chunk:
                    break
                got += chunk
            cancels += scope.cancelled_caught
        sender.join()
        assert bytes(got) == payload
        assert cancels > 10


def _recv_waiter() -> tuple[Any, Callable[[], Any], list[Any]]:
    client, server = tcp_pair()
    return client, lambda: client.recv(10), [server]


def _sendall_waiter() -> tuple[Any, Callable[[], Any], list[Any]]:
    client, server = tcp_pair()
    fill_send_buffer(client)
    return client, lambda: client.sendall(b"w" * (1 << 20)), [server]


def _accept_waiter() -> tuple[Any, Callable[[], Any], list[Any]]:
    listener = us.create_server(("127.0.0.1", 0))
    return listener, listener.accept, []


@pytest.mark.unknot
@pytest.mark.parametrize("waiter", [_recv_waiter, _sendall_waiter, _accept_waiter])
def test_close_wakes_a_waiting_fiber_with_oserror(backend: str, waiter: Any) -> None:
    sock, call, others = waiter()
    try:
        f = unknot.spawn(call)
        unknot.sleep(0.02)
        assert not f.done()
        t0 = time.monotonic()
        sock.close()
        with pytest.raises(OSError) as info:
            f.join(timeout=2)
        assert info.value.errno == errno.EBADF
        assert elapsed_since(t0) < 0.5
        hub = unknot.current().hub  # type: ignore[union-attr]
        assert all(rec.reader is None and rec.writer is None for rec in hub.fds.values())
    finally:
        for s in others:
            s.close()


@pytest.mark.unknot
@pytest.mark.parametrize("method", ["recv", "sendall"])
def test_a_woken_call_on_a_socket_closed_before_it_runs_never_touches_the_reused_fd(
    backend: str, method: str
) -> None:
    # The fast paths call read(2)/write(2) on the fd number their record holds. A fiber woken
    # by its fd (data, or room to write) may run only after another fiber resumed first in the
    # same pass closed the socket, and the number went at once to a new socket: the woken call
    # must fail with EBADF, as the stdlib's method on a closed socket does, and neither read
    # the new socket's data nor write into it.
    a, a_peer = tcp_pair()
    c, c_peer = tcp_pair()
    if method == "sendall":
        fill_send_buffer(a)
    a_fd = a.fileno()
    new: list[Any] = []
    ran_first: list[bool] = []

    def closer() -> None:
        c.recv(1)  # woken by the first event of the poll
        ran_first.append(not waiter.done())
        a.close()
        x, y = us.socketpair()  # the lowest free numbers, a's among them
        if y.fileno() == a_fd:
            x, y = y, x
        new.extend((x, y))
        y.sendall(b"not yours")  # x, on a's number, has data to read

    def call() -> Any:
        return a.recv(100) if method == "recv" else a.sendall(b"w" * 100)

    waiter = unknot.spawn(call)
    closing = unknot.spawn(closer)
    unknot.sleep(0.02)
    assert not waiter.done() and not closing.done()
    c_peer.sendall(b"!")  # first: its event comes first out of the poll
    if method == "recv":
        a_peer.sendall(b"data")
    else:
        recv_exactly(a_peer, 1 << 16)  # room to write again
    closing.join(timeout=2)
    x, y = new
    try:
        if ran_first[0]:
            assert x.fileno() == a_fd  # (what makes the test meaningful)
            with pytest.raises(OSError) as info:
                waiter.join(timeout=2)
            assert info.value.errno == errno.EBADF
        else:  # (a level-triggered backend may report a's fd first: it just ran)
            assert backend != "epoll"
            waiter.join(timeout=2)
        assert x.recv(100) == b"not yours"  # untouched
        y.setblocking(False)
        with pytest.raises(BlockingIOError):
            y.recv(100)  # nothing was written into the new socket
    finally:
        for s in (x, y, a_peer, c, c_peer):
            s.close()


@pytest.mark.unknot
def test_a_send_that_lets_others_run_first_never_writes_to_the_reused_fd(backend: str) -> None:
    # sendall reads the socket's record, then its entry may let the ready fibers run (the
    # fairness rule: `Hub.IO_STREAK_MAX` calls in a row). One of them closes the socket and the
    # number goes to a new one: the send must fail with EBADF, not write into the new socket.
    client, server = tcp_pair()
    client.sendall(b"x")
    assert server.recv(1) == b"x"  # (the server side's record exists from here on)
    fd = server.fileno()
    new: list[Any] = []

    def closer() -> None:
        server.close()
        x, y = us.socketpair()
        new.extend((x, y) if x.fileno() == fd else (y, x))

    unknot.spawn(closer)
    hub = unknot.current().hub  # type: ignore[union-attr]
    hub.io_budget = 0  # the streak is used up: the next blocking call lets the others run
    with pytest.raises(OSError) as info:
        server.sendall(b"w" * 100)
    assert info.value.errno == errno.EBADF
    x, y = new
    try:
        assert x.fileno() == fd  # (what makes the test meaningful)
        y.setblocking(False)
        with pytest.raises(BlockingIOError):
            y.recv(100)  # nothing was written into the new socket
    finally:
        for s in (x, y, client):
            s.close()


@pytest.mark.unknot
def test_two_fibers_reading_one_socket(backend: str) -> None:
    client, server = tcp_pair()
    with client, server:
        # The second reader queues behind the first (it was a RuntimeError): the first gets
        # the first data, the second the next (tests/core/test_fd_waiters.py has more).
        first = unknot.spawn(client.recv, 10)
        unknot.sleep(0.01)
        unknot.spawn(lambda: (server.sendall(b"for first"), first.join(), server.sendall(b"2nd")))
        assert client.recv(10) == b"2nd"
        assert first.join() == b"for first"
        # Writers likewise: both sends go through as the peer reads.
        filled = fill_send_buffer(client)
        writer = unknot.spawn(client.sendall, b"a" * 65536)
        unknot.sleep(0.01)
        unknot.spawn(client.sendall, b"b" * 65536)
        data = b""
        while len(data) < filled + 2 * 65536:
            data += server.recv(1 << 20)
        assert sorted(set(data[filled:])) == [ord("a"), ord("b")]
        writer.join()


# Each blocking call below waits about 0.1 s while a fiber ticks every 0.01 s: about 9 ticks
# when the hub runs, at most 1 (the overdue timer, once the call returns) when the call blocks
# it. 3 leaves room for a loaded machine (a GC pass, a CPU taken by the host): one CI run saw
# 3 ticks during the connect.
MIN_TICKS = 3


@pytest.mark.unknot
def test_other_fibers_run_while_one_blocks(backend: str) -> None:
    ticks = [0]

    def ticker() -> None:
        while True:
            unknot.sleep(0.01)
            ticks[0] += 1

    t = unknot.spawn(ticker)
    client, server = tcp_pair()
    with client, server, us.create_server(("127.0.0.1", 0)) as listener:
        unknot.spawn(lambda: (unknot.sleep(0.1), server.sendall(b"x")))
        before = ticks[0]
        assert client.recv(1) == b"x"
        assert ticks[0] - before >= MIN_TICKS, "recv blocked the hub"

        addr = listener.getsockname()
        unknot.spawn(lambda: (unknot.sleep(0.1), us.create_connection(addr).close()))
        before = ticks[0]
        listener.accept()[0].close()
        assert ticks[0] - before >= MIN_TICKS, "accept blocked the hub"

        full = FullBacklog()
        try:
            before = ticks[0]
            with pytest.raises(TimeoutError):
                us.create_connection(full.address, timeout=0.1)
            assert ticks[0] - before >= MIN_TICKS, "connect blocked the hub"
        finally:
            full.close()
    t.cancel()


# -- readiness hints ----------------------------------------------------------------------------


@pytest.mark.unknot
def test_read_hint_is_set_again_by_an_edge_nobody_waited_for(backend: str) -> None:
    """A short read clears the readable hint; data arriving while no fiber waits must set it.

    Each round: a short read (drains the socket), then more data arrives and the hub sees its
    edge while the reader is busy elsewhere; the next recv must return at once, not wait for an
    edge that has already come and gone.
    """
    client, server = tcp_pair()
    with client, server:
        wait_once(client, server)
        for i in range(200):
            server.sendall(b"%04d" % i)
            with unknot.fail_after(2):
                assert client.recv(100) == b"%04d" % i  # short: the hint is cleared (TCP)
            server.sendall(b"more")
            unknot.sleep(0.001 if i % 2 else 0)  # the hub polls: the edge comes and goes
            with unknot.fail_after(2):
                assert client.recv(100) == b"more"


@pytest.mark.unknot
def test_write_hint_is_set_again_by_an_edge_nobody_waited_for(backend: str) -> None:
    client, server = tcp_pair()
    with client, server:
        client.setsockopt(us.SOL_SOCKET, us.SO_SNDBUF, 16384)
        for _ in range(10):
            # Fill the buffer with a short send (clears the writable hint)...
            total = 0
            with unknot.move_on_after(0.02):
                while True:
                    total += client.send(b"w" * 65536)
            # ...then the peer drains everything while the writer is not waiting.
            received = 0
            server.setblocking(False)
            while received < total:
                try:
                    received += len(server.recv(1 << 20))
                except BlockingIOError:
                    unknot.sleep(0.001)
            unknot.sleep(0.001)
            with unknot.fail_after(2):
                assert client.send(b"ok") == 2
            server.settimeout(None)
            assert recv_exactly(server, 2) == b"ok"


@pytest.mark.unknot
def test_unix_stream_short_read_at_passed_fd(backend: str) -> None:
    """An AF_UNIX stream read stops early at a message carrying fds; what follows must be read
    without waiting for an edge (none comes: the data is already there)."""
    a, b = us.socketpair()
    r, w = os.pipe()
    try:
        with a, b:
            wait_once(b, a)
            for _ in range(20):
                a.sendall(b"before")
                a.sendmsg([b"fd"], [(us.SOL_SOCKET, us.SCM_RIGHTS, array.array("i", [r]))])
                a.sendall(b"after")
                unknot.sleep(0)
                got = b""
                with unknot.fail_after(2):
                    while len(got) < 13:
                        got += b.recv(100)  # (the passed fd is closed by the kernel)
                assert got == b"beforefdafter"
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("backend_name", sorted(BACKENDS))
def test_tcp_urgent_data_does_not_stall_reads(
    backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TCP read stops short at the urgent mark with data queued behind it."""
    monkeypatch.setenv("UNKNOT_SELECTOR", backend_name)

    def main() -> None:
        client, server = tcp_pair()
        with client, server:
            wait_once(client, server)

            def read4() -> bytes:
                got = b""
                with unknot.fail_after(0.5):
                    while len(got) < 4:
                        got += client.recv(100)
                return got

            reader = unknot.spawn(read4)
            unknot.sleep(0)  # the reader waits
            server.sendall(b"B1")
            server.send(b"U", us.MSG_OOB)
            server.sendall(b"CD")
            time.sleep(0.05)  # all of it arrives before the hub polls: one edge
            assert reader.join() == b"B1CD"  # the urgent byte is out of band

    unknot.run(main)


# -- fd lifetime --------------------------------------------------------------------------------


def socketpair_on_fd(fd: int) -> tuple[us.socket, us.socket]:
    """A socketpair one of whose sockets has the fd number ``fd`` (which must be free)."""
    spare = []
    try:
        for _ in range(200):
            a, b = us.socketpair()
            if fd in (a.fileno(), b.fileno()):
                return (a, b) if b.fileno() == fd else (b, a)
            spare += [a, b]
        raise AssertionError(f"fd {fd} was not reused")
    finally:
        for s in spare:
            s.close()


def exchange(writer: Any, reader: Any) -> None:
    """``reader`` waits in a fiber (so the hub watches its fd) until ``writer`` sends."""
    got = unknot.spawn(reader.recv, 10)
    unknot.sleep(0)
    writer.send(b"ping")
    with unknot.fail_after(2):
        assert got.join() == b"ping"


@pytest.mark.unknot
def test_fd_numbers_reused_after_close(backend: str) -> None:
    hub = unknot.current().hub  # type: ignore[union-attr]
    for _ in range(20):
        a, b = us.socketpair()
        exchange(a, b)
        fd = b.fileno()
        d = b.dup()  # keeps b's open file alive: closing b must unregister it explicitly
        b.close()
        assert fd not in hub.fds
        c1, c2 = socketpair_on_fd(fd)
        exchange(c1, c2)
        exchange(c2, c1)
        exchange(a, d)
        for s in (a, c1, c2, d):
            s.close()


@pytest.mark.unknot
def test_fd_number_reused_after_a_socket_was_dropped_unclosed(backend: str) -> None:
    a, b = us.socketpair()
    exchange(a, b)
    fd = b.fileno()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del b
        gc.collect()
    c1, c2 = socketpair_on_fd(fd)
    exchange(c1, c2)
    for s in (a, c1, c2):
        s.close()


# -- DNS ----------------------------------------------------------------------------------------


def _outcome(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except OSError as e:
        return type(e), e.args


DNS_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("getaddrinfo", ("localhost", 80)),
    ("getaddrinfo", ("localhost", "http", std.AF_INET, std.SOCK_STREAM)),
    ("getaddrinfo", ("127.0.0.1", 8080)),
    ("getaddrinfo", ("::1", 8080, std.AF_INET6)),
    ("getaddrinfo", (None, 0, 0, 0, 0, std.AI_PASSIVE)),
    ("gethostbyname", ("localhost",)),
    ("gethostbyname", ("127.0.0.1",)),
    ("gethostbyname_ex", ("localhost",)),
    ("gethostbyaddr", ("127.0.0.1",)),
    ("getnameinfo", (("127.0.0.1", 80), 0)),
    ("getnameinfo", (("127.0.0.1", 80), std.NI_NUMERICHOST | std.NI_NUMERICSERV)),
    ("getfqdn", ("localhost",)),
]


def test_dns_returns_what_the_stdlib_returns(where: Where) -> None:
    expected = [_outcome(getattr(std, name), *args) for name, args in DNS_CALLS]

    def main() -> list[Any]:
        return [_outcome(getattr(us, name), *args) for name, args in DNS_CALLS]

    assert where.run(main) == expected


@pytest.mark.unknot
def test_dns_runs_off_the_hub_and_is_cancellable(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    threads = set()

    def slow(*args: Any) -> Any:
        if len(args) == 6 and args[5] & std.AI_NUMERICHOST:  # getaddrinfo, numeric only
            raise std.gaierror(std.EAI_NONAME, "Name or service not known")
        threads.add(threading.get_ident())
        release.wait(10)
        raise std.gaierror(std.EAI_NONAME, "never answered")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        monkeypatch.setattr(us, f"_std_{name}", slow)
    ticks = [0]

    def ticker() -> None:
        while True:
            unknot.sleep(0.01)
            ticks[0] += 1

    def slow_connect() -> None:
        with us.socket() as s:
            s.connect(("slow.example", 80))  # the C method would resolve it on the hub

    t = unknot.spawn(ticker)
    try:
        for call in (
            lambda: us.getaddrinfo("slow.example", 80),
            lambda: us.gethostbyname("slow.example"),
            lambda: us.gethostbyname_ex("slow.example"),
            lambda: us.gethostbyaddr("10.1.2.3"),
            lambda: us.create_connection(("slow.example", 80)),
            slow_connect,
        ):
            before = ticks[0]
            t0 = time.monotonic()
            with unknot.move_on_after(0.06) as scope:
                call()
            assert scope.cancelled_caught
            assert elapsed_since(t0) < 0.5
            assert ticks[0] - before >= 2  # the hub kept running meanwhile
        assert threading.get_ident() not in threads  # resolved in worker threads
    finally:
        release.set()
        t.cancel()
