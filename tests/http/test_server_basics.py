"""The HTTP server: requests and responses on the wire, keep-alive, pipelining, HEAD, errors."""

from __future__ import annotations

import email.utils
import logging
import re
import socket
import threading
import time
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
from unknot.http import App, HTTPError, HTTPServer, Request, Response, serve

pytestmark = pytest.mark.timeout(30)

TEXT = {"content-type": "text/plain"}


def hello(request: Request) -> Any:
    return 200, TEXT, b"Hello, world!"


def echo_info(request: Request) -> Any:
    """The request as the handler sees it, as text."""
    info = [
        request.method,
        request.target.decode(),
        request.path,
        request.http_version,
        request.scheme,
        repr(request.client),
        request.headers.get("x-test", "-"),
        request.body().decode(),
    ]
    return 200, TEXT, "|".join(info)


# -- a request, a response -------------------------------------------------------------------


def test_hello_world_on_the_wire() -> None:
    with ServerThread(hello) as srv:
        (response,), closed = raw_exchange(srv.port, get("/"))
    assert response.version == "HTTP/1.1"
    assert (response.status, response.reason) == (200, "OK")
    assert response.body == b"Hello, world!"
    assert response.header("content-length") == "13"
    assert response.header("content-type") == "text/plain"
    assert response.header("connection") is None  # HTTP/1.1: keep-alive needs no header
    assert not closed


def test_date_header_is_an_imf_fixdate_of_now() -> None:
    with ServerThread(hello) as srv:
        (response,), _ = raw_exchange(srv.port, get("/"))
    date = response.header("date")
    assert date is not None
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", date)
    sent = email.utils.parsedate_to_datetime(date).timestamp()
    assert abs(sent - time.time()) < 3


def test_the_handler_sees_the_request() -> None:
    with ServerThread(echo_info) as srv:
        with connect(srv.port) as sock:
            sock.sendall(
                b"POST /a%20b/c?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Test: yes\r\n"
                b"Content-Length: 4\r\n\r\nbody"
            )
            response = read_response(sock.makefile("rb"))
            client = sock.getsockname()
    method, target, path, version, scheme, peer, header, body = response.body.decode().split("|")
    assert (method, target, path) == ("POST", "/a%20b/c?x=1&y=2", "/a b/c")
    assert (version, scheme, header, body) == ("1.1", "http", "yes", "body")
    assert peer == repr(client)


def test_an_app_is_a_handler() -> None:
    app = App()

    @app.get("/items/{id:int}")
    def item(request: Request, id: int) -> Response:
        return Response.json({"id": id})

    with ServerThread(app) as srv:
        (found, missing), _ = raw_exchange(srv.port, get("/items/7") + get("/nope"), count=2)
    assert (found.status, found.body) == (200, b'{"id":7}')
    assert found.header("content-type") == "application/json"
    assert missing.status == 404


def test_http_1_0_closes_unless_asked_to_keep_alive() -> None:
    with ServerThread(echo_info) as srv:
        (response,), closed = raw_exchange(srv.port, b"GET /x HTTP/1.0\r\n\r\n")
        assert response.body.split(b"|")[3] == b"1.0"
        assert response.version == "HTTP/1.1"
        assert closed
        request = b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        (first, second), closed = raw_exchange(srv.port, request + request, count=2)
        assert first.header("connection") == "keep-alive"
        assert second.status == 200
        assert not closed


def test_connection_close_from_the_client_is_honoured() -> None:
    with ServerThread(hello) as srv:
        (response,), closed = raw_exchange(srv.port, get("/", extra="Connection: close\r\n"))
    assert response.status == 200
    assert response.closes
    assert closed


def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    count = 0

    def counting(request: Request) -> Any:
        nonlocal count
        count += 1
        return 200, None, str(count).encode()

    with ServerThread(counting) as srv:
        with connect(srv.port) as sock:
            f = sock.makefile("rb")
            for i in range(1, 10_001):
                sock.sendall(get("/"))
                response = read_response(f)
                assert response.status == 200
                assert response.body == str(i).encode()
        assert srv.connections <= 1
    assert count == 10_000


def test_pipelined_requests_are_answered_in_order() -> None:
    delays = {"/slow": 0.2, "/fast": 0.0, "/medium": 0.05}

    def sleepy(request: Request) -> Any:
        unknot.sleep(delays.get(request.path, 0.0))
        return 200, None, request.path.encode() + b":" + request.body()

    requests = (
        get("/slow")
        + b"POST /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        + get("/medium")
        + b"POST /fast HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"2\r\nxy\r\n0\r\n\r\n"
        + get("/none")
    )
    with ServerThread(sleepy) as srv:
        responses, closed = raw_exchange(srv.port, requests, count=5)
    bodies = [r.body for r in responses]
    assert bodies == [b"/slow:", b"/fast:abc", b"/medium:", b"/fast:xy", b"/none:"]
    assert not closed


def test_many_pipelined_requests_in_one_write() -> None:
    with ServerThread(echo_info) as srv:
        requests = b"".join(get(f"/{i}") for i in range(300))
        responses, _ = raw_exchange(srv.port, requests, count=300)
    assert [r.body.split(b"|")[2] for r in responses] == [f"/{i}".encode() for i in range(300)]


# -- HEAD, 204, 304 --------------------------------------------------------------------------


def test_head_gets_the_headers_of_get_without_the_body() -> None:
    app = App()

    @app.get("/")
    def index(request: Request) -> Any:
        return 200, TEXT, b"x" * 1234

    with ServerThread(app) as srv:
        head = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
        with connect(srv.port) as sock:
            sock.sendall(head + get("/"))
            f = sock.makefile("rb")
            response = read_response(f, "HEAD")
            after = read_response(f)  # parses only if the HEAD answer had no body
    assert response.status == 200
    assert response.header("content-length") == "1234"
    assert after.body == b"x" * 1234


def test_head_of_a_streamed_body_does_not_iterate_it() -> None:
    iterated = threading.Event()
    closed = threading.Event()

    def streaming(request: Request) -> Any:
        def chunks() -> Any:
            try:
                iterated.set()
                yield b"data"
            finally:
                closed.set()

        body = chunks()
        if request.method == "HEAD":
            next(body, None)  # started: close() runs its finally
            iterated.clear()
        return 200, TEXT, body

    with ServerThread(streaming) as srv:
        (response,), _ = raw_exchange(srv.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD")
    assert response.status == 200
    assert response.header("content-length") is None
    assert not iterated.is_set()
    assert closed.is_set()


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    def empty(request: Request) -> Any:
        return status, {"etag": '"1"'}, b""

    with ServerThread(empty) as srv:
        (response, after), _ = raw_exchange(srv.port, get("/") + get("/"), count=2)
    assert response.status == status
    assert response.header("content-length") is None
    assert response.header("etag") == '"1"'
    assert after.status == status  # no body bytes between the two answers


# -- errors ----------------------------------------------------------------------------------


def test_handler_exception_gives_500_is_logged_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(request: Request) -> Any:
        if request.path == "/boom":
            raise ZeroDivisionError("the handler broke")
        return 200, None, b"fine"

    with caplog.at_level(logging.ERROR, logger="unknot.http"):
        with ServerThread(broken) as srv:
            (failed, fine), closed = raw_exchange(srv.port, get("/boom") + get("/"), count=2)
            (again,), _ = raw_exchange(srv.port, get("/"))
    assert failed.status == 500
    assert b"Internal Server Error" in failed.body
    assert (fine.status, fine.body) == (200, b"fine")  # the same connection goes on
    assert not closed
    assert again.status == 200
    records = [r for r in caplog.records if r.name == "unknot.http"]
    assert len(records) == 1
    assert "GET /boom" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is ZeroDivisionError


@pytest.mark.parametrize(
    "result",
    [
        "not a triple",
        (200, None, {"a": 1}),
        (204, None, b"a body on a 204"),
        (200, {"bad name": "x"}, b""),
        (200, {"x": "a\r\nb"}, b""),
        (99, None, b""),
    ],
    ids=["not-a-triple", "dict-body", "204-with-body", "bad-name", "header-injection", "status"],
)
def test_a_bad_answer_gives_500(result: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="unknot.http"):
        with ServerThread(lambda request: result) as srv:
            (response,), _ = raw_exchange(srv.port, get("/"))
    assert response.status == 500
    assert b"\r\nb" not in response.body
    assert response.header("x") is None
    assert any(r.name == "unknot.http" for r in caplog.records)


def test_http_error_from_a_plain_handler_gives_its_status() -> None:
    def refusing(request: Request) -> Any:
        raise HTTPError(418, "no coffee", headers={"x-why": "teapot"})

    with ServerThread(refusing) as srv:
        (response,), _ = raw_exchange(srv.port, get("/"))
    assert (response.status, response.body) == (418, b"no coffee\n")
    assert response.header("x-why") == "teapot"


def test_stream_failing_before_its_first_chunk_gives_500() -> None:
    def failing(request: Request) -> Any:
        def chunks() -> Any:
            raise RuntimeError("no data")
            yield b""  # pragma: no cover

        return 200, None, chunks()

    with ServerThread(failing) as srv:
        (response,), closed = raw_exchange(srv.port, get("/"))
    assert response.status == 500
    assert not closed


def test_stream_failing_midway_drops_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    def failing(request: Request) -> Any:
        def chunks() -> Any:
            yield b"first"
            raise RuntimeError("midway")

        return 200, None, chunks()

    with caplog.at_level(logging.ERROR, logger="unknot.http"):
        with ServerThread(failing) as srv:
            with connect(srv.port) as sock:
                sock.sendall(get("/"))
                data = b""
                try:
                    while chunk := sock.recv(65536):  # until the server ends the connection
                        data += chunk
                    reset = False
                except ConnectionResetError:
                    reset = True
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"5\r\nfirst\r\n" in data
    assert not data.endswith(b"0\r\n\r\n")  # no last chunk: the client sees the cut
    assert reset  # and the connection is reset, not closed (see test_server_review_conn.py)
    assert any("midway" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


# -- stopping --------------------------------------------------------------------------------


def test_stop_closes_idle_connections_and_finishes_requests_under_way() -> None:
    started = threading.Event()

    def slow(request: Request) -> Any:
        if request.path == "/slow":
            started.set()
            unknot.sleep(0.3)
        return 200, None, b"done"

    srv = ServerThread(slow, grace=5.0)
    with srv:
        idle = connect(srv.port)
        idle.sendall(get("/"))
        idle_file = idle.makefile("rb")
        assert read_response(idle_file).status == 200
        busy = connect(srv.port)
        busy.sendall(get("/slow"))
        assert started.wait(5)
        t0 = time.monotonic()
    # (leaving the block stopped the server)
    assert time.monotonic() - t0 < 3
    with idle, busy:
        assert closed_by_server(idle, idle_file)
        response = read_response(busy.makefile("rb"))
        assert (response.status, response.body) == (200, b"done")
        assert response.closes


def test_http_server_in_a_fiber_start_stop_and_context_manager() -> None:
    def main() -> None:
        with HTTPServer(hello, "127.0.0.1", 0) as server:
            server.start()
            assert server.address == ("127.0.0.1", server.port)
            with unknot.socket.create_connection(server.address, timeout=5) as sock:
                sock.sendall(get("/", extra="Connection: close\r\n"))
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")
            assert data.endswith(b"\r\n\r\nHello, world!")
            with pytest.raises(RuntimeError):
                server.start()

    unknot.run(main)


def test_serve_blocks_in_its_fiber_until_cancelled() -> None:
    def main() -> None:
        with unknot.move_on_after(0.3) as scope:
            serve(hello, "127.0.0.1", 0)
        assert scope.cancelled_caught

    unknot.run(main)


# -- many connections ------------------------------------------------------------------------


def test_a_few_hundred_concurrent_connections() -> None:
    clients = 300
    running = 0
    peak = 0
    everyone_in: list[unknot.Event] = []

    def gathering(request: Request) -> Any:
        # Each handler waits until all the clients' first requests are in handlers at once:
        # proof that each connection has a fiber of its own.
        nonlocal running, peak
        if not everyone_in:
            everyone_in.append(unknot.Event())
        running += 1
        peak = max(peak, running)
        try:
            if request.path == "/first":
                if running == clients:
                    everyone_in[0].set()
                everyone_in[0].wait()
            return 200, None, request.path.encode()
        finally:
            running -= 1

    def client(port: int, results: list[bytes]) -> None:
        with unknot.socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            f = sock.makefile("rb")
            for path in ("/first", "/second", "/third"):
                sock.sendall(get(path))
                results.append(read_response(f).body)

    with ServerThread(gathering) as srv:
        results: list[bytes] = []

        def main() -> None:
            with unknot.TaskGroup() as tg:
                for _ in range(clients):
                    tg.spawn(client, srv.port, results)

        unknot.run(main)
        wait_until(lambda: srv.connections == 0)
    assert peak == clients
    assert sorted(results) == sorted([b"/first", b"/second", b"/third"] * clients)


# -- addresses and sockets -------------------------------------------------------------------


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")

    def main() -> None:
        with HTTPServer(echo_info, "::1", 0) as server:
            server.start()
            with unknot.socket.create_connection(("::1", server.port), timeout=5) as sock:
                sock.sendall(get("/six", extra="Connection: close\r\n"))
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
                peer = sock.getsockname()
        assert data.startswith(b"HTTP/1.1 200 OK")
        fields = data.partition(b"\r\n\r\n")[2].decode().split("|")
        assert fields[2] == "/six"
        assert fields[5] == repr(peer)

    unknot.run(main)


def test_serving_on_a_socket_of_ones_own() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def main() -> None:
        with HTTPServer(hello, sock=listener) as server:
            assert server.port == port
            server.start()
            with unknot.socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(get("/", extra="Connection: close\r\n"))
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")

    unknot.run(main)
    assert listener.fileno() == -1  # the server took it over and closed it


def test_an_upgrade_request_is_served_as_plain_http_and_kept_alive() -> None:
    # The server does not switch protocols: it ignores Upgrade (RFC 9110, 7.8), reads the
    # request's body (curl --http2 -d ... over http://) and the requests after it.
    def plain(request: Request) -> Any:
        return 200, None, b"%s got %d bytes" % (request.path.encode(), len(request.body()))

    with ServerThread(plain) as srv:
        upgrade = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n"
        post = get("/form", extra=upgrade + "Content-Length: 7\r\n").replace(b"GET", b"POST", 1)
        ws = get("/ws", extra="Connection: Upgrade\r\nUpgrade: websocket\r\n")
        data = post + b"hello=1" + ws + get("/next")
        responses, closed = raw_exchange(srv.port, data, count=3)
    assert [(r.status, r.body) for r in responses] == [
        (200, b"/form got 7 bytes"),
        (200, b"/ws got 0 bytes"),
        (200, b"/next got 0 bytes"),
    ]
    assert all(r.header("connection") is None for r in responses)
    assert not closed
