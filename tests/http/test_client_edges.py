"""The client against servers that misbehave or answer at awkward moments, and its edges: bytes
that answer no request, a drain cut short, an answer that comes while the body is still being
sent, bodies without content under a Content-Encoding, deflate cut short or split, URLs with
``://`` in their query, non-ASCII Locations and hosts, lines split only at line ends."""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from client_helpers import raw_server, url_of

import unknot
from unknot import http
from unknot.http._client import Client
from unknot.http._client_connection import HTTPConnection
from unknot.http._client_decoders import ContentDecoder
from unknot.http._client_errors import (
    ClientError,
    DecodingError,
    InvalidURL,
    RemoteProtocolError,
)
from unknot.http._client_response import ClientResponse
from unknot.http._protocol import ClientConnection, LocalProtocolError
from unknot.http._url import URL

pytestmark = [pytest.mark.timeout(30)]

TWO = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ntwo"


# -- bytes that answer no request ----------------------------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize(
    ("method", "first"),
    [
        (
            "GET",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst"
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nSTALE",
        ),
        (
            "GET",
            b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nSTALE",
        ),
        ("HEAD", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"),
    ],
    ids=["a second response", "bytes after a 204", "a body after a HEAD response"],
)
def test_bytes_after_a_response_keep_its_connection_out_of_the_pool(
    method: str, first: bytes
) -> None:
    # The next request must get the server's answer to it, on a new connection: bytes that
    # came before it was sent cannot be its response.
    with raw_server([first, TWO]) as tcp, Client() as client:
        client.request(method, url_of(tcp, "/one"))
        assert client.pool.connections == 0
        assert client.post(url_of(tcp, "/two"), content=b"data").content == b"two"
        assert len(tcp.accepted) == 2  # type: ignore[attr-defined]


def test_the_protocol_layer_refuses_a_request_after_unrequested_bytes() -> None:
    conn = ClientConnection()
    conn.send_request(b"GET", b"/", [(b"host", b"x")])
    conn.receive_data(
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na"
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb"
    )
    events = conn.next_events()
    assert isinstance(events, list) and len(events) == 3  # head, data, end
    assert conn.has_unrequested_data
    with pytest.raises(LocalProtocolError):
        conn.send_request(b"GET", b"/", [(b"host", b"x")])
    clean = ClientConnection()
    clean.send_request(b"GET", b"/", [(b"host", b"x")])
    clean.receive_data(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na")
    clean.next_events()
    assert not clean.has_unrequested_data
    clean.send_request(b"GET", b"/", [(b"host", b"x")])


# -- a drain cut short ---------------------------------------------------------------------------


@pytest.mark.unknot
def test_a_cancellation_during_the_drain_closes_the_connection() -> None:
    # close() drains a small unread rest; cancelled meanwhile, it must still let go of the
    # connection (a pool of one would otherwise be full for ever).
    stalled = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 10
    with raw_server([stalled, TWO]) as tcp, Client(max_connections=1) as client:
        with unknot.move_on_after(0.2) as scope:
            with client.stream("GET", url_of(tcp)) as r:
                next(r.iter_bytes())
        assert scope.cancelled_caught
        assert r.is_closed
        assert client.pool.connections == 0
        assert client.get(url_of(tcp), timeout=http.Timeout(pool=2)).content == b"two"


# -- an answer that comes while the body is being sent -------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize("size", [2 << 20, 32 << 20])
def test_an_early_413_is_returned_while_the_body_is_still_being_sent(size: int) -> None:
    # unknot's server refuses a body over its limit (1 MiB) at the head and closes; the client
    # was still sending. It must return the answer, not the broken pipe.
    with http.HTTPServer(lambda r: (200, None, r.body()), "127.0.0.1", 0) as server:
        server.start()
        with Client() as client:
            r = client.post(f"http://127.0.0.1:{server.port}/", content=b"x" * size)
            assert r.status_code == 413
            assert client.pool.connections == 0


def test_the_write_timeout_bounds_each_piece_of_a_large_body() -> None:
    # A bytes body over 64 KiB leaves in pieces of at most 64 KiB, each under the write timeout.
    sent: list[int] = []

    class Sock:
        def settimeout(self, timeout: float | None) -> None:
            pass

        def sendall(self, data: bytes) -> None:
            sent.append(len(data))

    conn = HTTPConnection(Sock(), None, ("http", "x", 80, None))
    body = b"y" * (300 * 1024 + 5)
    conn.send_request(b"PUT", b"/", [(b"host", b"x")], body, 1.0)
    assert sent[0] < 200  # the head
    assert max(sent[1:]) <= 65536 and sum(sent[1:]) == len(body)


# -- bodies and their codings --------------------------------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize(
    ("method", "answer"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 40\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\ncontent-encoding: gzip\r\n\r\n"),
        ("GET", b"HTTP/1.1 200 OK\r\ncontent-encoding: deflate\r\ncontent-length: 0\r\n\r\n"),
    ],
    ids=["HEAD", "304", "empty"],
)
@pytest.mark.parametrize("stream", [False, True])
def test_no_body_under_a_content_encoding_reads_as_empty(
    method: str, answer: bytes, stream: bool
) -> None:
    with raw_server([answer]) as tcp, Client() as client:
        r = client.request(method, url_of(tcp), stream=stream)
        assert r.read() == b""


@pytest.mark.parametrize("coding", [b"gzip", b"deflate"])
def test_a_body_cut_short_does_not_decode(coding: bytes) -> None:
    data = bytes(range(256)) * 200
    whole = gzip.compress(data) if coding == b"gzip" else zlib.compress(data)
    decoder = ContentDecoder([coding])
    got = decoder.decode(whole[: len(whole) // 2])
    with pytest.raises(DecodingError):
        got += decoder.flush()
    assert len(got) < len(data)


@pytest.mark.parametrize("raw", [False, True], ids=["zlib", "raw"])
def test_deflate_decodes_however_the_body_is_split(raw: bool) -> None:
    data = b"unknot fibers " * 300
    z = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    body = z.compress(data) + z.flush()
    for cut in (1, 2, 3, len(body) // 2):
        decoder = ContentDecoder([b"deflate"])
        out = decoder.decode(body[:cut]) + decoder.decode(body[cut:]) + decoder.flush()
        assert out == data, cut
    one_byte_at_a_time = ContentDecoder([b"deflate"])
    out = b"".join(one_byte_at_a_time.decode(body[i : i + 1]) for i in range(len(body)))
    assert out + one_byte_at_a_time.flush() == data


@pytest.mark.unknot
def test_a_transfer_coding_other_than_chunked_is_refused() -> None:
    coded = gzip.compress(b"hello world")
    answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
        len(coded),
        coded,
    )
    with raw_server([answer]) as tcp, Client() as client:
        with pytest.raises(RemoteProtocolError, match="transfer coding"):
            client.get(url_of(tcp))


@pytest.mark.unknot
def test_a_decoding_error_leaves_the_pool_consistent() -> None:
    bad = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 4\r\n\r\nnope"
    with raw_server([bad, TWO]) as tcp, Client() as client:
        with pytest.raises(DecodingError) as info:
            client.get(url_of(tcp))
        assert info.value.request.url == url_of(tcp)
        # The body arrived whole: the connection is idle, counted once, and serves the next.
        assert (client.pool.connections, client.pool.idle_connections) == (1, 1)
        assert client.get(url_of(tcp)).content == b"two"
        assert len(tcp.accepted) == 1  # type: ignore[attr-defined]


class _Text(ClientResponse):
    """A response whose text arrives in the given pieces."""

    __slots__ = ("pieces",)

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    def iter_text(self, chunk_size: int | None = None) -> Iterator[str]:
        return iter(self.pieces)


def _lines(pieces: list[str]) -> list[str]:
    return list(_Text(pieces).iter_lines())


def test_iter_lines_splits_at_line_ends_only_wherever_the_pieces_are_cut() -> None:
    text = "a\r\nb\rc\n\nd\r\re\x0cf\x1eg\x85h\u2028i\r"
    want = ["a", "b", "c", "", "d", "", "e\x0cf\x1eg\x85h\u2028i"]
    for cut, cut2 in itertools.combinations_with_replacement(range(len(text) + 1), 2):
        assert _lines([text[:cut], text[cut:cut2], text[cut2:]]) == want, (cut, cut2)
    assert _lines(["no end"]) == ["no end"]


# -- URLs, Locations and credentials -------------------------------------------------------------


@pytest.mark.unknot
def test_base_url_joins_a_relative_url_with_a_url_in_its_query() -> None:
    def echo_target(request: Any) -> tuple[int, None, bytes]:
        return 200, None, request.target

    with http.HTTPServer(echo_target, "127.0.0.1", 0) as server:
        server.start()
        with Client(base_url=f"http://127.0.0.1:{server.port}/api") as client:
            r = client.get("/login?next=http://example.com/")
            assert r.content == b"/api/login?next=http://example.com/"


@pytest.mark.unknot
def test_a_raw_utf8_location_is_percent_encoded_once() -> None:
    answers = [b"HTTP/1.1 302 Found\r\nlocation: /caf\xc3\xa9\r\ncontent-length: 0\r\n\r\n", TWO]
    with raw_server(answers) as tcp, Client() as client:
        r = client.get(url_of(tcp, "/start"))
        assert r.url == url_of(tcp, "/caf%C3%A9")


def test_non_ascii_hosts_follow_idna_2008() -> None:
    assert URL("http://straße.de/").host == "xn--strae-oqa.de"
    assert URL("http://faß.de/").host == "xn--fa-hia.de"
    assert URL("http://Bücher.example/").host == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    "url",
    ["http://" + "a" * 64 + ".example/", "http://[fe80::1%25lo]:8080/", "http://\u2615\ufffd.x/"],
    ids=["a label over 63", "an IPv6 zone", "an invalid name"],
)
def test_bad_hosts_are_invalid_urls(url: str) -> None:
    with pytest.raises(InvalidURL):
        URL(url)


@pytest.mark.unknot
def test_an_invalid_location_is_an_invalid_url_with_its_request() -> None:
    answer = b"HTTP/1.1 302 Found\r\nlocation: http://[::1/x\r\ncontent-length: 0\r\n\r\n"
    with raw_server([answer]) as tcp, Client() as client:
        with pytest.raises(InvalidURL) as info:
            client.get(url_of(tcp))
        assert isinstance(info.value, ClientError) and info.value.request.url == url_of(tcp)


@pytest.mark.unknot
def test_credentials_beyond_latin_1_are_sent_as_utf8() -> None:
    def authorization(request: Any) -> tuple[int, None, bytes]:
        return 200, None, request.headers.get("authorization", "").encode()

    with http.HTTPServer(authorization, "127.0.0.1", 0) as server:
        server.start()
        with Client() as client:
            r = client.get(f"http://127.0.0.1:{server.port}/", auth=("jürgen€", "pw"))
            assert r.content == b"Basic " + __import__("base64").b64encode("jürgen€:pw".encode())
