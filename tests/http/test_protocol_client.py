"""The client side of the sans-I/O HTTP layer: requests framed, responses parsed
(Content-Length, chunked, read-until-close, HEAD/204/304 without body, 1xx)."""

from __future__ import annotations

import pytest

from unknot.http._protocol import (
    CLOSED,
    DONE,
    ERROR,
    IDLE,
    MUST_CLOSE,
    NEED_DATA,
    PAUSED,
    SEND_BODY,
    SEND_RESPONSE,
    ClientConnection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    Limits,
    LocalProtocolError,
    RemoteProtocolError,
    RequestHead,
    ResponseHead,
    ServerConnection,
)

HOST = [(b"host", b"example.com")]


def drain(conn: ClientConnection | ServerConnection) -> list[Event]:
    out: list[Event] = []
    while True:
        events = conn.next_events()
        if events is NEED_DATA or events is PAUSED:
            return out
        assert isinstance(events, list) and events
        out.extend(events)


def body_of(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Data))


def exchange(response: bytes | list[bytes]) -> tuple[ClientConnection, list[Event]]:
    """A GET answered with ``response`` (fed in the pieces given): the connection, its events."""
    conn = ClientConnection()
    conn.send_request(b"GET", b"/", HOST)
    for piece in [response] if isinstance(response, bytes) else response:
        conn.receive_data(piece)
    return conn, drain(conn)


# -- framing requests -----------------------------------------------------------------------------


def test_get_has_no_content_length() -> None:
    conn = ClientConnection()
    assert conn.send_request(b"GET", b"/index.html?q=1", HOST) == (
        b"GET /index.html?q=1 HTTP/1.1\r\nhost: example.com\r\n\r\n"
    )
    assert (conn.our_state, conn.their_state) == (DONE, SEND_RESPONSE)


def test_post_announces_its_length_even_when_empty() -> None:
    assert (
        ClientConnection().send_request(b"POST", b"/", HOST).endswith(b"content-length: 0\r\n\r\n")
    )
    out = ClientConnection().send_request(b"PUT", b"/x", HOST, b"data")
    assert out == b"PUT /x HTTP/1.1\r\nhost: example.com\r\ncontent-length: 4\r\n\r\ndata"


def test_request_is_parsed_back_by_the_server() -> None:
    client = ClientConnection()
    wire = client.send_request(b"DELETE", b"/item/7", [*HOST, (b"x-a", b"1")], b"why")
    server = ServerConnection()
    server.receive_data(wire)
    events = drain(server)
    head = events[0]
    assert isinstance(head, RequestHead)
    assert (head.method, head.target) == (b"DELETE", b"/item/7")
    assert head.headers == [(b"host", b"example.com"), (b"x-a", b"1"), (b"content-length", b"3")]
    assert body_of(events) == b"why"


def test_chunked_request_with_trailers_round_trips() -> None:
    client = ClientConnection()
    wire = client.start_request(b"POST", b"/upload", HOST)
    assert b"transfer-encoding: chunked\r\n" in wire
    assert client.our_state is SEND_BODY
    wire += client.send_data(b"hello ") + client.send_data(b"") + client.send_data(b"world")
    wire += client.end_request([(b"x-sum", b"11")])
    assert client.our_state is DONE
    server = ServerConnection()
    server.receive_data(wire)
    events = drain(server)
    assert body_of(events) == b"hello world"
    assert events[-1] == EndOfMessage([(b"x-sum", b"11")])


def test_streamed_request_with_length() -> None:
    client = ClientConnection()
    wire = client.start_request(b"PUT", b"/", HOST, content_length=6)
    wire += client.send_data(b"abc") + client.send_data(b"def") + client.end_request()
    server = ServerConnection()
    server.receive_data(wire)
    assert body_of(drain(server)) == b"abcdef"
    client2 = ClientConnection()
    client2.start_request(b"PUT", b"/", HOST, content_length=2)
    with pytest.raises(LocalProtocolError):
        client2.send_data(b"abc")
    assert client2.our_state is ERROR


@pytest.mark.parametrize(
    ("method", "target", "headers", "body"),
    [
        (b"GET", b"/", [], b""),  # no host
        (b"GET", b"/a b", HOST, b""),
        (b"GET", b"/\r\nx", HOST, b""),
        (b"GE T", b"/", HOST, b""),
        (b"", b"/", HOST, b""),
        (b"CONNECT", b"example.com:443", HOST, b""),
        (b"GET", b"/", [*HOST, (b"upgrade", b"websocket"), (b"connection", b"upgrade")], b""),
        (b"POST", b"/", [*HOST, (b"transfer-encoding", b"chunked")], b"x"),
        (b"POST", b"/", [*HOST, (b"content-length", b"5")], b"x"),
        (b"GET", b"/", [*HOST, (b"x", b"a\nb")], b""),
    ],
)
def test_invalid_requests_are_refused(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    conn = ClientConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_request(method, target, headers, body)
    assert conn.our_state is IDLE  # nothing went out


def test_one_request_at_a_time() -> None:
    conn = ClientConnection()
    conn.send_request(b"GET", b"/", HOST)
    with pytest.raises(LocalProtocolError):
        conn.send_request(b"GET", b"/", HOST)


def test_send_event_form() -> None:
    conn = ClientConnection()
    wire = conn.send(RequestHead(b"POST", b"/", [*HOST, (b"content-length", b"2")]))
    wire += conn.send(Data(b"hi")) + conn.send(EndOfMessage())
    assert wire.endswith(b"content-length: 2\r\n\r\nhi")
    with pytest.raises(LocalProtocolError):
        conn.send(ResponseHead(200, []))


# -- parsing responses ----------------------------------------------------------------------------


def test_response_with_content_length_then_the_next_cycle() -> None:
    conn, events = exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: t\r\n\r\nhello")
    assert events == [
        ResponseHead(200, [(b"content-length", b"5"), (b"server", b"t")], b"OK"),
        Data(b"hello"),
        EndOfMessage(),
    ]
    assert (conn.our_state, conn.their_state) == (IDLE, IDLE)
    conn.send_request(b"GET", b"/again", HOST)  # keep-alive: the next request may go


def test_chunked_response_with_trailers_split_anywhere() -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nWiki\r\n5\r\npedia\r\n0\r\nExpires: never\r\n\r\n"
    )
    for cut in range(1, len(wire)):
        _, events = exchange([wire[:cut], wire[cut:]])
        assert body_of(events) == b"Wikipedia"
        assert events[-1] == EndOfMessage([(b"expires", b"never")])


def test_response_without_length_runs_until_the_server_closes() -> None:
    conn, events = exchange([b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome ", b"bytes"])
    head = events[0]
    assert isinstance(head, ResponseHead) and not head.keep_alive
    assert body_of(events) == b"some bytes"
    assert conn.their_state is SEND_BODY
    assert conn.next_events() is NEED_DATA
    conn.receive_data(b"")
    assert conn.next_events() == [EndOfMessage()]
    assert conn.next_events() == [ConnectionClosed()]
    assert (conn.our_state, conn.their_state) == (MUST_CLOSE, CLOSED)


def test_until_close_body_is_bounded_when_asked() -> None:
    conn = ClientConnection(Limits(max_body_size=10))
    conn.send_request(b"GET", b"/", HOST)
    conn.receive_data(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 11)
    with pytest.raises(RemoteProtocolError) as info:
        drain(conn)
    assert info.value.status_hint == 413


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"HTTP/1.1 20",
        b"",
    ],
)
def test_eof_before_the_response_is_complete_is_an_error(partial: bytes) -> None:
    conn = ClientConnection()
    conn.send_request(b"GET", b"/", HOST)
    if partial:
        conn.receive_data(partial)
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        drain(conn)


def test_head_response_has_no_body_whatever_it_announces() -> None:
    conn = ClientConnection()
    conn.send_request(b"HEAD", b"/", HOST)
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    events = drain(conn)
    assert [type(e) for e in events] == [ResponseHead, EndOfMessage]
    assert conn.their_state is IDLE
    # The next exchange on the same connection parses normally.
    conn.send_request(b"GET", b"/", HOST)
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert body_of(drain(conn)) == b"ok"


def test_head_response_split_anywhere_with_an_interim_response() -> None:
    wire = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    for cut in range(1, len(wire)):
        conn = ClientConnection()
        conn.send_request(b"HEAD", b"/", HOST)
        conn.receive_data(wire[:cut])
        conn.receive_data(wire[cut:])
        events = drain(conn)
        assert [type(e) for e in events] == [InformationalResponse, ResponseHead, EndOfMessage]
        head = events[1]
        assert isinstance(head, ResponseHead) and head.keep_alive


def test_head_response_with_connection_close() -> None:
    conn = ClientConnection()
    conn.send_request(b"HEAD", b"/", HOST)
    conn.receive_data(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\n")
    events = drain(conn)
    head = events[0]
    assert isinstance(head, ResponseHead) and not head.keep_alive
    assert conn.our_state is MUST_CLOSE


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(status: int) -> None:
    conn, events = exchange(b"HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\n" % status)
    assert [type(e) for e in events] == [ResponseHead, EndOfMessage]
    assert conn.their_state is IDLE


def test_interim_responses_before_the_final_one() -> None:
    conn = ClientConnection()
    wire = conn.start_request(b"PUT", b"/", [*HOST, (b"expect", b"100-continue")], 4)
    assert b"expect: 100-continue" in wire
    conn.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert conn.next_events() == [InformationalResponse(100, [], b"Continue")]
    assert conn.their_state is SEND_RESPONSE
    conn.send_data(b"body")
    conn.end_request()
    conn.receive_data(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    events = drain(conn)
    assert [type(e) for e in events] == [ResponseHead, EndOfMessage]
    assert conn.our_state is IDLE


def test_early_response_while_the_request_body_is_still_going() -> None:
    conn = ClientConnection()
    conn.start_request(b"POST", b"/", HOST, content_length=1000)
    conn.send_data(b"x" * 10)
    conn.receive_data(b"HTTP/1.1 413 Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    events = drain(conn)
    head = events[0]
    assert isinstance(head, ResponseHead) and head.status == 413
    assert conn.their_state is MUST_CLOSE
    assert conn.our_state is SEND_BODY  # the caller may stop sending and close


@pytest.mark.parametrize(
    ("response", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
    ],
)
def test_response_keep_alive_decisions(response: bytes, keep_alive: bool) -> None:
    conn, events = exchange(response)
    head = events[0]
    assert isinstance(head, ResponseHead) and head.keep_alive is keep_alive
    assert conn.our_state is (IDLE if keep_alive else MUST_CLOSE)


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 1000 Big\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"<html>not http</html>",
    ],
)
def test_malformed_responses_are_remote_errors(response: bytes) -> None:
    conn = ClientConnection()
    conn.send_request(b"GET", b"/", HOST)
    conn.receive_data(response)
    with pytest.raises(RemoteProtocolError):
        drain(conn)
    assert conn.their_state is ERROR
    assert conn.our_state is MUST_CLOSE


def test_response_head_limits() -> None:
    conn = ClientConnection(Limits(max_header_size=200))
    conn.send_request(b"GET", b"/", HOST)
    conn.receive_data(b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * 300 + b"\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        drain(conn)
    assert info.value.status_hint == 431


def test_head_response_head_without_end_is_cut_off() -> None:
    conn = ClientConnection(Limits(max_target_size=100, max_header_size=100))
    conn.send_request(b"HEAD", b"/", HOST)
    conn.receive_data(b"HTTP/1.1 200 OK\r\nX: " + b"v" * 300)
    with pytest.raises(RemoteProtocolError):
        drain(conn)


def test_client_body_size_is_unbounded_by_default() -> None:
    size = 3 * 1024 * 1024
    _, events = exchange(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
    assert len(body_of(events)) == size


def test_server_closing_an_idle_keep_alive_connection() -> None:
    conn, _ = exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    conn.receive_data(b"")
    assert conn.next_events() == [ConnectionClosed()]
    assert (conn.our_state, conn.their_state) == (MUST_CLOSE, CLOSED)
    with pytest.raises(LocalProtocolError):
        conn.send_request(b"GET", b"/", HOST)
