"""TCPServer and serve_tcp: a fiber per connection running a plain blocking handler."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket as std
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import unknot
import unknot.socket as us

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def echo_lines(conn: us.socket, addr: Any) -> None:
    f = conn.makefile("rwb")
    for line in f:
        f.write(line)
        f.flush()


def start(server: unknot.TCPServer) -> unknot.Fiber:
    f = unknot.spawn(server.serve_forever, name="serve_forever")
    unknot.sleep(0)  # it is in accept() now
    return f


def connect(server: unknot.TCPServer) -> us.socket:
    return us.create_connection(server.address, timeout=5)


def roundtrip(sock: Any, line: bytes) -> bytes:
    sock.sendall(line)
    f = sock.makefile("rb")
    try:
        return f.readline()
    finally:
        f.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def default_sigint() -> None:  # for subprocesses: Ctrl-C as usual even if we ignore it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.unknot
def test_each_connection_runs_in_its_own_fiber() -> None:
    release = unknot.Event()
    seen: list[tuple[unknot.Fiber, Any]] = []

    def handler(conn: us.socket, addr: Any) -> None:
        seen.append((unknot.current(), addr))
        release.wait()  # blocks only this connection's fiber
        conn.sendall(b"bye")

    with unknot.TCPServer(handler) as server:
        serving = start(server)
        clients = [connect(server) for _ in range(5)]
        while len(seen) < 5:
            unknot.sleep(0.005)
        assert server.connections == 5
        assert len({f for f, _ in seen}) == 5  # five fibers, all running at once
        assert {a for _, a in seen} == {c.getsockname() for c in clients}
        assert all(f is not serving for f, _ in seen)
        release.set()
        for c in clients:
            assert c.recv(10) == b"bye"
            assert c.recv(10) == b""  # closed when the handler returned
            c.close()
        server.stop()
    assert serving.done() and server.connections == 0


@pytest.mark.unknot
def test_handler_exception_is_logged_and_serving_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def handler(conn: us.socket, addr: Any) -> None:
        calls.append(addr)
        if len(calls) == 1:
            raise ValueError("handler bug")
        echo_lines(conn, addr)

    with unknot.TCPServer(handler) as server:
        start(server)
        with connect(server) as c:
            assert c.recv(10) == b""  # the failed handler's connection was closed
        with connect(server) as c:
            assert roundtrip(c, b"still serving\n") == b"still serving\n"
        server.stop()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].name == "unknot.server" and "handler for" in errors[0].getMessage()
    assert errors[0].exc_info and errors[0].exc_info[0] is ValueError


@pytest.mark.unknot
def test_a_connection_fibers_name_is_made_only_when_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # "conn-<peer address>", but no string per idle connection until a dump, an instrument or a
    # log line asks for it (docs/internals.md, "Memory per idle connection").
    seen: list[Any] = []
    fail = unknot.Event()

    def handler(conn: us.socket, addr: Any) -> None:
        me = unknot.current()
        assert me is not None
        seen.append((addr, me._name, me._name_arg is addr))
        fail.wait()
        raise ValueError("handler bug")

    with unknot.TCPServer(handler) as server:
        start(server)
        with connect(server) as c:
            while not seen:
                unknot.sleep(0.005)
            addr = seen[0][0]
            assert seen[0] == (addr, "conn-{}", True)
            assert addr == c.getsockname()
            (info,) = [i for i in unknot.fibers() if i.name.startswith("conn-")]
            assert info.name == f"conn-{addr}"
            fail.set()
            assert c.recv(10) == b""
        server.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"handler for conn-{addr} failed"]


@pytest.mark.unknot
def test_peer_reset_is_not_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="unknot.server")
    in_handler = unknot.Event()
    done = unknot.Event()

    def handler(conn: us.socket, addr: Any) -> None:
        try:
            in_handler.set()
            conn.recv(100)  # the reset arrives here
            conn.recv(100)
        finally:
            done.set()

    with unknot.TCPServer(handler) as server:
        start(server)
        c = connect(server)
        in_handler.wait()
        c.setsockopt(us.SOL_SOCKET, us.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST
        done.wait()
        unknot.sleep(0.01)
        server.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("ended" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)


@pytest.mark.unknot
def test_graceful_stop() -> None:
    events: list[str] = []
    started = unknot.Semaphore(0)

    def handler(conn: us.socket, addr: Any) -> None:
        kind = conn.recv(10)
        started.release()
        try:
            if kind == b"quick":
                unknot.sleep(0.05)  # finishes within the grace period
                conn.sendall(b"done")
                events.append("quick finished")
            else:
                unknot.sleep(60)  # cancelled when the grace period is over
        finally:
            events.append(f"{kind.decode()} finally")

    server = unknot.TCPServer(handler)
    serving = start(server)
    quick, slow = connect(server), connect(server)
    quick.sendall(b"quick")
    slow.sendall(b"slow")
    started.acquire()
    started.acquire()

    t0 = time.monotonic()
    stopper = unknot.spawn(server.stop, 0.3)
    unknot.sleep(0.01)
    with pytest.raises(ConnectionRefusedError):  # no longer accepting
        us.create_connection(server.address, timeout=2)
    assert quick.recv(10) == b"done"
    stopper.join()
    took = time.monotonic() - t0
    assert 0.25 < took < 2.0  # waited out the grace period for the slow handler, no longer
    assert events == ["quick finished", "quick finally", "slow finally"]
    assert serving.done() and server.connections == 0
    assert slow.recv(10) == b""  # the cancelled handler's connection was closed
    quick.close()
    slow.close()


@pytest.mark.unknot
def test_stop_with_no_handlers_returns_at_once_and_context_manager_stops() -> None:
    server = unknot.TCPServer(echo_lines)
    serving = start(server)
    t0 = time.monotonic()
    server.stop(grace=10)
    assert time.monotonic() - t0 < 0.5 and serving.done()
    with unknot.TCPServer(echo_lines) as server:
        serving = start(server)
        with connect(server) as c:
            assert roundtrip(c, b"x\n") == b"x\n"
    assert serving.done()  # __exit__ stopped it (and the connection, closed by the client)


@pytest.mark.unknot
def test_stop_from_a_handler() -> None:
    def handler(conn: us.socket, addr: Any) -> None:
        server.stop(grace=5)  # returns at once: a handler cannot wait for itself
        conn.sendall(b"stopping")

    server = unknot.TCPServer(handler)
    serving = start(server)
    with connect(server) as c:
        assert c.recv(10) == b"stopping"
    serving.join()


@pytest.mark.unknot
def test_max_connections_limits_concurrency() -> None:
    running = [0, 0]  # now, most
    gates = []

    def handler(conn: us.socket, addr: Any) -> None:
        running[0] += 1
        running[1] = max(running)
        gate = unknot.Event()
        gates.append(gate)
        try:
            gate.wait()
            conn.sendall(b"served")
        finally:
            running[0] -= 1

    with unknot.TCPServer(handler, max_connections=2) as server:
        start(server)
        clients = [connect(server) for _ in range(5)]
        unknot.sleep(0.1)
        assert server.connections == 2 and len(gates) == 2
        served = 0
        while served < 5:
            while len(gates) <= served:
                unknot.sleep(0.005)
            gates[served].set()
            served += 1
        for c in clients:
            assert c.recv(10) == b"served"
            c.close()
        assert running[1] == 2
        server.stop()


@pytest.mark.unknot
@pytest.mark.parametrize("nodelay", [True, False])
def test_tcp_nodelay_on_accepted_sockets(nodelay: bool) -> None:
    def handler(conn: us.socket, addr: Any) -> None:
        conn.sendall(b"%d" % bool(conn.getsockopt(us.IPPROTO_TCP, us.TCP_NODELAY)))

    with unknot.TCPServer(handler, nodelay=nodelay) as server:
        start(server)
        with connect(server) as c:
            assert c.recv(10) == (b"1" if nodelay else b"0")
        server.stop()


@pytest.mark.unknot
def test_serve_tcp_in_a_fiber_stops_when_cancelled() -> None:
    with us.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serving = unknot.spawn(unknot.serve_tcp, echo_lines, "127.0.0.1", port)
    unknot.sleep(0.01)
    with us.create_connection(("127.0.0.1", port), timeout=5) as c:
        assert roundtrip(c, b"hi\n") == b"hi\n"
        serving.cancel()
        with pytest.raises(unknot.FiberCancelled):
            serving.join()
        assert c.recv(10) == b""  # its handler was cancelled and the connection closed
    with pytest.raises(ConnectionRefusedError):
        us.create_connection(("127.0.0.1", port), timeout=2)


# -- no handler outlives the server ------------------------------------------------------------


class Sleeper:
    """A handler that sleeps until cancelled; records the connections it started and unwound."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.unwound: list[Any] = []

    def __call__(self, conn: us.socket, addr: Any) -> None:
        self.started.append(addr)
        try:
            unknot.sleep(60)
        finally:
            with unknot.CancelScope(shield=True):
                unknot.sleep(0.02)  # unwinding takes a while: whoever owns the handler waits
            self.unwound.append(addr)

    def wait_started(self, n: int = 1) -> None:
        while len(self.started) < n:
            unknot.sleep(0.005)


def assert_handlers_gone(server: unknot.TCPServer, handler: Sleeper, *clients: us.socket) -> None:
    assert server.connections == 0
    assert handler.unwound == handler.started  # (each one cancelled, and it finished unwinding)
    for c in clients:
        assert c.recv(10) == b""  # its connection was closed
        c.close()
    with pytest.raises(ConnectionRefusedError):  # not listening
        us.create_connection(server.address, timeout=2)


@pytest.mark.unknot
def test_cancelled_serve_forever_cancels_its_handlers_and_waits_for_them() -> None:
    handler = Sleeper()
    server = unknot.TCPServer(handler)  # (no with-block: serve_forever itself owns them)
    with unknot.TaskGroup() as tg:
        tg.spawn(server.serve_forever)
        c = connect(server)
        handler.wait_started()
        tg.cancel()
    assert handler.started == [c.getsockname()]
    assert_handlers_gone(server, handler, c)


@pytest.mark.unknot
@pytest.mark.parametrize("serving_in", ["a task group", "the block itself"])
def test_leaving_the_block_after_serve_forever_was_cancelled(serving_in: str) -> None:
    handler = Sleeper()
    with unknot.CancelScope() as outer:
        with unknot.TCPServer(handler) as server:
            c = connect(server)
            if serving_in == "a task group":
                with unknot.TaskGroup() as tg:
                    tg.spawn(server.serve_forever)
                    handler.wait_started()
                    tg.cancel()
            else:

                def cancel_when_serving() -> None:
                    handler.wait_started()
                    outer.cancel()

                unknot.spawn(cancel_when_serving)
                server.serve_forever()
    assert outer.cancelled_caught == (serving_in == "the block itself")
    assert handler.started == [c.getsockname()]
    assert_handlers_gone(server, handler, c)


@pytest.mark.unknot
def test_leaving_the_block_while_serving_waits_for_handlers_to_finish() -> None:
    finished = []

    def handler(conn: us.socket, addr: Any) -> None:
        conn.sendall(b"ready")
        conn.sendall(conn.recv(10).upper())  # within the grace period of leaving the block
        finished.append(addr)

    def client() -> bytes:
        with connect(server) as c:
            assert c.recv(5) == b"ready"
            unknot.sleep(0.1)  # the block is being left by now
            c.sendall(b"bye")
            return c.recv(10)

    with unknot.TCPServer(handler) as server:
        serving = start(server)
        talking = unknot.spawn(client)
        while server.connections < 1:
            unknot.sleep(0.005)
    assert finished and server.connections == 0 and serving.done()
    assert talking.join() == b"BYE"


@pytest.mark.unknot
def test_exception_in_the_block_while_serving_cancels_the_handlers_at_once() -> None:
    handler = Sleeper()
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="body failed"):
        with unknot.TCPServer(handler) as server:
            serving = start(server)
            c = connect(server)
            handler.wait_started()
            raise ValueError("body failed")
    assert time.monotonic() - t0 < 2.0  # no grace period (stop() would give 10 s)
    assert serving.done() and not serving.cancelled()  # it returned, stopped by __exit__
    assert_handlers_gone(server, handler, c)


@pytest.mark.unknot
def test_accept_error_ending_serve_forever_cancels_the_handlers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accept = us.socket.accept
    calls = 0

    def breaking_accept(sock: us.socket) -> tuple[us.socket, Any]:
        nonlocal calls
        calls += 1
        if calls == 3:  # right after spawning the second handler, before it starts
            raise OSError(errno.EINVAL, "the listener broke")
        return accept(sock)

    monkeypatch.setattr(us.socket, "accept", breaking_accept)
    handler = Sleeper()
    server = unknot.TCPServer(handler)
    serving = start(server)
    first = connect(server)
    handler.wait_started()
    second = connect(server)
    with pytest.raises(OSError, match="the listener broke"):
        serving.join()
    assert handler.started == [first.getsockname()]  # the second was cancelled before starting
    assert_handlers_gone(server, handler, first, second)


# -- in subprocesses ----------------------------------------------------------------------------

SERVE_TCP_SCRIPT = """
import faulthandler, signal, sys
import unknot

unknot.dump_on_signal(signal.SIGUSR1)  # (for a hang: every fiber's stack, see hang_report)
faulthandler.register(signal.SIGUSR2, all_threads=True)  # (the running greenlet's, from C)

def handle(conn, addr):
    f = conn.makefile("rwb")
    for line in f:
        f.write(line)
        f.flush()

try:
    unknot.serve_tcp(handle, "127.0.0.1", int(sys.argv[1]))   # no hub running: starts one
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def hang_report(proc: subprocess.Popen[str]) -> str:
    """What a child that did not answer Ctrl-C was doing: its signal state from /proc, the
    fibers' stacks (SIGUSR1: `unknot.dump_on_signal`, made by the loop if it still turns) and
    the running greenlet's Python stack (SIGUSR2: faulthandler, from the C handler); then it is
    killed. Everything it wrote to stderr is in the report."""
    status = Path(f"/proc/{proc.pid}/status").read_text()
    lines = [ln for ln in status.splitlines() if ln.startswith(("State", "Threads", "Sig", "Shd"))]
    wchan = Path(f"/proc/{proc.pid}/wchan").read_text()
    for signum in (signal.SIGUSR1, signal.SIGUSR2):
        proc.send_signal(signum)
        time.sleep(1.0)
    proc.kill()
    out, err = proc.communicate()
    return "\n".join([*lines, f"wchan: {wchan}", f"--- stdout ---\n{out}--- stderr ---\n{err}"])


def connect_when_up(port: int, proc: subprocess.Popen[str], deadline: float = 10.0) -> std.socket:
    end = time.monotonic() + deadline
    while True:
        try:
            return std.create_connection(("127.0.0.1", port), timeout=5)
        except ConnectionRefusedError:
            if proc.poll() is not None or time.monotonic() > end:
                raise
            time.sleep(0.02)


def test_serve_tcp_outside_a_hub_starts_its_own() -> None:
    with std.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_TCP_SCRIPT, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        clients = [connect_when_up(port, proc) for _ in range(3)]
        for i, c in enumerate(clients):  # all three connected at once, each served
            c.sendall(b"line %d\n" % i)
        for i, c in enumerate(clients):
            assert c.makefile("rb").readline() == b"line %d\n" % i
            c.close()
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert "\nThreads:\t1\n" in status
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("Ctrl-C did not stop serve_tcp within 10 s\n" + hang_report(proc))
        assert proc.returncode == 0, err
        assert out == "interrupted\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


EMFILE_SCRIPT = """
import logging, os, resource, sys
import unknot

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")

def handle(conn, addr):
    f = conn.makefile("rwb")
    for line in f:
        f.write(line)
        f.flush()

def command():
    unknot.wait_readable(sys.stdin.fileno())
    return sys.stdin.readline().strip()

def main():
    server = unknot.TCPServer(handle, "127.0.0.1", 0)
    serving = unknot.spawn(server.serve_forever)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    hog = []
    try:
        while True:  # every fd in use: accept() fails with EMFILE
            hog.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    print(server.address[1], flush=True)
    assert command() == "free"
    for fd in hog[:16]:
        os.close(fd)
    print("freed", flush=True)
    assert command() == "stop"
    server.stop(grace=1)
    for fd in hog[16:]:
        os.close(fd)
    print("stopped", serving.done(), flush=True)

unknot.run(main)
"""


def test_emfile_on_accept_backs_off_and_recovers(tmp_path: Path) -> None:
    # stderr to a file: a spinning accept loop logging warnings must not block on a full pipe
    errfile = open(tmp_path / "stderr", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", EMFILE_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errfile,
        text=True,
        bufsize=1,
    )
    clients: list[std.socket] = []
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        for i in range(3):  # the kernel completes these; the server cannot accept them
            c = std.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"hello %d\n" % i)
            clients.append(c)
        time.sleep(0.2)  # the accept loop hits EMFILE and starts backing off
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(1.0)
        cpu = cpu_seconds(proc.pid) - cpu0
        wall = time.monotonic() - t0
        assert cpu < 0.25 * wall, f"accept loop spinning on EMFILE: {cpu:.2f}s CPU in {wall:.2f}s"
        assert proc.poll() is None, "the server crashed"
        clients[0].settimeout(0.05)
        with pytest.raises(TimeoutError):
            clients[0].recv(100)  # not served yet

        proc.stdin.write("free\n")
        assert proc.stdout.readline() == "freed\n"
        t1 = time.monotonic()
        for i, c in enumerate(clients):  # served again, within one back-off period
            c.settimeout(5)
            assert c.makefile("rb").readline() == b"hello %d\n" % i
        assert time.monotonic() - t1 < 2.0
        for c in clients:
            c.close()
        proc.stdin.write("stop\n")
        out, _ = proc.communicate(timeout=10)
        errfile.seek(0)
        err = errfile.read()
        assert proc.returncode == 0, err
        assert out == "stopped True\n"
        assert "accept() failed" in err and "Too many open files" in err
        assert "Traceback" not in err
    finally:
        for c in clients:
            c.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        errfile.close()


@pytest.mark.unknot
def test_a_timeout_around_stop_is_not_lost() -> None:
    # stop() waits, shielded, for its handlers (grace, then cancel); a deadline that passes
    # meanwhile must still come out of the stop for its scope to catch.
    def slow(conn: us.socket, addr: Any) -> None:
        unknot.sleep(100)

    server = unknot.TCPServer(slow)
    start(server)
    client = connect(server)
    unknot.sleep(0.05)  # the handler runs
    reached = []
    t0 = time.monotonic()
    with unknot.move_on_after(0.05) as scope:
        server.stop(grace=0.3)
        reached.append("after stop")
    assert scope.cancelled_caught
    assert reached == []
    assert time.monotonic() - t0 >= 0.3  # the stop itself still finished (the grace was kept)
    assert server.connections == 0
    client.close()
