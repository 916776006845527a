"""How the HTTP server ends a TLS connection: every clean close sends the TLS close_notify alert
before the TCP FIN. A strict TLS client (here Python's `ssl` with ``suppress_ragged_eofs=False``)
then reads the end of the stream as an end (``b""``), not as a truncation (`ssl.SSLEOFError`),
after an answer saying ``Connection: close``, an HTTP/1.0 answer, a refused request, and at
``stop``. The close never waits for the client's own alert longer than the linger did, a client
that has gone raises nothing, and plain TCP connections end as they did (a FIN, no extra bytes).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

import pytest
import trustme
from fault_helpers import no_logged_errors, reset
from server_helpers import (
    ServerThread,
    connect,
    get,
    read_response,
    tls_client_context,
    tls_server_context,
    wait_until,
)

import unknot
from unknot.http import HTTPServer, Request, Timeouts
from unknot.http._conn import LINGER_TIME

pytestmark = pytest.mark.timeout(60)

#: keep_alive 1 s: the watchdog, which ends a linger, ticks every quarter of a second.
TIMEOUTS = Timeouts(keep_alive=1.0)
TICK = 0.25

#: Requests the server answers, then closes the connection after: the answer says so, the
#: HTTP version implies it, or the request is refused (400 and 501, then a linger).
CLOSING_REQUESTS = {
    "connection-close": get("/", extra="Connection: close\r\n"),
    "http-1.0": b"GET / HTTP/1.0\r\n\r\n",
    "refused": b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    "connect": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
}

#: Set by a test: `handler`'s ``/slow`` answers once it is set (at most 5 s later).
release = threading.Event()


def handler(request: Request) -> Any:
    if request.path == "/slow":
        for _ in range(500):
            if release.is_set():
                break
            unknot.sleep(0.01)
    return 200, None, b"ok"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    return tls_server_context(ca)


@pytest.fixture(scope="module")
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    return tls_client_context(ca)


@pytest.fixture
def tls_srv(server_ctx: ssl.SSLContext) -> Iterator[ServerThread]:
    with ServerThread(handler, ssl=server_ctx, timeouts=TIMEOUTS) as srv:
        yield srv


def tls_connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    """A strict TLS client: a connection closed without close_notify raises `SSLEOFError`."""
    return context.wrap_socket(
        connect(port), server_hostname="127.0.0.1", suppress_ragged_eofs=False
    )


def server_of(srv: ServerThread) -> HTTPServer:
    server = srv.server
    assert server is not None
    return server


def ends_cleanly(sock: ssl.SSLSocket, f: BinaryIO) -> None:
    """The TLS stream ends here with the server's close_notify: no more bytes, no SSLEOFError
    (nor a reset), and reading again still says the end."""
    sock.settimeout(5.0)
    assert f.read() == b""
    assert sock.recv(1) == b""


# -- (a) answers that close the connection ---------------------------------------------------


@pytest.mark.parametrize("request_bytes", CLOSING_REQUESTS.values(), ids=CLOSING_REQUESTS.keys())
def test_a_closing_answer_ends_with_close_notify(
    tls_srv: ServerThread, client_ctx: ssl.SSLContext, request_bytes: bytes
) -> None:
    with no_logged_errors(), tls_connect(tls_srv.port, client_ctx) as sock:
        sock.sendall(request_bytes)
        f = sock.makefile("rb")
        response = read_response(f)
        assert response.status in (200, 400, 501)
        assert response.closes or response.version == "HTTP/1.0"
        ends_cleanly(sock, f)
        f.close()
    tls_srv.wait_for_connections(0)


# -- (b) stop ----------------------------------------------------------------------------------


def test_an_idle_keep_alive_connection_ends_with_close_notify_at_stop(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    with (
        no_logged_errors(),
        ServerThread(handler, ssl=server_ctx, timeouts=Timeouts(keep_alive=30.0)) as srv,
        tls_connect(srv.port, client_ctx) as sock,
    ):
        f = sock.makefile("rb")
        sock.sendall(get("/"))
        response = read_response(f)
        assert response.status == 200 and not response.closes
        server = server_of(srv)
        wait_until(lambda: all(conn.idle for conn in server._connections.values()))
        srv._stop.set()  # stop() cancels the idle connection at once
        ends_cleanly(sock, f)
        f.close()


def test_a_request_under_way_at_stop_ends_with_close_notify(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    # Answered within the grace, saying close; then the connection ends cleanly.
    release.clear()
    with (
        no_logged_errors(),
        ServerThread(handler, grace=5.0, ssl=server_ctx) as srv,
        tls_connect(srv.port, client_ctx) as sock,
    ):
        f = sock.makefile("rb")
        sock.sendall(get("/slow"))
        server = server_of(srv)
        wait_until(lambda: any(not conn.idle for conn in server._connections.values()))
        srv._stop.set()
        wait_until(lambda: server._settings.closing)
        release.set()
        response = read_response(f)
        assert response.status == 200 and response.closes
        ends_cleanly(sock, f)
        f.close()


# -- (c) the client's side of the TLS shutdown -------------------------------------------------


def connection_end(srv: ServerThread) -> float:
    """Wait until the server's connection fiber has ended; how long that took."""
    start = time.monotonic()
    srv.wait_for_connections(0, timeout=LINGER_TIME + 5.0)
    return time.monotonic() - start


@pytest.mark.parametrize("request_bytes", CLOSING_REQUESTS.values(), ids=CLOSING_REQUESTS.keys())
def test_a_client_answering_close_notify_ends_the_connection_at_once(
    tls_srv: ServerThread, client_ctx: ssl.SSLContext, request_bytes: bytes
) -> None:
    with no_logged_errors():
        sock = tls_connect(tls_srv.port, client_ctx)
        with sock:
            sock.sendall(request_bytes)
            f = sock.makefile("rb")
            read_response(f)
            ends_cleanly(sock, f)
            f.close()
            # Our close_notify: the TLS shutdown both ways is complete (the server's alert
            # came), so that unwrap returns at once with the plain socket; then a FIN.
            sock.unwrap().close()
        assert connection_end(tls_srv) < 1.0


@pytest.mark.parametrize("request_bytes", CLOSING_REQUESTS.values(), ids=CLOSING_REQUESTS.keys())
def test_a_client_never_answering_holds_the_connection_no_longer_than_the_linger(
    tls_srv: ServerThread, client_ctx: ssl.SSLContext, request_bytes: bytes
) -> None:
    with no_logged_errors(), tls_connect(tls_srv.port, client_ctx) as sock:
        sock.sendall(request_bytes)
        f = sock.makefile("rb")
        read_response(f)
        ends_cleanly(sock, f)
        # No close_notify, no FIN: the connection stays open on our side.
        assert connection_end(tls_srv) < LINGER_TIME + TICK + 0.5
        f.close()


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_a_client_gone_before_the_close_raises_nothing(
    tls_srv: ServerThread,
    client_ctx: ssl.SSLContext,
    version: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The client resets the connection while its request is in the handler: neither the
    # answer nor the close_notify can be sent, and no exception leaves the connection's fiber
    # (`TCPServer` would log it: as an error, or at debug level for a ConnectionError).
    caplog.set_level(logging.DEBUG, logger="unknot.server")
    release.clear()
    server = server_of(tls_srv)
    with no_logged_errors():
        sock = tls_connect(tls_srv.port, client_ctx)
        sock.sendall(f"GET /slow HTTP/{version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        wait_until(lambda: any(not conn.idle for conn in server._connections.values()))
        reset(sock)
        time.sleep(0.05)  # (the reset reaches the server's socket before the answer is sent)
        release.set()
        connection_end(tls_srv)
    assert not [r for r in caplog.records if r.name == "unknot.server"], caplog.text


# -- (d) plain TCP -----------------------------------------------------------------------------


@pytest.mark.parametrize("request_bytes", CLOSING_REQUESTS.values(), ids=CLOSING_REQUESTS.keys())
def test_a_plain_connection_ends_with_a_fin_as_before(request_bytes: bytes) -> None:
    with (
        no_logged_errors(),
        ServerThread(handler, timeouts=TIMEOUTS) as srv,
        connect(srv.port) as sock,
    ):
        sock.sendall(request_bytes)
        f = sock.makefile("rb")
        response = read_response(f)
        assert response.status in (200, 400, 501)
        sock.settimeout(5.0)
        assert f.read() == b""  # a FIN right after the answer: no TLS alert, no reset
        f.close()
        srv.wait_for_connections(0, timeout=LINGER_TIME + 1.0)


def test_a_plain_idle_connection_ends_with_a_fin_at_stop() -> None:
    with (
        no_logged_errors(),
        ServerThread(handler, timeouts=Timeouts(keep_alive=30.0)) as srv,
        connect(srv.port) as sock,
    ):
        f = sock.makefile("rb")
        sock.sendall(get("/"))
        assert read_response(f).status == 200
        server = server_of(srv)
        wait_until(lambda: all(conn.idle for conn in server._connections.values()))
        srv._stop.set()
        sock.settimeout(5.0)
        assert f.read() == b""
        f.close()
