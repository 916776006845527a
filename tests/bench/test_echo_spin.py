"""The spinning native echo peer, ``c-epoll+NNNns`` (benchmarks/echo_servers.py,
loadgen/echoserver.c's SPIN_NS): its name, that the server really spends the time, and the
report's "User-time budget" table.

Nothing here measures speed: the server is checked to take *at least* its spin per message,
a bound that holds on any machine.
"""

from __future__ import annotations

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
import echo_report  # noqa: E402
import echo_servers  # noqa: E402
from benchlib import native  # noqa: E402


def test_a_spinning_peers_name_gives_its_nanoseconds() -> None:
    assert echo_servers.spin_ns("c-epoll+500ns") == 500
    assert echo_servers.spin_ns("c-epoll+0ns") == 0
    assert echo_servers.spin_ns("c-epoll") is None
    assert echo_servers.spin_ns("unknot") is None
    for bad in ("c-epoll+ns", "c-epoll+5", "c-epoll+5us", "c-epoll+-5ns", "c-epoll+2000000ns"):
        with pytest.raises(ValueError, match="c-epoll\\+NNNns"):
            echo_servers.spin_ns(bad)
        assert not echo_servers.is_server(bad)
    assert echo_servers.is_server("c-epoll+1500ns")
    assert echo_servers.is_server("uvloop-streams")


def test_echo_takes_spinning_peers_and_refuses_a_malformed_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = echo.parse_args(["--peers", "c-epoll,c-epoll+750ns,unknot"])
    assert args.peers == ["c-epoll", "c-epoll+750ns", "unknot"]
    with pytest.raises(SystemExit):
        echo.parse_args(["--peers", "c-epoll+750"])
    assert "unknown peer 'c-epoll+750'" in capsys.readouterr().err


def test_the_server_script_refuses_an_unknown_kind() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH / "echo_servers.py"), "c-epoll+fast", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "c-epoll+NNNns" in run.stderr


def _round_trips(binary: Path, spin: str, messages: int) -> float:
    """Seconds for ``messages`` 1 KiB echoes, one at a time, against the native server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(binary), str(port), "127.0.0.1", spin])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the native server did not listen"
                time.sleep(0.02)
        with conn:
            payload = bytes(range(256)) * 4
            start = time.perf_counter()
            for _ in range(messages):
                conn.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    chunk = conn.recv(len(payload) - len(got))
                    assert chunk, "the server closed the connection"
                    got += chunk
                assert got == payload
            return time.perf_counter() - start
    finally:
        server.kill()
        server.wait(timeout=10)


def test_the_native_server_spends_its_spin_on_every_message() -> None:
    try:
        binary = native.build("echoserver")
    except native.BuildError as exc:  # no C compiler: the benchmark cannot run either
        pytest.skip(f"cannot build the native echo server: {exc}")
    # A 1 KiB message arrives in one read on loopback, so each echo spins at least 2 ms.
    assert _round_trips(binary, "2000000", 20) >= 20 * 0.002
    assert _round_trips(binary, "0", 20) > 0  # and echoes without one
    bad = subprocess.run([str(binary), "1", "127.0.0.1", "2x"], capture_output=True, text=True)
    assert bad.returncode == 1 and "SPIN_NS" in bad.stderr


def test_the_report_gives_the_user_time_budget() -> None:
    peers = ["c-epoll", "c-epoll+500ns", "c-epoll+1000ns", "uvloop-streams", "unknot"]
    rps = {
        "c-epoll": 200_000,
        "c-epoll+500ns": 180_000,
        "c-epoll+1000ns": 150_000,
        "uvloop-streams": 100_000,
        "unknot": 140_000,
    }
    results = echo_report.Results(peers, [1024], [100])
    for peer in peers:
        results.add(echo_report.Cell(peer, 1024, 100, rps=rps[peer], round_trips=1000))
    text = echo_report.markdown(results, {}, {})
    budget = text.split("## User-time budget", 1)[1].split("\n## ", 1)[0]
    lines = {line.split(" | ")[0].strip("| "): line for line in budget.splitlines()}
    assert "1.80x uvloop-streams" in lines["c-epoll+500ns"]
    assert "0.90x c-epoll" in lines["c-epoll+500ns"]
    assert "| 1,000 |" in lines["c-epoll+1000ns"]
    assert "1.40x uvloop-streams" in lines["unknot"] and "0.70x c-epoll" in lines["unknot"]
    # A spinning peer is native: the load generator check does not count it as a Python peer.
    assert results.headroom()[0][3] == "unknot"


def test_the_report_has_no_budget_table_without_a_spinning_peer() -> None:
    results = echo_report.Results(["c-epoll", "unknot"], [1024], [100])
    for peer in ("c-epoll", "unknot"):
        results.add(echo_report.Cell(peer, 1024, 100, rps=1000.0, round_trips=1000))
    assert "User-time budget" not in echo_report.markdown(results, {}, {})
