"""Selector backends (epoll, poll, select): chosen by UNKNOT_SELECTOR, and timers,
primitives and asyncio transports working the same on each."""

from __future__ import annotations

import asyncio
import random
import socket
import time

import pytest

import unknot
from unknot.testing import MockClock

BACKEND_CLASSES = {"epoll": "EpollHub", "poll": "PollHub", "select": "SelectHub"}


@pytest.mark.unknot
def test_backend_selected_by_env(backend: str) -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, unknot.HubEventLoop)
    assert type(loop.hub).__name__ == BACKEND_CLASSES[backend]
    assert loop.hub.edge_triggered == (backend == "epoll")


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_invalid_backend_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    monkeypatch.setenv("UNKNOT_SELECTOR", "kqueue-on-linux")
    with pytest.raises(ValueError, match="UNKNOT_SELECTOR"):
        unknot.new_event_loop()
    gc.collect()  # the half-built loop must be collected quietly


def test_default_backend_is_epoll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNKNOT_SELECTOR", raising=False)
    loop = unknot.new_event_loop()
    try:
        assert type(loop.hub).__name__ == "EpollHub"
    finally:
        loop.close()


@pytest.mark.unknot
def test_sleep_past_the_poll_limit_on_every_backend(backend: str) -> None:
    # epoll and poll refuse a timeout past about 24.8 days (OverflowError): a fiber sleeping a
    # billion seconds while the others wait for it must not take the hub down with it.
    def sleeper() -> None:
        unknot.sleep(1e9)

    f = unknot.spawn(sleeper)
    ticker = unknot.spawn(unknot.sleep, 0.05)
    ticker.join()  # meanwhile the hub polls with the long timer pending
    g = unknot.spawn(unknot.sleep, 1e12)
    with unknot.move_on_after(0.1):
        unknot.sleep(1e10)  # the hub polls with every timer pending far away
    assert not f.done() and not g.done()
    f.cancel()
    g.cancel()
    for fiber in (f, g):
        with pytest.raises(unknot.FiberCancelled):
            fiber.join()


@pytest.mark.unknot
def test_timers_in_order_on_every_backend(backend: str) -> None:
    woke: list[int] = []
    t0 = time.monotonic()

    def sleeper(i: int) -> None:
        unknot.sleep(0.005 * i)
        woke.append(i)
        assert time.monotonic() - t0 >= 0.005 * i - 0.001

    with unknot.TaskGroup() as tg:
        for i in range(20):  # started in order, so each deadline is later than the previous
            tg.spawn(sleeper, i)
    assert woke == list(range(20))


@pytest.mark.unknot
def test_virtual_timers_in_random_order_on_every_backend(
    backend: str, autojump_clock: MockClock
) -> None:
    woke: list[int] = []
    order = list(range(200))
    random.Random(5).shuffle(order)

    def sleeper(i: int) -> None:
        unknot.sleep(0.5 * i)
        woke.append(i)

    with unknot.TaskGroup() as tg:
        for i in order:
            tg.spawn(sleeper, i)
    assert woke == list(range(200))


@pytest.mark.unknot
def test_sync_and_asyncio_on_every_backend(backend: str, autojump_clock: MockClock) -> None:
    q: unknot.Queue[int] = unknot.Queue(maxsize=1)
    ch: unknot.Channel[int] = unknot.Channel()

    def producer() -> None:
        for i in range(50):
            q.put(i)
            unknot.sleep(1)
        q.put(-1)

    def relay() -> None:
        while (item := q.get()) >= 0:
            ch.send(item)
        ch.close()

    unknot.spawn(producer)
    unknot.spawn(relay)
    assert list(ch) == list(range(50))
    unknot.await_(asyncio.sleep(100))
    assert unknot.current_time() == pytest.approx(150)


@pytest.mark.unknot
def test_asyncio_transport_next_to_fiber_fds_on_every_backend(backend: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(5))
        await writer.drain()
        writer.close()

    async def client(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        data = await reader.read()
        writer.close()
        return data

    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)

        def fiber_reader() -> bytes:
            unknot.wait_readable(a, timeout=30)
            return a.recv(10)

        reader_fiber = unknot.spawn(fiber_reader)
        server = unknot.await_(asyncio.start_server(handle, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        assert unknot.await_(client(port)) == b"hello"
        server.close()
        unknot.await_(server.wait_closed())
        b.send(b"fiber")
        assert reader_fiber.join() == b"fiber"
