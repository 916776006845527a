"""unknot.socket against the stdlib, as a demanding user calls it: the cases a review found
different (each test fails on the code before its fix).

Most tests run in fibers on each hub backend and, where the call has a blocking meaning outside
fibers too, in a plain thread (the ``where`` fixture, as in test_socket.py). Loopback only,
bounded in time.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import socket as std
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from fiber_helpers import FullBacklog, Ticker, Where, wait_consumed

import unknot
import unknot.socket as us

pytestmark = pytest.mark.timeout(60)

WAITALL = std.MSG_WAITALL


def wait_taken(sock: Any) -> None:
    """In a fiber: wait (bounded) until nothing is queued to read on ``sock``."""
    for _ in range(5000):
        unknot.sleep(0.001)
        try:
            std.socket.recv(sock, 1, std.MSG_PEEK | std.MSG_DONTWAIT)
        except BlockingIOError:
            return
    raise AssertionError("the reader never took the data")


# -- sendall with MSG_DONTWAIT ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", [bytes, memoryview, bytearray])
def test_sendall_msg_dontwait_on_a_blocking_socket_raises(where: Where, kind: type) -> None:
    # The stdlib's sendall on a blocking socket with MSG_DONTWAIT sends what fits and raises
    # BlockingIOError; unknot's waited for room (for ever, with nobody reading).
    def main() -> None:
        a, b = us.socketpair()
        with a, b:
            assert a.gettimeout() is None
            data = kind(b"x" * 8_000_000)
            with where.fail_after(10):
                with pytest.raises(BlockingIOError):
                    a.sendall(data, std.MSG_DONTWAIT)

    where.run(main)


# -- send and sendall refuse what the C methods refuse, with their errors --------------------------


@pytest.mark.parametrize("data", ["text", None, 5, [1], memoryview(b"abcd")[::2]], ids=repr)
def test_send_and_sendall_refuse_non_buffers_as_the_stdlib(where: Where, data: Any) -> None:
    expected = {}
    a, b = std.socketpair()
    with a, b:
        for name in ("send", "sendall"):
            with pytest.raises((TypeError, BufferError)) as info:
                getattr(a, name)(data)
            expected[name] = (type(info.value), str(info.value))

    def main() -> None:
        a, b = us.socketpair()
        with a, b:
            for name in ("send", "sendall"):
                with pytest.raises((TypeError, BufferError)) as info:
                    getattr(a, name)(data)
                assert (type(info.value), str(info.value)) == expected[name]
            b.settimeout(0.0)
            with pytest.raises(BlockingIOError):
                b.recv(10)  # nothing was sent

    where.run(main)


# -- MSG_WAITALL -----------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["recv", "recv_into"])
def test_msg_waitall_on_a_blocking_socket_waits_for_every_byte(where: Where, call: str) -> None:
    # On a blocking socket the stdlib's recv(n, MSG_WAITALL) returns n bytes (the kernel waits
    # for them); on unknot's non-blocking fd the kernel returns what is there, and unknot returned
    # the first piece.
    def main() -> None:
        a, b = us.socketpair()
        with a, b:
            buf = bytearray(12)
            if call == "recv":
                reader = where.start(a.recv, 12, WAITALL)
            else:
                reader = where.start(lambda: (a.recv_into(buf, 0, WAITALL), bytes(buf))[1])
            for piece in (b"abcd", b"efgh"):
                b.sendall(piece)
                wait_consumed(where, a, reader)  # (the reader took the piece and waits on)
            b.sendall(b"ijkl")
            assert reader.join() == b"abcdefghijkl"

            # At EOF it returns what came, as the kernel does.
            b.sendall(b"xyz")
            b.shutdown(std.SHUT_WR)
            if call == "recv":
                assert a.recv(12, WAITALL) == b"xyz"
            else:
                assert a.recv_into(buf, 8, WAITALL) == 3 and buf[:3] == b"xyz"

    where.run(main)


def test_msg_waitall_cancelled_returns_what_came(backend: str) -> None:
    # A cancellation after part of the bytes came returns them (as the kernel returns what it
    # has when a signal interrupts MSG_WAITALL): nothing is lost, and the next blocking call
    # raises the cancellation. With nothing received yet, the call raises it.

    def main() -> None:
        a, b = us.socketpair()
        with a, b:
            with unknot.move_on_after(0.05) as scope:
                a.recv(10, WAITALL)
            assert scope.cancelled_caught

            got: list[bytes] = []
            reader = unknot.spawn(lambda: got.append(a.recv(10, WAITALL)))
            b.sendall(b"abc")
            wait_taken(a)
            reader.cancel()
            reader.join()
            assert got == [b"abc"]
            b.sendall(b"def")
            a.settimeout(5)
            assert a.recv(10) == b"def"

            # Closed by another fiber after part of the bytes: the part is returned.
            reader = unknot.spawn(a.recv_into, bytearray(10), 10, WAITALL)
            b.sendall(b"gh")
            wait_taken(a)
            a.close()
            assert reader.join() == 2

    unknot.run(main)


def test_msg_waitall_with_a_timeout_is_the_kernels(where: Where) -> None:
    # With a timeout the stdlib's fd is non-blocking, so MSG_WAITALL returns what is there:
    # unchanged, as in the stdlib.
    def main() -> None:
        a, b = us.socketpair()
        with a, b:
            a.settimeout(5)
            b.sendall(b"abc")
            assert a.recv(10, WAITALL) == b"abc"

    where.run(main)


# -- sendfile --------------------------------------------------------------------------------------


def test_sendfile_timeout_bounds_each_wait_not_the_whole_call(where: Where) -> None:
    # The stdlib's sendfile applies the socket timeout to each wait for room: a transfer that
    # keeps moving may last longer than the timeout. unknot's raised TimeoutError once the
    # timeout had passed since the call began.
    size = 3_000_000

    def main() -> None:
        a, b = us.socketpair()
        with a, b, tempfile.TemporaryFile() as f:
            a.setsockopt(std.SOL_SOCKET, std.SO_SNDBUF, 65536)
            b.setsockopt(std.SOL_SOCKET, std.SO_RCVBUF, 65536)
            f.write(b"x" * size)
            f.flush()
            f.seek(0)

            def slow_reader() -> int:
                n = 0
                while n < size:
                    chunk = b.recv(65536)
                    if not chunk:
                        break
                    n += len(chunk)
                    where.sleep(0.005)  # (the pace of a slow client, not a synchronisation)
                return n

            reader = where.start(slow_reader)
            a.settimeout(0.15)
            t0 = time.monotonic()
            assert a.sendfile(f) == size
            assert time.monotonic() - t0 > 0.15  # (longer than the timeout, never stalled)
            assert reader.join() == size

    where.run(main)


# -- AF_UNIX connect to a listener whose accept queue is full --------------------------------------


@pytest.fixture
def unix_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        yield os.path.join(d, "s")


def fill_unix_backlog(listener: Any, path: str) -> list[std.socket]:
    """Connect until the listener's accept queue is full (the next connect says EAGAIN)."""
    fillers: list[std.socket] = []
    for _ in range(10):
        c = std.socket(std.AF_UNIX)
        c.setblocking(False)
        if c.connect_ex(path) == errno.EAGAIN:
            c.close()
            return fillers
        fillers.append(c)
    raise AssertionError("the accept queue never filled")


@contextlib.contextmanager
def full_unix_listener(path: str) -> Iterator[tuple[us.socket, list[std.socket]]]:
    """An AF_UNIX listener at ``path`` whose accept queue is full, and the sockets that fill it
    (closed at the end)."""
    with us.socket(us.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(0)
        fillers = fill_unix_backlog(listener, path)
        try:
            yield listener, fillers
        finally:
            for c in fillers:
                c.close()


def test_unix_connect_to_a_full_accept_queue_waits_for_room(where: Where, unix_path: str) -> None:
    # connect(2) says EAGAIN (not EINPROGRESS) for a non-blocking AF_UNIX socket whose listener
    # is full: nothing is under way. unknot waited for "writable" (at once) and returned as if
    # connected; the socket was not (ENOTCONN at the first send). The stdlib's blocking connect
    # waits for room.
    def main() -> None:
        with full_unix_listener(unix_path) as (listener, fillers):
            client = us.socket(us.AF_UNIX)
            connecting = where.start(client.connect, unix_path)
            where.sleep(0.05)
            assert not connecting.done()  # still waiting for room
            accepted = [listener.accept()[0] for _ in fillers]  # room
            connecting.join()
            with client, listener.accept()[0] as server:
                assert client.getpeername() == unix_path
                client.sendall(b"hello")
                assert server.recv(10) == b"hello"
            for s in accepted:
                s.close()

    where.run(main)


def test_unix_connect_to_a_full_accept_queue_times_out(where: Where, unix_path: str) -> None:
    # With a timeout: TimeoutError once it ran out (connect_ex: EWOULDBLOCK), where the stdlib
    # raises BlockingIOError at once (its fd is non-blocking); non-blocking: EAGAIN at once, as
    # the stdlib.
    def main() -> None:
        with full_unix_listener(unix_path) as (listener, fillers):
            with us.socket(us.AF_UNIX) as c:
                c.settimeout(0.1)
                t0 = time.monotonic()
                with pytest.raises(TimeoutError, match="^timed out$"):
                    c.connect(unix_path)
                assert 0.09 < time.monotonic() - t0 < 2.0
                assert c.connect_ex(unix_path) == errno.EWOULDBLOCK
            with us.socket(us.AF_UNIX) as c:
                c.setblocking(False)
                with pytest.raises(BlockingIOError):
                    c.connect(unix_path)
                assert c.connect_ex(unix_path) == errno.EAGAIN

    where.run(main)


def test_unix_connect_waiting_for_room_is_cancellable(backend: str, unix_path: str) -> None:
    def main() -> None:
        with full_unix_listener(unix_path) as (listener, fillers):
            with us.socket(us.AF_UNIX) as c, unknot.move_on_after(0.05) as scope:
                c.connect(unix_path)
            assert scope.cancelled_caught

    unknot.run(main)


# -- connect's timeout starts after the name look-up -----------------------------------------------


def test_connect_timeout_starts_after_the_name_lookup(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The C connect resolves the name first and times the connection only; unknot set the
    # deadline before its look-up (on the thread pool), so a slow resolver ate the timeout.

    def slow_getaddrinfo(host: Any, port: Any, *args: Any) -> Any:
        if len(args) == 4 and args[3] & std.AI_NUMERICHOST:
            raise std.gaierror(std.EAI_NONAME, "Name or service not known")
        time.sleep(0.3)  # (in a worker thread)
        return [(std.AF_INET, std.SOCK_STREAM, 6, "", ("127.0.0.1", port or 0))]

    monkeypatch.setattr(us, "_std_getaddrinfo", slow_getaddrinfo)

    def main() -> None:
        with us.create_server(("127.0.0.1", 0)) as listener, us.socket() as c:
            c.settimeout(0.2)
            c.connect(("slow.example", listener.getsockname()[1]))
            assert c.getpeername() == listener.getsockname()

    unknot.run(main)


# -- a cancelled create_connection closes its socket -----------------------------------------------


def test_cancelled_create_connection_closes_its_socket(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stdlib's create_connection closes its socket on OSError only: a cancellation left it
    # to the garbage collector (a ResourceWarning, the fd open meanwhile).
    made: list[us.socket] = []
    real_socket = us.socket

    class Recorded(real_socket):  # type: ignore[misc, valid-type]
        __slots__ = ()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    def main() -> None:
        full = FullBacklog()
        try:
            with unknot.move_on_after(0.1) as scope:
                us.create_connection(full.address)
            assert scope.cancelled_caught
        finally:
            full.close()

    monkeypatch.setattr(us, "socket", Recorded)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        unknot.run(main)
        assert len(made) == 1 and made[0].fileno() == -1  # closed
        del made[:]
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


# -- sendto and sendmsg resolve host names off the hub ---------------------------------------------


def test_sendto_and_sendmsg_resolve_names_off_the_hub(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The C sendto resolves a host name with a blocking getaddrinfo on the calling thread: in a
    # fiber, the hub's. unknot resolves it on the thread pool, as connect does.
    release = threading.Event()
    threads: set[int] = set()

    def resolver(host: Any, port: Any, *args: Any) -> Any:
        if len(args) == 4 and args[3] & std.AI_NUMERICHOST:
            raise std.gaierror(std.EAI_NONAME, "Name or service not known")
        threads.add(threading.get_ident())
        if host == "slow.example":
            release.wait(10)
            raise std.gaierror(std.EAI_NONAME, "never answered")
        assert host == "peer.example"
        return [(std.AF_INET, std.SOCK_DGRAM, 17, "", ("127.0.0.1", 0))]

    monkeypatch.setattr(us, "_std_getaddrinfo", resolver)

    def main() -> None:
        ticker = Ticker()
        a = us.socket(us.AF_INET, us.SOCK_DGRAM)
        b = us.socket(us.AF_INET, us.SOCK_DGRAM)
        try:
            with a, b:
                b.bind(("127.0.0.1", 0))
                b.settimeout(5)
                port = b.getsockname()[1]
                assert a.sendto(b"one", ("peer.example", port)) == 3
                assert a.sendto(b"two", 0, ("peer.example", port)) == 3
                assert a.sendmsg([b"three"], [], 0, ("peer.example", port)) == 5
                assert a.sendto(b"four", ("127.0.0.1", port)) == 4  # numeric: as it is
                assert [b.recv(10) for _ in range(4)] == [b"one", b"two", b"three", b"four"]
                for call in (
                    lambda: a.sendto(b"x", ("slow.example", port)),
                    lambda: a.sendmsg([b"x"], [], 0, ("slow.example", port)),
                ):
                    before = ticker.count
                    with unknot.move_on_after(0.06) as scope:
                        call()
                    assert scope.cancelled_caught
                    assert ticker.count - before >= 2  # the hub kept running meanwhile
                assert threading.get_ident() not in threads
        finally:
            release.set()
            ticker.stop()

    unknot.run(main)


def test_sendfile_of_an_empty_file_on_a_non_blocking_socket_returns_0(tmp_path: Any) -> None:
    # The stdlib's sendfile returns 0 for an empty file before it refuses a non-blocking
    # socket; unknot's refused it first (ValueError).
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    full = tmp_path / "full"
    full.write_bytes(b"data")

    def outcomes(mod: Any) -> list[Any]:
        out: list[Any] = []
        a, b = mod.socketpair()
        with a, b, open(empty, "rb") as e, open(full, "rb") as f:
            a.setblocking(False)
            for file in (e, f):
                try:
                    out.append(a.sendfile(file))
                except ValueError as err:
                    out.append(str(err))
        return out

    assert outcomes(std) == [0, "non-blocking sockets are not supported"]
    assert outcomes(us) == outcomes(std)
    assert unknot.run(outcomes, us) == outcomes(std)
