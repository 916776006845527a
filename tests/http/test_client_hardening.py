"""The client's hardening: a streamed redirect to a malformed Location lets go of its connection,
an idle connection is closed for any waiter it can serve, streamed decoding is bounded (a
decompression bomb), string queries are percent-encoded, zero timeouts are timeouts, bad hosts
are invalid URLs, iter_bytes checks its chunk size, and request framing mistakes are client
errors raised before connecting."""

from __future__ import annotations

import functools
import gzip
import tracemalloc
import zlib
from typing import Any

import pytest
from client_helpers import (
    full_backlog,
    pattern,
    raw_server,
    serving,
    silent_server,
    url_of,
)

import unknot
from unknot import http
from unknot.http._client import Client
from unknot.http._client_decoders import ContentDecoder
from unknot.http._client_errors import (
    ClientError,
    ConnectTimeout,
    InvalidURL,
    PoolTimeout,
    ReadTimeout,
)
from unknot.http._protocol import LocalProtocolError as ProtocolLocalError
from unknot.http._url import URL

pytestmark = [pytest.mark.timeout(30)]

TWO = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ntwo"


# -- 1. a streamed redirect to a malformed Location ----------------------------------------------


@pytest.mark.unknot
def test_a_streamed_redirect_to_an_invalid_location_releases_its_connection() -> None:
    # Most of the redirect's body is still to come: the connection must be closed, not kept.
    moved = b"HTTP/1.1 302 Found\r\nlocation: http://[bad/\r\ncontent-length: 200000\r\n\r\nxx"
    with raw_server([moved, TWO]) as tcp, Client(max_connections=1) as client:
        with pytest.raises(InvalidURL):
            client.get(url_of(tcp), stream=True)
        assert client.pool.connections == 0
        r = client.get(url_of(tcp), timeout=http.Timeout(2, pool=0.5))
        assert r.content == b"two"


# -- 2. an idle connection closed for any waiter it can serve ------------------------------------


@pytest.mark.unknot
def test_an_idle_connection_is_closed_for_a_waiter_behind_one_that_cannot_be_served() -> None:
    # A is busy (per-host limit 1), B busy then idle; a waiter for A comes first, then one for
    # C, which only the total limit holds back: B's idle connection must go to make room for C.
    with serving() as a, serving() as b, serving() as c:
        timeout = http.Timeout(5, pool=1.5)
        with Client(max_connections=2, max_connections_per_host=1, timeout=timeout) as client:
            held_a = client.stream("GET", a.url("/big?size=1000000"))
            held_b = client.stream("GET", b.url("/big?size=300000"))  # not whole with its head
            got: dict[str, Any] = {}

            def fetch(name: str, url: str) -> None:
                try:
                    got[name] = client.get(url).content
                except PoolTimeout as exc:
                    got[name] = exc
                finally:
                    if name == "c":
                        held_a.close()  # lets the waiter for A go on

            with unknot.TaskGroup() as tg:
                tg.spawn(fetch, "a", a.url("/text?body=a"))
                unknot.sleep(0.02)
                tg.spawn(fetch, "c", c.url("/text?body=c"))
                unknot.sleep(0.02)
                assert held_b.read() == pattern(300000)  # B's connection goes idle
                assert client.pool.idle_connections <= 1
            assert got == {"a": b"a", "c": b"c"}
            assert client.pool.connections <= 2


# -- 3. streamed decoding in bounded steps -------------------------------------------------------

EXPANDED = 64 << 20


@functools.cache
def _bomb(coding: str) -> bytes:
    """``EXPANDED`` zero bytes under ``coding`` (``"gzip, gzip"``: gzip applied twice)."""

    def compress(data_pieces: Any, wbits: int) -> bytes:
        z = zlib.compressobj(9, zlib.DEFLATED, wbits)
        return b"".join(z.compress(piece) for piece in data_pieces) + z.flush()

    zeros = [bytes(1 << 20)] * (EXPANDED >> 20)
    if coding == "deflate":
        return compress(zeros, zlib.MAX_WBITS)
    once = compress(zeros, 16 + zlib.MAX_WBITS)
    return once if coding == "gzip" else gzip.compress(once, 9)


@pytest.mark.unknot
@pytest.mark.parametrize("coding", ["gzip", "deflate", "gzip, gzip"])
@pytest.mark.parametrize("chunk_size", [1024, None])
def test_a_streamed_decompression_bomb_is_decoded_in_bounded_memory(
    coding: str, chunk_size: int | None
) -> None:
    body = _bomb(coding)
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: %s\r\ncontent-length: %d\r\n\r\n%s" % (
        coding.encode(),
        len(body),
        body,
    )
    with raw_server([answer]) as tcp, Client(timeout=5) as client:
        with client.stream("GET", url_of(tcp)) as r:
            tracemalloc.start()
            try:
                first = next(r.iter_bytes(chunk_size))
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    assert first == bytes(len(first)) and 0 < len(first) <= max(chunk_size or 0, 1 << 20)
    assert peak < 8 << 20, f"{peak >> 20} MiB for one piece"


@pytest.mark.unknot
def test_a_streamed_stacked_coding_decodes_whole_in_bounded_pieces() -> None:
    data = bytes(range(256)) * 4096 + b"tail"
    body = gzip.compress(zlib.compress(gzip.compress(data)))
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip, deflate, gzip\r\ncontent-length: %d\r\n\r\n"
    )
    answer = answer % len(body) + body
    with raw_server([answer, answer]) as tcp, Client() as client:
        with client.stream("GET", url_of(tcp)) as r:
            pieces = list(r.iter_bytes())
        assert b"".join(pieces) == data
        assert max(len(piece) for piece in pieces) <= 1 << 20
        assert client.get(url_of(tcp)).content == data  # not streamed: decoded whole


@pytest.mark.parametrize("codings", [[b"gzip"], [b"deflate"], [b"gzip", b"gzip"]])
def test_the_decoder_bounds_each_step_however_the_body_is_split(codings: list[bytes]) -> None:
    data = bytes(range(256)) * 2000
    body = data
    for coding in codings:
        body = gzip.compress(body) if coding == b"gzip" else zlib.compress(body)
    for cut in (1, 7, len(body) // 2, len(body)):
        decoder = ContentDecoder(codings)
        out: list[bytes] = []
        for start in range(0, len(body), cut):
            decoder.feed(body[start : start + cut])
            while piece := decoder.read(1000):
                assert len(piece) <= 1000
                out.append(piece)
        out.extend(decoder.finish(1000))
        assert all(len(piece) <= 1000 for piece in out)
        assert b"".join(out) == data, cut


# -- 4. string queries -----------------------------------------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize(
    ("params", "query"),
    [
        ("a=b c", "a=b%20c"),
        ("é=ü", "%C3%A9=%C3%BC"),
        ("a=1#x", "a=1%23x"),
        ("?a=1&b=%41", "a=1&b=%41"),
        (b"a=b c&\xc3\xa9", "a=b%20c&%C3%A9"),
    ],
    ids=["space", "non-ascii", "hash", "already encoded", "bytes"],
)
def test_a_string_query_is_encoded_as_in_the_url(params: str | bytes, query: str) -> None:
    def echo_target(request: Any) -> tuple[int, None, bytes]:
        return 200, None, request.target

    with http.HTTPServer(echo_target, "127.0.0.1", 0) as server:
        server.start()
        url = f"http://127.0.0.1:{server.port}/p"
        with Client() as client:
            assert client.get(url, params=params).content == b"/p?" + query.encode()
            written = params if isinstance(params, str) else params.decode()
            written = written.lstrip("?").replace("#", "%23")
            assert client.get(url + "?" + written).content == b"/p?" + query.encode()


# -- 5. zero timeouts ------------------------------------------------------------------------------


@pytest.mark.unknot
def test_a_zero_read_timeout_is_a_read_timeout() -> None:
    with silent_server() as (host, port):
        with pytest.raises(ReadTimeout):
            http.get(f"http://{host}:{port}/", timeout=http.Timeout(2, read=0))


@pytest.mark.parametrize("in_fiber", [True, False], ids=["fiber", "thread"])
def test_a_zero_connect_timeout_is_a_connect_timeout(in_fiber: bool) -> None:
    def fetch() -> None:
        with full_backlog() as (host, port):
            with pytest.raises(ConnectTimeout):
                http.get(f"http://{host}:{port}/", timeout=http.Timeout(2, connect=0))

    if in_fiber:
        unknot.run(fetch)
    else:
        fetch()


# -- 6. bad hosts ----------------------------------------------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize(
    "host",
    ["127.0.0.1\x00.example.com", "a b", "127.0.0.1\r\n.x", "127.0.0.1\t.x", "a\x7fb", "a<b"],
    ids=["NUL", "space", "CRLF", "tab", "DEL", "angle bracket"],
)
def test_control_characters_in_the_host_are_invalid_urls(host: str) -> None:
    with raw_server([TWO]) as tcp:
        url = f"http://{host}:{tcp.address[1]}/"
        with pytest.raises(InvalidURL):
            URL(url)
        with pytest.raises(InvalidURL):
            http.get(url, timeout=2)
        assert tcp.accepted == []  # type: ignore[attr-defined]


# -- 7. iter_bytes' chunk size ---------------------------------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("size", [-1, 0])
def test_iter_bytes_refuses_a_chunk_size_below_one(stream: bool, size: int) -> None:
    with raw_server([TWO]) as tcp, Client() as client:
        with client.request("GET", url_of(tcp), stream=stream) as r:
            with pytest.raises(ValueError, match="chunk_size"):
                list(r.iter_bytes(size))
            with pytest.raises(ValueError, match="chunk_size"):
                list(r.iter_text(size))


# -- 8. request framing mistakes -------------------------------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"headers": {"content-length": "3"}, "content": b"hello"}, "Content-Length"),
        ({"headers": {"transfer-encoding": "chunked"}, "content": b"hello"}, "chunked"),
        ({"headers": {"content-length": "x"}}, "Content-Length"),
    ],
    ids=["length mismatch", "chunked bytes", "bad length"],
)
def test_request_framing_mistakes_are_client_errors_before_connecting(
    kwargs: dict[str, Any], match: str
) -> None:
    with raw_server([TWO]) as tcp, Client() as client:
        with pytest.raises(ClientError, match=match) as info:
            client.post(url_of(tcp), **kwargs)
        assert isinstance(info.value, ProtocolLocalError)  # as before: still caught so
        assert info.value.request.url == url_of(tcp)
        assert client.pool.connections == 0
        unknot.sleep(0.05)
        assert tcp.accepted == []  # type: ignore[attr-defined]


@pytest.mark.unknot
def test_a_bad_method_is_a_client_error_before_connecting() -> None:
    with raw_server([TWO]) as tcp, Client() as client:
        for method in ("GE T", "GÉT"):
            with pytest.raises(ClientError):
                client.request(method, url_of(tcp))
        unknot.sleep(0.05)
        assert tcp.accepted == []  # type: ignore[attr-defined]


@pytest.mark.unknot
def test_a_streamed_body_shorter_than_its_content_length_is_a_client_error() -> None:
    # Known only while sending: a client error still, and the connection is not kept.
    with raw_server([TWO]) as tcp, Client() as client:
        with pytest.raises(ClientError, match="short"):
            client.post(url_of(tcp), headers={"content-length": "10"}, content=iter([b"abc"]))
        assert client.pool.connections == 0
