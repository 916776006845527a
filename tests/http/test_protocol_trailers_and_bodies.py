"""The sans-I/O HTTP layer. Trailer blocks are bounded while they arrive (server and
client side, and a live server answers 431); a HEAD (204, 304) answer drops the trailers as it
drops the data; a body that is not bytes-like is refused before anything changes; the h11-like
``send`` frames a body-less GET as h11 does; bytes-like bodies and data are taken (bytearray,
memoryview) and a non-int content_length refused, alike in the pure and the compiled build."""

from __future__ import annotations

import time
from typing import Any

import pytest
from server_helpers import ServerThread, connect, drain, feed_until_refused, read_response

from unknot.http import Request
from unknot.http._protocol import (
    ERROR,
    IDLE,
    PAUSED,
    SEND_BODY,
    SEND_RESPONSE,
    ClientConnection,
    Data,
    EndOfMessage,
    Event,
    Limits,
    LocalProtocolError,
    RemoteProtocolError,
    RequestHead,
    ServerConnection,
)

pytestmark = pytest.mark.timeout(30)

CHUNKED_POST = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED_RESPONSE = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
FIELD = b"x-t: " + b"a" * 1000 + b"\r\n"


SERVER_LIMITS = Limits()
CLIENT_LIMITS = Limits(max_body_size=None)


def server_in_trailers(limits: Limits = SERVER_LIMITS) -> ServerConnection:
    conn = ServerConnection(limits)
    conn.receive_data(CHUNKED_POST + b"3\r\nabc\r\n0\r\n")
    drain(conn)
    return conn


def client_in_trailers(limits: Limits = CLIENT_LIMITS) -> ClientConnection:
    conn = ClientConnection(limits)
    conn.send_request(b"GET", b"/", [(b"host", b"x")])
    conn.receive_data(CHUNKED_RESPONSE + b"3\r\nabc\r\n0\r\n")
    drain(conn)
    return conn


# -- trailers are bounded while they arrive ------------------------------------------------------


@pytest.mark.parametrize("side", ["server", "client"])
def test_endless_trailer_fields_are_431_while_they_arrive(side: str) -> None:
    conn = server_in_trailers() if side == "server" else client_in_trailers()
    fed, error, _ = feed_until_refused(conn, [FIELD] * 2048, 2 << 20)
    assert error is not None and error.status_hint == 431
    # Cut off about where an endless head is (max_target_size + max_header_size = 24 KiB).
    assert fed <= 26 * 1024


@pytest.mark.parametrize("side", ["server", "client"])
def test_too_many_small_trailer_fields_are_431_while_they_arrive(side: str) -> None:
    conn = server_in_trailers() if side == "server" else client_in_trailers()
    fields = (b"t-%d: v\r\n" % i for i in range(5000))
    fed, error, _ = feed_until_refused(conn, fields, 1 << 20)
    assert error is not None and error.status_hint == 431
    assert fed < 2000  # the count limit (100) in ~9-byte fields, not the 5000 offered


@pytest.mark.parametrize("side", ["server", "client"])
def test_an_endless_trailer_value_is_431_and_linear(side: str) -> None:
    conn = server_in_trailers() if side == "server" else client_in_trailers()
    conn.receive_data(b"x-t: ")
    drain(conn)
    start = time.monotonic()
    fed, error, _ = feed_until_refused(conn, [b"a" * 1000] * 3000, 3_000_000)
    assert error is not None and error.status_hint == 431
    assert fed <= 26 * 1024
    assert time.monotonic() - start < 1.0


def test_trailer_fields_in_one_feed_are_431() -> None:
    """A whole endless trailer block fed at once (the block never ended)."""
    conn = ServerConnection()
    conn.receive_data(CHUNKED_POST + b"3\r\nabc\r\n0\r\n" + FIELD * 200)
    with pytest.raises(RemoteProtocolError) as info:
        drain(conn)
    assert info.value.status_hint == 431


@pytest.mark.parametrize("side", ["server", "client"])
def test_trailers_within_the_limits_pass_in_small_pieces(side: str) -> None:
    """The bound is no stricter than the limits: a 15 KiB trailer block of 90 fields, and a
    body whose chunk framing comes in pieces of its own, fed a few bytes at a time."""
    trailers = b"".join(b"t-%d: %s\r\n" % (i, b"v" * 160) for i in range(90))
    body = b"".join(b"5\r\nhello\r\n" for _ in range(50))
    if side == "server":
        conn: ServerConnection | ClientConnection = ServerConnection()
        wire = CHUNKED_POST
    else:
        conn = ClientConnection()
        conn.send_request(b"GET", b"/", [(b"host", b"x")])
        wire = CHUNKED_RESPONSE
    wire += body + b"0\r\n" + trailers + b"\r\n"
    events: list[Event] = []
    for start in range(0, len(wire), 7):
        conn.receive_data(wire[start : start + 7])
        events += drain(conn)
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"hello" * 50
    assert isinstance(events[-1], EndOfMessage) and len(events[-1].trailers) == 90


def test_trailer_bound_follows_the_limits() -> None:
    limits = Limits(max_target_size=100, max_header_size=1000, max_header_count=5)
    conn = server_in_trailers(limits)
    fed, error, _ = feed_until_refused(conn, [b"x-t: " + b"a" * 95 + b"\r\n"] * 50, 1 << 20)
    assert error is not None and error.status_hint == 431
    assert fed <= 1100
    conn = server_in_trailers(Limits(max_header_size=None, max_header_count=None))
    fed, error, _ = feed_until_refused(conn, [FIELD] * 64, 1 << 20)  # off: no bound
    assert error is None and fed == 64 * len(FIELD)


def test_a_live_server_answers_431_to_endless_trailers() -> None:
    def handler(request: Request) -> Any:
        return 200, None, b"%d" % len(request.body())

    with ServerThread(handler) as srv, connect(srv.port) as sock:
        sock.sendall(CHUNKED_POST + b"3\r\nabc\r\n0\r\n")
        try:
            for _ in range(1024):  # 1 MiB of trailer fields
                sock.sendall(FIELD)
        except OSError:
            pass  # the server answered and closed
        response = read_response(sock.makefile("rb"))
    assert response.status == 431


# -- a HEAD (204, 304) answer drops the trailers -------------------------------------------------


@pytest.mark.parametrize(("method", "status"), [(b"HEAD", 200), (b"GET", 304), (b"GET", 204)])
def test_a_bodiless_answer_drops_the_trailers(method: bytes, status: int) -> None:
    conn = ServerConnection()
    conn.receive_data(method + b" / HTTP/1.1\r\nHost: x\r\n\r\n")
    drain(conn)
    head = conn.start_response(status, [(b"content-type", b"text/plain")])
    if method == b"HEAD":
        assert conn.send_data(b"hello") == b""
    assert conn.end_response([(b"x-checksum", b"abc")]) == b""
    assert b"x-checksum" not in head
    assert conn.our_state is IDLE and conn.keep_alive


def test_a_head_answer_still_checks_its_trailers() -> None:
    """Dropped, yet checked as a GET's: code tried on HEAD does not break on GET."""
    conn = ServerConnection()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    drain(conn)
    conn.start_response(200)
    with pytest.raises(LocalProtocolError):
        conn.end_response([(b"content-length", b"5")])


def test_trailers_with_a_length_are_still_refused() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    drain(conn)
    conn.start_response(200, [], 0)
    with pytest.raises(LocalProtocolError):
        conn.end_response([(b"x-checksum", b"abc")])


# -- a body that is not bytes-like is refused, and nothing changes -------------------------------


@pytest.mark.parametrize("body", ["text, not bytes", 5, None, [b"a"]])
def test_send_response_refuses_a_body_that_is_not_bytes_and_changes_nothing(body: Any) -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    drain(conn)
    with pytest.raises(LocalProtocolError, match="bytes"):
        conn.send_response(200, [(b"content-type", b"text/plain")], body)
    assert conn.our_state is SEND_RESPONSE
    assert conn.next_events() is PAUSED  # /b waits: /a is still to be answered
    assert conn.send_response(200, [], b"ok").endswith(b"\r\n\r\nok")
    assert [type(e) for e in conn.next_events()] == [RequestHead, EndOfMessage]


@pytest.mark.parametrize("body", ["text, not bytes", 5, None])
def test_send_request_refuses_a_body_that_is_not_bytes_and_changes_nothing(body: Any) -> None:
    conn = ClientConnection()
    with pytest.raises(LocalProtocolError, match="bytes"):
        conn.send_request(b"POST", b"/", [(b"host", b"x")], body)
    assert conn.our_state is IDLE
    out = conn.send_request(b"POST", b"/", [(b"host", b"x")], b"ok")
    assert out.endswith(b"content-length: 2\r\n\r\nok")


def test_send_data_refuses_data_that_is_not_bytes_and_changes_nothing() -> None:
    server = ServerConnection()
    server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    drain(server)
    server.start_response(200)
    with pytest.raises(LocalProtocolError, match="bytes"):
        server.send_data("text")  # type: ignore[arg-type]
    assert server.our_state is SEND_BODY
    assert server.send_data(b"ok") == b"2\r\nok\r\n"
    client = ClientConnection()
    client.start_request(b"POST", b"/", [(b"host", b"x")])
    with pytest.raises(LocalProtocolError, match="bytes"):
        client.send_data("text")  # type: ignore[arg-type]
    assert client.our_state is SEND_BODY
    with pytest.raises(LocalProtocolError, match="bytes"):
        Data("text")  # type: ignore[arg-type]


# -- send(RequestHead) frames a body-less method as h11 does -------------------------------------


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE"])
def test_send_frames_a_bodyless_method_without_a_body(method: bytes) -> None:
    conn = ClientConnection()
    out = conn.send(RequestHead(method, b"/", [(b"host", b"example.com")]))
    assert out == method + b" / HTTP/1.1\r\nhost: example.com\r\n\r\n"
    assert conn.send(Data(b"")) == b""
    with pytest.raises(LocalProtocolError, match="no body"):
        conn.send(Data(b"x"))
    assert conn.our_state is ERROR


def test_send_ends_a_bodyless_request_with_nothing() -> None:
    conn = ClientConnection()
    out = conn.send(RequestHead(b"GET", b"/", [(b"host", b"example.com")]))
    out += conn.send(EndOfMessage())
    assert out == b"GET / HTTP/1.1\r\nhost: example.com\r\n\r\n"
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    drain(conn)
    assert conn.our_state is IDLE and conn.their_state is IDLE


def test_send_frames_a_bodyless_method_as_its_headers_say() -> None:
    conn = ClientConnection()
    head = RequestHead(b"DELETE", b"/", [(b"host", b"x"), (b"transfer-encoding", b"chunked")])
    out = conn.send(head) + conn.send(Data(b"abc")) + conn.send(EndOfMessage())
    assert out.endswith(b"transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    conn = ClientConnection()
    head = RequestHead(b"GET", b"/", [(b"host", b"x"), (b"content-length", b"3")])
    out = conn.send(head) + conn.send(Data(b"abc")) + conn.send(EndOfMessage())
    assert out.endswith(b"content-length: 3\r\n\r\nabc")


def test_send_still_chunks_a_body_method_and_start_request_is_unchanged() -> None:
    conn = ClientConnection()
    out = conn.send(RequestHead(b"POST", b"/", [(b"host", b"x")])) + conn.send(EndOfMessage())
    assert out.endswith(b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n")
    conn = ClientConnection()
    out = conn.start_request(b"GET", b"/", [(b"host", b"x")]) + conn.send_data(b"abc")
    assert b"transfer-encoding: chunked" in out and out.endswith(b"3\r\nabc\r\n")


# -- bytes-like bodies; content_length is an int (both builds) -----------------------------------


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_bodies_and_data_are_taken(kind: Any) -> None:
    def server() -> ServerConnection:
        conn = ServerConnection()
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        drain(conn)
        return conn

    out = server().send_response(200, [], kind(b"hello"))
    assert b"content-length: 5\r\n" in out and out.endswith(b"\r\n\r\nhello")
    conn = server()
    conn.start_response(200)
    assert conn.send_data(kind(b"abc")) == b"3\r\nabc\r\n"
    assert conn.send(Data(kind(b"de"))) == b"2\r\nde\r\n"
    event = Data(kind(b"xy"))
    assert type(event.data) is bytes and event == Data(b"xy")
    client = ClientConnection()
    out = client.send_request(b"POST", b"/", [(b"host", b"x")], kind(b"hello"))
    assert out.endswith(b"content-length: 5\r\n\r\nhello")
    client = ClientConnection()
    client.start_request(b"POST", b"/", [(b"host", b"x")], 3)
    assert client.send_data(kind(b"abc")) == b"abc"


def test_a_multibyte_memoryview_is_sent_as_its_bytes() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    drain(conn)
    view = memoryview(b"abcdefgh").cast("I")  # 2 items, 8 bytes
    out = conn.send_response(200, [], view)
    assert b"content-length: 8\r\n" in out and out.endswith(b"\r\n\r\nabcdefgh")


@pytest.mark.parametrize("length", [5.0, "5", True, -1])
def test_a_content_length_that_is_not_a_count_is_refused(length: Any) -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    drain(conn)
    with pytest.raises(LocalProtocolError, match="content_length"):
        conn.start_response(200, [], length)
    assert conn.our_state is SEND_RESPONSE
    client = ClientConnection()
    with pytest.raises(LocalProtocolError, match="content_length"):
        client.start_request(b"POST", b"/", [(b"host", b"x")], length)
    assert client.our_state is IDLE
