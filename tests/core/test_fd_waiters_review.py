"""Review of the queue of fibers waiting on one fd (`Hub.wait_fd`, `Hub._QUEUED`): an fd unknot
does not own waited on both ways (one record, armed for one direction first), the queues of a
hub that will not run its fibers again (closed, or another thread's in a forked child), what
a dump costs with many records; and, as guards, two races the hand-on survives."""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fiber_helpers import current_hub, fd_record_of, fill_send_buffer, run_script

import unknot
import unknot.select as uselect
import unknot.socket as us
from unknot import lowlevel
from unknot._core import _hub
from unknot._core._hub import Hub
from unknot._core._loop import HubEventLoop


def _drain(sock: socket.socket) -> None:
    for _ in range(10_000):
        try:
            if not sock.recv(1 << 20):
                return
        except BlockingIOError:
            return


@pytest.fixture
def raw_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A stdlib socket pair (fds unknot does not own), non-blocking, ``a``'s buffer full: ``a``
    is neither readable nor writable."""
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        fill_send_buffer(a)
        yield a, b


# -- an fd unknot does not own, waited on both ways ----------------------------------------------


@pytest.mark.unknot
def test_reader_comes_while_a_writer_waits_on_a_raw_fd(
    backend: str, raw_pair: tuple[socket.socket, socket.socket]
) -> None:
    # The writer's wait arms the fd's record (level-triggered, for writing); the reader that
    # comes next must have it armed for reading too. On the epoll hub the old code took an
    # armed record for a socket's (registered once for both directions) and left it as it was:
    # the reader was never woken (until the writer's wait ended), and this join failed.
    a, b = raw_pair
    writer = unknot.spawn(unknot.wait_writable, a)
    unknot.sleep(0)
    reader = unknot.spawn(unknot.wait_readable, a)
    unknot.sleep(0)
    rec = current_hub().fds[a.fileno()]
    assert rec.writer is writer and rec.reader is reader
    b.send(b"x")
    with unknot.move_on_after(5):
        reader.join()
    assert reader.done(), "the reader was not woken by the data"
    assert not writer.done()  # (still not writable)
    _drain(b)
    with unknot.fail_after(5):
        writer.join()
    assert a.fileno() not in current_hub().fds


@pytest.mark.unknot
def test_wait_fds_one_raw_fd_read_and_write(
    backend: str, raw_pair: tuple[socket.socket, socket.socket]
) -> None:
    # One fd in both lists (the psycopg integration waits so for READ|WRITE): it becomes
    # writable, not readable. The old code armed the record for reading only on epoll.
    a, b = raw_pair
    me = unknot.current()
    assert me is not None
    unknot.spawn(lambda: (unknot.sleep(0), _drain(b)))
    assert current_hub().wait_fds(me, [a.fileno()], [a.fileno()], 5) is None


@pytest.mark.unknot
def test_select_one_raw_fd_read_and_write(
    backend: str, raw_pair: tuple[socket.socket, socket.socket]
) -> None:
    # The same through the select mirror, with no timeout: it hung on epoll.
    a, b = raw_pair
    unknot.spawn(lambda: (unknot.sleep(0), _drain(b)))
    with unknot.fail_after(5):
        assert uselect.select([a], [a], []) == ([], [a], [])


# -- queues nobody will leave ----------------------------------------------------------------------


def _queue_two_readers(loop: HubEventLoop, keep: list[Any]) -> Hub:
    """On ``loop`` (unknot's, not running): two fibers in recv on one socket, the second
    queued; they are left parked. Returns the loop's hub."""

    def fiber() -> None:
        a, b = us.socketpair()
        keep.extend((a, b))
        keep.extend(unknot.spawn(a.recv, 1) for _ in range(2))
        unknot.sleep(0.01)

    async def main() -> None:
        await unknot.spawn(fiber)

    loop.run_until_complete(main())
    hub = loop.hub
    assert any(rec.hub is hub for rec in _hub._QUEUED)
    return hub


def test_closed_hub_drops_its_queues(backend: str) -> None:
    # A loop closed from another thread leaves its fibers as they are (logged): they never run
    # again, so none leaves its queue. The old code kept the queue in the module-level dict
    # for ever: the hub, its fibers and sockets alive, and every wait of every other hub on
    # its slow path (``if _QUEUED:``).
    keep: list[Any] = []
    loop = unknot.new_event_loop()
    try:
        hub = _queue_two_readers(loop, keep)
        closer = threading.Thread(target=loop.close)
        closer.start()
        closer.join(10)
        assert loop.is_closed()
        assert not any(rec.hub is hub for rec in _hub._QUEUED)
    finally:
        if not loop.is_closed():
            loop.close()
        for s in keep[:2]:
            s.close()


FORK_CHILD = """
import os, threading
import unknot
import unknot.socket as us
from unknot._core import _hub

queued = threading.Event()
stop = threading.Event()

def thread_main():
    def main():
        a, b = us.socketpair()
        readers = [unknot.spawn(a.recv, 1) for _ in range(2)]
        unknot.sleep(0.01)
        queued.set()
        while not stop.is_set():
            unknot.sleep(0.005)
        b.send(b"xy")
        for f in readers:
            f.join()
        a.close()
        b.close()
    unknot.run(main)

t = threading.Thread(target=thread_main)
t.start()
assert queued.wait(10)
before = len(_hub._QUEUED)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    # Only this thread (no hub) is in the child: the other thread's hub never runs here.
    os.write(w, str(len(_hub._QUEUED)).encode())
    os._exit(0)
os.close(w)
_, status = os.waitpid(pid, 0)
child = os.read(r, 16).decode()
stop.set()
t.join(10)
print(before, child, len(_hub._QUEUED), os.waitstatus_to_exitcode(status), sep="|")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork with threads")
def test_forked_child_keeps_no_queue_of_another_threads_hub() -> None:
    # The old code dropped only the forking thread's hub's queues in the child: those of a hub
    # running in another thread (not in the child) stayed, for the child's whole life.
    before, child, after, status = run_script(textwrap.dedent(FORK_CHILD))
    assert (before, child, after, status) == ("1", "0", "0", "0")


# -- dumps ---------------------------------------------------------------------------------------


class _CountingDict(dict):  # type: ignore[type-arg]
    """A dict that counts its ``get`` calls (the queue lookups)."""

    gets = 0

    def get(self, key: Any, default: Any = None) -> Any:
        type(self).gets += 1
        return super().get(key, default)


@pytest.mark.unknot
def test_describing_a_wait_looks_at_the_queues_not_at_every_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A dump describes each parked fiber by scanning the hub's records. The first version
    # looked up every record's queue for every fiber (4-5 times the old cost: 1.3 s instead of
    # 0.3 s for a dump of 3000 idle connections); the queues are now looked at apart.
    pairs = [us.socketpair() for _ in range(100)]
    try:
        idle = [unknot.spawn(a.recv, 1) for a, _ in pairs]
        unknot.sleep(0)
        queued = unknot.spawn(pairs[0][0].recv, 1)  # behind idle[0]
        unknot.sleep(0)
        assert len(_hub._QUEUED) == 1
        monkeypatch.setattr(_hub, "_QUEUED", _CountingDict(_hub._QUEUED))
        assert lowlevel.fiber_info(queued).waiting_on == f"fd {pairs[0][0].fileno()} (read)"
        assert lowlevel.fiber_info(idle[50]).waiting_on == f"fd {pairs[50][0].fileno()} (read)"
        assert _CountingDict.gets < 10  # (the old code: one per record, for each fiber)
        monkeypatch.undo()
        pairs[0][1].send(b"x")  # (one byte each for idle[0] and queued: two sends)
        for _, b in pairs:
            b.send(b"x")
        with unknot.fail_after(10):
            for f in [*idle, queued]:
                assert f.join() == b"x"
    finally:
        for a, b in pairs:
            a.close()
            b.close()


# -- races that hold (kept as guards) ------------------------------------------------------------


@pytest.fixture
def udp() -> Iterator[tuple[socket.socket, socket.socket]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with server, client:
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        yield server, client


@contextlib.contextmanager
def _readers(server: socket.socket, timeouts: list[Any]) -> Iterator[tuple[Hub, Any, list[Any]]]:
    """The current hub, its record for ``server``'s fd (forgotten at the end), and fibers each
    receiving one datagram through ``hub.wait_fd`` on that record (the first is its reader, the
    others queue in order): each returns the datagram, or "timeout"."""
    hub = current_hub()
    rec = hub.fd_record(server.fileno())

    def reader(timeout: float | None) -> Any:
        f = unknot.current()
        assert f is not None
        while True:
            try:
                return server.recv(100)
            except BlockingIOError:
                if hub.wait_fd(f, rec, False, timeout) is lowlevel.TIMED_OUT:
                    return "timeout"

    try:
        fibers = []
        for t in timeouts:
            fibers.append(unknot.spawn(reader, t))
            unknot.sleep(0)
        yield hub, rec, fibers
    finally:
        hub.forget_fd(rec)


def _two_datagrams(server: socket.socket, client: socket.socket) -> None:
    for data in (b"1", b"2"):
        client.sendto(data, server.getsockname())
    assert select.select([server], [], [], 5)[0]  # (both are in its buffer: loopback)


@pytest.mark.unknot
def test_a_queued_timeout_and_the_readiness_in_one_pass(
    backend: str, udp: tuple[socket.socket, socket.socket]
) -> None:
    # The reader is woken by the event and the first queued fiber by its timeout, in the same
    # pass: the reader's hand-on finds that one already woken; it hands on in turn as it
    # leaves, so the second queued fiber still gets the second datagram.
    server, client = udp
    with _readers(server, [None, 100, None]) as (hub, rec, (r, q1, q2)):
        assert rec.reader is r and hub._fd_queue(rec)[0] == [q1, q2]
        _two_datagrams(server, client)
        hub.wake(q1, lowlevel.TIMED_OUT)  # (what its timer does)
        hub.wake(r)  # (what the event does)
        with unknot.fail_after(10):
            assert [f.join() for f in (r, q1, q2)] == [b"1", "timeout", b"2"]
        assert rec not in _hub._QUEUED


@pytest.mark.unknot
def test_a_fiber_woken_by_the_hand_on_then_cancelled_still_hands_on(
    backend: str, udp: tuple[socket.socket, socket.socket]
) -> None:
    # The first queued fiber, woken by the reader's hand-on, is cancelled before it runs (the
    # cancellation waits for its next checkpoint): it hands on as it leaves its wait, retries
    # and takes the second datagram; the last one, woken in turn, waits again as the reader.
    server, client = udp
    with _readers(server, [None, None, None]) as (hub, rec, (r, q1, q2)):
        _two_datagrams(server, client)
        hub.wake(r)
        unknot.sleep(0)  # the reader runs: it takes "1" and wakes q1
        assert r.done() and not q1._parked
        q1.cancel()
        with unknot.fail_after(10):
            assert r.join() == b"1"
            assert q1.join() == b"2"  # (it ended before any checkpoint: nothing lost)
            unknot.sleep(0)
        assert rec.reader is q2 and rec not in _hub._QUEUED
        client.sendto(b"3", server.getsockname())
        with unknot.fail_after(10):
            assert q2.join() == b"3"


@pytest.mark.unknot
def test_a_reused_fd_number_does_not_inherit_the_queue(backend: str) -> None:
    # Fibers queued on a socket that is closed get EBADF; a socket made at once with the same
    # fd number gets a record of its own, with no queue, and waits on it as usual (before the
    # closed one's fibers have even run).
    a, b = us.socketpair()
    fd = a.fileno()
    readers = [unknot.spawn(a.recv, 1) for _ in range(3)]
    unknot.sleep(0)
    old = fd_record_of(a)
    assert current_hub()._fd_queue(old)[0] == readers[1:]
    a.close()
    b.close()
    c, d = us.socketpair()
    with c, d:
        if fd not in (c.fileno(), d.fileno()):
            pytest.skip("the fd number was not reused")
        mine = c if c.fileno() == fd else d
        other = d if mine is c else c
        new_reader = unknot.spawn(mine.recv, 1)
        unknot.sleep(0)
        new = fd_record_of(mine)
        assert new is not old and new.reader is new_reader and new not in _hub._QUEUED
        for f in readers:
            with pytest.raises(OSError):
                f.join()
        assert old not in _hub._QUEUED
        other.send(b"x")
        with unknot.fail_after(10):
            assert new_reader.join() == b"x"
