"""unknot.socket, unknot.subprocess and unknot.os against the stdlib: cases a review
found different, each test failing on the code before its fix.

Socket files (``makefile``) after a cancelled read and shared by several fibers; a ``with
Popen`` block whose ``__exit__`` is cancelled; ``socketpair`` with ``SOCK_NONBLOCK``; an
``AF_UNIX`` ``shutdown`` waking the fibers waiting on the socket; ``recv_into`` argument errors
on a socket whose readiness hint is clear; zero-size pipe I/O. Loopback only, bounded in time.
"""

from __future__ import annotations

import io
import os as std_os
import socket as std
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pytest
from fiber_helpers import Where, fill

import unknot
import unknot.os as uos
import unknot.socket as us
import unknot.subprocess as usp

pytestmark = pytest.mark.timeout(60)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


def in_fibers(where: Where) -> None:
    if not where.fiber:
        pytest.skip("a fiber-only behaviour")


def on_a_socketpair(where: Where, check: Callable[[us.socket, us.socket], None]) -> None:
    """Run ``check(a, b)`` where the test runs, on a fresh connected pair (closed afterwards)."""

    def main() -> None:
        a, b = us.socketpair()
        with a, b:
            check(a, b)

    where.run(main)


# -- makefile: a cancelled buffered read loses nothing silently ------------------------------------


@pytest.mark.parametrize("call", ["readline", "read"])
def test_makefile_read_cancelled_midway_refuses_to_go_on(where: Where, call: str) -> None:
    # The C buffered file drops the bytes it had already taken when its raw read is cancelled:
    # the next readline returned the tail of the line. Now the file refuses further reads, as
    # the stdlib's does after a timeout ("cannot read from timed out object").
    in_fibers(where)

    def check(a: us.socket, b: us.socket) -> None:
        f = a.makefile("rb")
        b.sendall(b"hel")
        with unknot.move_on_after(0.05) as scope:
            f.readline() if call == "readline" else f.read(6)
        assert scope.cancelled_caught
        b.sendall(b"lo\n")
        with pytest.raises(OSError, match="cancelled"):
            f.readline()
        with pytest.raises(OSError, match="cancelled"):
            f.read(1)
        f.close()
        # The socket itself is still usable (the bytes are those the file had not taken).
        assert a.recv(10) == b"lo\n"

    on_a_socketpair(where, check)


def test_makefile_text_read_cancelled_refuses_to_go_on(where: Where) -> None:
    in_fibers(where)

    def check(a: us.socket, b: us.socket) -> None:
        f = a.makefile("r", encoding="utf-8")
        b.sendall(b"hel")
        with unknot.move_on_after(0.05) as scope:
            f.readline()
        assert scope.cancelled_caught
        b.sendall(b"lo\n")
        with pytest.raises(OSError, match="cancelled"):
            f.readline()

    on_a_socketpair(where, check)


def test_makefile_unbuffered_read_cancelled_stays_usable(where: Where) -> None:
    # A raw SocketIO (buffering=0) loses nothing when cancelled: it stays usable.
    in_fibers(where)

    def check(a: us.socket, b: us.socket) -> None:
        f = a.makefile("rb", buffering=0)
        with unknot.move_on_after(0.05) as scope:
            f.read(10)
        assert scope.cancelled_caught
        b.sendall(b"hello")
        assert f.read(10) == b"hello"
        f.close()

    on_a_socketpair(where, check)


def test_makefile_timeout_still_says_timed_out(where: Where) -> None:
    def check(a: us.socket, b: us.socket) -> None:
        a.settimeout(0.05)
        f = a.makefile("rb")
        b.sendall(b"hel")
        with pytest.raises(TimeoutError):
            f.readline()
        with pytest.raises(OSError, match="timed out"):
            f.readline()

    on_a_socketpair(where, check)


# -- makefile (and Popen pipe files): several fibers use one file, as threads may -----------------


def test_makefile_two_fibers_writing_take_turns(where: Where) -> None:
    # The C buffered file's lock belongs to the OS thread: the second fiber got
    # RuntimeError("reentrant call") while the first waited inside it.
    in_fibers(where)

    def check(a: us.socket, b: us.socket) -> None:
        f = a.makefile("wb")
        assert isinstance(f, io.BufferedWriter)
        big = b"x" * 4_000_000

        def writer(data: bytes) -> str:
            f.write(data)
            f.flush()
            return "ok"

        w1 = unknot.spawn(writer, big)
        unknot.sleep(0.01)
        w2 = unknot.spawn(writer, b"tail\n")
        unknot.sleep(0.01)
        received = bytearray()

        def drain() -> None:
            while chunk := b.recv(1 << 20):
                received.extend(chunk)

        d = unknot.spawn(drain)
        assert [w1.join(), w2.join()] == ["ok", "ok"]
        f.close()
        a.shutdown(std.SHUT_WR)
        d.join()
        assert len(received) == len(big) + 5
        assert received.endswith(b"xtail\n")

    on_a_socketpair(where, check)


@pytest.mark.parametrize("mode", ["rb", "r", "rwb"])
def test_makefile_two_fibers_reading_take_turns(where: Where, mode: str) -> None:
    in_fibers(where)

    def check(a: us.socket, b: us.socket) -> None:
        f = a.makefile(mode, **({} if "b" in mode else {"encoding": "utf-8"}))
        assert isinstance(f, io.BufferedIOBase if "b" in mode else io.TextIOBase)
        r1 = unknot.spawn(f.readline)
        r2 = unknot.spawn(f.readline)
        unknot.sleep(0.02)
        b.sendall(b"one\ntwo\n")
        lines = sorted([r1.join(), r2.join()])
        assert lines == (sorted([b"one\n", b"two\n"]) if "b" in mode else ["one\n", "two\n"])
        f.close()

    on_a_socketpair(where, check)


@pytest.mark.parametrize("mode", ["rwb", "rw"])
def test_makefile_rw_a_waiting_reader_does_not_hold_up_a_writer(where: Where, mode: str) -> None:
    # Readers take turns among themselves and writers among themselves: a fiber waiting to
    # read the file must not keep another from writing to it (a request/response peer).
    in_fibers(where)

    def check(a: us.socket, b: us.socket) -> None:
        f = a.makefile(mode, **({} if "b" in mode else {"encoding": "utf-8"}))
        reader = unknot.spawn(f.readline)
        unknot.sleep(0.02)
        with unknot.fail_after(2):
            f.write(b"ping\n" if "b" in mode else "ping\n")
            f.flush()
            assert b.recv(10) == b"ping\n"
        b.sendall(b"pong\n")
        assert reader.join() == (b"pong\n" if "b" in mode else "pong\n")
        f.close()

    on_a_socketpair(where, check)


def test_makefile_file_keeps_the_stdlib_face(where: Where) -> None:
    def check(a: us.socket, b: us.socket) -> None:
        with a.makefile("rb") as r, a.makefile("wb") as w, a.makefile("rwb") as rw:
            assert isinstance(r, io.BufferedReader)
            assert isinstance(w, io.BufferedWriter)
            assert isinstance(rw, io.BufferedRWPair)
            assert r.fileno() == a.fileno() and r.mode == "rb" and not r.closed
            assert r.name == a.fileno() and r.readable() and not r.writable()
            assert w.writable() and not w.readable()
            w.write(b"out\n")
            w.flush()
            assert b.recv(10) == b"out\n"
            b.sendall(b"a\nb\n")
            b.shutdown(std.SHUT_WR)
            assert list(r) == [b"a\n", b"b\n"]
        assert r.closed and w.closed and rw.closed

    on_a_socketpair(where, check)


def test_makefile_iteration_and_close_in_fibers(where: Where) -> None:
    in_fibers(where)

    def check(a: us.socket, b: us.socket) -> None:
        r = a.makefile("rb")
        lines: list[bytes] = []
        reader = unknot.spawn(lambda: lines.extend(r))
        unknot.sleep(0.01)
        b.sendall(b"1\n2\n")
        b.shutdown(std.SHUT_WR)
        reader.join()
        assert lines == [b"1\n", b"2\n"]
        r.close()
        assert r.closed

    on_a_socketpair(where, check)


def test_popen_pipe_file_two_fibers_reading(where: Where) -> None:
    in_fibers(where)

    def main() -> None:
        code = "import sys, time; time.sleep(0.2); sys.stdout.write('one\\ntwo\\n')"
        with usp.Popen([sys.executable, "-c", code], stdout=usp.PIPE) as p:
            assert isinstance(p.stdout, io.BufferedReader)
            r1 = unknot.spawn(p.stdout.readline)
            r2 = unknot.spawn(p.stdout.readline)
            assert sorted([r1.join(), r2.join()]) == [b"one\n", b"two\n"]

    where.run(main)


# -- with Popen: a cancellation while __exit__ waits kills and reaps the process -------------------


def test_popen_exit_cancelled_while_waiting_kills_and_reaps(where: Where) -> None:
    in_fibers(where)

    def main() -> None:
        start = time.monotonic()
        with unknot.move_on_after(0.2) as scope:
            with usp.Popen(SLEEPER, stdout=usp.PIPE) as p:
                pass
        assert scope.cancelled_caught
        assert p.returncode is not None and p.returncode < 0  # killed, and reaped
        assert p.stdout.closed
        assert time.monotonic() - start < 5

    where.run(main)


# -- socketpair honours SOCK_NONBLOCK and SOCK_CLOEXEC ---------------------------------------------


@pytest.mark.skipif(not hasattr(std, "SOCK_NONBLOCK"), reason="no SOCK_NONBLOCK")
def test_socketpair_sock_nonblock(where: Where) -> None:
    def main() -> None:
        a, b = us.socketpair(type=std.SOCK_STREAM | std.SOCK_NONBLOCK)
        with a, b:
            assert a.gettimeout() == 0.0 and b.gettimeout() == 0.0
            assert not a.getblocking()
            assert a.type == std.SOCK_STREAM
            with pytest.raises(BlockingIOError):
                a.recv(10)
        a, b = us.socketpair()
        with a, b:
            assert a.gettimeout() is None

    where.run(main)


@pytest.mark.skipif(not hasattr(std, "SOCK_CLOEXEC"), reason="no SOCK_CLOEXEC")
def test_socketpair_sock_cloexec_keeps_fds_from_children(where: Where) -> None:
    def main() -> None:
        a, b = us.socketpair(type=std.SOCK_STREAM | std.SOCK_CLOEXEC)
        with a, b:
            assert not std_os.get_inheritable(a.fileno())
            assert a.gettimeout() is None

    where.run(main)


# -- AF_UNIX shutdown wakes the fibers waiting on the socket ---------------------------------------


def _outcome_after(fn: Any, trigger: Any) -> str:
    def run() -> str:
        try:
            fn()
            return "returned"
        except OSError as e:
            return type(e).__name__ + f"({e.errno})"

    f = unknot.spawn(run)
    unknot.sleep(0.05)
    trigger()
    with unknot.move_on_after(2) as scope:
        result: str = f.join()
    if scope.cancelled_caught:
        f.cancel()
        return "still waiting after 2 s"
    return result


def test_unix_shutdown_wr_wakes_a_waiting_sendall(where: Where) -> None:
    in_fibers(where)

    def main() -> None:
        a, b = us.socketpair()
        with a, b:
            result = _outcome_after(
                lambda: a.sendall(b"x" * 20_000_000), lambda: a.shutdown(std.SHUT_WR)
            )
        assert result == "BrokenPipeError(32)"

    where.run(main)


def test_unix_shutdown_rdwr_wakes_a_waiting_accept(where: Where) -> None:
    in_fibers(where)

    def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            listener = us.socket(std.AF_UNIX, std.SOCK_STREAM)
            with listener:
                listener.bind(std_os.path.join(tmp, "sock"))
                listener.listen()
                result = _outcome_after(listener.accept, lambda: listener.shutdown(std.SHUT_RDWR))
        assert result == "OSError(22)"

    where.run(main)


@pytest.mark.parametrize("before", [False, True], ids=["while-waiting", "before"])
def test_unix_listener_shut_down_accept_says_einval(where: Where, before: bool) -> None:
    # On unknot's non-blocking fd the accept said EAGAIN for ever (and, polled level-triggered
    # or outside fibers, the fd is readable: a busy loop); the stdlib's blocking accept says
    # EINVAL, in a thread too.
    def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            listener = us.socket(std.AF_UNIX, std.SOCK_STREAM)
            with listener:
                listener.bind(std_os.path.join(tmp, "sock"))
                listener.listen()
                if before:
                    listener.shutdown(std.SHUT_RD)
                    with pytest.raises(OSError) as info:
                        listener.accept()
                    assert info.value.errno == 22
                    return
                peer = where.start(lambda: outcome_of(listener.accept))
                where.sleep(0.05)
                listener.shutdown(std.SHUT_RDWR)
                assert peer.join() == ("OSError", 22)

    where.run(main)


def outcome_of(fn: Any) -> Any:
    try:
        return fn()
    except OSError as e:
        return (type(e).__name__, e.errno)


def test_unix_shutdown_wakes_every_queued_sender(where: Where) -> None:
    in_fibers(where)

    def main() -> None:
        a, b = us.socketpair()
        with a, b:
            results: list[str] = []

            def send() -> None:
                try:
                    a.sendall(b"x" * 10_000_000)
                    results.append("returned")
                except OSError as e:
                    results.append(type(e).__name__)

            senders = [unknot.spawn(send) for _ in range(3)]
            unknot.sleep(0.05)
            a.shutdown(std.SHUT_WR)
            with unknot.fail_after(2):
                for s in senders:
                    s.join()
        assert results == ["BrokenPipeError"] * 3

    where.run(main)


def test_tcp_shutdown_still_wakes_waiters(where: Where) -> None:
    in_fibers(where)

    def main() -> None:
        with us.create_server(("127.0.0.1", 0)) as listener:
            result = _outcome_after(listener.accept, lambda: listener.shutdown(std.SHUT_RDWR))
        assert result == "OSError(22)"
        with us.create_server(("127.0.0.1", 0)) as listener:
            client = us.create_connection(listener.getsockname())
            server, _ = listener.accept()
            with client, server:
                got = _outcome_after(lambda: client.recv(10), lambda: client.shutdown(std.SHUT_RD))
        assert got == "returned"

    where.run(main)


# -- recv_into: argument errors at once, even with the readiness hint clear ------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [((bytearray(10), 100), ValueError), ((b"read-only",), TypeError)],
    ids=["nbytes-too-big", "read-only"],
)
def test_recv_into_bad_arguments_raise_at_once(where: Where, args: Any, error: Any) -> None:
    def main() -> None:
        with us.create_server(("127.0.0.1", 0)) as listener:
            client = us.create_connection(listener.getsockname())
            server, _ = listener.accept()
            with client, server:
                client.sendall(b"abc")
                where.sleep(0.05)
                assert server.recv(100) == b"abc"  # a short read: the hint is clear
                server.settimeout(1)
                start = time.monotonic()
                with pytest.raises(error):
                    server.recv_into(*args)
                assert time.monotonic() - start < 0.5
                # The socket still works.
                client.sendall(b"de")
                buf = bytearray(10)
                assert server.recv_into(buf) == 2 and buf[:2] == b"de"

    where.run(main)


# -- zero-size pipe I/O returns at once ------------------------------------------------------------


def test_popen_raw_pipe_zero_size_reads_return_at_once(where: Where) -> None:
    def main() -> None:
        p = usp.Popen(
            [sys.executable, "-c", "import time; time.sleep(3)"], stdout=usp.PIPE, bufsize=0
        )
        try:
            start = time.monotonic()
            with where.fail_after(1):
                assert p.stdout.read(0) == b""
                assert p.stdout.readinto(bytearray(0)) == 0
            assert time.monotonic() - start < 0.5
        finally:
            p.kill()
            p.wait()
            p.stdout.close()

    where.run(main)


def test_os_write_empty_to_a_full_pipe_returns_at_once(where: Where) -> None:
    def main() -> None:
        r, w = std_os.pipe()
        try:
            std_os.set_blocking(w, False)
            fill(w)
            std_os.set_blocking(w, True)
            start = time.monotonic()
            with where.fail_after(1):
                assert uos.write(w, b"") == 0
                assert uos.write(w, bytearray()) == 0
            assert time.monotonic() - start < 0.5
        finally:
            std_os.close(r)
            std_os.close(w)

    where.run(main)


@pytest.mark.parametrize("mode", ["rb", "wb", "r", "w", "rwb"])
def test_a_socket_files_repr_is_the_stdlibs(mode: str) -> None:
    """As the stdlib's (CPython's test_name_closed_socketio checks it): the fiber-safe files
    name the io type they extend, not their own class."""
    import re
    import socket as std

    def shown(sock_type: Any) -> tuple[str, str]:
        with sock_type(std.AF_INET, std.SOCK_STREAM) as sock:
            f = sock.makefile(mode)
            before = repr(f)
            f.close()
            return before, repr(f)

    def plain(text: str) -> str:
        return re.sub(r"0x[0-9a-f]+|name=\d+", "X", text)  # (addresses and fd numbers differ)

    ours, theirs = shown(us.socket), shown(std.socket)
    assert [plain(r) for r in ours] == [plain(r) for r in theirs]
