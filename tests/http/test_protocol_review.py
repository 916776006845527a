"""Regressions from a review of the sans-I/O HTTP layer: an ignored Upgrade (served as plain
HTTP/1.1, body included, kept alive), unsupported HTTP versions (505, not 400), the server's
own Connection header (a handler's keep-alive token does not outlive a close), close taking
precedence over keep-alive in HTTP/1.0, and the client's "response head too large"."""

from __future__ import annotations

import pytest
from server_helpers import drain

from unknot.http._protocol import (
    ERROR,
    IDLE,
    MUST_CLOSE,
    NEED_DATA,
    ClientConnection,
    Data,
    EndOfMessage,
    Limits,
    RemoteProtocolError,
    RequestHead,
    ServerConnection,
)

NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
H2C = (
    b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
)
WEBSOCKET = b"Upgrade: websocket\r\nConnection: Upgrade\r\n"


def serve(data: bytes | list[bytes]) -> list[tuple[RequestHead, bytes]]:
    """Feed ``data`` (in the pieces given, then EOF) to a server that answers every request
    with 200: each request's head and body, in order. Stops at the first closing answer."""
    conn = ServerConnection()
    pieces = [data] if isinstance(data, bytes) else list(data)
    pieces = [piece for piece in pieces if piece] + [b""]
    served: list[tuple[RequestHead, bytes]] = []
    head: RequestHead | None = None
    body = b""
    while True:
        events = conn.next_events()
        if events is NEED_DATA:
            if not pieces:
                return served
            conn.receive_data(pieces.pop(0))
            continue
        assert isinstance(events, list), events
        for event in events:
            if isinstance(event, RequestHead):
                head, body = event, b""
            elif isinstance(event, Data):
                body += event.data
            elif isinstance(event, EndOfMessage):
                assert head is not None
                served.append((head, body))
                conn.send_response(200, [], b"ok")
                if not conn.keep_alive:
                    return served
            else:  # ConnectionClosed
                return served


def split_everywhere(data: bytes) -> list[list[bytes]]:
    return [[data]] + [[data[:i], data[i:]] for i in range(1, len(data))]


def connection_lines(response: bytes) -> list[bytes]:
    """The ``connection`` lines of a response's head, as written."""
    lines = response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    return [line for line in lines if line.lower().startswith(b"connection:")]


# -- 1. an Upgrade the server does not perform is ignored (RFC 9110, 7.8) --------------------------


@pytest.mark.parametrize(
    ("framing", "body", "content"),
    [
        (b"Content-Length: 7\r\n", b"hello=1", b"hello=1"),
        (b"Transfer-Encoding: chunked\r\n", b"3\r\nhel\r\n4\r\nlo=1\r\n0\r\n\r\n", b"hello=1"),
        (b"Transfer-Encoding: chunked\r\n", b"7\r\nhello=1\r\n0\r\nX-T: 1\r\n\r\n", b"hello=1"),
    ],
)
def test_upgrade_request_with_a_body_is_served_as_plain_http(
    framing: bytes, body: bytes, content: bytes
) -> None:
    # What `curl --http2 -d hello=1 http://...` sends: the body is the request's, the next
    # request is read after it, on the same connection.
    data = b"POST /submit HTTP/1.1\r\nHost: x\r\n" + H2C + framing + b"\r\n" + body + NEXT
    for pieces in split_everywhere(data):
        served = serve(pieces)
        expected = [(b"/submit", content), (b"/next", b"")]
        assert [(h.target, b) for h, b in served] == expected, pieces
        head = served[0][0]
        assert head.keep_alive and not head.upgrade
        assert (b"upgrade", b"h2c") in head.headers  # the handler still sees what was offered


def test_upgrade_request_body_is_never_read_as_a_request() -> None:
    # llhttp skips the body of an upgrade request: read on with the same parser, a body that
    # looks like a request would be answered as one.
    inner = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    data = b"POST / HTTP/1.1\r\nHost: x\r\n" + WEBSOCKET
    data += b"Content-Length: %d\r\n\r\n" % len(inner)
    for pieces in split_everywhere(data + inner + NEXT):
        served = serve(pieces)
        assert [(h.target, b) for h, b in served] == [(b"/", inner), (b"/next", b"")], pieces


def test_upgrade_request_without_body_keeps_the_connection() -> None:
    data = b"GET /chat HTTP/1.1\r\nHost: x\r\n" + WEBSOCKET + b"\r\n" + NEXT
    for pieces in split_everywhere(data):
        served = serve(pieces)
        assert [h.target for h, _ in served] == [b"/chat", b"/next"], pieces
    conn = ServerConnection()
    conn.receive_data(data)
    head, end = conn.next_events()  # type: ignore[misc]
    assert isinstance(head, RequestHead) and head.keep_alive and not head.upgrade
    response = conn.send_response(426, [(b"upgrade", b"websocket"), (b"connection", b"upgrade")])
    assert b"connection: close" not in response and conn.our_state is IDLE
    assert conn.trailing_data == b""
    assert conn.next_events()[0].target == b"/next"  # type: ignore[index, union-attr]


def test_many_pipelined_upgrades_in_one_read() -> None:
    # Each ignored upgrade hands the rest of the read to a fresh parser: in a loop, not one
    # nested call per upgrade (a read of 64 KiB holds over a thousand).
    one = b"POST /u HTTP/1.1\r\nHost: x\r\n" + WEBSOCKET + b"Content-Length: 1\r\n\r\nx"
    one += b"GET /g HTTP/1.1\r\nHost: x\r\n" + WEBSOCKET + b"\r\n"
    served = serve(one * 1500 + NEXT)
    assert len(served) == 3001 and served[-1][0].target == b"/next"
    assert [b for _, b in served[:4]] == [b"x", b"", b"x", b""]


@pytest.mark.parametrize(
    ("first", "served_targets"),
    [
        # HTTP/1.0 (RFC 9110, 7.8: Upgrade is ignored in HTTP/1.0 anyway): closes after.
        (b"POST / HTTP/1.0\r\n" + WEBSOCKET + b"Content-Length: 2\r\n\r\nab", [b"/"]),
        (
            b"POST / HTTP/1.0\r\nConnection: keep-alive\r\n"
            + WEBSOCKET
            + b"Content-Length: 2\r\n\r\nab",
            [b"/", b"/next"],
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + WEBSOCKET
            + b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
            [b"/"],
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + WEBSOCKET + b"\r\n", [b"/"]),
    ],
)
def test_ignored_upgrade_keeps_the_keep_alive_rules(
    first: bytes, served_targets: list[bytes]
) -> None:
    for pieces in split_everywhere(first + NEXT):
        assert [h.target for h, _ in serve(pieces)] == served_targets, pieces


def test_ignored_upgrade_body_keeps_the_limits() -> None:
    data = b"POST / HTTP/1.1\r\nHost: x\r\n" + H2C + b"Transfer-Encoding: chunked\r\n\r\n"
    conn = ServerConnection(Limits(max_body_size=5))
    conn.receive_data(data + b"4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n" + NEXT)
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(3):
            conn.next_events()
    assert info.value.status_hint == 413
    conn = ServerConnection(Limits(max_body_size=5))
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\n" + H2C + b"Content-Length: 6\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_events()
    assert info.value.status_hint == 413


def test_connect_with_a_body_is_still_refused() -> None:
    conn = ServerConnection()
    conn.receive_data(b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nContent-Length: 2\r\n\r\nab")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_events()
    assert info.value.status_hint == 400


# -- 2. unsupported HTTP versions -----------------------------------------------------------------


@pytest.mark.parametrize("version", [b"1.2", b"1.9", b"2.0", b"3.0", b"9.9", b"0.9", b"0.0"])
def test_well_formed_unsupported_version_is_505(version: bytes) -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.receive_data(b"GET / HTTP/" + version + b"\r\nHost: x\r\n\r\n")
    assert isinstance(conn.next_events()[0], RequestHead)  # type: ignore[index]
    conn.send_response(200)
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_events()
    assert info.value.status_hint == 505
    assert conn.their_state is ERROR


@pytest.mark.parametrize("version", [b"1.x", b"11.1", b"1.12", b"1", b"x.1", b"1.1.1"])
def test_malformed_version_is_400(version: bytes) -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/" + version + b"\r\nHost: x\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_events()
    assert info.value.status_hint == 400


def test_response_with_unsupported_version_is_505_hinted() -> None:
    conn = ClientConnection()
    conn.send_request(b"GET", b"/", [(b"host", b"x")])
    conn.receive_data(b"HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_events()
    assert info.value.status_hint == 505


# -- 3. the server owns the Connection header's keep-alive/close -----------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [(b"connection", b"keep-alive")],
        [(b"Connection", b"Keep-Alive")],
        {"connection": "keep-alive"},
        [(b"connection", b"keep-alive, close")],
    ],
)
def test_handler_keep_alive_is_dropped_when_the_server_closes(headers: object) -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    drain(conn)
    response = conn.send_response(200, headers, b"ab")  # type: ignore[arg-type]
    assert [line.lower() for line in connection_lines(response)] == [b"connection: close"]
    assert conn.our_state is MUST_CLOSE


def test_handler_connection_options_other_than_keep_alive_are_kept() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    drain(conn)
    response = conn.send_response(
        426, [(b"Upgrade", b"websocket"), (b"Connection", b"Keep-Alive, Upgrade")]
    )
    assert connection_lines(response) == [b"Connection: Upgrade", b"connection: close"]


def test_handler_keep_alive_to_http10_is_written_once() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    drain(conn)
    response = conn.send_response(200, {"connection": "keep-alive"}, b"ab")
    assert connection_lines(response) == [b"connection: keep-alive"]
    assert conn.our_state is IDLE


def test_streamed_body_to_http10_keep_alive_client_overrides_a_handler_keep_alive() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    drain(conn)
    head = conn.start_response(200, [(b"connection", b"keep-alive")])
    assert connection_lines(head) == [b"connection: close"]
    assert conn.send_data(b"ab") == b"ab" and conn.end_response() == b""
    assert conn.our_state is MUST_CLOSE


def test_streamed_body_with_handler_keep_alive_when_the_request_closes() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    drain(conn)
    head = conn.start_response(200, [(b"connection", b"keep-alive")])
    assert connection_lines(head) == [b"connection: close"]
    assert b"transfer-encoding: chunked" in head


# -- 4. close takes precedence over keep-alive (RFC 9112, 9.3) -------------------------------------


@pytest.mark.parametrize(
    "connection",
    [
        b"Connection: keep-alive, close\r\n",
        b"Connection: close, Keep-Alive\r\n",
        b"Connection: keep-alive\r\nConnection: close\r\n",
    ],
)
def test_http10_close_wins_over_keep_alive(connection: bytes) -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.0\r\n" + connection + b"\r\n" + NEXT)
    events = conn.next_events()
    assert isinstance(events, list)
    head = events[0]
    assert isinstance(head, RequestHead) and not head.keep_alive
    response = conn.send_response(200, [], b"ok")
    assert b"connection: close\r\n" in response and b"keep-alive" not in response
    assert conn.our_state is MUST_CLOSE
    assert conn.next_events() is NEED_DATA  # the request after it is not parsed


def test_http10_with_chunked_and_keep_alive_parses_nothing_after() -> None:
    # The reader ends the connection where llhttp would read on: nothing after is parsed.
    conn = ServerConnection()
    conn.receive_data(
        b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n0\r\n\r\n" + NEXT
    )
    drain(conn)
    conn.send_response(200, [], b"ok")
    assert conn.our_state is MUST_CLOSE
    assert conn.next_events() is NEED_DATA


# -- 5. the client's reader names its own kind -----------------------------------------------------


def test_endless_response_head_is_a_response_head_too_large() -> None:
    conn = ClientConnection(Limits(max_target_size=100, max_header_size=100))
    conn.send_request(b"GET", b"/", [(b"host", b"x")])
    conn.receive_data(b"HTTP/1.1 200 OK\r\nX: ")
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(100):
            conn.receive_data(b"v" * 100)
            assert conn.next_events() is NEED_DATA
    assert info.value.status_hint == 431
    assert str(info.value) == "response head too large"


def test_endless_request_head_is_a_request_head_too_large() -> None:
    conn = ServerConnection(Limits(max_target_size=100, max_header_size=100))
    conn.receive_data(b"GET / HTTP/1.1\r\nX: ")
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(100):
            conn.receive_data(b"v" * 100)
            assert conn.next_events() is NEED_DATA
    assert str(info.value) == "request head too large"


def test_request_begun_tells_a_head_under_way() -> None:
    conn = ServerConnection()
    assert not conn.request_begun
    conn.receive_data(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HT")
    assert conn.request_begun  # /a is parsed whole, /b begun
    events = conn.next_events()
    assert isinstance(events, list) and events[0].target == b"/a"
    conn.send_response(200, [], b"")
    assert conn.request_begun  # still /b
    conn.receive_data(b"TP/1.1\r\nHost: x\r\n\r\n")
    assert not conn.request_begun  # /b is complete: nothing under way
