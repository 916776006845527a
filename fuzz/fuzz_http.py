"""Fuzz the HTTP server: generated requests over the protocol layer and over a live server.

    python fuzz/fuzz_http.py --count 1000000            # make fuzz
    python fuzz/fuzz_http.py --count 20000              # make fuzz-short (CI)

Requests come from fuzz/http_requests.py (drawn through hypothesis): batches of valid requests
pipelined on one connection, then one valid, malformed, smuggling, corpus or randomly mutated
request. Each batch goes through both targets (``--target`` picks one):

- ``protocol``: fed to a `ServerConnection` whole and split at a drawn byte, which must agree;
  nothing but the layer's ProtocolError may come out.
- ``server``: sent to an `HTTPServer` in a subprocess on one connection, the client's side then
  shut down, every answer read.

Invariants checked for every batch: the valid requests are answered 200, in order, each with its
own target and body (the handler echoes the target in hex, the body's length and CRC-32); a
malformed request is refused with a 4xx (or the connection closes) and nothing after it is
answered; a smuggled request is
never answered; no 500, no malformed answer. Every 20,000 requests, and at the end: the server
process is alive, has no connection left and its open descriptors are back to the count it had
at the start; at the end its log holds no error. Exit status 1 on the first failure (its
example printed, shrunk by hypothesis).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests" / "http")]

from http_requests import REFUSALS, DrawChoices, Generated, RandomChoices, batch  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from smuggling_corpus import (  # noqa: E402
    REFUSE,
    Outcome,
    check,
    parse_responses,
    protocol_outcome,
)

SERVER = """
import logging, sys, zlib
import unknot
from unknot.http import HTTPServer, Timeouts

logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                    format="%(levelname)s %(name)s %(message)s")

def handler(request):
    body = request.body()
    echo = "%d %08x" % (len(body), zlib.crc32(body))
    return 200, [("x-path", request.target.hex()), ("x-echo", echo)], b""

def main():
    server = HTTPServer(handler, "127.0.0.1", 0, backlog=4096,
                        timeouts=Timeouts(head=5, keep_alive=5, body=5, write=5))
    server.start()
    print(server.port, flush=True)
    while True:
        line = unknot.to_thread(sys.stdin.readline)
        if not line or line.strip() == "stop":
            break
        print(server.connections, flush=True)   # "?" asks how many connections are open
    server.stop(grace=1)

unknot.run(main)
"""


class Server:
    """The HTTP server under test, in a subprocess (its descriptors counted from here)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        time.sleep(0.1)
        self.baseline = self.fds()

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def connections(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def check_settled(self) -> None:
        """Alive, no connection open, the descriptors back to the start's count."""
        deadline = time.monotonic() + 15
        while True:
            assert self.proc.poll() is None, "the server process died"
            open_now, fds = self.connections(), self.fds()
            if not open_now and fds <= self.baseline:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{open_now} connections open, {fds - self.baseline} fds leaked"
                )
            time.sleep(0.05)

    def stop(self) -> str:
        """Stop it; its log (stderr)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return err


def send(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection, shut our side, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # refused and closed before all of it went: the answers tell
        received = bytearray()
        try:
            while chunk := sock.recv(262144):
                received += chunk
        except ConnectionResetError:
            pass
    return bytes(received)


# -- the invariants ----------------------------------------------------------------------------


def check_protocol(batch: list[Generated], split: int) -> None:
    data = b"".join(g.data for g in batch)
    outcome = protocol_outcome(data)
    assert protocol_outcome(data, split % (len(data) + 1)) == outcome, "split changed the outcome"
    *prefix, last = batch
    n = len(prefix)
    assert outcome.paths[:n] == [g.path for g in prefix], outcome
    rest = Outcome(outcome.paths[n:], outcome.refused)
    check_last(last, rest, answered_bodies=None)


def check_last(last: Generated, rest: Outcome, answered_bodies: list[bytes] | None) -> None:
    """The last request of a batch got what its kind allows (``rest``: what came after the
    valid ones)."""
    if last.kind == "valid":
        assert rest.refused is None and rest.paths == [last.path], rest
    elif last.kind == "malformed":
        # refused (the head may have been read before a body error), nothing more answered
        assert len(rest.paths) <= 1, rest
        if answered_bodies is None or rest.refused is not None or rest.paths:
            assert rest.refused in last.refusals, (last.notes, rest)
    elif last.kind == "smuggle":
        assert "/smuggled" not in rest.paths, rest
        if last.refusals:
            assert rest.refused in last.refusals or (
                answered_bodies is not None and not rest.paths and rest.refused is None
            ), rest
            assert not rest.paths, rest
        else:
            assert rest.refused in REFUSALS or rest.paths == ["/"], rest
    elif last.kind == "corpus":
        assert last.case is not None
        if last.case.expect == REFUSE and answered_bodies is not None and rest.refused is None:
            assert not rest.paths, rest  # a closed connection is a refusal too
        else:
            check(last.case, rest)
    else:  # random: anything but a 500 (statuses are checked where responses are parsed)
        assert rest.refused is None or rest.refused in REFUSALS, rest


def check_server(port: int, batch: list[Generated]) -> None:
    data = b"".join(g.data for g in batch)
    responses = parse_responses(send(port, data))
    *prefix, last = batch
    outcome = Outcome([])
    bodies = []
    for i, (status, headers, _) in enumerate(responses):
        assert status == 200 or status in REFUSALS, f"status {status}"
        assert outcome.refused is None, "an answer after a refusal"
        if status != 200:
            assert headers.get(b"connection") == b"close", headers
            outcome.refused = status
            continue
        path = bytes.fromhex(headers[b"x-path"].decode()).decode("latin-1")
        outcome.paths.append(path)
        if i < len(prefix):
            g = prefix[i]
            assert path == g.path, (path, g.path)
            assert headers[b"x-echo"] == b"%d %08x" % (len(g.body), zlib.crc32(g.body)), (
                headers,
                g.body,
            )
            bodies.append(g.body)
    assert outcome.paths[: len(prefix)] == [g.path for g in prefix], (outcome, len(prefix))
    if last.kind == "valid" and len(responses) == len(batch):
        echo = responses[-1][1][b"x-echo"]
        assert echo == b"%d %08x" % (len(last.body), zlib.crc32(last.body)), echo
    check_last(last, Outcome(outcome.paths[len(prefix) :], outcome.refused), bodies)


# -- the driver --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="requests to generate")
    parser.add_argument("--target", choices=["both", "protocol", "server"], default="both")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    parser.add_argument(
        "--fanout",
        type=int,
        default=30,
        help="batches from a seeded generator per hypothesis example",
    )
    args = parser.parse_args()

    server = Server() if args.target != "protocol" else None
    counts: dict[str, int] = {}
    total = 0
    next_check = 20_000
    start = time.monotonic()

    from hypothesis import strategies as st

    def run_batch(requests: list[Generated], split: int) -> None:
        nonlocal total
        try:
            if args.target != "server":
                check_protocol(requests, split)
            if server is not None:
                check_server(server.port, requests)
        except BaseException:
            print("\nfailing batch:", *(repr(g) for g in requests), sep="\n  ", file=sys.stderr)
            raise
        total += len(requests)
        for g in requests:
            counts[g.kind] = counts.get(g.kind, 0) + 1

    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(data=st.data(), seed=st.integers(0, 2**64), split=st.integers(0, 1 << 20))
    def one(data: st.DataObject, seed: int, split: int) -> None:
        # one batch drawn through hypothesis, then --fanout more from a generator it seeds
        run_batch(batch(DrawChoices(data)), split)
        choices = RandomChoices(seed)
        for _ in range(args.fanout):
            run_batch(batch(choices), choices.integer(0, 1 << 20))

    if args.seed is not None:
        one = __import__("hypothesis").seed(args.seed)(one)
    try:
        while total < args.count:
            one()
            if server is not None and total >= next_check:
                server.check_settled()
                next_check += 20_000
            elapsed = time.monotonic() - start
            print(
                f"\r{total:,} requests, {elapsed:.0f} s, {total / elapsed:,.0f}/s",
                end="",
                file=sys.stderr,
                flush=True,
            )
        print(file=sys.stderr)
        if server is not None:
            server.check_settled()
            log = server.stop()
            server = None
            problems = [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line]
            assert not problems, "the server logged errors:\n" + "\n".join(problems[:20])
    finally:
        if server is not None and server.proc.poll() is None:
            server.proc.kill()
    elapsed = time.monotonic() - start
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
    print(
        f"fuzz: {total:,} requests ({kinds}) over {args.target} in {elapsed:.0f} s: "
        "no crash, no fd leak, every invariant held"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
