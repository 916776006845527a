"""File objects without a regular file behind them as bodies: `Response.file` takes them, and
the server closes them whatever the answer (HEAD, 204 and 304 included)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from server_helpers import ServerThread, raw_exchange

from unknot.http import Request, Response

pytestmark = pytest.mark.timeout(30)


def test_response_file_takes_a_binary_file_object_without_a_descriptor() -> None:
    def handler(request: Request) -> Any:
        buffer = io.BytesIO(b"skip" + b"a,b\n1,2\n")
        buffer.read(4)  # sent from its current position
        return Response.file(buffer, filename="report.csv")

    with ServerThread(handler) as srv:
        (get,), _ = raw_exchange(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        (head,), _ = raw_exchange(srv.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD")
    assert (get.status, get.body) == (200, b"a,b\n1,2\n")
    # The length is known (a seekable file), and the type guessed from the file name given.
    assert get.header("content-length") == head.header("content-length") == "8"
    assert get.header("content-type") == "text/csv; charset=utf-8"
    assert get.header("content-disposition") == 'attachment; filename="report.csv"'


def test_response_file_with_an_unseekable_file_object_streams_it() -> None:
    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.parts = [b"one ", b"two"]

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return self.parts.pop(0) if self.parts else b""

    def handler(request: Request) -> Any:
        return Response.file(Pipe(), content_type="text/plain")

    with ServerThread(handler) as srv:
        (response,), _ = raw_exchange(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (response.status, response.body) == (200, b"one two")
    assert response.header("transfer-encoding") == "chunked"


@pytest.mark.parametrize(
    ("method", "status"), [("GET", 200), ("HEAD", 200), ("GET", 304), ("GET", 204)]
)
def test_a_file_object_body_is_closed_whatever_the_answer(method: str, status: int) -> None:
    files: list[io.BytesIO] = []

    def handler(request: Request) -> Any:
        files.append(io.BytesIO(b"data"))
        return status, None, files[-1]

    with ServerThread(handler) as srv:
        request = f"{method} / HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        (response,), _ = raw_exchange(srv.port, request, method)
    assert response.status == status
    assert files[0].closed  # not left for the garbage collector, unread


@pytest.mark.parametrize("make", [lambda p: open(p), lambda p: io.StringIO("text")])
def test_response_file_refuses_a_text_mode_file_and_closes_it(tmp_path: Path, make: Any) -> None:
    # As a text-mode file returned in a (status, headers, body) triple is: before, an open()
    # in text mode went out as raw bytes, and a StringIO failed later as a 500.
    path = tmp_path / "a.txt"
    path.write_text("hello")
    file = make(path)
    with pytest.raises(TypeError, match="binary mode"):
        Response.file(file)
    assert file.closed
