"""The connection pool: keep-alive reuse, limits and waiting, stale connections, expiry, and
many fibers sharing one client."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from client_helpers import Server, serving

import unknot
from unknot.http._client import Client
from unknot.http._client_errors import RemoteProtocolError

pytestmark = [pytest.mark.timeout(30), pytest.mark.unknot]


@pytest.fixture
def server() -> Iterator[Server]:
    with serving() as running:
        yield running


def test_sequential_requests_reuse_one_connection(server: Server) -> None:
    with Client() as client:
        for i in range(20):
            assert client.get(server.url(f"/text?body={i}")).text == str(i)
        assert (client.pool.connections, client.pool.idle_connections) == (1, 1)
    assert server.accepts == 1
    assert client.pool.connections == 0  # closed with the client


def test_100_fibers_share_one_client(server: Server) -> None:
    results: dict[int, str] = {}

    def fetch(client: Client, i: int) -> None:
        for round in range(3):
            results[i * 10 + round] = client.get(server.url(f"/text?body={i}-{round}")).text

    with Client() as client:
        with unknot.TaskGroup() as tg:
            for i in range(100):
                tg.spawn(fetch, client, i)
        assert client.pool.connections <= 100
    assert results == {i * 10 + r: f"{i}-{r}" for i in range(100) for r in range(3)}
    assert server.accepts <= 100


def test_max_connections_makes_fibers_wait_their_turn(server: Server) -> None:
    done = []

    def fetch(client: Client, i: int) -> None:
        done.append(client.get(server.url(f"/text?body={i}")).text)

    with Client(max_connections=3) as client:
        with unknot.TaskGroup() as tg:
            for i in range(30):
                tg.spawn(fetch, client, i)
        assert client.pool.connections <= 3
    assert sorted(done, key=int) == [str(i) for i in range(30)]
    assert server.accepts <= 3


def test_max_connections_per_host() -> None:
    with serving() as one, serving() as two, Client(max_connections_per_host=2) as client:

        def fetch(server: Server) -> None:
            assert client.get(server.url("/sleep?s=0.05")).content == b"late"

        with unknot.TaskGroup() as tg:
            for i in range(12):
                tg.spawn(fetch, one if i % 2 else two)
        assert one.accepts <= 2 and two.accepts <= 2
        assert client.pool.connections == one.accepts + two.accepts


def test_a_full_pool_closes_an_idle_connection_to_another_host() -> None:
    with serving() as one, serving() as two, Client(max_connections=1) as client:
        assert client.get(one.url("/text?body=a")).text == "a"
        assert client.get(two.url("/text?body=b")).text == "b"  # no wait: one's idle conn goes
        assert client.pool.connections == 1
        assert client.get(one.url("/text?body=c")).text == "c"
    assert (one.accepts, two.accepts) == (2, 1)


def test_a_waiter_gets_the_slot_of_a_connection_that_closed(server: Server) -> None:
    with Client(max_connections=1) as client:
        first = unknot.spawn(client.get, server.url("/no-length"))  # closed after its body
        unknot.sleep(0)
        second = unknot.spawn(client.get, server.url("/text?body=next"))
        assert first.join().content == b"until the end"
        assert second.join().text == "next"
    assert server.accepts == 2


def test_a_connection_the_server_closed_is_not_reused(server: Server) -> None:
    with Client() as client:
        assert client.get(server.url("/close-after")).content == b"closing"
        unknot.sleep(0.05)  # the server's FIN arrives
        # POST is never retried: it succeeds only because the dead connection was detected.
        assert client.post(server.url("/text?body=fresh"), content=b"x").text == "fresh"
    assert server.accepts == 2


def test_a_reused_connection_that_fails_is_retried_once_for_get(server: Server) -> None:
    with Client() as client:
        assert client.get(server.url("/drop-second")).content == b"first"
        # The server closes the pooled connection when this request arrives, unanswered:
        # the GET goes again on a new connection, where it is the first request.
        assert client.get(server.url("/drop-second")).content == b"first"
    assert server.accepts == 2


def test_a_post_on_a_reused_connection_is_not_retried(server: Server) -> None:
    with Client() as client:
        assert client.post(server.url("/drop-second")).content == b"first"
        with pytest.raises(RemoteProtocolError, match="without sending a response"):
            client.post(server.url("/drop-second"), content=b"not idempotent")
        assert client.get(server.url("/text?body=ok")).text == "ok"
    assert server.accepts == 2


def test_idle_connections_expire(server: Server) -> None:
    with Client(keepalive_expiry=0.1) as client:
        client.get(server.url("/text?body=a"))
        assert client.pool.idle_connections == 1
        unknot.sleep(0.2)
        client.get(server.url("/text?body=b"))
        assert server.accepts == 2
        assert client.pool.connections == 1


def test_the_sweep_closes_expired_connections_of_every_host() -> None:
    with serving() as one, serving() as two, Client(keepalive_expiry=0.1) as client:
        client.get(one.url("/text?body=a"))
        unknot.sleep(0.15)
        client.get(two.url("/text?body=b"))  # a sweep: one's connection is past its expiry
        assert client.pool.connections == 1
        started = time.monotonic()
        while one.httpd.open and time.monotonic() - started < 2:
            unknot.sleep(0.01)
        assert not one.httpd.open  # the server saw it closed


def test_close_closes_idle_and_later_released_connections(server: Server) -> None:
    client = Client()
    r = client.stream("GET", server.url("/big?size=300000"))
    client.get(server.url("/text?body=a"))
    assert (client.pool.connections, client.pool.idle_connections) == (2, 1)
    client.close()
    assert client.pool.connections == 1  # the streamed one is still busy
    assert len(r.read()) == 300_000  # it can still be read to its end...
    assert client.pool.connections == 0  # ...and is then closed, not pooled


def test_waiters_that_gave_up_do_not_take_a_released_connection(server: Server) -> None:
    from unknot.http._client_errors import PoolTimeout
    from unknot.http._client_timeout import Timeout

    with Client(max_connections=1) as client:
        busy = unknot.spawn(client.get, server.url("/sleep?s=0.4"))
        unknot.sleep(0.05)
        impatient = unknot.spawn(client.get, server.url("/text?body=b"), timeout=Timeout(pool=0.1))
        cancelled = unknot.spawn(client.get, server.url("/text?body=c"))
        patient = unknot.spawn(client.get, server.url("/text?body=d"))
        unknot.sleep(0.05)
        cancelled.cancel()
        with pytest.raises(PoolTimeout):
            impatient.join()
        assert busy.join().content == b"late"
        assert patient.join().text == "d"
        assert client.pool.connections == 1
    assert server.accepts == 1
