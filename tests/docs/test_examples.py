"""Run every script under examples/ as a subprocess and check what it prints.

To add an example: put the script in examples/ and add an `Example` to EXAMPLES with the
arguments that make it quick and a `check` function asserting on its output. A script that does
not stop by itself (a server) also gets a `drive` function that talks to it and then stops it.
`test_every_example_is_tested` fails until you do.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "examples"


@dataclass
class Example:
    script: str
    check: Callable[[list[str]], None]
    args: list[str] = field(default_factory=list)
    timeout: float = 20.0
    max_seconds: float | None = None  # the example must also finish within this wall time
    # For scripts that run until stopped: interact with the running process, make it exit, and
    # return the output lines read meanwhile (the rest of the output is read afterwards).
    drive: Callable[[subprocess.Popen[str]], list[str]] | None = None


def index(lines: list[str], text: str) -> int:
    """Index of the first line containing ``text`` (fails the test if there is none)."""
    for i, line in enumerate(lines):
        if text in line:
            return i
    raise AssertionError(f"{text!r} not found in output:\n" + "\n".join(lines))


def check_sleeper(lines: list[str]) -> None:
    assert lines[0] == "Now sleeping for 0.2s."
    done = index(lines, "Done sleeping!")
    ticks = [i for i, line in enumerate(lines) if "tick" in line]
    # Another fiber did work while my_app slept, and my_app resumed on its own stack.
    assert ticks and ticks[0] < done, lines
    assert len([t for t in ticks if t < done]) >= 2, lines
    assert index(lines, "Woke up inside main -> my_app -> sleeper") == done - 1


def check_demo(lines: list[str]) -> None:
    # 1. the sleeper: the worker finished jobs between "Now sleeping" and "Done sleeping!"
    now, done = index(lines, "Now sleeping for 0.5s."), index(lines, "Done sleeping!")
    assert any("worker: finished job" in line for line in lines[now:done]), lines
    # 2. the server, its handler calling http_get upstream, the timeouts
    assert sum('-> 200 {"origin": "127.0.0.1"}' in line for line in lines) == 3, lines
    assert "-> 404 no such page" in lines[index(lines, "GET /missing")]
    assert "gave up after" in lines[index(lines, "GET /slow")]
    # 3. channels: every item arrives, each channel's items in order
    items = [line.split("-> ", 1)[1] for line in lines if "consumer:" in line and "->" in line]
    assert sorted(items) == sorted(["2 apples", "1 pear", "6 plums", "stock low: pears"])
    assert [i for i in items if i != "stock low: pears"] == ["2 apples", "1 pear", "6 plums"]
    # 4. asyncio
    assert "HubEventLoop" in lines[index(lines, "the loop is a")]
    assert "'the answer is 42'" in lines[index(lines, "await_(asyncio_side())")]
    assert lines[index(lines, "await_(asyncio.sleep(3600)) cancelled")].endswith("True")
    # 5. the echo server: every client's every line came back, on one OS thread
    assert "1000 concurrent clients, 3000 lines" in lines[index(lines, "1000 concurrent")]
    assert lines[index(lines, "echoed in")].endswith("on 1 OS thread(s)")
    assert lines[-1].startswith("All done in")


def drive_echo_server(proc: subprocess.Popen[str]) -> list[str]:
    """Hold several connections open at once (a one-client-at-a-time server would hang on the
    second), check every line comes back, then stop the server with Ctrl-C (SIGINT)."""
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    assert first.startswith("echo server listening on "), first
    host, port = first.rsplit(" ", 1)[1].rsplit(":", 1)
    clients = [socket.create_connection((host, int(port)), timeout=5) for _ in range(5)]
    try:
        files = [c.makefile("rwb") for c in clients]
        for round_ in range(3):
            for i, f in enumerate(files):
                f.write(f"client {i} line {round_}\n".encode())
                f.flush()
            for i, f in enumerate(reversed(files)):  # answer order doesn't depend on send order
                n = len(files) - 1 - i
                assert f.readline() == f"client {n} line {round_}\n".encode()
        for f in files:
            f.close()
    finally:
        for c in clients:
            c.close()
    proc.send_signal(signal.SIGINT)
    return [first]


def check_echo_server(lines: list[str]) -> None:
    assert lines[0].startswith("echo server listening on 127.0.0.1:")
    assert lines[-1] == "bye", lines


def drive_graceful_server(proc: subprocess.Popen[str]) -> list[str]:
    """Open two connections, send SIGTERM, finish one during the grace period and leave the
    other idle (it must be cancelled when the grace period ends); new connections are refused."""
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    assert first.startswith("listening on "), first
    host, port = first.rsplit(" ", 1)[1].rsplit(":", 1)
    address = (host, int(port))
    busy = socket.create_connection(address, timeout=5)
    idle = socket.create_connection(address, timeout=5)
    try:
        files = [busy.makefile("rwb"), idle.makefile("rwb")]
        for f in files:
            f.write(b"hello\n")
            f.flush()
            assert f.readline() == b"hello\n"
        proc.send_signal(signal.SIGTERM)
        stopping = proc.stdout.readline().strip()
        assert stopping == "SIGTERM: stopping, 2 connection(s) open, 0.5 s to finish", stopping
        closed = proc.stdout.readline().strip()
        assert closed == "not accepting; 2 connection(s) still open", closed
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=5).close()
        busy_file, idle_file = files
        busy_file.write(b"still here\n")  # open connections are still served
        busy_file.flush()
        assert busy_file.readline() == b"still here\n"
        busy_file.write(b"quit\n")
        busy_file.flush()
        assert busy_file.readline() == b""
        start = time.monotonic()
        assert idle_file.readline() == b""  # closed when the grace period ends
        assert time.monotonic() - start < 3
        for f in files:
            f.close()
    finally:
        busy.close()
        idle.close()
    return [first, stopping, closed]


def check_graceful_server(lines: list[str]) -> None:
    assert lines[0].startswith("listening on 127.0.0.1:")
    assert lines[1].startswith("SIGTERM: stopping")
    outcomes = sorted(line.rsplit(": ", 1)[1] for line in lines if "connection from" in line)
    assert outcomes == ["cancelled at shutdown", "quit"], lines
    assert lines[-1] == "stopped", lines


def check_debugging(lines: list[str]) -> None:
    # the blocking detector named the unpatched time.sleep line and the fiber running it
    blocked = lines[index(lines, "blocking detector: loop blocked")]
    assert "by fiber 'worker-" in blocked and ": time.sleep(0.3)" in blocked, blocked
    # the backdoor client got stats() and dump() from the live program
    assert "fibers" in lines[index(lines, "backdoor stats(): <LoopStats")]
    assert "waiting on Lock.acquire" in lines[index(lines, "backdoor dump(): fiber reporter")]
    # the program's own dump: grouped, each fiber with what it waits on
    dump = index(lines, "--- the program's own dump ---")
    assert "4 fibers" in lines[index(lines, "--- TaskGroup")]
    assert sum("waiting on Queue.get" in line for line in lines[dump:]) == 3
    assert "loop lag p50" in lines[index(lines, "--- stats ---") + 1]


def check_instruments(lines: list[str]) -> None:
    assert lines[index(lines, "OpenTelemetry:")] in (
        "OpenTelemetry: spans exported",
        "OpenTelemetry: not installed, skipped",
    )
    saw = lines[index(lines, "logging instrument saw:")]
    assert saw.startswith("logging instrument saw: 2 spawned, "), saw
    assert ", 2 done, " in saw


def drive_production_server(proc: subprocess.Popen[str]) -> list[str]:
    """A request; then SIGTERM while a slow one is under way: it is answered (with Connection:
    close), new connections are refused, and the server exits."""
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    assert first.startswith("listening on "), first
    host, port = first.rsplit(" ", 1)[1].rsplit(":", 1)
    address = (host, int(port))
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.makefile("rb").read().endswith(b"\r\n\r\nhello\n")
    slow = socket.create_connection(address, timeout=5)
    with slow:
        slow.sendall(b"GET /slow?seconds=0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stopping = proc.stdout.readline().strip()
        assert stopping == "SIGTERM: stopping, 1 connection(s) open, 5.0 s to finish", stopping
        answer = slow.makefile("rb").read()  # answered, then closed
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert b"connection: close" in answer.lower() and answer.endswith(b"done\n"), answer
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5).close()
    return [first, stopping]


def check_production_server(lines: list[str]) -> None:
    assert lines[0].startswith("listening on 127.0.0.1:")
    assert lines[1].startswith("SIGTERM: stopping")
    assert lines[-1] == "stopped", lines


EXAMPLES = [
    Example("sleeper.py", check_sleeper, args=["0.2"], max_seconds=5),
    Example("debugging.py", check_debugging, max_seconds=10),
    Example("instruments.py", check_instruments, max_seconds=5),
    Example("demo.py", check_demo, args=["0.25"], max_seconds=8),
    Example(
        "echo_server.py",
        check_echo_server,
        args=["--port", "0"],
        max_seconds=10,
        drive=drive_echo_server,
    ),
    Example(
        "graceful_server.py",
        check_graceful_server,
        args=["--port", "0", "--grace", "0.5"],
        max_seconds=10,
        drive=drive_graceful_server,
    ),
    Example(
        "production_server.py",
        check_production_server,
        args=["--port", "0", "--grace", "5"],
        max_seconds=10,
        drive=drive_production_server,
    ),
]


def _default_sigint() -> None:
    # A shell running us in the background hands down SIGINT ignored, and Python then never
    # installs its KeyboardInterrupt handler: restore the default so Ctrl-C can be tested.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_example(example: Example) -> list[str]:
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES_DIR / example.script), *example.args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=_default_sigint if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else None,
    )
    try:
        lines = example.drive(proc) if example.drive is not None else []
        out, err = proc.communicate(timeout=example.timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err, err
    if example.max_seconds is not None:
        assert elapsed < example.max_seconds, f"took {elapsed:.1f}s"
    return lines + [line.rstrip() for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.script)
def test_example(example: Example) -> None:
    example.check(run_example(example))


# Examples that run until stopped, tested by a module of their own.
TESTED_ELSEWHERE = {
    "echo_server.py": "tests/docs/test_echo_example.py",
    "http_server.py": "tests/http/test_http_server_example.py",
}


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in EXAMPLES_DIR.glob("*.py")}
    tested = {e.script for e in EXAMPLES} | set(TESTED_ELSEWHERE)
    assert all((ROOT / module).exists() for module in TESTED_ELSEWHERE.values())
    assert scripts <= tested, f"add these to EXAMPLES in {__file__}: {sorted(scripts - tested)}"
    assert tested <= scripts, f"listed but missing: {sorted(tested - scripts)}"
