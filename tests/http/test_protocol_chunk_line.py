"""An over-long chunk-size line (a chunk extension, or leading zeros, that never ends) is a
framing error of the body: 400 naming the chunk line, not 431 (Request Header Fields Too
Large). It is still bounded while it arrives (about ``max_target_size + max_header_size``,
as trailers and heads are), and trailers over their limits are still 431."""

from __future__ import annotations

from typing import Any

import pytest
from server_helpers import ServerThread, connect, drain, feed_until_refused, read_response

from unknot.http import Request
from unknot.http._protocol import (
    ClientConnection,
    Data,
    EndOfMessage,
    Event,
    Limits,
    RemoteProtocolError,
    ServerConnection,
)

pytestmark = pytest.mark.timeout(30)

CHUNKED_POST = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED_RESPONSE = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
BOUND = 24 * 1024  # the default max_target_size + max_header_size


def opened(side: str, limits: Limits | None = None) -> ServerConnection | ClientConnection:
    """A connection whose peer has begun a chunked body (head handed out)."""
    if side == "server":
        server = ServerConnection(limits or Limits())
        server.receive_data(CHUNKED_POST)
        drain(server)
        return server
    client = ClientConnection(limits or Limits(max_body_size=None))
    client.send_request(b"GET", b"/", [(b"host", b"x")])
    client.receive_data(CHUNKED_RESPONSE)
    drain(client)
    return client


@pytest.mark.parametrize("side", ["server", "client"])
@pytest.mark.parametrize(
    ("start", "byte"),
    [
        (b"1;ext=", b"a"),
        (b"5\r\nhello\r\n1;name=", b"v"),
        (b"00", b"0"),
        (b"5;a=b\r\nhello\r\n000", b"0"),
    ],
    ids=["first-chunk", "later-chunk", "leading-zeros", "later-zeros"],
)
@pytest.mark.parametrize("size", [1000, 7])
def test_an_endless_chunk_size_line_is_400(side: str, start: bytes, byte: bytes, size: int) -> None:
    conn = opened(side)
    fed, error, events = feed_until_refused(conn, [start] + [byte * size] * 200_000, 4 << 20)
    assert error is not None
    assert error.status_hint == 400
    assert "chunk-size line" in str(error)
    assert fed <= BOUND + 2 * 1024  # bounded as a head is
    assert b"".join(e.data for e in events if isinstance(e, Data)) in (b"", b"hello")


def test_an_endless_chunk_size_line_in_one_feed_is_400() -> None:
    conn = opened("server")
    conn.receive_data(b"1;ext=" + b"a" * 64 * 1024)
    with pytest.raises(RemoteProtocolError) as info:
        drain(conn)
    assert info.value.status_hint == 400 and "chunk-size line" in str(info.value)


def test_the_bound_follows_the_limits() -> None:
    conn = opened("server", Limits(max_target_size=100, max_header_size=1000))
    fed, error, _ = feed_until_refused(conn, [b"1;ext="] + [b"a" * 50] * 1000, 1 << 20)
    assert error is not None and error.status_hint == 400
    assert fed <= 1200
    conn = opened("server", Limits(max_target_size=None, max_header_size=None))
    fed, error, _ = feed_until_refused(conn, [b"1;ext="] + [b"a" * 1000] * 64, 1 << 20)
    assert error is None  # off: no bound


def test_extensions_within_the_bound_pass_in_small_pieces() -> None:
    """Chunk extensions of a few KiB on every chunk, fed 5 bytes at a time, and the trailers
    after them: all within the limits, all taken."""
    extension = b";name=" + b"v" * 4000
    wire = CHUNKED_POST + b"".join(b"3%s\r\nabc\r\n" % extension for _ in range(20))
    wire += b"0" + extension + b"\r\nx-t: 1\r\n\r\n"
    conn = ServerConnection()
    events: list[Event] = []
    for start in range(0, len(wire), 5):
        conn.receive_data(wire[start : start + 5])
        events += drain(conn)
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"abc" * 20
    assert isinstance(events[-1], EndOfMessage) and events[-1].trailers == [(b"x-t", b"1")]


@pytest.mark.parametrize("side", ["server", "client"])
def test_endless_trailers_after_a_long_last_chunk_line_are_still_431(side: str) -> None:
    conn = opened(side)
    conn.receive_data(b"3\r\nabc\r\n0;ext=" + b"e" * 8000 + b"\r\n")
    drain(conn)
    fed, error, _ = feed_until_refused(conn, [b"x-t: " + b"a" * 1000 + b"\r\n"] * 2048, 2 << 20)
    assert error is not None and error.status_hint == 431
    conn = opened(side)
    conn.receive_data(b"3\r\nabc\r\n0\r\nx-t: ")  # an endless value, no field complete
    drain(conn)
    fed, error, _ = feed_until_refused(conn, [b"a" * 1000] * 100, 1 << 20)
    assert error is not None and error.status_hint == 431
    assert "trailer" in str(error)


def test_the_next_request_starts_afresh() -> None:
    """A message's chunk lines leave nothing behind for the next message on the connection."""
    conn = ServerConnection()
    conn.receive_data(CHUNKED_POST + b"3\r\nabc\r\n0\r\n\r\n")
    drain(conn)
    conn.send_response(200, [], b"")
    conn.receive_data(CHUNKED_POST + b"3\r\nabc\r\n")
    drain(conn)
    fed, error, _ = feed_until_refused(conn, [b"1;ext="] + [b"a" * 1000] * 100, 1 << 20)
    assert error is not None and error.status_hint == 400


def test_a_live_server_answers_400_to_an_endless_chunk_extension() -> None:
    def handler(request: Request) -> Any:
        return 200, None, b"%d" % len(request.body())

    with ServerThread(handler) as srv, connect(srv.port) as sock:
        sock.sendall(CHUNKED_POST + b"3\r\nabc\r\n1;ext=")
        try:
            for _ in range(1024):  # 1 MiB of chunk extension
                sock.sendall(b"a" * 1024)
        except OSError:
            pass  # the server answered and closed
        response = read_response(sock.makefile("rb"))
    assert response.status == 400
