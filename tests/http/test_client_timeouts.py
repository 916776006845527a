"""Timeouts: connect (a full listen queue), read (a server that never answers), write, total
(a body that trickles in), pool (every connection busy); all are builtin TimeoutErrors."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator

import pytest
from client_helpers import Server, full_backlog, serving, silent_server

import unknot
from unknot.http._client import Client, get
from unknot.http._client_errors import (
    ConnectTimeout,
    PoolTimeout,
    ReadTimeout,
    TimeoutError,
    TotalTimeout,
    WriteTimeout,
)
from unknot.http._client_timeout import Timeout

pytestmark = [pytest.mark.timeout(30), pytest.mark.unknot]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serving() as running:
        yield running


def test_connect_timeout() -> None:
    with full_backlog() as (host, port):
        started = time.monotonic()
        with pytest.raises(ConnectTimeout) as info:
            get(f"http://{host}:{port}/", timeout=Timeout(connect=0.2))
        took = time.monotonic() - started
    assert 0.15 < took < 2
    assert isinstance(info.value, builtins.TimeoutError)
    assert isinstance(info.value, TimeoutError)


def test_connect_timeout_outside_fibers_too() -> None:
    def blocking() -> None:
        with full_backlog() as (host, port), pytest.raises(ConnectTimeout):
            get(f"http://{host}:{port}/", timeout=Timeout(connect=0.2))

    unknot.to_thread(blocking)


def test_read_timeout_when_the_server_never_answers() -> None:
    with silent_server() as (host, port):
        started = time.monotonic()
        with pytest.raises(ReadTimeout) as info:
            get(f"http://{host}:{port}/", timeout=Timeout(read=0.2))
        assert 0.15 < time.monotonic() - started < 2
    assert isinstance(info.value, builtins.TimeoutError)
    assert info.value.request.method == "GET"


def test_read_timeout_bounds_each_wait_not_the_whole_body(server: Server) -> None:
    # 10 bytes 0.05 s apart: 0.5 s in all, each wait well under the 0.3 s read timeout
    started = time.monotonic()
    r = get(server.url("/trickle?n=10&delay=0.05"), timeout=Timeout(read=0.3))
    assert r.content == b"x" * 10
    assert time.monotonic() - started > 0.3
    with pytest.raises(ReadTimeout):
        get(server.url("/sleep?s=0.5"), timeout=0.2)


def test_total_timeout_bounds_the_whole_exchange(server: Server) -> None:
    started = time.monotonic()
    with pytest.raises(TotalTimeout) as info:
        get(server.url("/trickle?n=20&delay=0.05"), timeout=Timeout(read=1, total=0.3))
    assert 0.25 < time.monotonic() - started < 1.5
    assert isinstance(info.value, builtins.TimeoutError)


def test_total_timeout_bounds_a_streamed_body(server: Server) -> None:
    with Client(timeout=Timeout(total=0.3)) as client:
        with client.stream("GET", server.url("/trickle?n=20&delay=0.05")) as r:
            with pytest.raises(TotalTimeout):
                for _ in r.iter_bytes():
                    pass
        assert client.pool.connections == 0  # the connection was closed, not pooled


def test_total_timeout_covers_connecting() -> None:
    with full_backlog() as (host, port):
        with pytest.raises(TotalTimeout):
            get(f"http://{host}:{port}/", timeout=Timeout(connect=5, total=0.2))


def test_write_timeout_when_the_server_does_not_read() -> None:
    with silent_server() as (host, port):
        with pytest.raises(WriteTimeout):
            get(f"http://{host}:{port}/", content=b"x" * 50_000_000, timeout=Timeout(write=0.2))


def test_pool_timeout_when_every_connection_is_busy(server: Server) -> None:
    with Client(max_connections=1, timeout=Timeout(pool=0.2, read=5)) as client:
        slow = unknot.spawn(client.get, server.url("/sleep?s=1"))
        unknot.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            client.get(server.url("/echo"))
        assert 0.15 < time.monotonic() - started < 0.9  # before the busy one is released
        assert slow.join().content == b"late"


def test_a_timeout_leaves_the_client_usable(server: Server) -> None:
    with Client() as client:
        with pytest.raises(ReadTimeout):
            client.get(server.url("/sleep?s=0.5"), timeout=0.1)
        assert client.pool.connections == 0  # the timed-out connection was closed
        assert client.get(server.url("/text?body=ok")).text == "ok"


def test_cancellation_closes_the_connection(server: Server) -> None:
    with Client() as client:
        with unknot.move_on_after(0.1) as scope:
            client.get(server.url("/sleep?s=0.5"))
        assert scope.cancelled_caught
        assert client.pool.connections == 0
        assert client.get(server.url("/text?body=ok")).text == "ok"
