"""A response sent from IDLE (no request being answered: a 408, a 400 for garbage) ends the
connection: a request that arrives afterwards is refused (``RemoteProtocolError``), never
handed out as a new request the server could no longer answer."""

from __future__ import annotations

import pytest

from unknot.http._protocol import (
    ERROR,
    IDLE,
    MUST_CLOSE,
    NEED_DATA,
    SEND_BODY,
    ConnectionClosed,
    LocalProtocolError,
    RemoteProtocolError,
    RequestHead,
    ResponseHead,
    ServerConnection,
)
from unknot.http._protocol._state import CLIENT, SERVER, ConnectionState

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"


def idle_answered(how: str) -> ServerConnection:
    """A server connection that answered 408 without a request, whole or streamed."""
    conn = ServerConnection()
    if how == "whole":
        assert b"connection: close" in conn.send_response(408, [], b"too slow")
        assert conn.our_state is MUST_CLOSE
    elif how == "streamed":
        conn.start_response(408, [(b"content-length", b"8")])
        assert conn.our_state is SEND_BODY
    else:  # the whole response, streamed to its end
        conn.start_response(408, [(b"content-length", b"8")])
        conn.send_data(b"too slow")
        conn.end_response()
        assert conn.our_state is MUST_CLOSE
    assert not conn.keep_alive
    return conn


@pytest.mark.parametrize("how", ["whole", "streamed", "streamed-ended"])
@pytest.mark.parametrize("request_bytes", [GET, POST], ids=["GET", "POST"])
def test_a_request_after_a_response_from_idle_is_not_handed_out(
    how: str, request_bytes: bytes
) -> None:
    conn = idle_answered(how)
    conn.receive_data(request_bytes)
    with pytest.raises(RemoteProtocolError, match="without a request"):
        conn.next_events()
    assert conn.their_state is ERROR
    with pytest.raises(RemoteProtocolError):  # and again: it never becomes a request
        conn.next_events()


@pytest.mark.parametrize("how", ["whole", "streamed-ended"])
def test_one_event_at_a_time_refuses_it_too(how: str) -> None:
    conn = idle_answered(how)
    conn.receive_data(GET)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_the_client_closing_after_it_is_still_seen() -> None:
    conn = idle_answered("whole")
    assert conn.next_events() is NEED_DATA
    conn.receive_data(b"")
    events = conn.next_events()
    assert isinstance(events, list) and isinstance(events[0], ConnectionClosed)


def test_the_state_machine_refuses_the_request_and_changes_nothing() -> None:
    state = ConnectionState()
    state.process_message(SERVER, ResponseHead(408, []))
    before = (list(state.states), state.keep_alive)
    with pytest.raises(LocalProtocolError, match="without a request"):
        state.process_message(CLIENT, RequestHead(b"GET", b"/", []))
    assert (state.states, state.keep_alive) == before
    assert state.states == [IDLE, MUST_CLOSE]  # (the client sent nothing yet)


def test_an_ordinary_cycle_still_goes_on() -> None:
    conn = ServerConnection()
    for _ in range(3):
        conn.receive_data(GET)
        events = conn.next_events()
        assert isinstance(events, list) and isinstance(events[0], RequestHead)
        conn.send_response(200, [], b"ok")
        assert conn.our_state is IDLE and conn.their_state is IDLE
