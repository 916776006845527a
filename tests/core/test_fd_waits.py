"""Waiting on file descriptors: wait_readable/wait_writable with timeouts, one reader and
one writer per fd, peer close, cancellation, fd reuse, and the persistent records unknot's
sockets use; on every backend."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from collections.abc import Iterator

import pytest

import unknot
from unknot._core._hub import Hub


def _hub() -> Hub:
    f = unknot.current()
    assert f is not None
    return f.hub


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    with a, b:
        yield a, b


def _fill(sock: socket.socket) -> int:
    """Write until the socket's send buffer is full; return the bytes written."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    total = 0
    chunk = b"x" * 65536
    while True:
        try:
            total += sock.send(chunk)
        except BlockingIOError:
            return total


def _drain(sock: socket.socket) -> int:
    total = 0
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return total
        if not data:
            return total
        total += len(data)


@pytest.mark.unknot
def test_wait_readable_timeout_then_data(backend: str, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        unknot.wait_readable(a, timeout=0.05)
    assert time.monotonic() - t0 >= 0.04

    def writer() -> None:
        unknot.sleep(0.01)
        b.send(b"data")

    unknot.spawn(writer)
    unknot.wait_readable(a, timeout=30)
    assert a.recv(10) == b"data"
    # an int fd works too
    b.send(b"more")
    unknot.wait_readable(a.fileno(), timeout=30)
    assert a.recv(10) == b"more"


@pytest.mark.unknot
def test_wait_writable_timeout_and_drain(backend: str, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    unknot.wait_writable(a, timeout=1)  # an empty buffer is writable at once
    _fill(a)
    with pytest.raises(TimeoutError):
        unknot.wait_writable(a, timeout=0.05)

    def drainer() -> None:
        unknot.sleep(0.01)
        _drain(b)

    unknot.spawn(drainer)
    unknot.wait_writable(a, timeout=30)
    assert a.send(b"y") == 1


@pytest.mark.unknot
def test_reader_and_writer_on_one_fd(backend: str, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    _fill(a)
    log: list[str] = []

    def reader() -> None:
        unknot.wait_readable(a, timeout=30)
        log.append("readable")

    def writer() -> None:
        unknot.wait_writable(a, timeout=30)
        log.append("writable")

    r = unknot.spawn(reader)
    w = unknot.spawn(writer)
    unknot.sleep(0.02)
    assert log == []
    b.send(b"wake the reader")
    r.join()
    unknot.sleep(0.02)
    assert log == ["readable"]  # the writer still waits
    _drain(b)
    w.join()
    assert log == ["readable", "writable"]


@pytest.mark.unknot
def test_two_readers_on_one_fd_both_wake(backend: str, pair: tuple[socket.socket, ...]) -> None:
    # The second queues behind the first (it was a RuntimeError); more in test_fd_waiters.py.
    a, b = pair
    first = unknot.spawn(unknot.wait_readable, a, 30)
    unknot.sleep(0)
    unknot.spawn(lambda: (unknot.sleep(0), b.send(b"x")))
    unknot.wait_readable(a, timeout=30)
    first.join()


@pytest.mark.unknot
def test_two_writers_on_one_fd_both_wake(backend: str, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    _fill(a)
    first = unknot.spawn(unknot.wait_writable, a, 30)
    unknot.sleep(0)
    unknot.spawn(lambda: (unknot.sleep(0), _drain(b)))
    unknot.wait_writable(a, timeout=30)
    first.join()


@pytest.mark.unknot
def test_peer_close_wakes_waiters(backend: str) -> None:
    a, b = socket.socketpair()
    with a:
        a.setblocking(False)
        _fill(a)
        r = unknot.spawn(unknot.wait_readable, a, 30)
        w = unknot.spawn(unknot.wait_writable, a, 30)
        unknot.sleep(0.01)
        b.close()  # EOF for the reader, an error (EPIPE) for the writer
        r.join()
        w.join()
        try:
            data = a.recv(10)
        except ConnectionResetError:  # the peer closed with our data unread
            data = b""
        assert data == b""
        with pytest.raises(OSError):
            a.send(b"x")


@pytest.mark.unknot
def test_cancelled_fd_wait_unregisters(backend: str, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    hub = _hub()
    with unknot.move_on_after(0.01) as scope:
        unknot.wait_readable(a)
    assert scope.cancelled_caught
    assert a.fileno() not in hub.fds
    assert hub.fd_waiters == 0
    # the fd can be handed to asyncio afterwards
    loop = asyncio.get_running_loop()
    ev = unknot.Event()
    loop.add_reader(a, ev.set)
    b.send(b"x")
    try:
        assert ev.wait(timeout=30)
    finally:
        loop.remove_reader(a)


@pytest.mark.unknot
def test_fd_number_reuse_after_close(backend: str) -> None:
    for _ in range(5):
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            with pytest.raises(TimeoutError):
                unknot.wait_readable(a, timeout=0.005)
            b.send(b"x")
            unknot.wait_readable(a, timeout=30)
            assert a.recv(1) == b"x"
    assert not _hub().fds


@pytest.mark.unknot
def test_regular_file_is_always_ready(backend: str, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "f")
    with open(path, "w+b") as f:
        unknot.wait_readable(f, timeout=1)
        unknot.wait_writable(f, timeout=1)


@pytest.mark.unknot
def test_wait_argument_errors() -> None:
    with pytest.raises(ValueError):
        unknot.wait_readable(-1)
    with pytest.raises(TypeError):
        unknot.wait_readable("not an fd")  # type: ignore[arg-type]
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(ValueError):
            unknot.wait_writable(a, timeout=float("nan"))


def test_wait_outside_fiber() -> None:
    a, b = socket.socketpair()
    with a, b, pytest.raises(unknot.NotInFiberError):
        unknot.wait_readable(a)


@pytest.mark.unknot
def test_persistent_record_close_wakes_waiters_with_oserror(backend: str) -> None:
    """The hub API unknot's own sockets use: closing an fd wakes its waiters with EBADF."""
    hub = _hub()
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        _fill(a)
        rec = hub.fd_record(a.fileno())
        errors: list[OSError] = []

        def waiter(write: bool) -> None:
            me = unknot.current()
            assert me is not None
            try:
                hub.wait_fd(me, rec, write, None)
            except OSError as e:
                errors.append(e)

        fibers = [unknot.spawn(waiter, False), unknot.spawn(waiter, True)]
        unknot.sleep(0.01)
        hub.forget_fd(rec)
        for f in fibers:
            f.join()
        assert [e.errno for e in errors] == [errno.EBADF, errno.EBADF]
        assert a.fileno() not in hub.fds


@pytest.mark.unknot
def test_persistent_record_waits_repeatedly(backend: str, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    hub = _hub()
    me = unknot.current()
    assert me is not None
    rec = hub.fd_record(a.fileno())
    try:
        for i in range(20):

            def send_later(i: int = i) -> None:
                unknot.sleep(0.001)
                b.send(bytes([i]))

            unknot.spawn(send_later)
            while True:
                try:
                    assert a.recv(1) == bytes([i])
                    break
                except BlockingIOError:
                    hub.wait_fd(me, rec, False, 30)
        assert hub.wait_fd(me, rec, False, 0.01) is hub.TIMED_OUT
    finally:
        hub.forget_fd(rec)


@pytest.mark.unknot
def test_many_fibers_many_fds(backend: str) -> None:
    pairs = [socket.socketpair() for _ in range(50)]
    try:
        for a, _ in pairs:
            a.setblocking(False)

        def echo(a: socket.socket) -> bytes:
            unknot.wait_readable(a, timeout=30)
            return a.recv(100)

        with unknot.TaskGroup() as tg:
            fibers = [tg.spawn(echo, a) for a, _ in pairs]
            unknot.sleep(0.01)
            for i, (_, b) in enumerate(reversed(pairs)):
                b.send(b"%d" % (len(pairs) - 1 - i))
        assert [f.result() for f in fibers] == [b"%d" % i for i in range(50)]
    finally:
        for a, b in pairs:
            a.close()
            b.close()
