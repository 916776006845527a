"""TLS faults: garbage before and during the handshake, a handshake that never finishes,
garbage after it. Each ends the connection within the handshake timeout (``HTTPServer``'s
``handshake_timeout``), logs no error, leaks no fd, and the server goes on answering HTTPS."""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from fault_helpers import no_logged_errors, open_fds, reset
from server_helpers import (
    ServerThread,
    connect,
    get,
    read_response,
    tls_client_context,
    tls_server_context,
)

from unknot.http import Request

pytestmark = pytest.mark.timeout(60)

HANDSHAKE_TIMEOUT = 0.5


def handler(request: Request) -> Any:
    return 200, None, b"ok"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def srv(ca: trustme.CA) -> Iterator[ServerThread]:
    context = tls_server_context(ca)
    with ServerThread(handler, ssl=context, handshake_timeout=HANDSHAKE_TIMEOUT) as server:
        yield server


@pytest.fixture(scope="module")
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    return tls_client_context(ca)


def https_answers(port: int, context: ssl.SSLContext) -> bool:
    with connect(port) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(get("/"))
        return read_response(tls.makefile("rb")).status == 200


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """The server ends the connection (EOF or reset) within ``seconds``, whatever it sends."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while sock.recv(65536):
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def client_hello() -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO, bytes]:
    """A TLS client in memory and the ClientHello it wants to send."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return tls, incoming, outgoing, outgoing.read()


def check_after(srv: ServerThread, fds: int, client_ctx: ssl.SSLContext) -> None:
    deadline = time.monotonic() + 10
    while srv.connections or open_fds() > fds:
        assert time.monotonic() < deadline, f"{srv.connections} open, {open_fds() - fds} fds"
        time.sleep(0.01)
    assert https_answers(srv.port, client_ctx)


def test_plain_http_to_the_tls_port(srv: ServerThread, client_ctx: ssl.SSLContext) -> None:
    fds = open_fds()
    with no_logged_errors(), connect(srv.port) as sock:
        sock.sendall(get("/"))
        assert closed_within(sock, 5)
    check_after(srv, fds, client_ctx)


@pytest.mark.parametrize("size", [1, 5, 100, 20000])
def test_random_garbage_before_the_handshake(
    srv: ServerThread, client_ctx: ssl.SSLContext, size: int
) -> None:
    fds = open_fds()
    with no_logged_errors(), connect(srv.port) as sock:
        sock.sendall(os.urandom(size))
        assert closed_within(sock, 5)
    check_after(srv, fds, client_ctx)


def test_garbage_during_the_handshake(srv: ServerThread, client_ctx: ssl.SSLContext) -> None:
    """A real ClientHello, the server's reply read, then junk as the client's next flight."""
    fds = open_fds()
    with no_logged_errors(), connect(srv.port) as sock:
        _, _, _, hello = client_hello()
        sock.sendall(hello)
        assert sock.recv(65536)  # the server's hello
        sock.sendall(b"\x16\x03\x03\x00\x40" + os.urandom(64) + os.urandom(300))
        assert closed_within(sock, 5)
    check_after(srv, fds, client_ctx)


@pytest.mark.parametrize("sent", ["nothing", "half_hello", "whole_hello"])
def test_handshake_that_never_finishes(
    srv: ServerThread, client_ctx: ssl.SSLContext, sent: str
) -> None:
    """Silence at some point of the handshake: cut by the handshake timeout."""
    fds = open_fds()
    _, _, _, hello = client_hello()
    with no_logged_errors(), connect(srv.port) as sock:
        start = time.monotonic()
        if sent == "half_hello":
            sock.sendall(hello[: len(hello) // 2])
        elif sent == "whole_hello":
            sock.sendall(hello)
        assert closed_within(sock, 5)
        took = time.monotonic() - start
        assert HANDSHAKE_TIMEOUT / 2 < took < 5, took  # (cut by the timeout, not at once)
    check_after(srv, fds, client_ctx)


def test_many_stalled_handshakes(srv: ServerThread, client_ctx: ssl.SSLContext) -> None:
    """100 silent TLS clients do not stop a real one; all are cut."""
    fds = open_fds()
    with no_logged_errors():
        socks = [connect(srv.port) for _ in range(100)]
        assert https_answers(srv.port, client_ctx)
        for sock in socks:
            assert closed_within(sock, 5)
            sock.close()
    check_after(srv, fds, client_ctx)


@pytest.mark.parametrize("how", ["garbage", "rst"])
def test_garbage_or_reset_after_the_handshake(
    srv: ServerThread, client_ctx: ssl.SSLContext, how: str
) -> None:
    fds = open_fds()
    with no_logged_errors():
        raw = connect(srv.port)
        tls = client_ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(b"GET / HTTP/1.1\r\nHo")
        if how == "garbage":
            # junk in place of a TLS record, on the raw descriptor under the TLS socket
            os.write(tls.fileno(), b"\x17\x03\x03\x00\x20" + os.urandom(32))
            with socket.socket(fileno=os.dup(tls.fileno())) as plain:
                assert closed_within(plain, 5)
            tls.close()
        else:
            reset(tls)
    check_after(srv, fds, client_ctx)
