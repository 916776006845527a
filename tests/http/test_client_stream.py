"""Streamed responses: large bodies in bounded memory, text and lines, and what closing a
response early does to its connection."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator

import pytest
from client_helpers import PLAIN, Server, pattern, serving

import unknot
from unknot.http._client import Client, get, request
from unknot.http._client_errors import RequestError

pytestmark = [pytest.mark.timeout(30), pytest.mark.unknot]

SIZE = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serving() as running:
        yield running


@pytest.mark.parametrize("chunked", ["0", "1"])
def test_a_large_download_streams_in_bounded_memory(server: Server, chunked: str) -> None:
    expected = hashlib.sha256(pattern(SIZE)).hexdigest()
    digest = hashlib.sha256()
    received = 0
    with Client() as client:
        tracemalloc.start()
        try:
            with client.stream("GET", server.url(f"/big?size={SIZE}&chunked={chunked}")) as r:
                assert r.status_code == 200
                for chunk in r.iter_bytes():
                    digest.update(chunk)
                    received += len(chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert client.pool.idle_connections == 1  # read to the end: back in the pool
    assert received == SIZE
    assert digest.hexdigest() == expected
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while streaming {SIZE}"


def test_iter_bytes_with_a_chunk_size(server: Server) -> None:
    with Client() as client, client.stream("GET", server.url("/big?size=100000")) as r:
        sizes = [len(c) for c in r.iter_bytes(chunk_size=30000)]
    assert sizes == [30000, 30000, 30000, 10000]


def test_iter_text_and_iter_lines(server: Server) -> None:
    with Client() as client:
        with client.stream("GET", server.url("/lines")) as r:
            assert list(r.iter_lines()) == ["one", "two", "three", "four", "", "last"]
        with client.stream("GET", server.url("/text?body=h%C3%A9llo")) as r:
            assert "".join(r.iter_text(chunk_size=1)) == "héllo"  # é split across chunks
        assert client.pool.connections == 1


def test_a_streamed_gzip_body_is_decoded(server: Server) -> None:
    with Client() as client, client.stream("GET", server.url("/gzip")) as r:
        assert b"".join(r.iter_bytes()) == PLAIN


def test_read_then_content(server: Server) -> None:
    with Client() as client:
        r = client.stream("GET", server.url("/big?size=1000"))
        assert r.read() == pattern(1000)
        assert r.content == pattern(1000)
        assert r.is_closed
        assert client.pool.idle_connections == 1


def test_the_body_cannot_be_read_twice(server: Server) -> None:
    with Client() as client, client.stream("GET", server.url("/big?size=1000")) as r:
        assert len(b"".join(r.iter_bytes())) == 1000
        with pytest.raises(RequestError):
            r.read()


def test_closing_with_a_small_remainder_drains_it_and_keeps_the_connection(
    server: Server,
) -> None:
    accepts = server.accepts
    with Client() as client:
        # Read at least 40,000 of the 100,000 bytes, so that under 64 KiB are left whatever
        # sizes the reads had (a loaded machine splits them early).
        got = 0
        with client.stream("GET", server.url("/big?size=100000")) as r:
            for chunk in r.iter_bytes():
                got += len(chunk)
                if got >= 40000:
                    break
            assert r.is_closed == (got == 100000)
        assert client.pool.idle_connections == 1
        assert client.get(server.url("/text?body=again")).text == "again"
    assert server.accepts == accepts + 1


def test_closing_with_a_large_remainder_closes_the_connection(server: Server) -> None:
    with Client() as client:
        with client.stream("GET", server.url(f"/big?size={SIZE}")) as r:
            assert not r.is_closed
            assert len(next(r.iter_raw())) > 0
        assert r.is_closed
        assert client.pool.connections == 0
        assert client.get(server.url("/text?body=again")).text == "again"
    with Client() as client:
        r = client.stream("GET", server.url(f"/big?size={SIZE}&chunked=1"))
        r.close()  # chunked: nothing says how much remains
        assert client.pool.connections == 0


def test_module_level_stream_closes_its_client_with_the_response(server: Server) -> None:
    r = get(server.url("/big?size=70000"), stream=True)
    stream = r._stream
    assert stream is not None and stream.conn is not None
    conn = stream.conn
    assert len(r.read()) == 70000
    assert conn.closed  # its one-off client was closed, and the connection with it
    r = request("GET", server.url(f"/big?size={SIZE}"), stream=True)
    r.close()
    assert r.is_closed


def test_a_stream_read_by_another_fiber(server: Server) -> None:
    with Client() as client:
        r = client.stream("GET", server.url("/big?size=200000"))
        reader = unknot.spawn(lambda: len(r.read()))
        assert reader.join() == 200000
