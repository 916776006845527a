"""The ``greenlet-floor`` echo peer (benchmarks/greenlet_floor.py): the blocking handler on the
least a greenlet server can do, compiled with mypyc. It must echo correctly for many
connections at once (or its numbers mean nothing), run by the interpreter with unknot's compiled
build, and say it is unavailable where unknot's C helpers are missing.

Nothing here measures speed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.append(str(BENCH))  # after the stdlib: benchmarks/http.py is not the http package

import echo  # noqa: E402
import echo_servers  # noqa: E402
from benchlib import ab, builds  # noqa: E402

try:
    import unknot._nbio  # noqa: F401  (the compiled build's C helpers)

    HAVE_NBIO = True
except ImportError:
    HAVE_NBIO = False


def _start(port: int) -> subprocess.Popen[str]:
    env = builds.installed_env(pure=False) if HAVE_NBIO else dict(os.environ)
    return subprocess.Popen(
        [sys.executable, str(BENCH / "echo_servers.py"), "greenlet-floor", str(port)],
        cwd=BENCH,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _connect(port: int, server: subprocess.Popen[str]) -> socket.socket:
    deadline = time.monotonic() + 120  # (the first run compiles the module: seconds)
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except ConnectionRefusedError:
            if server.poll() is not None:
                raise AssertionError(f"the server exited: {server.communicate()[1]}") from None
            assert time.monotonic() < deadline, "the floor server did not listen"
            time.sleep(0.05)


def _echo(conn: socket.socket, payload: bytes) -> bytes:
    conn.sendall(payload)
    return conn.recv(len(payload), socket.MSG_WAITALL)


def test_the_floor_runs_with_the_compiled_builds_interpreter() -> None:
    assert "greenlet-floor" in echo_servers.SERVERS
    assert builds.python("greenlet-floor", "/venv/bin/python") == "/venv/bin/python"
    assert builds.python("greenlet-floor", None) == sys.executable
    assert builds.python("gevent", "/venv/bin/python") == sys.executable
    env = echo.server_env("greenlet-floor", ab.this_checkout(), None)
    assert "PYTHONPATH" not in env and "UNKNOT_PURE" not in env  # the installed unknot


@pytest.mark.skipif(HAVE_NBIO, reason="unknot's compiled build is installed here")
def test_without_the_compiled_build_the_floor_is_unavailable() -> None:
    server = _start(_free_port())
    _, err = server.communicate(timeout=60)
    assert server.returncode == echo_servers.UNAVAILABLE
    assert "needs unknot's compiled build" in err


@pytest.mark.skipif(not HAVE_NBIO, reason="needs unknot's compiled build (make test-compiled)")
def test_the_floor_echoes_many_connections_at_once() -> None:
    port = _free_port()
    server = _start(port)
    conns = []
    try:
        conns = [_connect(port, server) for _ in range(50)]
        for rnd in range(20):  # every connection has a message in flight at once
            payloads = [os.urandom(1024 + 37 * i + rnd) for i in range(len(conns))]
            for c, p in zip(conns, payloads, strict=True):
                c.sendall(p)
            for c, p in zip(conns, payloads, strict=True):
                assert c.recv(len(p), socket.MSG_WAITALL) == p
        for c in conns[:25]:  # handlers end at EOF; the others are still served
            c.close()
        for c in conns[25:]:
            assert _echo(c, b"still here") == b"still here"
        late = _connect(port, server)  # and a new connection after those closed
        conns.append(late)
        assert _echo(late, b"x" * 8000) == b"x" * 8000
        assert server.poll() is None
    finally:
        for c in conns:
            c.close()
        server.kill()
        server.communicate()
