"""examples/echo_server.py: one thread serves 1,000 clients at once with blocking-style code.

The example runs as a subprocess; the clients are 1,000 fibers of the test's own hub. Every client
connects and gets its first line echoed before any client finishes, so the server holds all
1,000 connections open and answers each while the others wait: a one-client-at-a-time server
(the seed's naive version) would answer only the first. The server process has one thread (a
numeric address: no DNS, so not even the resolver pool starts).
"""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import unknot
import unknot.socket as us

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 1000
LINES = 5


@pytest.fixture
def fd_limit() -> Iterator[None]:
    """Room for 1,000 sockets here and in the server (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * CLIENTS
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def default_sigint() -> None:  # the server gets Ctrl-C as usual even if we ignore it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def echo_server(fd_limit: None) -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "echo_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.fullmatch(r"echo server listening on 127\.0\.0\.1:(\d+)\n", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        yield proc, int(m.group(1))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def proc_status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def open_sockets(pid: int) -> int:
    fd_dir = Path(f"/proc/{pid}/fd")
    n = 0
    for fd in fd_dir.iterdir():
        try:
            n += fd.readlink().name.startswith("socket:")
        except OSError:
            pass
    return n


def test_one_thread_serves_1000_clients_at_once(
    echo_server: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = echo_server
    stats: dict[str, int] = {}

    def main() -> None:
        connected = [0]
        answered = [0]
        finished = [0]
        all_connected = unknot.Event()
        all_answered = unknot.Event()

        def client(i: int) -> None:
            with us.create_connection(("127.0.0.1", port), timeout=20) as sock:
                f = sock.makefile("rwb")
                connected[0] += 1
                if connected[0] == CLIENTS:
                    all_connected.set()
                all_connected.wait()
                f.write(b"client %d line 0\n" % i)
                f.flush()
                assert f.readline() == b"client %d line 0\n" % i
                answered[0] += 1
                if answered[0] == CLIENTS:
                    all_answered.set()
                all_answered.wait()  # nobody finishes before all 1,000 were served
                assert finished[0] == 0
                for n in range(1, LINES):
                    f.write(b"client %d line %d\n" % (i, n))
                    f.flush()
                    assert f.readline() == b"client %d line %d\n" % (i, n)
                sock.shutdown(us.SHUT_WR)
                assert f.read() == b""  # the server's handler returned and closed
                f.close()
            finished[0] += 1

        t0 = time.monotonic()
        with unknot.TaskGroup() as tg:
            for i in range(CLIENTS):
                tg.spawn(client, i)
            all_answered.wait()
            # Every connection is open and has been answered: look at the server now.
            stats["threads"] = int(proc_status(proc.pid, "Threads"))
            stats["sockets"] = open_sockets(proc.pid)
            stats["finished_early"] = finished[0]
        stats["finished"] = finished[0]
        stats["seconds"] = int(time.monotonic() - t0)

    unknot.run(main)
    assert stats["finished_early"] == 0
    assert stats["finished"] == CLIENTS
    assert stats["threads"] == 1, "the server must serve everyone from one thread"
    assert stats["sockets"] >= CLIENTS + 1  # 1,000 connections and the listener, all open
    assert stats["seconds"] < 30

    proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean exit
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == "bye\n" and "Traceback" not in err


def test_cli_defaults_to_the_seeds_address() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "echo_server.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    assert "--host HOST" in out and "(default: 127.0.0.1)" in out
    assert "--port PORT" in out and "(default: 1234)" in out
