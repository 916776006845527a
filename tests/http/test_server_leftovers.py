"""Three defects left over from the reviews, and their relatives: the head of a streamed answer
says ``Connection: close`` whenever the connection closes after it (an unread request body,
``stop``); a pipelined head of which only the method has arrived is a request under way, not an
idle connection; a status out of range is the same error on every path."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import (
    RawResponse,
    ServerThread,
    closed_by_server,
    connect,
    get,
    raw_exchange,
    read_response,
    wait_until,
)

import unknot
from unknot.http import (
    NEED_DATA,
    FileBody,
    HTTPError,
    HTTPServer,
    LocalProtocolError,
    Request,
    Response,
    ServerConnection,
    Timeouts,
)

pytestmark = pytest.mark.timeout(30)


def post(size: int, path: str = "/", extra: bytes = b"") -> bytes:
    """The head of a POST whose body has ``size`` bytes (Content-Length)."""
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n" % (
        path.encode(),
        size,
        extra,
    )


def exchange(port: int, data: bytes, method: str = "GET") -> RawResponse:
    """Send ``data`` on a new connection and read one response (as `raw_exchange`, without
    waiting to see whether the connection closes)."""
    with connect(port) as sock:
        sock.sendall(data)
        with sock.makefile("rb") as f:
            return read_response(f, method)


def server_of(srv: ServerThread) -> HTTPServer:
    server = srv.server
    assert server is not None
    return server


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send ``data`` from a thread (the server may answer before reading all of it)."""

    def send() -> None:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server closed the connection without reading everything: its right

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


# -- 1. a streamed answer to a request whose body will not be drained ---------------------------


def stream_not_reading(request: Request) -> Any:
    def rows() -> Iterator[bytes]:
        yield b"row 1\n"
        yield b"row 2\n"

    return 200, {"content-type": "text/plain"}, rows()


def test_a_stream_ignoring_a_big_body_says_connection_close() -> None:
    with ServerThread(stream_not_reading) as srv:
        body = b"x" * 500_000
        with connect(srv.port) as sock:
            sock.sendall(post(len(body)))
            sender = send_in_background(sock, body)
            f = sock.makefile("rb")
            response = read_response(f)
            assert response.body == b"row 1\nrow 2\n"
            assert response.closes  # said in the head...
            assert closed_by_server(sock, f, 5)  # ...and done
            sender.join(5)
            f.close()


def test_a_stream_ignoring_a_chunked_body_not_received_says_connection_close() -> None:
    with ServerThread(stream_not_reading) as srv:
        with connect(srv.port) as sock:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
            )
            f = sock.makefile("rb")
            response = read_response(f)
            assert response.body == b"row 1\nrow 2\n" and response.closes
            assert closed_by_server(sock, f, 5)
            f.close()


def test_a_stream_ignoring_a_small_body_still_keeps_the_connection() -> None:
    with ServerThread(stream_not_reading) as srv:
        body = b"x" * 30_000
        (first, second), closed = raw_exchange(srv.port, post(len(body)) + body + get(), count=2)
    assert first.body == second.body == b"row 1\nrow 2\n"
    assert not first.closes and not second.closes and not closed


def test_a_stream_reading_part_of_a_big_body_keeps_the_connection_it_promised() -> None:
    # The head goes out after the first chunk, once the handler has begun reading the body: it
    # says keep-alive, so the rest (more than the 64 KiB dropped otherwise) is read and dropped
    # after the answer, and the connection goes on as the head said.
    def sniffing(request: Request) -> Any:
        magic = b""
        for _ in range(4):  # (read returns what has come: maybe less than asked)
            magic += request.read(4 - len(magic))

        def rows() -> Iterator[bytes]:
            yield b"type " + magic

        return 200, None, rows()

    with ServerThread(sniffing) as srv:
        body = b"GIF8" + b"x" * 300_000
        with connect(srv.port) as sock:
            sock.sendall(post(len(body)))
            sender = send_in_background(sock, body)
            f = sock.makefile("rb")
            response = read_response(f)
            assert response.body == b"type GIF8" and not response.closes
            sender.join(5)
            sock.sendall(get("/again"))
            assert read_response(f).body == b"type "
            f.close()


def test_a_stream_that_reads_the_body_only_after_its_head_says_close() -> None:
    # When the head goes out the handler has not touched the body, more than 64 KiB of which is
    # still to come: the server cannot know it will be read, so the head says close (and the
    # connection closes, although the iterable did read it all in the end).
    def late_echo(request: Request) -> Any:
        def rows() -> Iterator[bytes]:
            yield b"echo:"
            yield from request.stream()

        return 200, None, rows()

    with ServerThread(late_echo) as srv:
        body = b"e" * 200_000
        with connect(srv.port) as sock:
            sock.sendall(post(len(body)))
            sender = send_in_background(sock, body)
            f = sock.makefile("rb")
            response = read_response(f)
            sender.join(5)
            assert response.body == b"echo:" + body
            assert response.closes and closed_by_server(sock, f, 5)
            f.close()


@pytest.mark.parametrize(
    ("method", "status"), [("POST", 204), ("POST", 304), ("HEAD", 200)], ids=str
)
def test_a_bodiless_stream_answer_to_a_big_unread_body_says_connection_close(
    method: str, status: int
) -> None:
    # The iterable is not iterated (no body to send): nobody reads the request body.
    def handler(request: Request) -> Any:
        def rows() -> Iterator[bytes]:
            yield b"never sent"

        return status, None, rows()

    with ServerThread(handler) as srv:
        body = b"x" * 200_000
        request = post(len(body)).replace(b"POST", method.encode(), 1)
        with connect(srv.port) as sock:
            sock.sendall(request)
            sender = send_in_background(sock, body)
            f = sock.makefile("rb")
            response = read_response(f, method)
            assert response.status == status
            assert response.closes and closed_by_server(sock, f, 5)
            sender.join(5)
            f.close()


# -- relatives: stop() before the head is written ------------------------------------------------


def test_a_stream_whose_head_goes_out_after_stop_says_connection_close() -> None:
    started = threading.Event()
    srv: ServerThread

    def slow_first_chunk(request: Request) -> Any:
        def rows() -> Iterator[bytes]:
            started.set()
            settings = server_of(srv)._settings
            for _ in range(500):  # until stop() has begun (bounded: 5 s)
                if settings.closing:
                    break
                unknot.sleep(0.01)
            yield b"late"

        return 200, None, rows()

    with ServerThread(slow_first_chunk, grace=5.0) as srv:
        with connect(srv.port) as sock:
            sock.sendall(get())
            assert started.wait(5)
            srv._stop.set()  # the server thread calls stop() now
            f = sock.makefile("rb")
            response = read_response(f)
            assert response.body == b"late"
            assert response.closes and closed_by_server(sock, f, 5)
            f.close()


def test_a_handler_failing_after_stop_gets_a_500_saying_connection_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = threading.Event()
    srv: ServerThread

    def failing_late(request: Request) -> Any:
        started.set()
        settings = server_of(srv)._settings
        for _ in range(500):
            if settings.closing:
                break
            unknot.sleep(0.01)
        raise RuntimeError("boom")

    with caplog.at_level(logging.CRITICAL, logger="unknot.http"):
        with ServerThread(failing_late, grace=5.0) as srv:
            with connect(srv.port) as sock:
                sock.sendall(get())
                assert started.wait(5)
                srv._stop.set()
                f = sock.makefile("rb")
                response = read_response(f)
                assert response.status == 500
                assert response.closes and closed_by_server(sock, f, 5)
                f.close()


# -- 2. a pipelined head of which only the method has come ---------------------------------------


@pytest.mark.parametrize("fragment", [b"G", b"GE", b"\r\nPOS"])
def test_a_method_alone_after_a_request_is_a_request_begun(fragment: bytes) -> None:
    conn = ServerConnection()
    conn.receive_data(get("/a") + fragment)
    events = conn.next_events()
    assert isinstance(events, list) and events[0].target == b"/a"
    conn.send_response(200, [], b"")
    assert conn.next_events() is NEED_DATA
    assert conn.request_begun


def test_empty_lines_after_a_request_are_no_request_begun() -> None:
    # RFC 9112, 2.2: a server ignores empty lines before a request line (old clients sent a CRLF
    # after a POST body): the connection is idle.
    conn = ServerConnection()
    conn.receive_data(get("/a") + b"\r\n\r\n")
    conn.next_events()
    conn.send_response(200, [], b"")
    assert conn.next_events() is NEED_DATA
    assert not conn.request_begun


def test_a_method_alone_on_a_fresh_connection_is_a_request_begun() -> None:
    conn = ServerConnection()
    assert not conn.request_begun
    conn.receive_data(b"GE")
    assert conn.next_events() is NEED_DATA
    assert conn.request_begun


def test_a_method_alone_pipelined_behind_a_request_gets_408_at_the_head_timeout() -> None:
    timeouts = Timeouts(head=0.3, keep_alive=5.0)
    with ServerThread(lambda request: (200, None, b"ok"), timeouts=timeouts) as srv:
        with connect(srv.port) as sock:
            sock.sendall(get() + b"GE")  # ...and never the rest
            f = sock.makefile("rb")
            start = time.monotonic()
            assert read_response(f).body == b"ok"
            late = read_response(f)
            assert late.status == 408 and late.closes
            assert time.monotonic() - start < 3  # the head timeout, not keep_alive
            assert closed_by_server(sock, f, 5)
            f.close()


def test_a_method_alone_pipelined_behind_a_request_gets_the_grace_from_stop() -> None:
    # stop() closes idle connections at once; this one is in the middle of a request: it may
    # finish it, and its answer says close.
    with ServerThread(lambda request: (200, None, request.path), grace=5.0) as srv:
        with connect(srv.port) as sock:
            sock.sendall(get("/first") + b"GE")
            f = sock.makefile("rb")
            assert read_response(f).body == b"/first"
            server = server_of(srv)
            wait_until(lambda: any(c.proto.request_begun for c in server._connections.values()))
            assert not any(c.idle for c in server._connections.values())
            srv._stop.set()
            wait_until(lambda: server._settings.closing)
            sock.sendall(b"T /second HTTP/1.1\r\nHost: x\r\n\r\n")
            response = read_response(f)
            assert response.body == b"/second" and response.closes
            assert closed_by_server(sock, f, 5)
            f.close()


def test_a_method_alone_then_the_end_of_input_is_a_request_cut_short() -> None:
    # As a request cut short anywhere else in its head: 400, where an idle connection closing
    # gets no answer.
    with ServerThread(lambda request: (200, None, b"ok")) as srv:
        with connect(srv.port) as sock:
            sock.sendall(get() + b"GE")
            sock.shutdown(socket.SHUT_WR)
            f = sock.makefile("rb")
            assert read_response(f).body == b"ok"
            cut = read_response(f)
            assert cut.status == 400 and cut.closes
            f.close()


# -- 3. a status out of range: the same error on every path --------------------------------------


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.txt"
    path.write_bytes(b"file contents\n")
    return path


def answers(status: Any, data_file: Path) -> dict[str, Any]:
    """The forms a handler may answer with, each with ``status``."""

    def rows() -> Iterator[bytes]:
        yield b"streamed"

    return {
        "bytes": lambda: (status, None, b"ok"),
        "bytes-dict": lambda: (status, {"x-a": "b"}, b"ok"),
        "bytes-list": lambda: (status, [("x-a", "b")], b"ok"),
        "str": lambda: (status, None, "ok"),
        "none": lambda: (status, None, None),
        "generator": lambda: (status, None, rows()),
        "list": lambda: (status, None, [b"o", b"k"]),
        "file": lambda: (status, None, open(data_file, "rb")),  # noqa: SIM115
        "filebody": lambda: (status, None, FileBody(open(data_file, "rb"))),  # noqa: SIM115
        "response": lambda: Response(status, None, b"ok"),
        "response-text": lambda: Response.text("ok", status=status),
        "response-json": lambda: Response.json({"a": 1}, status=status),
        "response-file": lambda: Response.file(data_file, status=status),
        "http-error": lambda: HTTPError(status),
    }


PATHS = list(answers(0, Path()))
#: The requests: "inline" takes the server's fast path where the answer allows it.
REQUESTS = {
    "inline": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "http-1.0": b"GET / HTTP/1.0\r\n\r\n",
    "body": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
}


def bad_status_records(
    status: Any, request: bytes, options: dict[str, Any], data_file: Path, caplog: Any
) -> dict[str, tuple[Any, ...]]:
    """For every answer form: the server's 500, and the error record it logged, reduced to
    what must not depend on the path (the client's address differs per connection)."""
    forms = answers(status, data_file)
    path_of = {f"/{name}": name for name in forms}

    def handler(req: Request) -> Any:
        result = forms[path_of[req.path]]()
        if isinstance(result, HTTPError):
            raise result
        return result

    seen: dict[str, tuple[Any, ...]] = {}
    with caplog.at_level(logging.ERROR, logger="unknot.http"):
        with ServerThread(handler, **options) as srv:
            for path, name in path_of.items():
                caplog.clear()
                data = request.replace(b"GET / ", b"GET %s " % path.encode())
                data = data.replace(b"POST / ", b"POST %s " % path.encode())
                response = exchange(srv.port, data)
                assert response.status == 500, name
                # (the record is written before the 500 is sent)
                records = [r for r in caplog.records if r.name == "unknot.http"]
                assert len(records) == 1, (name, records)
                record = records[0]
                assert record.exc_info is not None
                exc = record.exc_info[1]
                assert exc is not None
                if name != "http-error":  # (a 1xx HTTPError is refused while it is handled)
                    assert exc.__context__ is None and exc.__cause__ is None, name
                method, target, _client, suffix = record.args  # type: ignore[misc]
                assert target == path
                seen[name] = (record.levelno, record.msg, method, suffix, type(exc), str(exc))
    return seen


@pytest.mark.parametrize("request_kind", list(REQUESTS))
@pytest.mark.parametrize("status", [1000, 99, 0, -200, 10**20, True, False], ids=repr)
def test_a_status_out_of_range_logs_the_same_error_on_every_path(
    status: Any, request_kind: str, data_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    request = REQUESTS[request_kind]
    seen = bad_status_records(status, request, {}, data_file, caplog)
    method = "POST" if request_kind == "body" else "GET"
    expected = (
        logging.ERROR,
        "handler failed for %s %s from %s%s",
        method,
        "",
        TypeError,
        f"the status must be an int from 100 to 999, not {status!r}",
    )
    # (HTTPError refuses the status itself, with the same error: True is not taken for 1.)
    assert seen == dict.fromkeys(PATHS, expected)


def test_a_status_out_of_range_logs_the_same_error_with_an_access_log(
    data_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen = bad_status_records(1000, REQUESTS["inline"], {"access_log": True}, data_file, caplog)
    assert {value[-1] for value in seen.values()} == {
        "the status must be an int from 100 to 999, not 1000"
    }
    assert len(seen) == len(PATHS)


@pytest.mark.parametrize("request_kind", list(REQUESTS))
def test_an_interim_status_logs_the_same_error_on_every_path(
    request_kind: str, data_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 1xx is in range, but no final answer: the protocol layer refuses it when the answer is
    # written, with the same error whatever the form.
    seen = bad_status_records(150, REQUESTS[request_kind], {}, data_file, caplog)
    method = "POST" if request_kind == "body" else "GET"
    expected = (
        logging.ERROR,
        "handler failed for %s %s from %s%s",
        method,
        "",
        LocalProtocolError,
        "status 150 is not a final status (1xx: send_informational)",
    )
    assert seen == dict.fromkeys(PATHS, expected)


@pytest.mark.parametrize("request_kind", list(REQUESTS))
@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"x a": "b"}, ValueError("invalid header name 'x a'")),
        ({"x-a": "b\n"}, ValueError("header 'x-a': control character (CR, LF, NUL...) in 'b\\n'")),
        ({"x-a": 1.5}, TypeError("header 'x-a': values are str, bytes or int, not float")),
    ],
    ids=["name", "value", "type"],
)
def test_a_bad_header_logs_the_same_error_on_every_path(
    headers: dict[str, Any], error: Exception, request_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A relative: the fast path let the protocol layer refuse the header with an error of its
    # own (LocalProtocolError), where every other path has normalize_result's.
    def rows() -> Iterator[bytes]:
        yield b"streamed"

    forms = {
        "/bytes": lambda: (200, headers, b"ok"),
        "/str": lambda: (200, headers, "ok"),
        "/generator": lambda: (200, headers, rows()),
    }
    seen = {}
    with caplog.at_level(logging.ERROR, logger="unknot.http"):
        with ServerThread(lambda request: forms[request.path]()) as srv:
            for path in forms:
                caplog.clear()
                data = REQUESTS[request_kind].replace(b" / ", b" %s " % path.encode(), 1)
                response = exchange(srv.port, data)
                assert response.status == 500
                (record,) = [r for r in caplog.records if r.name == "unknot.http"]
                assert record.exc_info is not None
                exc = record.exc_info[1]
                assert exc is not None and exc.__context__ is None
                seen[path] = (type(exc), str(exc))
    assert seen == dict.fromkeys(forms, (type(error), str(error)))


@pytest.mark.parametrize(
    ("form", "refused"),
    [
        *[(form, "status") for form in ("generator", "file", "filebody", "response-file")],
        # (a Response's headers are checked when it is made, before the file is handed over)
        *[(form, "header") for form in ("generator", "file", "filebody")],
    ],
)
def test_a_body_refused_for_its_status_or_headers_is_closed(
    form: str, refused: str, data_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A body handed over is closed whatever happens: a generator's finally runs, a file is
    # closed, also when the answer is refused before its head (the handler keeps a reference
    # here, so that nothing closes it by reference counting).
    status = 1000 if refused == "status" else 200
    headers = {"x-a": "b\n"} if refused == "header" else None
    kept: list[Any] = []
    finished = threading.Event()

    def rows() -> Iterator[bytes]:
        try:
            yield b"never sent"
        finally:
            finished.set()

    def handler(request: Request) -> Any:
        if form == "generator":
            body: Any = rows()
            next(body, None)  # started: its finally is pending
            kept.append(body)
            return status, headers, body
        if form == "response-file":
            response = Response.file(data_file, status=status)
            kept.append(response.body)
            return response
        file = open(data_file, "rb")  # noqa: SIM115
        kept.append(file)
        return status, headers, file if form == "file" else FileBody(file)

    with caplog.at_level(logging.CRITICAL, logger="unknot.http"):
        with ServerThread(handler) as srv:
            (first, second), _ = raw_exchange(srv.port, get() + get(), count=2)
    assert first.status == second.status == 500
    if form == "generator":
        assert finished.is_set()
    else:
        assert kept and all(
            (item.file if isinstance(item, FileBody) else item).closed for item in kept
        )


def test_statuses_in_range_still_work_on_every_path(data_file: Path) -> None:
    forms = answers(299, data_file)
    path_of = {f"/{name}": name for name in forms}

    def handler(req: Request) -> Any:
        result = forms[path_of[req.path]]()
        if isinstance(result, HTTPError):
            raise result
        return result

    with ServerThread(handler) as srv:
        for path in path_of:
            (response,), closed = raw_exchange(srv.port, get(path))
            assert response.status == 299 and not closed, path
    assert os.path.exists(data_file)
