"""The server side of the sans-I/O HTTP layer: requests in (parsing, limits, ambiguous
requests, pipelining, keep-alive, 100-continue, upgrades, EOF), responses out (framing)."""

from __future__ import annotations

import pytest

from unknot.http._protocol import (
    CLOSED,
    DEFAULT_LIMITS,
    DONE,
    ERROR,
    IDLE,
    MUST_CLOSE,
    NEED_DATA,
    PAUSED,
    SEND_BODY,
    SEND_RESPONSE,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Limits,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    RequestHead,
    ServerConnection,
)

GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
HOST = b"GET / HTTP/1.1\r\nHost: x\r\n"


def drain(conn: ServerConnection) -> list[Event]:
    """Every event the connection hands out now, until it needs data or pauses."""
    out: list[Event] = []
    while True:
        events = conn.next_events()
        if events is NEED_DATA or events is PAUSED:
            return out
        assert isinstance(events, list) and events
        out.extend(events)


def received(data: bytes | list[bytes], limits: Limits = DEFAULT_LIMITS) -> list[Event]:
    conn = ServerConnection(limits)
    for piece in [data] if isinstance(data, bytes) else data:
        conn.receive_data(piece)
    return drain(conn)


def refused(data: bytes | list[bytes], limits: Limits = DEFAULT_LIMITS) -> RemoteProtocolError:
    """The error the server gets for ``data``; checks that the connection is then unusable."""
    conn = ServerConnection(limits)
    for piece in [data] if isinstance(data, bytes) else data:
        conn.receive_data(piece)
    with pytest.raises(RemoteProtocolError) as info:
        drain(conn)
    assert conn.their_state is ERROR
    assert not conn.keep_alive
    with pytest.raises(RemoteProtocolError):  # and it stays so
        conn.next_events()
    return info.value


def body_of(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Data))


def head_of(response: bytes) -> dict[bytes, bytes]:
    """The header fields of a serialized response (names lowercased)."""
    head = response.split(b"\r\n\r\n", 1)[0]
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b": ")
        fields[name.lower()] = value
    return fields


# -- events ---------------------------------------------------------------------------------------


def test_simple_request_gives_head_and_end_in_one_batch() -> None:
    conn = ServerConnection()
    assert conn.next_events() is NEED_DATA
    conn.receive_data(
        b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-Two: 1\r\nx-two: 2\r\nAccept:  */* \r\n\r\n"
    )
    events = conn.next_events()
    assert events == [
        RequestHead(
            b"GET",
            b"/a?b=c",
            [(b"host", b"x"), (b"x-two", b"1"), (b"x-two", b"2"), (b"accept", b"*/* ")],
        ),
        EndOfMessage(),
    ]
    assert (conn.their_state, conn.our_state) == (DONE, SEND_RESPONSE)


def test_head_split_byte_by_byte_gives_the_same_events() -> None:
    data = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    whole = received(data)
    pieces = received([data[i : i + 1] for i in range(len(data))])
    assert pieces[0] == whole[0]
    assert body_of(pieces) == body_of(whole) == b"hello"
    assert pieces[-1] == whole[-1] == EndOfMessage()


def test_body_events_are_handed_out_as_they_arrive() -> None:
    conn = ServerConnection()
    conn.receive_data(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
    first = conn.next_events()
    assert isinstance(first, list)
    assert [type(e) for e in first] == [RequestHead, Data]
    assert conn.their_state is SEND_BODY
    assert conn.next_events() is NEED_DATA
    conn.receive_data(b"56789")
    assert conn.next_events() == [Data(b"56789"), EndOfMessage()]
    assert conn.their_state is DONE


def test_next_event_hands_out_one_event_at_a_time() -> None:
    conn = ServerConnection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab" + GET)
    head = conn.next_event()
    assert isinstance(head, RequestHead) and head.method == b"POST"
    assert conn.their_state is SEND_BODY
    assert conn.next_event() == Data(b"ab")
    assert conn.next_event() == EndOfMessage()
    assert conn.their_state is DONE
    assert conn.next_event() is PAUSED
    conn.send_response(200)
    assert isinstance(conn.next_event(), RequestHead)


def test_chunked_request_body_and_trailers() -> None:
    events = received(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nX-Checksum: 42\r\nX-More: a b\r\n\r\n"
    )
    assert body_of(events) == b"hello!"
    assert events[-1] == EndOfMessage([(b"x-checksum", b"42"), (b"x-more", b"a b")])


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: y\r\n\r\n",
        HOST + b"Host: y\r\n\r\n",
        HOST + b"HOST: x\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
    ],
)
def test_missing_or_repeated_host_is_400(data: bytes) -> None:
    assert refused(data).status_hint == 400


def test_http10_may_omit_host_and_a_host_trailer_is_no_host() -> None:
    assert isinstance(received(b"GET / HTTP/1.0\r\n\r\n")[0], RequestHead)
    events = received(
        HOST + b"Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nHost: y\r\n\r\n" + GET
    )
    assert events[-1] == EndOfMessage([(b"host", b"y")])


def test_http10_request_with_body() -> None:
    events = received(b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")
    head = events[0]
    assert isinstance(head, RequestHead)
    assert (head.http_version, head.keep_alive) == (b"1.0", False)
    assert body_of(events) == b"abc"


# -- limits ---------------------------------------------------------------------------------------


def test_default_limits_are_documented_values() -> None:
    assert DEFAULT_LIMITS == Limits(8192, 16384, 100, 1024 * 1024)


@pytest.mark.parametrize("pieces", [1, 7])
def test_target_over_the_limit_is_414(pieces: int) -> None:
    limits = Limits(max_target_size=100)
    ok = b"GET /" + b"a" * 99 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert isinstance(received(ok, limits)[0], RequestHead)
    data = b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    size = len(data) // pieces + 1
    error = refused([data[i : i + size] for i in range(0, len(data), size)], limits)
    assert error.status_hint == 414


def test_target_without_end_is_cut_at_the_limit() -> None:
    conn = ServerConnection(Limits(max_target_size=1000))
    conn.receive_data(b"GET /")
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(100):  # an endless request line, fed piece by piece
            conn.receive_data(b"a" * 100)
            assert conn.next_events() is NEED_DATA
    assert info.value.status_hint == 414


@pytest.mark.parametrize("pieces", [1, 5, 40])
def test_header_block_over_the_limit_is_431(pieces: int) -> None:
    limits = Limits(max_header_size=1000)
    fields = b"".join(b"X-Field-%03d: %s\r\n" % (i, b"v" * 40) for i in range(30))
    data = b"GET / HTTP/1.1\r\n" + fields + b"\r\n"
    size = len(data) // pieces + 1
    error = refused([data[i : i + size] for i in range(0, len(data), size)], limits)
    assert error.status_hint == 431


def test_header_block_under_the_limit_passes() -> None:
    fields = b"".join(b"X-Field-%03d: %s\r\n" % (i, b"v" * 40) for i in range(15))
    events = received(HOST + fields + b"\r\n", Limits(max_header_size=1000))
    assert isinstance(events[0], RequestHead) and len(events[0].headers) == 16


def test_endless_whitespace_in_a_head_is_cut_off() -> None:
    # llhttp calls nothing back for the whitespace before a value: the bytes fed are counted.
    conn = ServerConnection(Limits(max_target_size=100, max_header_size=1000))
    conn.receive_data(b"GET / HTTP/1.1\r\nX:")
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(100):
            conn.receive_data(b" " * 100)
            assert conn.next_events() is NEED_DATA
    assert info.value.status_hint == 431


def test_too_many_header_fields_is_431() -> None:
    limits = Limits(max_header_count=10)
    nine = b"".join(b"X-%d: v\r\n" % i for i in range(9))
    assert isinstance(received(HOST + nine + b"\r\n", limits)[0], RequestHead)
    error = refused(HOST + nine + b"X-10: v\r\n\r\n", limits)
    assert error.status_hint == 431


def test_content_length_over_the_limit_is_413_before_reading_the_body() -> None:
    conn = ServerConnection(Limits(max_body_size=1000))
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")  # no body yet
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_events()
    assert info.value.status_hint == 413
    # The server can still answer, and must close.
    response = conn.send_response(413)
    assert response.startswith(b"HTTP/1.1 413 ")  # (the phrase depends on the Python version)
    assert head_of(response)[b"connection"] == b"close"
    assert conn.our_state is MUST_CLOSE


def test_body_at_the_limit_passes() -> None:
    events = received(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000,
        Limits(max_body_size=1000),
    )
    assert len(body_of(events)) == 1000


def test_chunked_body_growing_past_the_limit_is_413_after_the_data_before_it() -> None:
    conn = ServerConnection(Limits(max_body_size=10))
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.receive_data(b"8\r\n01234567\r\n")
    events = conn.next_events()
    assert isinstance(events, list) and body_of(events) == b"01234567"
    conn.receive_data(b"8\r\n89abcdef\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        drain(conn)
    assert info.value.status_hint == 413


def test_no_body_limit_when_none() -> None:
    data = b"POST / HTTP/1.0\r\nContent-Length: 3000000\r\n\r\n" + b"x" * 3_000_000
    assert len(body_of(received(data, Limits(max_body_size=None)))) == 3_000_000


def test_trailer_block_over_the_limit_is_431() -> None:
    trailers = b"".join(b"T-%d: %s\r\n" % (i, b"v" * 50) for i in range(20))
    data = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
    data += trailers + b"\r\n"
    assert refused(data, Limits(max_header_size=500)).status_hint == 431


# -- ambiguous and malformed requests -------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        # Content-Length and Transfer-Encoding together, in both orders
        HOST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        HOST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        # repeated or malformed Content-Length
        HOST + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        HOST + b"Content-Length: 1\r\ncontent-length: 2\r\n\r\nxy",
        HOST + b"Content-Length: 1, 1\r\n\r\nx",
        HOST + b"Content-Length: +5\r\n\r\nhello",
        HOST + b"Content-Length:  5x\r\n\r\nhello",
        HOST + b"Content-Length: -1\r\n\r\n",
        HOST + b"Content-Length: 0x5\r\n\r\nhello",
        HOST + b"Content-Length: \r\n\r\n",
        HOST + b"Content-Length: 99999999999999999999999\r\n\r\n",
        # chunked not last, chunked twice
        HOST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        HOST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        # bare LF, bare CR, obs-fold
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
        HOST + b"X: a\rb\r\n\r\n",
        HOST + b"X: a\r\n folded\r\n\r\n",
        HOST + b"X: a\r\n\tfolded\r\n\r\n",
        # invalid chunk sizes and chunk framing
        HOST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        HOST + b"Transfer-Encoding: chunked\r\n\r\n-1\r\n\r\n",
        HOST + b"Transfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n0\r\n\r\n",
        HOST + b"Transfer-Encoding: chunked\r\n\r\n0x1\r\nx\r\n0\r\n\r\n",
        HOST + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
        HOST + b"Transfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n",
        # NUL and other control characters in header values and names
        HOST + b"X: a\x00b\r\n\r\n",
        HOST + b"X: a\x01b\r\n\r\n",
        HOST + b"X: a\x1bb\r\n\r\n",
        HOST + b"X: a\x7fb\r\n\r\n",
        HOST + b"X\x00: a\r\n\r\n",
        HOST + b"X : a\r\n\r\n",
        HOST + b": a\r\n\r\n",
        # request lines
        b"get / HTTP/1.1\r\n\r\n",
        b"FOO / HTTP/1.1\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.x\r\n\r\n",  # a malformed version (a well-formed unknown one is 505)
        b"GET / HTTX/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
    ],
)
def test_ambiguous_or_malformed_request_is_400(data: bytes) -> None:
    assert refused(data).status_hint == 400


@pytest.mark.parametrize(
    "coding", [b"gzip", b"gzip, chunked", b"identity", b"chunked\r\nTransfer-Encoding: gzip"]
)
def test_transfer_coding_other_than_chunked_is_400(coding: bytes) -> None:
    assert refused(HOST + b"Transfer-Encoding: " + coding + b"\r\n\r\n0\r\n\r\n").status_hint == 400


def test_transfer_encoding_is_case_insensitive() -> None:
    data = HOST + b"Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert body_of(received(data)) == b"abc"


@pytest.mark.parametrize(
    "version_line",
    [
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /\r\n\r\n",  # (HTTP/0.9: no version)
        # llhttp knows 0.9, 1.0, 1.1 and 2.0 only, and refuses the others itself: still 505.
        b"GET / HTTP/1.2\r\n\r\n",
        b"GET / HTTP/3.0\r\n\r\n",
    ],
)
def test_versions_other_than_1x_are_505(version_line: bytes) -> None:
    assert refused(version_line).status_hint == 505


def test_error_comes_after_the_requests_before_it() -> None:
    conn = ServerConnection()
    conn.receive_data(GET + b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n")
    events = conn.next_events()
    assert isinstance(events, list) and isinstance(events[0], RequestHead)
    assert conn.next_events() is PAUSED
    conn.send_response(200, body=b"ok")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_events()
    assert info.value.status_hint == 400
    assert conn.their_state is ERROR
    assert conn.our_state is IDLE  # an error response may still go out
    response = conn.send_response(400)
    assert head_of(response)[b"connection"] == b"close"
    assert conn.our_state is MUST_CLOSE


# -- pipelining -----------------------------------------------------------------------------------


def test_pipelined_requests_are_handed_out_one_at_a_time_in_order() -> None:
    conn = ServerConnection()
    conn.receive_data(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    targets = []
    for _ in range(3):
        events = conn.next_events()
        assert isinstance(events, list)
        head = events[0]
        assert isinstance(head, RequestHead) and events[-1] == EndOfMessage()
        targets.append((head.target, body_of(events)))
        assert conn.next_events() is PAUSED  # until answered, even though the bytes are here
        conn.send_response(200, body=b"done")
        assert (conn.their_state, conn.our_state) == (IDLE, IDLE)
    assert targets == [(b"/1", b""), (b"/2", b"abc"), (b"/3", b"")]
    assert conn.next_events() is NEED_DATA


def test_request_pipelined_behind_a_streamed_response_waits_for_its_end() -> None:
    conn = ServerConnection()
    conn.receive_data(GET + GET)
    drain(conn)
    conn.start_response(200)
    conn.send_data(b"part")
    assert conn.next_events() is PAUSED
    conn.end_response()
    assert isinstance(conn.next_events(), list)


def test_request_after_connection_close_is_discarded() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET)
    events = conn.next_events()
    assert isinstance(events, list) and len(events) == 2
    response = conn.send_response(200, body=b"bye")
    assert head_of(response)[b"connection"] == b"close"
    assert (conn.their_state, conn.our_state) == (MUST_CLOSE, MUST_CLOSE)
    assert conn.next_events() is NEED_DATA  # the GET behind it is never handed out
    conn.receive_data(b"")
    assert conn.next_events() == [ConnectionClosed()]
    assert conn.their_state is CLOSED


# -- keep-alive -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "connection_header", "state_after"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None, IDLE),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", None, IDLE),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"close", MUST_CLOSE),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n", b"close", MUST_CLOSE),
        (b"GET / HTTP/1.0\r\n\r\n", b"close", MUST_CLOSE),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", b"keep-alive", IDLE),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", b"keep-alive", IDLE),
    ],
)
def test_keep_alive_decisions(
    request_bytes: bytes, connection_header: bytes | None, state_after: object
) -> None:
    conn = ServerConnection()
    conn.receive_data(request_bytes)
    events = conn.next_events()
    assert isinstance(events, list)
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.keep_alive is (state_after is IDLE)
    response = conn.send_response(200, [(b"content-type", b"text/plain")], b"hi")
    assert head_of(response).get(b"connection") == connection_header
    assert conn.our_state is state_after


def test_server_can_close_with_its_own_connection_header() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    response = conn.send_response(200, [(b"Connection", b"close")], b"x")
    assert response.count(b"onnection: close") == 1  # not written twice
    assert conn.our_state is MUST_CLOSE


def test_streamed_response_to_http10_runs_until_close() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    drain(conn)
    head = conn.start_response(200, [(b"content-type", b"text/plain")])
    fields = head_of(head)
    assert b"transfer-encoding" not in fields and b"content-length" not in fields
    assert fields[b"connection"] == b"close"
    assert conn.send_data(b"raw bytes") == b"raw bytes"
    assert conn.end_response() == b""
    assert conn.our_state is MUST_CLOSE


# -- responses ------------------------------------------------------------------------------------


def test_whole_response_is_one_buffer_with_length_and_date() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    response = conn.send_response(200, [(b"content-type", b"text/plain")], b"Hello, world!")
    head, body = response.split(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    fields = head_of(response)
    assert fields[b"content-length"] == b"13" and fields[b"content-type"] == b"text/plain"
    assert fields[b"date"].endswith(b" GMT") and len(fields[b"date"]) == 29
    assert b"connection" not in fields
    assert body == b"Hello, world!"


def test_large_body_gets_its_length_too() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    response = conn.send_response(200, body=b"x" * 70000)
    assert head_of(response)[b"content-length"] == b"70000"
    assert response.endswith(b"\r\n\r\n" + b"x" * 70000)


def test_response_to_head_keeps_the_length_and_drops_the_body() -> None:
    conn = ServerConnection()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + GET)
    drain(conn)
    response = conn.send_response(200, [(b"content-type", b"text/plain")], b"hello")
    assert head_of(response)[b"content-length"] == b"5"
    assert response.endswith(b"\r\n\r\n")
    assert conn.our_state is IDLE
    # A given length with no body (a HEAD handler that knows the size) is fine as well.
    conn2 = ServerConnection()
    conn2.receive_data(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    drain(conn2)
    assert (
        head_of(conn2.send_response(200, [(b"content-length", b"1234")]))[b"content-length"]
        == b"1234"
    )


def test_streamed_response_to_head_drops_the_data() -> None:
    conn = ServerConnection()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    drain(conn)
    head = conn.start_response(200, content_length=10)
    assert head_of(head)[b"content-length"] == b"10"
    assert conn.send_data(b"0123456789") == b""
    assert conn.end_response() == b""
    assert conn.our_state is IDLE


def test_chunked_response_with_trailers() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    head = conn.start_response(200, [(b"content-type", b"text/plain")])
    assert head_of(head)[b"transfer-encoding"] == b"chunked"
    assert conn.send_data(b"hello") == b"5\r\nhello\r\n"
    assert conn.send_data(b"") == b""  # an empty chunk would end the body: nothing is sent
    assert conn.send_data(b"x" * 300) == b"12c\r\n" + b"x" * 300 + b"\r\n"
    assert conn.end_response([(b"x-checksum", b"1")]) == b"0\r\nx-checksum: 1\r\n\r\n"
    assert conn.our_state is IDLE


def test_streamed_response_with_length_is_checked() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    conn.start_response(200, content_length=4)
    assert conn.send_data(b"ab") == b"ab"
    with pytest.raises(LocalProtocolError):
        conn.end_response()  # two bytes short
    assert conn.our_state is ERROR


def test_streamed_response_longer_than_its_length_is_refused() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    conn.start_response(200, [(b"content-length", b"2")])
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"abc")
    assert conn.our_state is ERROR


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(status: int) -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    with pytest.raises(LocalProtocolError):
        conn.send_response(status, body=b"x")
    assert conn.our_state is SEND_RESPONSE  # nothing was sent: still free to answer
    response = conn.send_response(status)
    assert b"content-length" not in head_of(response)
    assert response.endswith(b"\r\n\r\n")


def test_304_may_carry_the_content_length_of_the_resource() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    response = conn.send_response(304, [(b"content-length", b"99")])
    assert head_of(response)[b"content-length"] == b"99"


def test_204_refuses_a_content_length() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    with pytest.raises(LocalProtocolError):
        conn.send_response(204, [(b"content-length", b"0")])


def test_content_length_must_match_the_body() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    with pytest.raises(LocalProtocolError):
        conn.send_response(200, [(b"content-length", b"3")], b"hello")
    response = conn.send_response(200, [(b"content-length", b"5")], b"hello")
    assert response.count(b"content-length") == 1


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-evil", b"a\r\nset-cookie: injected")],
        [(b"x-evil", b"a\nb")],
        [(b"x-evil", b"a\x00b")],
        [(b"bad name", b"v")],
        [(b"x:y", b"v")],
        [(b"", b"v")],
        [("x-str", "not bytes")],
        [(b"x",)],
        [(b"transfer-encoding", b"gzip")],
        [(b"content-length", b"abc")],
        [(b"content-length", b"1"), (b"content-length", b"2")],
    ],
)
def test_invalid_response_headers_are_refused_before_anything_is_sent(headers: list) -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    with pytest.raises(LocalProtocolError):
        conn.send_response(200, headers, b"x")
    assert conn.our_state is SEND_RESPONSE
    assert conn.send_response(500, body=b"oops").startswith(b"HTTP/1.1 500 ")


def test_unhashable_header_pair_that_is_valid_still_works() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    assert head_of(conn.send_response(200, [[b"x-list", b"ok"]], b""))[b"x-list"] == b"ok"  # type: ignore[list-item]


def test_headers_may_be_any_iterable_of_pairs() -> None:
    conn = ServerConnection()
    conn.receive_data(GET + GET)
    drain(conn)
    pairs = ((b"x-gen-%d" % i, b"v") for i in range(2))
    assert b"x-gen-0: v\r\nx-gen-1: v\r\n" in conn.send_response(200, pairs, b"")
    drain(conn)
    assert b"x-t: 1\r\n" in conn.send_response(200, ((b"x-t", b"1"),), b"")


def test_custom_reason_and_unknown_status() -> None:
    conn = ServerConnection()
    conn.receive_data(GET + GET)
    drain(conn)
    assert conn.send_response(299, body=b"").startswith(b"HTTP/1.1 299 \r\n")
    drain(conn)
    assert conn.send_response(200, reason=b"Fine").startswith(b"HTTP/1.1 200 Fine\r\n")


@pytest.mark.parametrize("status", [99, 1000, 101, 100])
def test_send_response_refuses_non_final_statuses(status: int) -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    with pytest.raises(LocalProtocolError):
        conn.send_response(status)


def test_response_without_a_request_closes() -> None:
    conn = ServerConnection()
    response = conn.send_response(408, body=b"idle too long")
    assert head_of(response)[b"connection"] == b"close"
    assert conn.our_state is MUST_CLOSE


def test_no_second_response() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    drain(conn)
    conn.send_response(200)
    with pytest.raises(LocalProtocolError):
        conn.send_response(200)


def test_send_data_without_a_started_body_is_refused() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"x")
    with pytest.raises(LocalProtocolError):
        conn.end_response()


def test_send_event_form() -> None:
    from unknot.http._protocol import InformationalResponse, ResponseHead

    conn = ServerConnection()
    conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    )
    drain(conn)
    out = conn.send(InformationalResponse(100, []))
    assert out == b"HTTP/1.1 100 Continue\r\n\r\n"
    out = conn.send(ResponseHead(200, [(b"content-length", b"2")]))
    out += conn.send(Data(b"ok")) + conn.send(EndOfMessage())
    assert out.endswith(b"\r\n\r\nok")
    conn.receive_data(b"x")
    drain(conn)
    assert conn.send(ConnectionClosed()) == b""
    assert conn.our_state is CLOSED
    with pytest.raises(LocalProtocolError):
        conn.send(RequestHead(b"GET", b"/", []))


def test_send_failed_puts_our_side_in_error() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    drain(conn)
    conn.send_failed()
    assert conn.our_state is ERROR and not conn.keep_alive
    with pytest.raises(LocalProtocolError):
        conn.send_response(200)


# -- 100-continue ---------------------------------------------------------------------------------

EXPECT = b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"


def test_expect_continue_is_reported_and_the_server_sends_the_100() -> None:
    conn = ServerConnection()
    conn.receive_data(EXPECT)
    events = conn.next_events()
    assert isinstance(events, list) and isinstance(events[0], RequestHead)
    assert events[0].expect_continue
    assert conn.client_is_waiting_for_100_continue
    assert conn.send_informational(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not conn.client_is_waiting_for_100_continue
    conn.receive_data(b"body")
    assert conn.next_events() == [Data(b"body"), EndOfMessage()]
    conn.send_response(201)
    assert conn.our_state is IDLE  # kept alive


def test_body_sent_without_waiting_clears_the_expectation() -> None:
    conn = ServerConnection()
    conn.receive_data(EXPECT + b"bo")
    drain(conn)
    assert not conn.client_is_waiting_for_100_continue


def test_final_response_instead_of_100_closes_the_connection() -> None:
    conn = ServerConnection()
    conn.receive_data(EXPECT)
    drain(conn)
    response = conn.send_response(417)
    assert head_of(response)[b"connection"] == b"close"
    assert conn.our_state is MUST_CLOSE


def test_expect_continue_in_http10_is_ignored() -> None:
    events = received(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
    assert isinstance(events[0], RequestHead) and not events[0].expect_continue


def test_informational_responses_rules() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_informational(100)  # no request
    conn.receive_data(GET)
    drain(conn)
    with pytest.raises(LocalProtocolError):
        conn.send_informational(101)  # no protocol switch
    with pytest.raises(LocalProtocolError):
        conn.send_informational(200)
    hints = conn.send_informational(103, [(b"link", b"</style.css>; rel=preload")])
    assert hints == b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
    assert conn.our_state is SEND_RESPONSE
    conn10 = ServerConnection()
    conn10.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    drain(conn10)
    with pytest.raises(LocalProtocolError):
        conn10.send_informational(103)


# -- upgrades -------------------------------------------------------------------------------------


def test_upgrade_request_is_ignored_not_performed() -> None:
    # RFC 9110, 7.8: the server may ignore Upgrade; this layer never switches protocols, so
    # it does: a plain request, and what follows is HTTP again (here, not HTTP: a 400).
    conn = ServerConnection()
    conn.receive_data(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        b"\x81\x05hello"
    )
    events = conn.next_events()
    assert isinstance(events, list)
    head = events[0]
    assert isinstance(head, RequestHead) and not head.upgrade and head.keep_alive
    assert events[1] == EndOfMessage()
    assert conn.trailing_data == b""
    with pytest.raises(LocalProtocolError):
        conn.send_informational(101)
    response = conn.send_response(426, [(b"upgrade", b"websocket")])
    assert b"connection" not in head_of(response)
    assert conn.our_state is IDLE
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_events()
    assert info.value.status_hint == 400


def test_upgrade_without_connection_upgrade_is_an_ordinary_request() -> None:
    events = received(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
    head = events[0]
    assert isinstance(head, RequestHead) and not head.upgrade and head.keep_alive


def test_connect_is_reported_and_a_tunnel_refused() -> None:
    conn = ServerConnection()
    conn.receive_data(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03")
    events = conn.next_events()
    assert isinstance(events, list)
    head = events[0]
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.upgrade) == (b"CONNECT", b"example.com:443", True)
    assert conn.trailing_data == b"\x16\x03"
    with pytest.raises(LocalProtocolError):
        conn.send_response(200)
    assert conn.send_response(405).startswith(b"HTTP/1.1 405 ")
    assert conn.our_state is MUST_CLOSE


def test_upgrade_request_with_a_body_is_served() -> None:
    data = b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: upgrade\r\n"
    data += b"Content-Length: 2\r\n\r\nab" + GET
    events = received(data)
    assert body_of(events) == b"ab" and isinstance(events[-1], EndOfMessage)
    head = events[0]
    assert isinstance(head, RequestHead) and head.keep_alive and not head.upgrade


def test_connect_request_with_a_body_is_refused() -> None:
    data = b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nContent-Length: 2\r\n\r\nab"
    assert refused(data).status_hint == 400


# -- end of input ---------------------------------------------------------------------------------


def test_eof_between_requests_is_connection_closed() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    conn.receive_data(b"")
    drain(conn)
    conn.send_response(200)
    assert conn.next_events() == [ConnectionClosed()]
    assert (conn.their_state, conn.our_state) == (CLOSED, MUST_CLOSE)
    assert conn.next_events() == [ConnectionClosed()]  # and so on


def test_eof_on_a_fresh_connection() -> None:
    conn = ServerConnection()
    conn.receive_data(b"")
    assert conn.next_events() == [ConnectionClosed()]
    assert conn.our_state is MUST_CLOSE


@pytest.mark.parametrize(
    "partial",
    [
        b"GET /index.html HT",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ],
)
def test_eof_in_the_middle_of_a_request_is_an_error(partial: bytes) -> None:
    conn = ServerConnection()
    conn.receive_data(partial)
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        drain(conn)


def test_data_after_eof_is_a_local_error() -> None:
    conn = ServerConnection()
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.receive_data(GET)


def test_errors_are_all_protocol_errors() -> None:
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError)
    assert ProtocolError("x").status_hint == 400


def test_strict_parser_turns_off_every_leniency_the_parser_knows() -> None:
    from unknot.http._protocol._reader import _NO_LENIENCY, strict_parser

    class OlderParser:
        known = {"lenient_headers", "lenient_chunked_length"}

        def __init__(self) -> None:
            self.set: dict[str, bool] = {}

        def set_dangerous_leniencies(self, **flags: bool) -> None:
            if set(flags) - self.known:
                raise TypeError("unexpected keyword argument")
            self.set.update(flags)

    older = OlderParser()
    strict_parser(older)  # type: ignore[arg-type]
    assert older.set == {"lenient_headers": False, "lenient_chunked_length": False}
    assert len(_NO_LENIENCY) == 10 and not any(_NO_LENIENCY.values())


def test_a_reused_receive_buffer_is_copied_out() -> None:
    # recv_into a preallocated buffer: the events must not share its memory.
    buffer = bytearray(64)
    view = memoryview(buffer)
    conn = ServerConnection()
    wire = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabcdef"
    events: list[Event] = []
    for start in range(0, len(wire), 20):
        piece = wire[start : start + 20]
        buffer[: len(piece)] = piece
        conn.receive_data(view[: len(piece)])
        buffer[:] = b"\xff" * len(buffer)  # the next recv_into overwrites it
        events += drain(conn)
    head = events[0]
    assert isinstance(head, RequestHead) and head.target == b"/up"
    assert head.headers == [(b"host", b"x"), (b"content-length", b"6")]
    assert body_of(events) == b"abcdef"
