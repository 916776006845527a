"""Several fibers waiting on one fd in the same direction (`Hub.wait_fd`'s queue): one is the
record's waiter, the others queue behind it, and whoever leaves the wait wakes the next, which
retries its syscall. No readiness may be lost: an edge-triggered record reports a change once,
and one report can cover several connections or datagrams. On every backend, and on a stock
asyncio loop (`ForeignHub`)."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from fiber_helpers import current_hub, fd_record_of, fill_send_buffer, run_script

import unknot
import unknot.socket as us
from unknot import lowlevel
from unknot._core import _hub
from unknot._core._hub import FdWait


def _queued(rec: FdWait, write: bool = False) -> int:
    readers, writers = current_hub()._fd_queue(rec)
    return len(writers if write else readers)


def _settle() -> None:
    """Let every spawned fiber run until it waits (each fiber here waits at its first call)."""
    unknot.sleep(0)
    unknot.sleep(0)


@pytest.fixture
def pair() -> Iterator[tuple[us.socket, us.socket]]:
    a, b = us.socketpair()
    with a, b:
        yield a, b


@pytest.mark.unknot
def test_accept_burst_is_shared_by_the_waiting_fibers(backend: str) -> None:
    # 5 fibers in accept() on one listener, 20 clients connect in one burst (one readiness
    # edge). Each fiber, once it has a connection, waits until every fiber has one: only the
    # hand-on from fiber to fiber can wake the four that queued (the old code refused them
    # with RuntimeError; a queue without the hand-on leaves them waiting for an edge that never
    # comes, and this test hangs until fail_after).
    n_fibers, n_clients = 5, 20
    accepted: list[tuple[int, Any]] = []
    everyone_has_one = unknot.Event()
    all_in = unknot.Event()
    got: set[int] = set()

    def worker(i: int) -> None:
        while True:
            conn, _ = listener.accept()
            accepted.append((i, conn))
            if len(accepted) == n_clients:
                all_in.set()
            got.add(i)
            if len(got) == n_fibers:
                everyone_has_one.set()
            everyone_has_one.wait()

    with us.create_server(("127.0.0.1", 0), backlog=64) as listener:
        clients = []
        try:
            with unknot.TaskGroup() as tg:
                for i in range(n_fibers):
                    tg.spawn(worker, i)
                _settle()
                rec = fd_record_of(listener)
                assert rec.reader is not None and _queued(rec) == n_fibers - 1
                for _ in range(n_clients):  # the burst: blocking connects, no switch between
                    clients.append(socket.create_connection(listener.getsockname()))
                with unknot.fail_after(10):
                    all_in.wait()
                tg.cancel()
            # Every connection accepted exactly once, and every fiber got some.
            peers = sorted(conn.getpeername() for _, conn in accepted)
            assert peers == sorted(c.getsockname() for c in clients)
            assert {i for i, _ in accepted} == set(range(n_fibers))
            assert rec not in _hub._QUEUED  # nobody left queued
        finally:
            for _, conn in accepted:
                conn.close()
            for c in clients:
                c.close()


@pytest.mark.unknot
def test_udp_burst_is_received_exactly_once(backend: str) -> None:
    # 4 fibers in recvfrom on one UDP socket, 50 datagrams in a burst. As above, each fiber
    # waits once it has one until all four have one.
    n_fibers, n_datagrams = 4, 50
    received: list[tuple[int, bytes]] = []
    everyone_has_one = unknot.Event()
    all_in = unknot.Event()
    got: set[int] = set()

    def worker(i: int) -> None:
        while True:
            data, _ = server.recvfrom(100)
            received.append((i, data))
            if len(received) == n_datagrams:
                all_in.set()
            got.add(i)
            if len(got) == n_fibers:
                everyone_has_one.set()
            everyone_has_one.wait()

    with (
        us.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        server.bind(("127.0.0.1", 0))
        with unknot.TaskGroup() as tg:
            for i in range(n_fibers):
                tg.spawn(worker, i)
            _settle()
            rec = fd_record_of(server)
            assert rec.reader is not None and _queued(rec) == n_fibers - 1
            for k in range(n_datagrams):
                client.sendto(b"%d" % k, server.getsockname())
            with unknot.fail_after(10):
                all_in.wait()
            tg.cancel()
        assert sorted(int(d) for _, d in received) == list(range(n_datagrams))
        assert {i for i, _ in received} == set(range(n_fibers))


@pytest.mark.unknot
def test_two_fibers_reading_one_stream(backend: str) -> None:
    a, b = us.socketpair()
    with a, b:
        # Two bytes in one send (one edge): each of two recv(1) gets one.
        first = unknot.spawn(a.recv, 1)
        second = unknot.spawn(a.recv, 1)
        _settle()
        assert fd_record_of(a).reader is not None and _queued(fd_record_of(a)) == 1
        b.sendall(b"xy")
        with unknot.fail_after(10):
            assert sorted([first.join(), second.join()]) == [b"x", b"y"]
        # One read takes all there is (a short read: the readiness hint says "drained"); the
        # other, woken to retry, waits for the next data as the fd's waiter.
        first = unknot.spawn(a.recv, 100)
        second = unknot.spawn(a.recv, 100)
        _settle()
        b.sendall(b"abc")
        with unknot.fail_after(10):
            while not (first.done() or second.done()):
                unknot.sleep(0.001)
            b.sendall(b"def")
            assert sorted([first.join(), second.join()]) == [b"abc", b"def"]
        assert fd_record_of(a) not in _hub._QUEUED


@pytest.mark.unknot
def test_two_writers_on_a_full_socket(backend: str, pair: tuple[us.socket, us.socket]) -> None:
    a, b = pair
    filled = fill_send_buffer(a)
    size = 100_000
    w1 = unknot.spawn(a.sendall, b"1" * size)
    w2 = unknot.spawn(a.sendall, b"2" * size)
    _settle()
    assert fd_record_of(a).writer is not None and _queued(fd_record_of(a), write=True) == 1
    total = 0
    with unknot.fail_after(10):
        while total < filled + 2 * size:
            total += len(b.recv(1 << 20))
        w1.join()
        w2.join()
    assert total == filled + 2 * size


@pytest.mark.unknot
def test_raw_fd_waiters_writable_once(backend: str) -> None:
    # unknot.wait_writable on an fd unknot does not own: two waiters, the buffer drained once
    # (one edge, and level-triggered backends stop reporting it to nobody): both wake.
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        fill_send_buffer(a)
        w1 = unknot.spawn(unknot.wait_writable, a)
        w2 = unknot.spawn(unknot.wait_writable, a)
        _settle()
        hub = current_hub()
        rec = hub.fds[a.fileno()]
        assert rec.writer is not None and _queued(rec, write=True) == 1
        with unknot.fail_after(10):
            while True:
                try:
                    if not b.recv(1 << 20):
                        break
                except BlockingIOError:
                    break
            w1.join()
            w2.join()
        assert a.fileno() not in hub.fds  # the raw fd's record went with its last waiter
        assert rec not in _hub._QUEUED


def _recv_retrying(sock: socket.socket, timeout: float | None = None, size: int = 100) -> bytes:
    """A non-blocking socket's recv, waiting with unknot.wait_readable (wake-ups may be
    spurious: retry)."""
    while True:
        try:
            return sock.recv(size)
        except BlockingIOError:
            unknot.wait_readable(sock, timeout)


@pytest.mark.unknot
def test_queued_waiter_timeout_is_honoured(backend: str) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        first = unknot.spawn(_recv_retrying, a)
        _settle()
        with pytest.raises(TimeoutError):
            _recv_retrying(a, 0.05)  # queued behind ``first``
        rec = current_hub().fds[a.fileno()]
        assert rec.reader is first and rec not in _hub._QUEUED
        b.send(b"x")
        with unknot.fail_after(10):
            assert first.join() == b"x"


@pytest.mark.unknot
def test_waiter_timeout_hands_on_to_the_queued_one(backend: str) -> None:
    # The fd's waiter times out: the queued fiber becomes the waiter and gets the data.
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        first = unknot.spawn(_recv_retrying, a, 0.05)
        unknot.sleep(0)
        second = unknot.spawn(_recv_retrying, a)
        _settle()
        rec = current_hub().fds[a.fileno()]
        assert rec.reader is first and _queued(rec) == 1
        with pytest.raises(TimeoutError):
            first.join()
        unknot.sleep(0)
        # (``second`` was woken to retry and waits again: on a new record, as the old one
        # went with its last waiter.)
        rec = current_hub().fds[a.fileno()]
        assert rec.reader is second and rec not in _hub._QUEUED
        b.send(b"x")
        with unknot.fail_after(10):
            assert second.join() == b"x"


@pytest.mark.unknot
def test_cancelled_waiters_hand_on(backend: str, pair: tuple[us.socket, us.socket]) -> None:
    # Three readers: the fd's waiter and one queued fiber are cancelled; the last one still
    # gets the data, and cancelled ones consume nothing.
    a, b = pair
    fibers = [unknot.spawn(a.recv, 100) for _ in range(3)]
    _settle()
    rec = fd_record_of(a)
    assert rec.reader is fibers[0] and _queued(rec) == 2
    fibers[1].cancel()
    unknot.sleep(0)
    assert _queued(rec) == 1
    fibers[0].cancel()
    unknot.sleep(0)
    for f in fibers[:2]:
        with pytest.raises(unknot.FiberCancelled):
            f.join()
    b.sendall(b"data")
    with unknot.fail_after(10):
        assert fibers[2].join() == b"data"
    assert rec not in _hub._QUEUED


@pytest.mark.unknot
def test_cancelled_waiter_with_data_pending(
    backend: str, pair: tuple[us.socket, us.socket]
) -> None:
    # The fd's waiter is cancelled once the data is there but before the hub has seen it: the
    # readiness event finds nobody waiting; its leaving hands on to the queued fiber, which
    # reads.
    a, b = pair
    first = unknot.spawn(a.recv, 100)
    second = unknot.spawn(a.recv, 100)
    _settle()
    b.sendall(b"data")
    first.cancel()  # before the hub polls and sees the data
    with unknot.fail_after(10):
        assert second.join() == b"data"
    with pytest.raises(unknot.FiberCancelled):
        first.join()


@pytest.mark.unknot
def test_close_wakes_every_waiter_with_ebadf(backend: str) -> None:
    a, b = us.socketpair()
    with b:
        readers = [unknot.spawn(a.recv, 100) for _ in range(3)]
        fill_send_buffer(a)
        writers = [unknot.spawn(a.sendall, b"x" * 100_000) for _ in range(2)]
        _settle()
        rec = fd_record_of(a)
        assert _queued(rec) == 2 and _queued(rec, write=True) == 1
        a.close()
        with unknot.fail_after(10):
            for f in readers + writers:
                with pytest.raises(OSError) as info:
                    f.join()
                assert info.value.errno == errno.EBADF
        assert rec not in _hub._QUEUED


@pytest.mark.unknot
def test_forget_fd_throws_into_queued_waiters(backend: str) -> None:
    # The low-level contract: forget_fd wakes the waiter and every queued fiber with EBADF.
    r, w = os.pipe()
    try:
        os.set_blocking(r, False)
        me = unknot.current()
        assert me is not None
        hub = me.hub
        rec = hub.fd_record(r)

        def wait(timeout: float | None) -> Any:
            f = unknot.current()
            assert f is not None
            return hub.wait_fd(f, rec, False, timeout)

        waiters = [unknot.spawn(wait, None), unknot.spawn(wait, 5.0)]
        _settle()
        assert rec.reader is waiters[0] and _queued(rec) == 1
        with pytest.raises(RuntimeError, match="through another object"):
            hub.fd_record(r)  # that error stays
        hub.forget_fd(rec)
        for f in waiters:
            with pytest.raises(OSError) as info:
                f.join()
            assert info.value.errno == errno.EBADF
        assert rec not in _hub._QUEUED
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.unknot
def test_wait_fds_queues_behind_a_waiter(backend: str) -> None:
    # select-style waits (Hub.wait_fds) queue too, and hand on as the others do.
    r, w = os.pipe()
    r2, w2 = os.pipe()
    try:
        other = unknot.spawn(unknot.wait_readable, r, 5)
        _settle()
        me = unknot.current()
        assert me is not None
        hub = me.hub
        unknot.spawn(lambda: (unknot.sleep(0), os.write(w, b"x")))
        assert hub.wait_fds(me, [r2, r], [], 5) is None  # woken by the hand-on
        other.join()
        assert r not in hub.fds and r2 not in hub.fds
        assert not any(rec.hub is hub for rec in _hub._QUEUED)
    finally:
        for fd in (r, w, r2, w2):
            os.close(fd)


@pytest.mark.unknot
def test_queued_waiter_is_described(backend: str, pair: tuple[us.socket, us.socket]) -> None:
    a, b = pair
    first = unknot.spawn(a.recv, 1)
    second = unknot.spawn(a.recv, 1)
    _settle()
    fd = a.fileno()
    assert lowlevel.fiber_info(first).waiting_on == f"fd {fd} (read)"
    assert lowlevel.fiber_info(second).waiting_on == f"fd {fd} (read)"  # (queued)
    b.sendall(b"xy")
    with unknot.fail_after(10):
        assert sorted([first.join(), second.join()]) == [b"x", b"y"]


@pytest.mark.unknot
def test_asyncio_cannot_watch_an_fd_fibers_queue_on() -> None:
    # (The default backend, epoll, as test_asyncio_bridge's check of this error: on poll and
    # select, add_reader finds the fiber's key in the selector's own table first.)
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        fibers = [unknot.spawn(_recv_retrying, a, None, 1) for _ in range(2)]
        _settle()
        loop = asyncio.get_running_loop()
        with pytest.raises(RuntimeError, match="being waited on by a fiber"):
            loop.add_reader(a.fileno(), print)
        b.send(b"xy")
        with unknot.fail_after(10):
            assert sorted(f.join() for f in fibers) == [b"x", b"y"]


def test_two_readers_on_a_stock_asyncio_loop() -> None:
    # ForeignHub (add_reader while a fiber waits): the same queue and hand-on.
    def fiber() -> list[bytes]:
        hub = lowlevel.current_hub()
        assert hub is not None and type(hub).__name__ == "ForeignHub"
        a, b = us.socketpair()
        with a, b:
            first = unknot.spawn(a.recv, 1)
            second = unknot.spawn(a.recv, 1)
            unknot.sleep(0.01)
            assert a._state.rec.reader is not None  # type: ignore[attr-defined]
            b.sendall(b"xy")
            with unknot.fail_after(10):
                return sorted([first.join(), second.join()])

    async def main() -> list[bytes]:
        return await unknot.spawn(fiber)

    assert asyncio.run(main()) == [b"x", b"y"]


ACCEPT_UNDER_PATCH = """
import socket, threading
import unknot
unknot.patch()

def serve(listener, name, log, lock):
    while True:
        conn, _ = listener.accept()
        if conn.recv(10) == b"stop":
            conn.close()
            return
        with lock:
            log.append(name)
        conn.sendall(b"ok")
        conn.close()

def main():
    listener = socket.create_server(("127.0.0.1", 0))  # the stdlib's helper: a patched socket
    addr = listener.getsockname()
    log, lock = [], threading.Lock()
    # Workers as a prefork-style server has them: fibers, and OS threads, all in accept().
    fibers = [unknot.spawn(serve, listener, f"fiber{i}", log, lock) for i in range(3)]
    threads = [threading.Thread(target=serve, args=(listener, f"thread{i}", log, lock))
               for i in range(2)]
    for t in threads:
        t.start()
    unknot.sleep(0.05)
    def client():
        with socket.create_connection(addr) as c:
            c.sendall(b"hi")
            return c.recv(10)
    with unknot.TaskGroup() as tg:
        replies = [tg.spawn(client) for _ in range(30)]
    for _ in range(5):
        with socket.create_connection(addr) as c:
            c.sendall(b"stop")
    for f in fibers:
        f.join()
    for t in threads:
        t.join()
    listener.close()
    return [len(log), {r.result() for r in replies} == {b"ok"}]

print(*unknot.run(main), sep="|")
"""


def test_threads_and_fibers_accept_on_one_listener_under_patch() -> None:
    # Stdlib-style code under unknot.patch(): several workers in accept() on one listener.
    # Each worker takes one "stop": a fiber left queued for good would hang the script.
    assert run_script(textwrap.dedent(ACCEPT_UNDER_PATCH)) == ["30", "True"]
