"""What the server needs from the layers below it: the checked-header cache of
`normalize_headers` and `ServerConnection.data_sent` (a body sent with ``sendfile``)."""

from __future__ import annotations

import pytest

from unknot.http import LocalProtocolError, ServerConnection
from unknot.http._headers import normalize_headers
from unknot.http._protocol import NEED_DATA


def test_normalize_headers_cache_gives_the_same_pairs_and_still_refuses() -> None:
    for _ in range(3):  # first checked, then remembered
        assert normalize_headers({"Content-Type": "text/plain", "X-N": 5}) == [
            (b"content-type", b"text/plain"),
            (b"x-n", b"5"),
        ]
        assert normalize_headers([("X-A", b"b"), (b"x-c", "d")]) == [
            (b"x-a", b"b"),
            (b"x-c", b"d"),
        ]
    normalize_headers({"x-one": 1})
    with pytest.raises(TypeError):
        normalize_headers({"x-one": True})  # not taken for the cached 1
    with pytest.raises(ValueError):
        normalize_headers({"x-bad": "a\r\nb"})
    with pytest.raises(ValueError):
        normalize_headers([("bad name", "v")])
    with pytest.raises(TypeError):
        normalize_headers([("only-a-name",)])
    with pytest.raises(TypeError):
        normalize_headers([["x-list", ["unhashable"]]])
    assert normalize_headers([["x-list", "ok"]]) == [(b"x-list", b"ok")]


def answered_with_length(length: int) -> ServerConnection:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_events()
    conn.start_response(200, [], content_length=length)
    return conn


def test_data_sent_counts_bytes_sent_outside_the_connection() -> None:
    conn = answered_with_length(10)
    conn.data_sent(4)
    conn.data_sent(6)
    assert conn.end_response() == b""
    conn.receive_data(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection goes on
    assert conn.next_events() is not NEED_DATA


def test_data_sent_refuses_too_much_and_leaves_short_bodies_unfinished() -> None:
    conn = answered_with_length(10)
    with pytest.raises(LocalProtocolError):
        conn.data_sent(11)
    conn = answered_with_length(10)
    conn.data_sent(9)
    with pytest.raises(LocalProtocolError):
        conn.end_response()


def test_data_sent_needs_a_body_framed_by_its_length() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_events()
    with pytest.raises(LocalProtocolError):
        conn.data_sent(1)  # no response started
    conn.start_response(200, [])  # chunked
    with pytest.raises(LocalProtocolError):
        conn.data_sent(1)
