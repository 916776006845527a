"""Clients that stall or flood: one that reads nothing while the server writes (bounded
buffering; the write timeout cuts it), one that announces a body and never sends it (the body
timeout: 408, close), and heads and bodies of any size, refused (431, 413) before they are
buffered, with the server's memory bounded (tracemalloc's peak) while they are sent."""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from fault_helpers import no_logged_errors, open_fds, settled
from server_helpers import ServerThread, connect, get, read_response

from unknot.http import Request, Timeouts

pytestmark = pytest.mark.timeout(60)

CHUNK = b"y" * 65536
yielded: list[int] = []
closed: list[bool] = []


def handler(request: Request) -> Any:
    if request.path == "/stream":

        def stream() -> Iterator[bytes]:
            try:
                for i in range(100_000):  # 6.5 GB, if anyone read it
                    yielded.append(i)
                    yield CHUNK
            finally:
                closed.append(True)

        return 200, None, stream()
    if request.path == "/bytes":
        return 200, None, b"z" * (16 << 20)
    if request.path == "/upload":
        total = 0
        while data := request.read(65536):
            total += len(data)
        return 200, None, b"%d" % total
    return 200, None, b"ok"


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerThread]:
    timeouts = Timeouts(head=1, keep_alive=1, body=0.5, write=0.5)
    with ServerThread(handler, timeouts=timeouts) as server:
        yield server


def small_buffers(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)


@pytest.mark.parametrize("path", ["/stream", "/bytes"])
def test_a_client_that_reads_nothing_is_cut_by_the_write_timeout(
    srv: ServerThread, path: str
) -> None:
    yielded.clear()
    closed.clear()
    fds = open_fds()
    with no_logged_errors():
        sock = socket.socket()
        small_buffers(sock)
        sock.connect(("127.0.0.1", srv.port))
        sock.sendall(get(path))
        srv.wait_for_connections(1)
        srv.wait_for_connections(0, timeout=5)  # dropped by the write timeout
        if path == "/stream":
            assert closed, "the stream was not closed"
            # bounded buffering: the server stopped pulling from the iterable when the socket
            # buffers were full (a few MiB at most), it did not read ahead
            assert len(yielded) < 100, len(yielded)
        sock.close()
        settled(srv, fds)


def test_pipelined_requests_never_read(srv: ServerThread) -> None:
    """20,000 pipelined GETs whose answers are never read: the server's buffer of pending
    answers stays bounded (it writes, blocks, and the write timeout cuts the client)."""
    fds = open_fds()
    tracemalloc.start()
    try:
        with no_logged_errors():
            sock = socket.socket()
            small_buffers(sock)
            sock.connect(("127.0.0.1", srv.port))
            data = get("/") * 20_000
            sock.settimeout(10)
            try:
                sock.sendall(data)
            except OSError:
                pass  # the server gave up on us while we were still sending: fine
            srv.wait_for_connections(0, timeout=10)
            sock.close()
            _, peak = tracemalloc.get_traced_memory()
            settled(srv, fds)
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak} bytes"


@pytest.mark.parametrize(
    "head,sent",
    [
        (b"Content-Length: 100\r\n", b""),
        (b"Content-Length: 100\r\n", b"12345"),
        (b"Transfer-Encoding: chunked\r\n", b""),
        (b"Transfer-Encoding: chunked\r\n", b"10\r\nabc"),
        (b"Content-Length: 10\r\nExpect: 100-continue\r\n", b""),
    ],
)
def test_a_body_announced_and_never_sent_gets_408(
    srv: ServerThread, head: bytes, sent: bytes
) -> None:
    fds = open_fds()
    with no_logged_errors(), connect(srv.port) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + sent)
        f = sock.makefile("rb")
        response = read_response(f)
        if response.status == 100:  # (read_response skips 1xx; kept for clarity)
            response = read_response(f)
        assert response.status == 408
        assert response.closes
        assert f.read() == b""  # and closed
        f.close()
    settled(srv, fds)


def send_until_refused(sock: socket.socket, head: bytes, filler: bytes, total: int) -> int:
    """Send ``head`` then ``filler`` repeatedly up to ``total`` bytes, stopping when the server
    stops taking them; the bytes sent."""
    sock.settimeout(5)
    sent = 0
    try:
        sock.sendall(head)
        while sent < total:
            sock.sendall(filler)
            sent += len(filler)
    except OSError:
        pass
    return sent


@pytest.mark.parametrize(
    "kind,head,filler,status",
    [
        ("header", b"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: ", b"a" * 65536, 431),
        ("headers", b"GET / HTTP/1.1\r\nHost: x\r\n", b"X-Many: b\r\n" * 5000, 431),
        ("target", b"GET /", b"c" * 65536, 414),
        (
            "length",
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
            b"d" * 65536,
            413,
        ),
        (
            "chunked",
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"10000\r\n" + b"e" * 65536 + b"\r\n",
            413,
        ),
        (
            "chunk_size",
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"fffffffffffffffffffffff",
            400,
        ),
    ],
)
def test_oversized_input_refused_before_it_is_buffered(
    srv: ServerThread, kind: str, head: bytes, filler: bytes, status: int
) -> None:
    """Up to 64 MiB offered; the server answers the status and closes, and its memory peak
    stays far below what was offered."""
    fds = open_fds()
    tracemalloc.start()
    try:
        with no_logged_errors(), connect(srv.port) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            send_until_refused(sock, head, filler, 64 << 20)
            _, peak = tracemalloc.get_traced_memory()
            f = sock.makefile("rb")
            try:
                response = read_response(f)
            except (ConnectionResetError, EOFError):
                response = None  # the reset came before we read: only the memory tells
            f.close()
    finally:
        tracemalloc.stop()
    if response is not None:
        assert response.status == status, response
    assert peak < 4 << 20, f"{kind}: peak {peak} bytes"
    settled(srv, fds)
