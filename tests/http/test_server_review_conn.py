"""The connection loop (``_conn``), from a review: a response cut short resets the connection;
an answer that leaves an unread body behind says ``Connection: close``; pipelined answers go
out before a later handler runs; a head pipelined behind a request is timed as a head; CONNECT
is refused without the handler; a status that is not an int gets the same 500 on every path."""

from __future__ import annotations

import logging
import socket
import threading
import time
from http import HTTPStatus
from typing import Any

import pytest
from server_helpers import (
    ServerThread,
    closed_by_server,
    connect,
    get,
    raw_exchange,
    read_response,
    wait_until,
)

import unknot
from unknot.http import Limits, Request, Timeouts

pytestmark = pytest.mark.timeout(30)


def read_to_end(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, str]:
    """What arrives until the server ends the connection, and how it ended: ``"reset"``
    (RST) or ``"closed"`` (FIN)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        return data, "reset"
    return data, "closed"


# -- a response cut short: reset, not closed ---------------------------------------------------


def failing_stream(request: Request) -> Any:
    def rows() -> Any:
        yield b"row 1\n"
        yield b"row 2\n"
        raise RuntimeError("database went away")

    return 200, {"content-type": "text/csv"}, rows()


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_a_stream_failing_midway_resets_the_connection(
    version: str, caplog: pytest.LogCaptureFixture
) -> None:
    # HTTP/1.0: the body ends with the connection, so a clean close would make the cut body
    # look complete; the reset is the only way to tell the client.
    with caplog.at_level(logging.CRITICAL, logger="unknot.http"):
        with ServerThread(failing_stream) as srv:
            with connect(srv.port) as sock:
                sock.sendall(f"GET /export HTTP/{version}\r\nHost: x\r\n\r\n".encode())
                data, end = read_to_end(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"row 1\n" in data
    assert end == "reset"


def test_a_stream_cancelled_by_stop_resets_the_connection() -> None:
    started = threading.Event()

    def endless(request: Request) -> Any:
        def rows() -> Any:
            yield b"row 1\n"
            started.set()
            unknot.sleep(30)  # cancelled when the grace ends
            yield b"never\n"

        return 200, None, rows()

    with ServerThread(endless, grace=0.3) as srv:
        sock = connect(srv.port)
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert started.wait(5)
    # (the server has stopped: the stream was cancelled after the grace)
    with sock:
        data, end = read_to_end(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"row 1\n")
    assert end == "reset"


def test_a_complete_http_1_0_stream_still_ends_with_a_close() -> None:
    def rows(request: Request) -> Any:
        return 200, None, (row for row in [b"a", b"b"])

    with ServerThread(rows) as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data, end = read_to_end(sock)
    assert data.endswith(b"\r\n\r\nab")
    assert end == "closed"


# -- an unread body: Connection: close when it will not be drained -----------------------------


def ignoring(request: Request) -> Any:
    return 401, None, b"login first"


def test_an_unread_body_too_big_to_drain_is_answered_with_connection_close() -> None:
    with ServerThread(ignoring) as srv:
        body = b"x" * 500_000
        with connect(srv.port) as sock:
            sock.sendall(
                b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            )
            f = sock.makefile("rb")
            response = read_response(f)
            assert (response.status, response.body) == (401, b"login first")
            assert response.closes
            assert closed_by_server(sock, f, 5)
            f.close()


def test_an_unread_chunked_body_not_received_is_answered_with_connection_close() -> None:
    with ServerThread(ignoring) as srv:
        with connect(srv.port) as sock:
            # The first chunk only: the rest, of unknown length, is not waited for.
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
            )
            f = sock.makefile("rb")
            response = read_response(f)
            assert response.status == 401 and response.closes
            assert closed_by_server(sock, f, 5)
            f.close()


def test_a_failing_handler_with_an_unread_big_body_is_answered_with_connection_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def failing(request: Request) -> Any:
        raise RuntimeError("boom")

    with caplog.at_level(logging.CRITICAL, logger="unknot.http"):
        with ServerThread(failing, limits=Limits(max_body_size=None)) as srv:
            with connect(srv.port) as sock:
                sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
                f = sock.makefile("rb")
                response = read_response(f)
                assert response.status == 500 and response.closes
                f.close()


def test_an_unread_small_body_is_still_drained_without_connection_close() -> None:
    with ServerThread(ignoring) as srv:
        body = b"x" * 30000
        request = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        (first, second), closed = raw_exchange(srv.port, request + body + get("/b"), count=2)
    assert not first.closes and not second.closes
    assert not closed


def test_a_big_body_streamed_back_keeps_the_connection() -> None:
    # The response's iterable reads the request body as it goes: no Connection: close up front.
    def echo(request: Request) -> Any:
        return 200, None, request.stream()

    with ServerThread(echo) as srv:
        body = b"e" * 300_000
        request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        with connect(srv.port) as sock:
            sock.sendall(request)
            f = sock.makefile("rb")
            sender = threading.Thread(target=sock.sendall, args=(body,))
            sender.start()
            response = read_response(f)
            sender.join(5)
            assert response.body == body and not response.closes
            sock.sendall(get("/again"))
            assert read_response(f).status == 200
            f.close()


# -- pipelining: the answers before a handler go out before it runs ----------------------------


@pytest.mark.parametrize("options", [{}, {"access_log": True}], ids=["inline", "general"])
def test_a_pipelined_answer_is_not_held_back_by_a_later_handler(
    options: dict[str, Any],
) -> None:
    release = threading.Event()

    def handler(request: Request) -> Any:
        if request.path == "/slow":
            deadline = time.monotonic() + 10
            while not release.is_set() and time.monotonic() < deadline:
                unknot.sleep(0.01)
        return 200, None, request.path

    with ServerThread(handler, **options) as srv:
        with connect(srv.port, timeout=5) as sock:
            sock.sendall(get("/fast") + get("/slow", extra="Connection: close\r\n"))
            f = sock.makefile("rb")
            try:
                fast = read_response(f)  # while /slow's handler waits
            finally:
                release.set()
            slow = read_response(f)
            f.close()
    assert (fast.body, slow.body) == (b"/fast", b"/slow")


# -- a head pipelined behind a request: timed as a head -----------------------------------------


def test_a_head_begun_with_the_previous_request_gets_408() -> None:
    timeouts = Timeouts(head=0.3, keep_alive=5.0)
    with ServerThread(lambda request: (200, None, b"ok"), timeouts=timeouts) as srv:
        with connect(srv.port) as sock:
            sock.sendall(get("/") + b"GET /second HT")  # ...and never the rest
            f = sock.makefile("rb")
            start = time.monotonic()
            assert read_response(f).body == b"ok"
            late = read_response(f)
            assert late.status == 408 and late.closes
            assert time.monotonic() - start < 3  # the head timeout, not keep_alive
            f.close()


def test_a_head_begun_with_the_previous_request_is_not_idle() -> None:
    # (stop() cancels idle connections at once; one in the middle of a head gets the grace.)
    with ServerThread(lambda request: (200, None, b"ok"), grace=3.0) as srv:
        with connect(srv.port) as sock:
            sock.sendall(get("/") + b"GET /second HT")
            f = sock.makefile("rb")
            assert read_response(f).body == b"ok"
            server = srv.server
            assert server is not None
            wait_until(lambda: not any(c.idle for c in server._connections.values()), 1)
            time.sleep(0.1)
            assert not any(c.idle for c in server._connections.values())


# -- CONNECT ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "options"),
    [("1.1", {}), ("1.0", {}), ("1.1", {"access_log": True})],
    ids=["inline", "http-1.0", "access-log"],
)
def test_connect_is_refused_without_the_handler_or_an_error_log(
    version: str, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    called = []

    def handler(request: Request) -> Any:
        called.append(request.method)
        return 200, None, b"hello"

    with caplog.at_level(logging.DEBUG, logger="unknot.http"):
        with ServerThread(handler, **options) as srv:
            request = f"CONNECT example.com:443 HTTP/{version}\r\nHost: example.com:443\r\n\r\n"
            (response,), closed = raw_exchange(srv.port, request.encode())
            (after,), _ = raw_exchange(srv.port, get("/"))
    assert response.status == 501 and response.closes and closed
    assert after.status == 200
    assert called == ["GET"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


# -- a status that is not an int ---------------------------------------------------------------


REQUESTS = {
    "inline": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "http-1.0": b"GET / HTTP/1.0\r\n\r\n",
    "access-log": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("path", list(REQUESTS))
def test_a_float_status_gets_the_same_500_on_every_path(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    options = {"access_log": True} if path == "access-log" else {}
    with caplog.at_level(logging.ERROR, logger="unknot.http"):
        with ServerThread(lambda request: (200.0, None, b"ok"), **options) as srv:
            (response,), _ = raw_exchange(srv.port, REQUESTS[path])
    assert response.status == 500
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert errors and all(isinstance(e, TypeError) for e in errors)


@pytest.mark.parametrize("path", list(REQUESTS))
@pytest.mark.parametrize("status", [HTTPStatus.CREATED, True], ids=["HTTPStatus", "bool"])
def test_other_statuses_are_judged_the_same_on_every_path(path: str, status: Any) -> None:
    options = {"access_log": True} if path == "access-log" else {}
    with ServerThread(lambda request: (status, {"x-a": "b"}, b"ok"), **options) as srv:
        (response,), _ = raw_exchange(srv.port, REQUESTS[path])
    assert response.status == (201 if status is HTTPStatus.CREATED else 500)
