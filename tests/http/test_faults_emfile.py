"""Out of descriptors in accept (EMFILE, ENFILE) under sustained load: the accept loop backs off
(it neither spins nor dies) and recovers as soon as descriptors are free again.

EMFILE is real: the server runs in a subprocess whose RLIMIT_NOFILE is lowered to 64, and this
process holds more connections than that while it keeps opening new ones. ENFILE (the whole
system out of files) cannot be caused safely, so a listening socket whose ``accept`` raises it
stands in for the kernel's.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from fault_helpers import no_logged_errors
from server_helpers import connect, get, read_response

import unknot
from unknot import socket as usocket

pytestmark = pytest.mark.timeout(90)

LIMIT = 64

SERVER = f"""
import resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, hard))
import unknot
from unknot.http import HTTPServer, Timeouts

def handler(request):
    return 200, None, b"ok"

def main():
    server = HTTPServer(handler, "127.0.0.1", 0, backlog=2048,
                        timeouts=Timeouts(head=60, keep_alive=60))
    server.start()
    print(server.port, flush=True)
    unknot.to_thread(sys.stdin.readline)
    server.stop(grace=1)
    print("stopped", flush=True)

unknot.run(main)
"""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def answered(port: int, timeout: float) -> bool:
    try:
        with connect(port, timeout=timeout) as sock:
            sock.sendall(get("/"))
            return read_response(sock.makefile("rb")).status == 200
    except (OSError, EOFError):
        return False


def test_emfile_in_accept_backs_off_and_recovers() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    held: list[Any] = []
    try:
        assert child.stdout is not None and child.stdin is not None
        port = int(child.stdout.readline())
        assert answered(port, 5)
        time.sleep(0.2)
        baseline = fds_of(child.pid)
        # more connections than the server can have descriptors, each with a request sent
        for _ in range(3 * LIMIT):
            sock = connect(port)
            sock.sendall(get("/"))
            held.append(sock)
        time.sleep(0.5)
        assert fds_of(child.pid) <= LIMIT
        # sustained load while it is out of descriptors: new clients keep coming; the server
        # must not spin on accept (well under one CPU-second in 2 s)
        start = cpu_seconds(child.pid)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            sock = connect(port)
            sock.sendall(get("/"))
            held.append(sock)
            time.sleep(0.02)
        used = cpu_seconds(child.pid) - start
        assert used < 1.0, f"the accept loop spins: {used:.2f} CPU-s in 2 s"
        assert child.poll() is None, "the server died"
        # free the descriptors: the server recovers and answers a new client
        for sock in held:
            sock.close()
        held.clear()
        deadline = time.monotonic() + 30
        while not answered(port, 2):
            assert time.monotonic() < deadline, "the server did not recover"
        # every connection it took is closed again (the backlog drained; no fd leaked)
        deadline = time.monotonic() + 30
        while fds_of(child.pid) > baseline:
            assert time.monotonic() < deadline, f"{fds_of(child.pid) - baseline} fds leaked"
            time.sleep(0.05)
        child.stdin.write("stop\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=30)
    finally:
        for sock in held:
            sock.close()
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert "stopped" in out
    assert "Too many open files" in err  # the back-off's warning
    assert "Traceback" not in err and "ERROR" not in err, err


class RefusingListener(usocket.socket):
    """A listening socket whose first ``failures`` accepts raise ENFILE."""

    failures = 0
    calls = 0

    def accept(self) -> Any:
        type(self).calls += 1
        if type(self).calls <= self.failures:
            raise OSError(errno.ENFILE, os.strerror(errno.ENFILE))
        return super().accept()


def test_enfile_in_accept_backs_off_and_recovers() -> None:
    RefusingListener.failures = 10**9
    RefusingListener.calls = 0
    fds = len(os.listdir("/proc/self/fd"))

    def main() -> None:
        listener = RefusingListener()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        server = unknot.TCPServer(lambda conn, addr: conn.sendall(b"hi"), sock=listener)
        server.start()
        unknot.sleep(1.5)  # out of files for 1.5 s
        calls = RefusingListener.calls
        assert 3 <= calls < 30, f"{calls} accept calls in 1.5 s"  # backing off, not spinning
        RefusingListener.failures = 0  # the system has files again
        with unknot.socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.settimeout(5)
            assert sock.recv(2) == b"hi"  # served after the next retry (at most 1 s away)
        server.stop()

    with no_logged_errors():
        unknot.run(main)
    assert len(os.listdir("/proc/self/fd")) == fds
