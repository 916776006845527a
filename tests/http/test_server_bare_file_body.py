"""A handler returning a bare `FileBody` (or a file), not in a triple or a `Response`.

The reference says a handler returns ``(status, headers, body)`` or a `Response`: a bare body
of any kind (bytes, str, a file) is a `TypeError`, answered 500. The file handed over that way
is closed all the same, as the body of any refused answer is, not left open for the garbage
collector. A `FileBody` returned properly is sent and closed.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from server_helpers import ServerThread, raw_exchange

from unknot.http import FileBody, Request, Response
from unknot.http._response import normalize_result

pytestmark = pytest.mark.timeout(30)

CONTENT = b"0123456789"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(CONTENT)
    return path


class Opened:
    """The files a handler opened, with their descriptors (readable after the close)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: list[Any] = []
        self.fds: list[int] = []

    def open(self) -> Any:
        file = open(self.path, "rb")
        self.files.append(file)
        self.fds.append(file.fileno())
        return file

    def assert_all_closed(self) -> None:
        assert self.files
        for file, fd in zip(self.files, self.fds, strict=True):
            assert file.closed
            try:
                st = os.fstat(fd)
            except OSError as exc:
                assert exc.errno == errno.EBADF
            else:  # a descriptor reused since (by the server): not on our file any more
                assert st.st_ino != os.stat(self.path).st_ino


@pytest.mark.parametrize("method", ["GET", "POST"])  # (the inline path, and `answer`'s)
@pytest.mark.parametrize(
    "shape",
    ["bare-filebody", "bare-file", "pair-with-filebody"],
)
def test_a_bare_file_body_gets_500_and_its_file_is_closed(
    data: Path, method: str, shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    opened = Opened(data)

    def handler(request: Request) -> Any:
        if request.method == "POST":
            request.body()
        file = opened.open()
        if shape == "bare-filebody":
            return FileBody(file)
        if shape == "bare-file":
            return file
        return 200, FileBody(file)  # a common slip: the headers forgotten

    body = b"x" if method == "POST" else b""
    request = f"{method} / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    with caplog.at_level(logging.ERROR, logger="unknot.http"):
        with ServerThread(handler) as srv:
            (response,), _ = raw_exchange(srv.port, request.encode() + body)
    assert response.status == 500
    assert any(r.exc_info and r.exc_info[0] is TypeError for r in caplog.records)
    opened.assert_all_closed()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("shape", ["triple", "response"])
def test_a_file_body_returned_properly_is_sent_and_closed(
    data: Path, method: str, shape: str
) -> None:
    opened = Opened(data)

    def handler(request: Request) -> Any:
        body = FileBody(opened.open(), offset=2, count=5)
        return (200, None, body) if shape == "triple" else Response(200, None, body)

    with ServerThread(handler) as srv:
        request = f"{method} / HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        (response,), _ = raw_exchange(srv.port, request, method)
    assert response.status == 200
    assert response.header("content-length") == "5"
    if method == "GET":
        assert response.body == CONTENT[2:7]
    opened.assert_all_closed()


def test_normalize_result_closes_a_bare_file_body_it_refuses(data: Path) -> None:
    file = open(data, "rb")
    with pytest.raises(TypeError, match="FileBody"):
        normalize_result(FileBody(file))
    assert file.closed


def test_normalize_result_leaves_a_refused_non_body_alone() -> None:
    class Closable:
        closed = False

        def close(self) -> None:  # pragma: no cover (must not be called)
            self.closed = True

    thing = Closable()
    with pytest.raises(TypeError):
        normalize_result(thing)
    assert not thing.closed
