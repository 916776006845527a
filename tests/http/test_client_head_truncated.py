"""A response head cut short by the server's close says so, for a HEAD request as for a GET:
not "server cannot send ConnectionClosed in SEND_RESPONSE" (the state machine's words for a
close it took for one between messages: the bytes of a HEAD's answer are held back until its
blank line, so the reader had not seen a response begin)."""

from __future__ import annotations

import pytest
from client_helpers import raw_server, url_of

from unknot.http._client import Client
from unknot.http._client_errors import RemoteProtocolError
from unknot.http._protocol import (
    ClientConnection,
    InformationalResponse,
    ResponseHead,
)
from unknot.http._protocol import (
    RemoteProtocolError as ProtocolRemoteError,
)

pytestmark = pytest.mark.timeout(30)

CUT_HEADS = [
    b"HTTP/1.1 200 OK\r\nContent-Le",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
    b"HTTP/1.1 2",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",  # after an interim response
]


def closed_after(method: bytes, data: bytes) -> ProtocolRemoteError:
    """The error a client connection gives when the server sends ``data`` and closes."""
    conn = ClientConnection()
    conn.send_request(method, b"/", [(b"host", b"x")])
    conn.receive_data(data)
    conn.receive_data(b"")
    with pytest.raises(ProtocolRemoteError) as info:
        for _ in range(3):
            events = conn.next_events()
            assert isinstance(events, list)
            assert all(isinstance(e, InformationalResponse) for e in events)
    return info.value


@pytest.mark.parametrize("data", CUT_HEADS)
@pytest.mark.parametrize("method", [b"HEAD", b"GET"])
def test_a_cut_head_is_reported_as_such(method: bytes, data: bytes) -> None:
    error = closed_after(method, data)
    assert str(error) == "connection closed in the middle of a response head"


def test_a_cut_body_is_reported_as_such() -> None:
    conn = ClientConnection()
    conn.send_request(b"GET", b"/", [(b"host", b"x")])
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    conn.receive_data(b"")
    events = conn.next_events()
    assert isinstance(events, list) and isinstance(events[0], ResponseHead)
    with pytest.raises(ProtocolRemoteError, match="in the middle of a response body"):
        conn.next_events()


def test_garbage_before_the_close_is_malformed() -> None:
    error = closed_after(b"HEAD", b"garbage\x00\r\n")
    assert str(error).startswith("malformed response")


def test_a_head_answer_that_is_complete_still_works() -> None:
    conn = ClientConnection()
    conn.send_request(b"HEAD", b"/", [(b"host", b"x")])
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    conn.receive_data(b"")
    events = conn.next_events()
    assert isinstance(events, list) and isinstance(events[0], ResponseHead)
    assert events[0].status == 200 and len(events) == 2


@pytest.mark.unknot
@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_the_client_says_the_head_was_cut(method: str) -> None:
    with raw_server([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"]) as tcp, Client() as client:
        with pytest.raises(RemoteProtocolError) as info:
            client.request(method, url_of(tcp))
    assert str(info.value) == "connection closed in the middle of a response head"
