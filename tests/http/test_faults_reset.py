"""Peer reset (RST), close and half-close at every stage of a request.

For each stage (before the head, mid head, after the head while the handler runs, mid body,
mid response, between keep-alive requests) and each way a client can leave (``rst``: SO_LINGER
0, the kernel sends a RST; ``close``: a plain close; ``half``: shutdown(SHUT_WR), then read
what the server still sends), the server must end the connection without logging an error,
close its socket (no fd leak), stop a streaming body (its generator closed) and go on
answering. A half-closed client still gets the answer to a request it sent whole.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fault_helpers import no_logged_errors, open_fds, reset, settled
from server_helpers import ServerThread, connect, get, read_response, wait_until

import unknot
from unknot.http import Request, Timeouts

pytestmark = pytest.mark.timeout(60)

CHUNK = b"x" * 65536
BIG_CHUNKS = 512  # 32 MiB: far more than the socket buffers hold
STAGES = ["before_head", "mid_head", "after_head", "mid_body", "mid_response", "between"]
MODES = ["rst", "close", "half"]

streams_closed: list[bool] = []
reading_body: list[bool] = []


def handler(request: Request) -> Any:
    if request.path == "/wait":
        unknot.sleep(0.3)  # the client leaves while the handler runs
        return 200, None, b"waited"
    if request.path == "/echo":
        reading_body.append(True)
        return 200, None, request.body()
    if request.path == "/big":

        def stream() -> Iterator[bytes]:
            try:
                for _ in range(BIG_CHUNKS):
                    yield CHUNK
            finally:
                streams_closed.append(True)

        return 200, None, stream()
    return 200, None, b"ok"


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerThread]:
    # (a short keep-alive, so that the "close" cases of idle connections end soon too)
    with ServerThread(handler, timeouts=Timeouts(head=5, keep_alive=2, body=5)) as server:
        yield server


def leave(sock: socket.socket, mode: str) -> bytes:
    """Leave the connection as ``mode`` says; for ``half``, what the server still sent."""
    if mode == "rst":
        reset(sock)
        return b""
    if mode == "close":
        sock.close()
        return b""
    sock.shutdown(socket.SHUT_WR)
    received = bytearray()
    while chunk := sock.recv(1 << 20):
        received += chunk
    sock.close()
    return bytes(received)


def status_of(data: bytes) -> int | None:
    if not data:
        return None
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stage", STAGES)
def test_client_leaves(srv: ServerThread, stage: str, mode: str) -> None:
    streams_closed.clear()
    reading_body.clear()
    fds = open_fds()
    with no_logged_errors():
        sock = connect(srv.port)
        if stage == "before_head":
            srv.wait_for_connections(1)
            rest = leave(sock, mode)
            assert rest == b""
        elif stage == "mid_head":
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
            time.sleep(0.05)
            rest = leave(sock, mode)
            assert status_of(rest) in (None, 400)
        elif stage == "after_head":
            sock.sendall(get("/wait"))
            time.sleep(0.05)
            rest = leave(sock, mode)
            if mode == "half":  # a request sent whole is answered
                assert status_of(rest) == 200 and rest.endswith(b"waited")
        elif stage == "mid_body":
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n12345")
            wait_until(lambda: reading_body)
            rest = leave(sock, mode)
            assert status_of(rest) in (None, 400)
        elif stage == "mid_response":
            sock.sendall(get("/big"))
            got = 0
            while got < 4 * len(CHUNK):
                got += len(sock.recv(65536))
            rest = leave(sock, mode)
            if mode == "half":  # the client still reads: it gets the whole body
                assert got + len(rest) > BIG_CHUNKS * len(CHUNK)
            wait_until(lambda: streams_closed)  # the generator was closed either way
        else:  # between keep-alive requests
            sock.sendall(get("/"))
            f = sock.makefile("rb")
            assert read_response(f).status == 200
            f.close()
            rest = leave(sock, mode)
            assert rest == b""
        settled(srv, fds)


def test_many_resets_at_once(srv: ServerThread) -> None:
    """200 clients reset mid body and mid response at the same moment."""
    fds = open_fds()
    streams_closed.clear()
    with no_logged_errors():
        socks = [connect(srv.port) for _ in range(200)]
        for i, sock in enumerate(socks):
            if i % 2:
                sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n1")
            else:
                sock.sendall(get("/big"))
        time.sleep(0.2)
        for sock in socks:
            reset(sock)
        settled(srv, fds)
    assert len(streams_closed) == 100
