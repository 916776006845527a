"""unknot.select: cooperative select()/poll/epoll mirroring the stdlib, and Hub.wait_fds.

Fiber tests run as the root fiber on each hub backend (the ``backend`` fixture: epoll, poll,
select). Results and errors are compared with the stdlib's on the same inputs; "outside fibers"
tests check the module is the stdlib there. Everything uses pipes, socketpairs or loopback TCP,
and is bounded in time.
"""

from __future__ import annotations

import os
import select as std
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fiber_helpers import Ticker, fill, later, outcome

import unknot
import unknot.select as us
from unknot.lowlevel import TIMED_OUT

pytestmark = pytest.mark.timeout(30)


# -- helpers -------------------------------------------------------------------------------------


def hub() -> Any:
    f = unknot.current()
    assert f is not None
    return f.hub


# -- select.select ---------------------------------------------------------------------------------


@pytest.mark.unknot
def test_select_suspends_only_the_fiber(backend: str, pipe: tuple[int, int]) -> None:
    r, w = pipe
    ticker = Ticker()
    later(0.15, os.write, w, b"x")
    t0 = time.monotonic()
    assert us.select([r], [], [], 5) == ([r], [], [])
    elapsed = time.monotonic() - t0
    assert 0.1 < elapsed < 1.0
    assert ticker.stop() >= 5  # other fibers ran while select waited
    assert r not in hub().fds  # the raw fd was watched only while waiting


@pytest.mark.unknot
def test_select_timeout_and_zero_timeout(backend: str, pipe: tuple[int, int]) -> None:
    r, w = pipe
    ticker = Ticker()
    t0 = time.monotonic()
    assert us.select([r], [], [], 0.1) == ([], [], [])
    assert 0.09 < time.monotonic() - t0 < 1.0
    assert us.select([r], [], [], 0) == ([], [], [])
    assert us.select([], [], [], 0.05) == ([], [], [])  # a cooperative sleep
    assert ticker.stop() >= 5


@pytest.mark.unknot
def test_select_results_match_stdlib(backend: str, pipe: tuple[int, int]) -> None:
    r, w = pipe
    a, b = socket.socketpair()
    r2, w2 = os.pipe()
    try:
        os.write(w, b"data")
        b.send(b"x")
        cases: list[tuple[Any, Any, Any]] = [
            ([r, r2], [w, w2], []),
            ((r2, r), (), ()),  # tuples
            ([a, b, r], [a], [a]),  # objects with fileno()
            ([r, r], [w, w], [r]),  # duplicates are reported twice, as the stdlib does
            ([], [w2], []),
        ]
        for rl, wl, xl in cases:
            expected = std.select(rl, wl, xl, 0)
            assert us.select(rl, wl, xl) == expected
            assert us.select(rl, wl, xl, 1.5) == expected
        # any iterable, consumed once, as the stdlib does
        expected = std.select(iter([r, r2]), {w}, (x for x in [a]), 0)
        assert us.select(iter([r, r2]), {w}, (x for x in [a]), 1) == expected
    finally:
        a.close()
        b.close()
        os.close(r2)
        os.close(w2)


@pytest.mark.unknot
def test_select_errors_match_stdlib(backend: str) -> None:
    r, w = os.pipe()
    a, b = socket.socketpair()  # opened after the pipe: r and w are closed fds below open ones
    os.close(r)
    os.close(w)
    b.close()

    class NoFileno:
        pass

    bad_args: list[tuple[Any, ...]] = [
        ([r], [], [], 0),
        ([], [w], [], None),
        ([-1], [], [], None),
        ([b], [], [], None),  # a closed socket: fileno() is -1
        (["x"], [], [], None),
        ([NoFileno()], [], [], None),
        (3, [], [], None),
        ([], None, [], None),
        ([], [], [], -1),
        ([], [], [], -0.5),
        ([], [], [], "1"),
        ([], [], [], float("nan")),
        ([], [], [], 1e300),
        ([], [], [], 2**70),
        ([], [], [], 10**11),
    ]
    try:
        for args in bad_args:
            expected = outcome(std.select, *args)
            assert isinstance(expected, tuple) and isinstance(expected[0], type), args
            assert outcome(us.select, *args) == expected, args
    finally:
        a.close()


@pytest.mark.unknot
def test_select_writable_and_hangup(backend: str) -> None:
    r, w = os.pipe()
    try:
        os.set_blocking(w, False)
        fill(w)
        os.set_blocking(w, True)
        assert us.select([], [w], [], 0.05) == ([], [], [])  # full pipe
        later(0.05, os.read, r, 1 << 20)
        assert us.select([], [w], [], 5) == ([], [w], [])
        assert us.select([r], [], [], 0.02) == ([], [], [])  # drained
        later(0.05, os.write, w, b"tail")
        assert us.select([r], [], [], 5) == ([r], [], [])
        assert os.read(r, 1 << 20) == b"tail"
        later(0.05, os.close, w)
        assert us.select([r], [], [], 5) == ([r], [], [])  # EOF
        assert os.read(r, 10) == b""
    finally:
        os.close(r)


@pytest.mark.unknot
def test_select_exceptional_condition_is_polled(backend: str) -> None:
    """xlist (TCP urgent data here) is not watched by the hub: polled every BUSY_POLL s."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    conn, _ = listener.accept()
    try:
        later(0.05, client.send, b"!", socket.MSG_OOB)
        t0 = time.monotonic()
        assert us.select([], [], [conn], 5) == ([], [], [conn])
        assert time.monotonic() - t0 < 0.05 + us.BUSY_POLL + 0.5
    finally:
        for s in (listener, client, conn):
            s.close()


@pytest.mark.unknot
def test_two_fibers_select_the_same_fd(backend: str, pipe: tuple[int, int]) -> None:
    r, w = pipe
    with unknot.TaskGroup() as tg:
        fibers = [tg.spawn(us.select, [r], [], [], 5) for _ in range(3)]
        later(0.05, os.write, w, b"x")
    assert [f.result() for f in fibers] == [([r], [], [])] * 3


@pytest.mark.unknot
def test_select_cancelled_cleans_up(backend: str, pipe: tuple[int, int]) -> None:
    r, w = pipe
    with unknot.move_on_after(0.05) as scope:
        us.select([r], [], [], None)
    assert scope.cancelled_caught
    assert r not in hub().fds
    os.write(w, b"x")
    assert us.select([r], [], [], 1) == ([r], [], [])


@pytest.mark.unknot
def test_select_regular_file_is_ready(backend: str, tmp_path: Any) -> None:
    with open(tmp_path / "f", "w+b") as f:
        assert us.select([f], [f], [], 5) == ([f], [f], [])


@pytest.mark.unknot
def test_select_on_unknot_sockets(backend: str) -> None:
    a, b = unknot.socket.socketpair()
    with a, b:
        ticker = Ticker()
        later(0.05, b.sendall, b"ping")
        assert us.select([a], [], [], 5) == ([a], [], [])
        assert a.recv(10) == b"ping"
        later(0.05, b.sendall, b"pong")  # the socket's own waits still work afterwards
        assert a.recv(10) == b"pong"
        assert ticker.stop() >= 2


@pytest.mark.unknot
@pytest.mark.parametrize("kind", ["select", "poll", "epoll"])
def test_exception_from_a_signal_handler_ends_the_wait(kind: str, pipe: tuple[int, int]) -> None:
    # A signal handler's exception comes out of the wait, as out of the stdlib's. One that is
    # an OSError (TimeoutError: the usual alarm-based timeout) was taken for the EBADF of an fd
    # closed while waiting, and swallowed: the wait went on to its own timeout.
    r, _ = pipe

    def alarm(signum: int, frame: Any) -> None:
        raise TimeoutError("alarm")

    previous = signal.signal(signal.SIGUSR1, alarm)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="alarm"):
            if kind == "select":
                us.select([r], [], [], 5)
            elif kind == "poll":
                p = us.poll()
                p.register(r, us.POLLIN)
                p.poll(5000)
            else:
                with us.epoll() as ep:
                    ep.register(r, us.EPOLLIN)
                    ep.poll(5)
        assert time.monotonic() - t0 < 2.5
    finally:
        timer.join()
        signal.signal(signal.SIGUSR1, previous)


def test_select_outside_fibers_is_stdlib(pipe: tuple[int, int]) -> None:
    r, w = pipe
    t0 = time.monotonic()
    assert us.select([r], [], [], 0.05) == ([], [], [])
    assert time.monotonic() - t0 >= 0.04
    os.write(w, b"x")
    assert us.select([r], [w], [], None) == std.select([r], [w], [], None)
    assert outcome(lambda: us.select([], [], [], -1)) == outcome(lambda: std.select([], [], [], -1))


# -- poll objects ----------------------------------------------------------------------------------


@pytest.mark.unknot
def test_poll_suspends_only_the_fiber(backend: str, pipe: tuple[int, int]) -> None:
    r, w = pipe
    p = us.poll()
    p.register(r, std.POLLIN)
    ticker = Ticker()
    later(0.1, os.write, w, b"x")
    t0 = time.monotonic()
    assert p.poll() == [(r, std.POLLIN)]
    assert 0.05 < time.monotonic() - t0 < 1.0
    assert ticker.stop() >= 3
    os.read(r, 1)
    t0 = time.monotonic()
    assert p.poll(60) == []  # milliseconds
    assert 0.05 < time.monotonic() - t0 < 1.0
    assert p.poll(0) == []
    later(0.05, os.write, w, b"y")
    assert p.poll(-1) == [(r, std.POLLIN)]  # negative: forever
    assert r not in hub().fds


@pytest.mark.unknot
def test_poll_results_match_stdlib(backend: str, pipe: tuple[int, int]) -> None:
    r, w = pipe
    a, b = socket.socketpair()
    r2, w2 = os.pipe()
    try:
        os.write(w, b"x")
        os.close(w2)  # r2: hang-up
        mine, theirs = us.poll(), std.poll()
        for p in (mine, theirs):
            p.register(r)
            p.register(w, std.POLLOUT)
            p.register(a, std.POLLIN | std.POLLOUT)
            p.register(b, std.POLLIN)
            p.register(r2, std.POLLIN)
            p.modify(b, std.POLLOUT)
        assert sorted(mine.poll()) == sorted(theirs.poll(0))
        for p in (mine, theirs):
            p.unregister(a)
        assert sorted(mine.poll(1000)) == sorted(theirs.poll(0))
        r3, w3 = os.pipe()
        os.close(r3)
        os.close(w3)
        for p in (mine, theirs):
            p.register(r3)  # a closed fd: POLLNVAL
        assert sorted(mine.poll(None)) == sorted(theirs.poll(0))
    finally:
        a.close()
        b.close()
        os.close(r2)


@pytest.mark.unknot
def test_poll_errors_match_stdlib(backend: str, pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, b"x")  # registered below and ready: stdlib calls with valid timeouts return
    calls: list[Callable[[Any], Any]] = [
        lambda p: p.modify(r + 1000, std.POLLIN),
        lambda p: p.unregister(w),
        lambda p: p.register(-1),
        lambda p: p.register("x"),
        lambda p: p.register(r, -1),
        lambda p: p.register(r, 1 << 20),
        lambda p: p.poll("1"),
        lambda p: p.poll(float("nan")),
        lambda p: p.poll(1e300),
        lambda p: p.poll(2**40),
        lambda p: p.poll(2**70),
    ]
    for call in calls:
        mine, theirs = us.poll(), std.poll()
        mine.register(r)
        theirs.register(r)
        expected = outcome(call, theirs)
        assert isinstance(expected, tuple), call
        assert outcome(call, mine) == expected


@pytest.mark.unknot
def test_poll_concurrent_calls_refused(backend: str, pipe: tuple[int, int]) -> None:
    r, w = pipe
    p = us.poll()
    p.register(r, std.POLLIN)
    first = unknot.spawn(p.poll, 2000)
    unknot.sleep(0.02)
    with pytest.raises(RuntimeError, match="concurrent poll"):
        p.poll(10)
    os.write(w, b"x")
    assert first.join() == [(r, std.POLLIN)]


@pytest.mark.unknot
def test_poll_without_watchable_events_is_polled(backend: str, pipe: tuple[int, int]) -> None:
    r, w = pipe
    p = us.poll()
    p.register(r, 0)  # no events asked: only POLLHUP/POLLERR are reported
    later(0.05, os.close, w)
    t0 = time.monotonic()
    assert p.poll(5000) == [(r, std.POLLHUP)]
    assert time.monotonic() - t0 < 0.05 + us.BUSY_POLL + 0.5


def test_poll_outside_fibers_is_stdlib(pipe: tuple[int, int]) -> None:
    r, w = pipe
    p = us.poll()
    p.register(r, std.POLLIN)
    t0 = time.monotonic()
    assert p.poll(50) == []
    assert time.monotonic() - t0 >= 0.04
    os.write(w, b"x")
    assert p.poll() == [(r, std.POLLIN)]


# -- epoll objects ---------------------------------------------------------------------------------


@pytest.mark.unknot
def test_epoll_suspends_only_the_fiber(backend: str, pipe: tuple[int, int]) -> None:
    r, w = pipe
    with us.epoll() as ep:
        ep.register(r, std.EPOLLIN)
        ticker = Ticker()
        later(0.1, os.write, w, b"x")
        assert ep.poll() == [(r, std.EPOLLIN)]
        assert ticker.stop() >= 3
        os.read(r, 1)
        t0 = time.monotonic()
        assert ep.poll(0.06) == []
        assert 0.05 < time.monotonic() - t0 < 1.0
        assert ep.poll(0) == []
        later(0.03, os.write, w, b"y")
        assert ep.poll(-1, 1) == [(r, std.EPOLLIN)]
        ep.modify(r, std.EPOLLOUT)
        ep.register(w, std.EPOLLOUT)
        assert ep.poll(1) == [(w, std.EPOLLOUT)]
        ep.unregister(w)
        dup = us.epoll.fromfd(os.dup(ep.fileno()))
        assert isinstance(dup, us.epoll) and not dup.closed
        dup.close()
        assert dup.closed
        assert ep.fileno() not in hub().fds
    assert ep.closed


@pytest.mark.unknot
def test_epoll_errors_match_stdlib(backend: str) -> None:
    calls: list[Callable[[Any], Any]] = [
        lambda e: e.poll(0, 0),
        lambda e: e.poll(0, -5),
        lambda e: e.poll("1"),
        lambda e: e.poll(float("nan")),
        lambda e: e.poll(1e300),
        lambda e: e.poll(3e6),
        lambda e: e.register(-1),
        lambda e: e.unregister(1000),
    ]
    for call in calls:
        mine, theirs = us.epoll(), std.epoll()
        with mine, theirs:
            expected = outcome(call, theirs)
            assert isinstance(expected, tuple), call
            assert outcome(call, mine) == expected
    closed = us.epoll()
    closed.close()
    theirs = std.epoll()
    theirs.close()
    assert outcome(lambda: closed.poll(1)) == outcome(lambda: theirs.poll(1))


# -- the module is callable: unknot.select(...) is the channel select ----------------------------


@pytest.mark.unknot
def test_module_is_also_the_channel_select() -> None:
    ch: unknot.Channel[int] = unknot.Channel()
    unknot.spawn(ch.send, 7)
    op, value = unknot.select(ch.recv_op(), timeout=5)
    assert (op.channel, value) == (ch, 7)
    from unknot import select

    unknot.spawn(ch.send, 8)
    assert select(ch.recv_op())[1] == 8
    with pytest.raises(TimeoutError):
        us(ch.recv_op(), timeout=0)
    assert unknot.select is us and callable(us)
    assert us.select is not std.select and us.poll is not std.poll
    assert "select" in unknot.__all__


@pytest.mark.parametrize(
    "imports",
    [
        "import unknot.select",
        "from unknot import select",
        "import unknot._channel, unknot.select, unknot",
        "from unknot.select import select as fd_select; import unknot",
    ],
)
def test_both_uses_whatever_the_import_order(imports: str) -> None:
    code = f"""{imports}
import os, unknot
def main():
    ch = unknot.Channel()
    unknot.spawn(ch.send, 1)
    assert unknot.select(ch.recv_op())[1] == 1
    r, w = os.pipe()
    os.write(w, b"x")
    assert unknot.select.select([r], [], [], 1) == ([r], [], [])
    print("ok")
unknot.run(main)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.stdout.strip() == "ok", out.stderr


def test_mirrors_every_stdlib_name() -> None:
    for name in dir(std):
        if not name.startswith("_"):
            assert hasattr(us, name), name
            if name not in ("select", "poll", "epoll"):
                assert getattr(us, name) is getattr(std, name), name


# -- Hub.wait_fds --------------------------------------------------------------------------------


@pytest.mark.unknot
def test_wait_fds_first_fd_wins(backend: str) -> None:
    pipes = [os.pipe() for _ in range(3)]
    try:
        h = hub()
        f = unknot.current()
        reads = [r for r, _ in pipes]
        later(0.05, os.write, pipes[1][1], b"x")
        assert h.wait_fds(f, reads, [], 5) is None
        assert std.select(reads, [], [], 0)[0] == [pipes[1][0]]
        assert h.wait_fds(f, [pipes[0][0]], [], 0.05) is TIMED_OUT
        assert h.wait_fds(f, [], [], 0.01) is TIMED_OUT  # nothing to watch: a sleep
        for r in reads:
            assert r not in h.fds
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


@pytest.mark.unknot
def test_wait_fds_busy_fd(backend: str, pipe: tuple[int, int]) -> None:
    r, w = pipe
    h = hub()
    me = unknot.current()
    other = unknot.spawn(unknot.wait_readable, r, 5)
    unknot.sleep(0.01)  # other is now the fd's reader
    r2, w2 = os.pipe()
    try:
        # We queue behind ``other`` (it was a RuntimeError, or skipped with busy_poll) and are
        # woken when it leaves its wait.
        assert h.wait_fds(me, [r2, r], [], 0.01) is TIMED_OUT
        assert r2 not in h.fds  # nothing left registered
        assert h.wait_fds(me, [r], [], 0.01, busy_poll=0.5) is TIMED_OUT  # own timeout first
        unknot.spawn(lambda: (unknot.sleep(0), os.write(w, b"x")))
        assert h.wait_fds(me, [r2, r], [], 5, busy_poll=0.5) is None
        other.join()
    finally:
        os.close(r2)
        os.close(w2)
