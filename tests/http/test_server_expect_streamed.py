"""``Expect: 100-continue`` and an answer streamed from an iterable that reads the request
body after its first chunk: the 100 goes out before the final head (RFC 9110 10.1.1: a client
waiting for it would not send the body once the final answer has begun)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from server_helpers import ServerThread, connect, get, read_head, read_response

from unknot.http import Request, Timeouts

pytestmark = pytest.mark.timeout(30)

EXPECT = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"


def progress(request: Request) -> Any:
    def lines() -> Iterator[bytes]:
        yield b"receiving\n"
        yield b"got %d bytes\n" % len(request.body())

    return 200, None, lines()


def test_a_streamed_answer_reading_the_body_late_gets_it() -> None:
    with ServerThread(progress, timeouts=Timeouts(body=5)) as srv:
        with connect(srv.port) as sock:
            sock.sendall(EXPECT)
            with sock.makefile("rb") as f:
                assert read_head(f).status == 100  # before the final head: the body may come
                sock.sendall(b"hello")
                response = read_response(f)
                assert (response.status, response.body) == (200, b"receiving\ngot 5 bytes\n")
                assert not response.closes  # the body was read: the connection goes on
                sock.sendall(get("/"))
                assert read_response(f).status == 200


def test_a_streamed_answer_not_reading_the_body_still_drains_a_small_one() -> None:
    def ignore(request: Request) -> Any:
        return 200, None, iter([b"a", b"b"])

    with ServerThread(ignore) as srv:
        with connect(srv.port) as sock:
            sock.sendall(EXPECT)
            with sock.makefile("rb") as f:
                assert read_head(f).status == 100
                sock.sendall(b"hello" + get("/next"))
                assert read_response(f).body == b"ab"
                assert read_response(f).body == b"ab"  # the body was dropped, not parsed


def test_no_100_for_a_streamed_answer_when_the_body_came_with_the_head() -> None:
    with ServerThread(progress) as srv:
        with connect(srv.port) as sock:
            sock.sendall(EXPECT + b"hello")
            with sock.makefile("rb") as f:
                assert read_head(f).status == 200  # no 100: the body is there already
                chunks = b"a\r\nreceiving\n\r\nc\r\ngot 5 bytes\n\r\n0\r\n\r\n"
                assert f.read(len(chunks)) == chunks
