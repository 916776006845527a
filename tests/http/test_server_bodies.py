"""The HTTP server's bodies: incremental request bodies, 100-continue, streams and files."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from server_helpers import (
    ServerThread,
    closed_by_server,
    connect,
    get,
    raw_exchange,
    read_head,
    read_response,
    wait_until,
)

import unknot
from unknot.http import FileBody, Limits, Request, Response

pytestmark = pytest.mark.timeout(30)


def echo(request: Request) -> Any:
    return 200, None, request.body()


# -- request bodies --------------------------------------------------------------------------


def test_chunked_upload_is_read_incrementally_in_bounded_memory() -> None:
    total = 16 * 1024 * 1024
    piece = os.urandom(65536)
    first_read = threading.Event()
    peak: list[int] = []

    def counting(request: Request) -> Any:
        tracemalloc.reset_peak()
        received = biggest = 0
        for chunk in request.stream(65536):
            first_read.set()
            received += len(chunk)
            biggest = max(biggest, len(chunk))
        peak.append(tracemalloc.get_traced_memory()[1])
        return 200, None, f"{received} {biggest}".encode()

    tracemalloc.start()
    try:
        with ServerThread(counting, limits=Limits(max_body_size=None)) as srv:
            with connect(srv.port) as sock:
                sock.sendall(b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                sock.sendall(b"10000\r\n" + piece + b"\r\n")
                # The handler has the first piece before the client sends the rest.
                assert first_read.wait(5)
                for _ in range(total // len(piece) - 1):
                    sock.sendall(b"10000\r\n" + piece + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
                response = read_response(sock.makefile("rb"))
    finally:
        tracemalloc.stop()
    received, biggest = map(int, response.body.split())
    assert received == total
    assert biggest <= 65536
    assert peak[0] < 2 * 1024 * 1024, f"{peak[0]} bytes held to stream {total}"


def test_read_gives_at_most_what_is_asked_and_what_is_there() -> None:
    sizes: list[int] = []

    def reader(request: Request) -> Any:
        data = b""
        while chunk := request.read(7):
            sizes.append(len(chunk))
            data += chunk
        return 200, None, data

    body = bytes(range(256)) * 40
    with ServerThread(reader) as srv:
        request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        (response,), _ = raw_exchange(srv.port, request + body)
    assert response.body == body
    assert max(sizes) == 7 and sum(sizes) == len(body)


def test_content_length_and_chunked_bodies_and_trailers() -> None:
    def info(request: Request) -> Any:
        return 200, None, request.body() + b"|" + str(request.content_length).encode()

    with ServerThread(info) as srv:
        (length, chunked), _ = raw_exchange(
            srv.port,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n",
            count=2,
        )
    assert length.body == b"hello|5"
    assert chunked.body == b"abcdefg|None"


def test_json_body() -> None:
    def double(request: Request) -> Any:
        return Response.json({"twice": request.json()["n"] * 2})

    with ServerThread(double) as srv:
        body = b'{"n": 21}'
        request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        (response,), _ = raw_exchange(srv.port, request + body)
    assert response.body == b'{"twice":42}'


def test_expect_100_continue_is_answered_on_the_first_read() -> None:
    with ServerThread(echo) as srv:
        with connect(srv.port) as sock:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            )
            f = sock.makefile("rb")
            interim = read_head(f)  # the client waits for it before sending its body
            assert (interim.status, interim.reason) == (100, "Continue")
            sock.sendall(b"hello")
            response = read_response(f)
            assert (response.status, response.body) == (200, b"hello")
            assert not response.closes
            sock.sendall(get("/"))  # and the connection goes on
            assert read_response(f).status == 200


def test_expect_100_continue_not_sent_when_the_handler_answers_without_reading() -> None:
    def refuse(request: Request) -> Any:
        return 403, None, b"no uploads"

    with ServerThread(refuse) as srv:
        with connect(srv.port) as sock:
            sock.sendall(
                b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            f = sock.makefile("rb")
            response = read_head(f)
            assert response.status == 403  # no 100 first
            assert response.closes  # the body may or may not come: the connection cannot go on
            assert f.read(10) == b"no uploads"
            assert closed_by_server(sock, f)
            f.close()


def test_unread_small_body_is_drained_and_the_connection_goes_on() -> None:
    def ignore(request: Request) -> Any:
        return 200, None, request.path.encode()

    with ServerThread(ignore) as srv:
        body = b"x" * 30000
        request = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        (first, second), closed = raw_exchange(srv.port, request + body + get("/b"), count=2)
    assert (first.body, second.body) == (b"/a", b"/b")
    assert not closed


def test_unread_big_body_closes_the_connection_after_the_answer() -> None:
    def ignore(request: Request) -> Any:
        return 200, None, b"ignored"

    with ServerThread(ignore, limits=Limits(max_body_size=None)) as srv:
        with connect(srv.port) as sock:
            size = 10 * 1024 * 1024
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
            f = sock.makefile("rb")
            sent = 0
            # The client keeps sending while the server answers and stops reading: it still
            # gets the answer (the server lingers instead of resetting the connection).
            sock.settimeout(0.5)
            try:
                while sent < size:
                    sent += sock.send(b"y" * min(65536, size - sent))
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                pass
            sock.settimeout(5)
            response = read_response(f)
            assert (response.status, response.body) == (200, b"ignored")
            assert response.closes or closed_by_server(sock, f)


# -- streamed responses ----------------------------------------------------------------------


def streaming(request: Request) -> Any:
    def chunks() -> Any:
        for i in range(5):
            yield b"piece %d;" % i

    headers = {"content-length": "40"} if request.path == "/sized" else None
    return 200, headers, chunks()


def test_a_generator_is_sent_chunked_to_http_1_1() -> None:
    with ServerThread(streaming) as srv:
        (response, after), closed = raw_exchange(srv.port, get("/") + get("/"), count=2)
    assert response.header("transfer-encoding") == "chunked"
    assert response.body == b"piece 0;piece 1;piece 2;piece 3;piece 4;"
    assert after.body == response.body
    assert not closed


def test_a_generator_is_sent_until_close_to_http_1_0() -> None:
    with ServerThread(streaming) as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            data = sock.makefile("rb").read()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"piece 0;piece 1;piece 2;piece 3;piece 4;"


def test_a_generator_with_a_content_length_is_sent_with_it() -> None:
    with ServerThread(streaming) as srv:
        (response,), _ = raw_exchange(srv.port, get("/sized"))
    assert response.header("content-length") == "40"
    assert response.header("transfer-encoding") is None
    assert len(response.body) == 40


def test_a_list_body_is_joined_with_a_content_length() -> None:
    with ServerThread(lambda request: (200, None, [b"ab", bytearray(b"cd"), b"ef"])) as srv:
        (response,), _ = raw_exchange(srv.port, get("/"))
    assert response.header("content-length") == "6"
    assert response.body == b"abcdef"


def test_generator_is_closed_when_the_client_goes_away() -> None:
    closed = threading.Event()
    yielded = 0

    def endless(request: Request) -> Any:
        def chunks() -> Any:
            nonlocal yielded
            try:
                while True:
                    yielded += 1
                    yield b"z" * 65536
                    unknot.sleep(0.001)
            finally:
                closed.set()

        return 200, None, chunks()

    with ServerThread(endless) as srv:
        sock = connect(srv.port)
        sock.sendall(get("/"))
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 OK")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset: the server's next write fails
        assert closed.wait(5)
        wait_until(lambda: srv.connections == 0)
        (response,), _ = raw_exchange(srv.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD")
        assert response.status == 200
    assert yielded >= 1


# -- files -----------------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(300_000))
    return path


def test_a_file_goes_out_with_sendfile_and_is_closed(
    data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_sendfile = os.sendfile

    def spy(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        calls.append(count)
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", spy)
    files: list[Any] = []

    def serve_file(request: Request) -> Any:
        f = open(data_file, "rb")  # noqa: SIM115 (the server closes it)
        files.append(f)
        if request.path == "/part":
            return 206, None, FileBody(f, 1000, 5000)
        return Response.file(f)

    with ServerThread(serve_file) as srv:
        (whole, part), _ = raw_exchange(srv.port, get("/") + get("/part"), count=2)
        (head,), _ = raw_exchange(srv.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD")
        wait_until(lambda: all(f.closed for f in files))
    content = data_file.read_bytes()
    assert whole.body == content
    assert whole.header("content-length") == str(len(content))
    assert part.body == content[1000:6000]
    assert head.header("content-length") == str(len(content))
    assert calls, "os.sendfile was not used"
    assert len(files) == 3


def test_a_file_is_closed_when_the_client_goes_away(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * (32 * 1024 * 1024))
    files: list[Any] = []

    def serve_file(request: Request) -> Any:
        f = open(big, "rb")  # noqa: SIM115 (the server closes it)
        files.append(f)
        return 200, None, f

    with ServerThread(serve_file) as srv:
        sock = connect(srv.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(get("/"))
        assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        wait_until(lambda: files and files[0].closed)
        wait_until(lambda: srv.connections == 0)


def test_a_file_that_shrank_drops_the_connection(tmp_path: Path) -> None:
    path = tmp_path / "shrinking.bin"
    path.write_bytes(b"s" * 1000)

    def lying(request: Request) -> Any:
        return 200, None, FileBody(open(path, "rb"), 0, 5000)  # noqa: SIM115

    with ServerThread(lying) as srv:
        with connect(srv.port) as sock:
            sock.sendall(get("/"))
            f = sock.makefile("rb")
            head = read_head(f)
            assert head.header("content-length") == "5000"
            start = time.monotonic()
            body = b""
            try:
                while chunk := f.read1(65536):  # the server ends after what the file has
                    body += chunk
                reset = False
            except ConnectionResetError:
                reset = True  # (a reset, not a close: see test_server_review_conn.py)
            assert time.monotonic() - start < 1
            f.close()
    assert body == b"s" * 1000
    assert reset
