"""nats-py, an asyncio client, unmodified, used from fibers on the hub's loop (real NATS server).

The hub is an asyncio loop: the client's reader, pinger and flusher tasks run on it, between the
fibers, and fibers call its coroutines with `unknot.await_`. Asyncio subscriber callbacks reply
to fibers' requests; a callback can hand blocking-style work to a fiber (nats-py runs one
subscription's callbacks one after the other, so a callback that waited for the fiber would
serialise the requests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from drivers_support import require_module, require_tcp

import unknot

DELAY = 0.2


@pytest.fixture(scope="module")
def nats_url() -> str:
    require_module("nats")
    require_tcp("127.0.0.1", 4222, "NATS")
    return "nats://127.0.0.1:4222"


def subject(name: str) -> str:
    """A subject of this test run's own (tests running at once on one server do not mix)."""
    return f"unknot.test.{time.monotonic_ns()}.{name}"


def connect(url: str) -> Any:
    import nats

    return unknot.await_(nats.connect(url, connect_timeout=2, allow_reconnect=False))


def delayed_responder() -> Callable[[Any], Coroutine[Any, Any, None]]:
    """An asyncio callback that answers each request, upper-cased, ``DELAY`` s later (in a task
    of its own, so that the requests are answered concurrently)."""
    tasks: set[asyncio.Task[None]] = set()

    async def reply(msg: Any) -> None:
        await asyncio.sleep(DELAY)
        await msg.respond(msg.data.upper())

    async def on_request(msg: Any) -> None:
        task = asyncio.get_running_loop().create_task(reply(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return on_request


async def ignore(msg: Any) -> None:
    """A subscriber that never answers."""


@pytest.mark.unknot
def test_publish_subscribe(nats_url: str) -> None:
    """A fiber publishes; an asyncio callback on the same loop receives, in order."""
    nc = connect(nats_url)
    topic = subject("events")
    got: list[bytes] = []
    all_in: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def collect(msg: Any) -> None:
        got.append(msg.data)
        if len(got) == 20 and not all_in.done():
            all_in.set_result(None)

    unknot.await_(nc.subscribe(topic, cb=collect))
    unknot.await_(nc.flush())
    for i in range(20):
        unknot.await_(nc.publish(topic, b"e%d" % i))
    unknot.await_(asyncio.wait_for(all_in, 2))
    assert got == [b"e%d" % i for i in range(20)]
    unknot.await_(nc.close())


def test_many_fibers_request_at_once(nats_url: str, concurrently: Any) -> None:
    """200 fibers each wait for a reply that an asyncio callback sends 0.2 s later: about
    0.2 s in all (serially 40 s), on one thread, each fiber its own answer."""
    clients: list[Any] = []

    def setup() -> None:
        nc = connect(nats_url)
        topic = subject("upper")
        unknot.await_(nc.subscribe(topic, cb=delayed_responder()))
        unknot.await_(nc.flush())
        clients.append((nc, topic))

    def work(i: int) -> Any:
        nc, topic = clients[0]
        return unknot.await_(nc.request(topic, b"x%d" % i, timeout=5)).data

    def teardown() -> None:
        unknot.await_(clients[0][0].close())

    outcome = concurrently(work, 200, setup=setup, teardown=teardown, limit=1.5)
    assert outcome.results == [b"X%d" % i for i in range(200)]


@pytest.mark.unknot
def test_fiber_answers_asyncio_requests(nats_url: str) -> None:
    """The other way round: asyncio tasks request, the callback hands each request to a fiber
    that does blocking-style work (0.2 s) and replies: 50 requests in about 0.2 s."""
    nc = connect(nats_url)
    topic = subject("fiber")

    def respond(msg: Any) -> None:
        time.sleep(DELAY)  # patched: this fiber only
        unknot.await_(msg.respond(msg.data.upper()))

    async def on_request(msg: Any) -> None:
        unknot.spawn(respond, msg)

    async def ask_all() -> list[bytes]:
        replies = await asyncio.gather(
            *(nc.request(topic, b"a%d" % i, timeout=5) for i in range(50))
        )
        return [m.data for m in replies]

    unknot.await_(nc.subscribe(topic, cb=on_request))
    unknot.await_(nc.flush())
    t0 = time.monotonic()
    assert unknot.await_(ask_all()) == [b"A%d" % i for i in range(50)]
    assert DELAY * 0.9 <= time.monotonic() - t0 < 1.5
    unknot.await_(nc.close())


@pytest.mark.unknot
def test_fiber_cancelled_while_awaiting_a_request(nats_url: str) -> None:
    """The request's task is cancelled with the fiber; nats-py forgets the pending reply; the
    client goes on serving the other fibers. nats-py's own timeout stays its error."""
    import nats.errors

    nc = connect(nats_url)
    silent, upper = subject("silent"), subject("upper")
    unknot.await_(nc.subscribe(silent, cb=ignore))
    unknot.await_(nc.subscribe(upper, cb=delayed_responder()))
    unknot.await_(nc.flush())

    t0 = time.monotonic()
    with unknot.move_on_after(0.1) as scope:
        unknot.await_(nc.request(silent, b"?", timeout=5))
    assert scope.cancelled_caught
    assert time.monotonic() - t0 < 0.5

    def cancelled(i: int) -> bool:
        with unknot.move_on_after(0.05 + 0.001 * i) as scope:
            unknot.await_(nc.request(silent, b"?", timeout=5))
        return scope.cancelled_caught

    def answered(i: int) -> bytes:
        return unknot.await_(nc.request(upper, b"u%d" % i, timeout=5)).data

    t0 = time.monotonic()
    with unknot.TaskGroup() as tg:
        cancels = [tg.spawn(cancelled, i) for i in range(50)]
        answers = [tg.spawn(answered, i) for i in range(50)]
    assert time.monotonic() - t0 < 1.5
    assert all(f.result() for f in cancels)
    assert [f.result() for f in answers] == [b"U%d" % i for i in range(50)]
    assert not getattr(nc, "_resp_map", {})  # no reply still awaited (nats-py's own table)

    t0 = time.monotonic()
    with pytest.raises(nats.errors.TimeoutError):
        unknot.await_(nc.request(silent, b"?", timeout=0.2))
    assert 0.18 <= time.monotonic() - t0 < 1
    unknot.await_(nc.close())


@pytest.mark.unknot
def test_clean_close(nats_url: str) -> None:
    """drain() from a fiber closes the client and ends its tasks on the hub's loop."""
    loop = asyncio.get_running_loop()
    before = asyncio.all_tasks(loop)
    nc = connect(nats_url)
    got: list[bytes] = []

    async def collect(msg: Any) -> None:
        got.append(msg.data)

    topic = subject("drain")
    unknot.await_(nc.subscribe(topic, cb=collect))
    unknot.await_(nc.flush())
    for i in range(10):
        unknot.await_(nc.publish(topic, b"%d" % i))
    assert asyncio.all_tasks(loop) - before  # the client's reader, pinger, flusher...
    unknot.await_(nc.drain())  # the subscription's messages are handled first
    assert nc.is_closed
    assert got == [b"%d" % i for i in range(10)]
    unknot.sleep(0)  # tasks cancelled by close finish on the loop's next turn
    assert not {t for t in asyncio.all_tasks(loop) - before if not t.done()}


def test_asyncio_run_in_a_fiber(nats_url: str) -> None:
    """A program written for asyncio, `asyncio.run(main())`, started in a fiber (patched): its
    client runs on the hub's loop beside fibers that use another client."""

    async def amain(topic: str) -> bytes:
        import nats

        nc = await nats.connect(nats_url, connect_timeout=2, allow_reconnect=False)
        try:
            return (await nc.request(topic, b"from asyncio.run", timeout=5)).data
        finally:
            await nc.close()

    def main() -> bytes:
        nc = connect(nats_url)
        topic = subject("upper")
        unknot.await_(nc.subscribe(topic, cb=delayed_responder()))
        unknot.await_(nc.flush())
        try:
            return asyncio.run(amain(topic))
        finally:
            unknot.await_(nc.close())

    assert unknot.run(main) == b"FROM ASYNCIO.RUN"
