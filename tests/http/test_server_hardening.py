"""The HTTP server's hardening: limits turned off, handlers raising BaseExceptions, the access
log of answers cut short, ``stop`` from a handler, charsets, repeated conditional headers,
fragments in the target and invalid Host values."""

from __future__ import annotations

import gzip
import io
import logging
import re
from pathlib import Path
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
import unknot.socket as us
from unknot.http import (
    HTTPError,
    Limits,
    ProtocolError,
    Request,
    ServerConnection,
    StaticFiles,
)

pytestmark = pytest.mark.timeout(30)


def echo_path(request: Request) -> Any:
    return 200, None, f"{request.path}|{request.query_string}"


# -- 1. Limits: None turns a limit off; the fields are checked -------------------------------


@pytest.mark.parametrize(
    ("field", "request_bytes"),
    [
        ("max_target_size", get("/" + "t" * 10_000)),  # over the default 8 KiB
        ("max_header_size", get("/", extra="X-Big: " + "h" * 20_000 + "\r\n")),  # over 16 KiB
        ("max_header_count", get("/", extra="".join(f"X-{i}: v\r\n" for i in range(150)))),
    ],
)
def test_a_limit_set_to_none_is_off(field: str, request_bytes: bytes) -> None:
    with ServerThread(lambda request: (200, None, b"ok"), limits=Limits(**{field: None})) as srv:
        (response,), closed = raw_exchange(srv.port, request_bytes)
        assert (response.status, response.body, closed) == (200, b"ok", False)
        # (and the server goes on)
        (response,), _ = raw_exchange(srv.port, get("/again"))
        assert response.status == 200


def test_every_limit_none_is_accepted_by_the_protocol_layer() -> None:
    off = Limits(
        max_target_size=None, max_header_size=None, max_header_count=None, max_body_size=None
    )
    conn = ServerConnection(off)
    conn.receive_data(get("/" + "a" * 100_000, extra="X-A: " + "b" * 100_000 + "\r\n"))
    head = conn.next_events()[0]  # type: ignore[index]
    assert len(head.target) == 100_001


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_target_size": -1}, ValueError),
        ({"max_header_size": -5}, ValueError),
        ({"max_header_count": -1}, ValueError),
        ({"max_body_size": -1}, ValueError),
        ({"max_target_size": "8k"}, TypeError),
        ({"max_header_size": 1.5}, TypeError),
        ({"max_header_count": True}, TypeError),
        ({"max_body_size": [1]}, TypeError),
    ],
)
def test_limits_refuse_wrong_types_and_negative_numbers(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        Limits(**kwargs)
    assert Limits(max_target_size=0, max_body_size=None).max_target_size == 0


# -- 2. A handler raising a BaseException that is no cancellation ----------------------------


class Custom(BaseException):
    pass


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt, Custom])
def test_a_handler_raising_a_base_exception_is_logged_and_answered_500(
    caplog: pytest.LogCaptureFixture, error: type[BaseException]
) -> None:
    def handler(request: Request) -> Any:
        if request.path == "/raise":
            raise error("out of the handler")
        return 200, None, b"fine"

    with ServerThread(handler) as srv:
        (response,), closed = raw_exchange(srv.port, get("/raise"))
        assert response.status == 500 and response.closes and closed
        # The server goes on.
        (response,), _ = raw_exchange(srv.port, get("/"))
        assert response.body == b"fine"
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "unknot.http" and "GET /raise" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is error


def test_a_stream_raising_system_exit_after_its_head_is_logged_and_reset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(request: Request) -> Any:
        def chunks() -> Any:
            yield b"first"
            raise SystemExit("in the stream")

        return 200, None, chunks()

    with ServerThread(handler) as srv, connect(srv.port) as sock:
        sock.sendall(get("/s"))
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
        except ConnectionResetError:
            pass
        assert received.startswith(b"HTTP/1.1 200 ") and not received.endswith(b"0\r\n\r\n")
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and record.exc_info[0] is SystemExit


@pytest.mark.unknot
def test_a_tcp_handler_raising_a_base_exception_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(conn: us.socket, addr: Any) -> None:
        if conn.recv(10) == b"exit":
            raise SystemExit(3)
        conn.sendall(b"alive")

    with unknot.TCPServer(handler) as server:
        server.start()
        with us.create_connection(server.address, timeout=5) as c:
            c.sendall(b"exit")
            assert c.recv(10) == b""
        with us.create_connection(server.address, timeout=5) as c:
            c.sendall(b"hello")
            assert c.recv(10) == b"alive"  # the server goes on
        server.stop()
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "unknot.server" and "handler for" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is SystemExit


# -- 3. The access log of answers cut short ---------------------------------------------------


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "unknot.http.access"]


def test_the_access_log_has_a_stream_that_failed_after_its_head(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(request: Request) -> Any:
        def chunks() -> Any:
            yield b"first chunk"
            raise RuntimeError("backend died")

        return 200, None, chunks()

    caplog.set_level(logging.INFO, logger="unknot.http.access")
    with ServerThread(handler, access_log="common") as srv, connect(srv.port) as sock:
        sock.sendall(get("/stream"))
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        wait_until(lambda: access_lines(caplog))
    [line] = access_lines(caplog)
    assert line.endswith('"GET /stream HTTP/1.1" 200 11'), line


def test_the_access_log_has_an_answer_the_client_left_in_the_middle_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    size = 8_000_000

    def handler(request: Request) -> Any:
        return 200, None, b"x" * size

    caplog.set_level(logging.INFO, logger="unknot.http.access")
    with ServerThread(handler, access_log="common") as srv:
        with connect(srv.port) as sock:
            sock.sendall(get("/big"))
            assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
        # (closed with unread bytes: a reset, and the server's write fails)
        wait_until(lambda: access_lines(caplog))
        [line] = access_lines(caplog)
        match = re.search(r'"GET /big HTTP/1\.1" 200 (\d+|-)$', line)
        assert match is not None, line
        assert match.group(1) == "-" or int(match.group(1)) < size


# -- 4. stop() from a handler -----------------------------------------------------------------


def test_stop_called_from_a_handler_makes_its_answer_say_close() -> None:
    servers: list[ServerThread] = []

    def handler(request: Request) -> Any:
        assert servers[0].server is not None
        servers[0].server.stop(grace=1)
        return 200, None, b"bye"

    with ServerThread(handler) as srv:
        servers.append(srv)
        (response,), closed = raw_exchange(srv.port, get("/stop"))
        assert response.body == b"bye"
        assert response.closes, response.headers
        assert closed


# -- 5. Request.text() with a codec raising a plain UnicodeError ------------------------------


@pytest.mark.parametrize("charset", ["idna", "punycode"])
def test_text_with_a_codec_raising_unicode_error_is_400(charset: str) -> None:
    body = b"xn--zz" if charset == "idna" else b"a-zz"
    request = Request(
        "POST",
        b"/",
        [(b"content-type", f"text/plain; charset={charset}".encode())],
        body=io.BytesIO(body),
    )
    with pytest.raises(HTTPError) as info:
        request.text()
    assert info.value.status == 400

    with ServerThread(lambda request: (200, None, request.text())) as srv:
        data = (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain; charset=%s\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (charset.encode(), len(body), body)
        )
        (response,), _ = raw_exchange(srv.port, data)
        assert response.status == 400


# -- 6. StaticFiles: list headers over several lines ------------------------------------------


def test_static_files_join_repeated_if_none_match_and_accept_encoding_lines(
    tmp_path: Path,
) -> None:
    (tmp_path / "f.txt").write_bytes(b"data\n" * 100)
    (tmp_path / "f.txt.gz").write_bytes(gzip.compress(b"data\n" * 100))
    with ServerThread(StaticFiles(str(tmp_path))) as srv, connect(srv.port) as sock:
        f = sock.makefile("rb")
        sock.sendall(get("/f.txt"))
        etag = read_response(f).header("etag")
        assert etag is not None
        extra = f'If-None-Match: "other"\r\nIf-None-Match: {etag}\r\n'
        sock.sendall(get("/f.txt", extra=extra))
        assert read_response(f).status == 304
        sock.sendall(get("/f.txt", extra="Accept-Encoding: br\r\nAccept-Encoding: gzip\r\n"))
        response = read_response(f)
        assert response.status == 200 and response.header("content-encoding") == "gzip"
        f.close()


# -- 7. A fragment in the request target ------------------------------------------------------


def test_a_fragment_in_the_target_is_400_and_never_a_query() -> None:
    request = Request("GET", b"/p#frag?admin=1", [])
    assert (request.path, request.query_string, list(request.query.items())) == ("/p", "", [])
    request = Request("GET", b"/p?a=1#frag?admin=1", [])
    assert (request.path, request.query_string) == ("/p", "a=1")

    conn = ServerConnection()
    conn.receive_data(b"GET /p#frag?admin=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ProtocolError) as info:
        conn.next_events()
    assert info.value.status_hint == 400

    with ServerThread(echo_path) as srv:
        for target in ("/p#frag?admin=1", "/p?x=1#f", "/#"):
            (response,), closed = raw_exchange(srv.port, get(target))
            assert (response.status, response.closes, closed) == (400, True, True), target
        (response,), _ = raw_exchange(srv.port, get("/a%23b?x=1"))  # an encoded # is fine
        assert response.body == b"/a#b|x=1"


# -- 8. Host: exactly one, and valid ----------------------------------------------------------


def test_an_invalid_or_repeated_host_is_400() -> None:
    with ServerThread(echo_path) as srv:
        for host in ("a b", "user@host", "host:8o", "a/b", "[::1", "a\\b", "host:80:80"):
            (response,), closed = raw_exchange(srv.port, get("/", host=host))
            assert (response.status, response.closes, closed) == (400, True, True), host
        two = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
        (response,), closed = raw_exchange(srv.port, two)
        assert (response.status, closed) == (400, True)
        http10 = b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n"
        (response,), closed = raw_exchange(srv.port, http10)
        assert (response.status, closed) == (400, True)
        # Valid ones, the empty one included (RFC 9112, 3.2), are served.
        for host in ("", "example.com", "example.com:8080", "[::1]:80", "127.0.0.1", "a%41-b_~"):
            (response,), closed = raw_exchange(srv.port, get("/", host=host))
            assert (response.status, closed) == (200, False), host
        with connect(srv.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: \t spaced  \r\n\r\n")
            f = sock.makefile("rb")
            assert read_response(f).status == 200
            assert not closed_by_server(sock, f, 0.1)
            f.close()


@pytest.mark.parametrize(
    ("keyword", "value", "message"),
    [
        ("limits", {"max_body_size": 10}, "limits must be an unknot.http.Limits, not dict"),
        ("timeouts", 5, "timeouts must be an unknot.http.Timeouts, not int"),
        ("ssl", "cert.pem", "ssl must be an ssl.SSLContext or None, not str"),
    ],
)
def test_wrong_argument_types_are_refused_when_the_server_is_made(
    keyword: str, value: object, message: str
) -> None:
    """Not per connection, where each would fail and be logged on its own."""

    def main() -> None:
        with pytest.raises(TypeError, match=message):
            unknot.http.HTTPServer(lambda request: "hi", port=0, **{keyword: value})

    unknot.run(main)
