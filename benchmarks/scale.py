"""Scale: as many concurrent connections as the fd limit allows, held by one server thread.

```sh
python benchmarks/scale.py                                # every peer, N = 1k..max, ~12 min
python benchmarks/scale.py --markdown BENCHMARKS.md       # ...and the "Scale" section
python benchmarks/scale.py --peers unknot,asyncio --conns 2000 --echo-seconds 4   # a quick look
```

For each peer and each connection count N, in a fresh server process pinned to CPU 0:

1. the server starts, answers a few warm-up connections (opened and closed), and its RSS is read
   (``VmRSS`` of ``/proc/PID/status``): the baseline;
2. load generators (``scale_load.py``, separate processes pinned to CPU 1, each with its own fd
   limit and its own 127.0.0.x source address) open the N connections and make one exchange on
   each, so every handler is parked in a read;
3. after ``--settle`` seconds the server's RSS is read again: *memory per idle connection* is
   the growth over the baseline divided by N;
4. every connection then sends a message every ``--interval`` seconds for ``--echo-seconds``
   (the sends spread evenly), and the generators time each round trip: p50, p99, max.

``max`` in ``--conns`` is the server's fd limit (``RLIMIT_NOFILE``, raised to its hard limit as
the servers do) minus ``--fd-margin``. The model: per peer, a least-squares line
``RSS growth = a + b * N`` over the counts measured (b is the memory per connection), the
residual of each point relative to its growth, and a quadratic fit's N^2 term at the largest N
(how much of the growth a faster-than-linear term would explain).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != str(_HERE)] + [str(_HERE)]

from benchlib import machine, procs  # noqa: E402
from benchlib.mdsection import replace_section  # noqa: E402

#: peer -> (server kind in scale_servers.py, generator mode)
PEERS: dict[str, tuple[str, str]] = {
    "unknot": ("unknot", "echo"),
    "gevent": ("gevent", "echo"),
    "asyncio": ("asyncio-streams", "echo"),
    "uvloop": ("uvloop-streams", "echo"),
    "http-unknot": ("http-unknot", "http"),
    "http-gevent": ("http-gevent", "http"),
    "http-uvicorn": ("http-uvicorn", "http"),
}
DEFAULT_PEERS = "unknot,gevent,asyncio,uvloop,http-unknot,http-gevent,http-uvicorn"
UNAVAILABLE = 3
SERVER_CPU, LOAD_CPU = 0, 1
WARMUP_CONNECTIONS = 20


@dataclass
class Result:
    """One peer at one connection count."""

    peer: str
    conns: int
    rss_base: int = 0  # bytes
    rss_idle: int = 0
    rss_after_echo: int = 0
    fds: int = 0  # the server's open fds while holding the connections
    samples: int = 0
    errors: int = 0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    connect_s: float = 0.0
    note: str = ""

    @property
    def per_conn(self) -> float:
        return (self.rss_idle - self.rss_base) / self.conns if self.conns else math.nan


@dataclass
class Model:
    """The linear fit of RSS growth against N for one peer."""

    peer: str
    intercept: float
    slope: float
    residuals: list[float] = field(default_factory=list)  # relative to each point's growth
    quad_share: float = math.nan  # the N^2 term of a quadratic fit at the largest N / growth


def fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return hard if hard != resource.RLIM_INFINITY else soft


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return ", ".join(f.read().split()[:3])


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def warm_up(port: int, mode: str) -> None:
    """A few connections that make one exchange each and close (imports, caches, pools)."""
    from scale_load import ECHO_MESSAGE, HTTP_REQUEST, reply_length

    message = ECHO_MESSAGE if mode == "echo" else HTTP_REQUEST
    for _ in range(WARMUP_CONNECTIONS):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(message)
            buf = bytearray()
            while not reply_length(mode, buf):
                data = s.recv(65536)
                if not data:
                    raise ConnectionError("the server closed a warm-up connection")
                buf += data


class Generators:
    """The load generator processes for one run, each with its share of the connections."""

    def __init__(self, port: int, conns: int, mode: str, per_process: int, pin: bool) -> None:
        count = max(1, math.ceil(conns / per_process))
        shares = [conns // count + (1 if i < conns % count else 0) for i in range(count)]
        self.procs: list[subprocess.Popen[str]] = []
        script = str(_HERE / "scale_load.py")
        for i, share in enumerate(shares):
            argv = [sys.executable, script, "127.0.0.1", str(port), "--conns", str(share)]
            argv += ["--source", f"127.0.0.{10 + i}", "--mode", mode]
            self.procs.append(
                subprocess.Popen(
                    procs.pinned(argv, LOAD_CPU if pin else None),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                    preexec_fn=procs._die_with_parent,
                )
            )

    def _lines(self, timeout: float) -> list[str]:
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        for p in self.procs:
            assert p.stdout is not None
            left = deadline - time.monotonic()
            ready, _, _ = select.select([p.stdout], [], [], max(0.0, left))
            line = p.stdout.readline() if ready else ""
            if not line:
                raise RuntimeError(f"load generator {p.pid} said nothing (exit {p.poll()})")
            lines.append(line.strip())
        return lines

    def wait_ready(self, timeout: float) -> None:
        for line in self._lines(timeout):
            if not line.startswith("ready"):
                raise RuntimeError(f"load generator: {line}")

    def echo(self, seconds: float, interval: float) -> tuple[list[int], int]:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write(f"echo {seconds} {interval}\n")
            p.stdin.flush()
        samples: list[int] = []
        errors = 0
        for line in self._lines(seconds + 60):
            answer = json.loads(line)
            samples += answer["samples_us"]
            errors += answer["errors"] if answer["errors"] >= 0 else 1
        return samples, errors

    def close(self) -> None:
        for p in self.procs:
            try:
                assert p.stdin is not None
                p.stdin.write("quit\n")
                p.stdin.close()
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1000.0


def run_one(peer: str, conns: int, args: argparse.Namespace) -> Result:
    kind, mode = PEERS[peer]
    result = Result(peer, conns)
    port = procs.free_port()
    argv = [sys.executable, str(_HERE / "scale_servers.py"), kind, str(port)]
    server = procs.Child(procs.pinned(argv, SERVER_CPU if args.pin else None))
    gens: Generators | None = None
    try:
        procs.wait_for_port("127.0.0.1", port, server)
        warm_up(port, mode)
        time.sleep(args.settle)
        pid = server.proc.pid  # (taskset execs the server: same pid)
        result.rss_base = rss(pid)
        started = time.monotonic()
        gens = Generators(port, conns, mode, args.per_generator, args.pin)
        gens.wait_ready(timeout=120 + conns / 100)
        result.connect_s = time.monotonic() - started
        time.sleep(args.settle)
        result.rss_idle = rss(pid)
        result.fds = open_fds(pid)
        samples, result.errors = gens.echo(args.echo_seconds, args.interval)
        result.rss_after_echo = rss(pid)
        samples.sort()
        result.samples = len(samples)
        result.p50_ms = percentile(samples, 0.50)
        result.p99_ms = percentile(samples, 0.99)
        result.max_ms = samples[-1] / 1000.0 if samples else math.nan
        if not server.alive():
            raise procs.ChildExited(server.proc.returncode, server.stderr_text())
    finally:
        if gens is not None:
            gens.close()
        server.stop()
    return result


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares line through (n, y): (intercept, slope)."""
    k = len(points)
    mx = sum(n for n, _ in points) / k
    my = sum(y for _, y in points) / k
    sxx = sum((n - mx) ** 2 for n, _ in points)
    slope = sum((n - mx) * (y - my) for n, y in points) / sxx if sxx else math.nan
    return my - slope * mx, slope


def quad_share(points: list[tuple[int, float]]) -> float:
    """The N^2 term of a least-squares quadratic at the largest N, as a share of its growth."""
    if len(points) < 3:
        return math.nan
    rows = [(1.0, float(n), float(n) ** 2) for n, _ in points]
    ys = [y for _, y in points]
    ata = [[sum(r[i] * r[j] for r in rows) for j in range(3)] for i in range(3)]
    aty = [sum(r[i] * y for r, y in zip(rows, ys, strict=True)) for i in range(3)]
    c = _solve3(ata, aty)[2]
    n_max, y_max = max(points)
    return c * n_max**2 / y_max if y_max else math.nan


def _solve3(a: list[list[float]], b: list[float]) -> list[float]:
    m = [row[:] + [v] for row, v in zip(a, b, strict=True)]
    for i in range(3):
        pivot = max(range(i, 3), key=lambda r: abs(m[r][i]))
        m[i], m[pivot] = m[pivot], m[i]
        for r in range(3):
            if r != i and m[i][i]:
                f = m[r][i] / m[i][i]
                m[r] = [x - f * y for x, y in zip(m[r], m[i], strict=True)]
    return [m[i][3] / m[i][i] if m[i][i] else math.nan for i in range(3)]


def model_of(points: list[tuple[int, float]]) -> tuple[float, float, list[float]]:
    """The line through ``points`` and each point's residual relative to its own value."""
    intercept, slope = fit(points)
    residuals = [(y - (intercept + slope * n)) / y if y else math.nan for n, y in points]
    return intercept, slope, residuals


def model(peer: str, results: list[Result]) -> Model | None:
    points = [(r.conns, float(r.rss_idle - r.rss_base)) for r in results if r.peer == peer]
    if len(points) < 2:
        return None
    intercept, slope, residuals = model_of(points)
    return Model(peer, intercept, slope, residuals, quad_share(points))


def kib(value: float) -> str:
    return f"{value / 1024:,.2f} KiB"


def table(results: list[Result]) -> list[str]:
    lines = [
        "| peer | connections | server fds | connect s | RSS growth | per idle connection"
        " | after echo, per connection | p50 ms | p99 ms | max ms | round trips | late/errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        after = (r.rss_after_echo - r.rss_base) / r.conns
        lines.append(
            f"| {r.peer} | {r.conns:,} | {r.fds:,} | {r.connect_s:.1f} "
            f"| {(r.rss_idle - r.rss_base) / 2**20:,.1f} MiB | {r.per_conn:,.0f} B "
            f"| {after:,.0f} B | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.max_ms:.1f} "
            f"| {r.samples:,} | {r.errors} |"
        )
    return lines


def model_lines(models: list[Model]) -> list[str]:
    lines = [
        "| peer | slope (bytes per connection) | intercept | residuals (of each point's growth)"
        " | N^2 term at the largest N | extrapolated to 100,000 |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for m in models:
        res = ", ".join(f"{x:+.1%}" for x in m.residuals)
        lines.append(
            f"| {m.peer} | {m.slope:,.0f} B | {m.intercept / 2**20:+.2f} MiB | {res} "
            f"| {m.quad_share:+.1%} | {(m.intercept + m.slope * 100_000) / 2**20:,.0f} MiB |"
        )
    return lines


def targets(results: list[Result]) -> list[str]:
    """The issue's goal for unknot's echo server at the largest N: at most asyncio's memory per
    idle connection, and under 8 KiB in any case."""
    n = max((r.conns for r in results), default=0)
    at = {r.peer: r for r in results if r.conns == n}
    if "unknot" not in at:
        return []
    mine = at["unknot"].per_conn
    lines = [f"Targets at {n:,} connections (memory per idle echo connection):", ""]
    verdict = "met" if mine < 8192 else "missed"
    lines.append(f"- unknot {mine:,.0f} B, under 8 KiB (8,192 B): {verdict}")
    if "asyncio" in at:
        theirs = at["asyncio"].per_conn
        verdict = "met" if mine <= theirs else "missed"
        lines.append(
            f"- unknot {mine:,.0f} B, at most asyncio streams' {theirs:,.0f} B "
            f"({mine / theirs:.2f}x): {verdict}"
        )
    return lines + [""]


def markdown(
    results: list[Result], models: list[Model], args: argparse.Namespace, load: str
) -> str:
    facts = machine.describe(["greenlet", "gevent", "uvloop", "uvicorn"])
    if args.from_json:
        facts["Date"] = args.saved.get("date", "?")
        facts["Command"] = f"{args.saved.get('command', '?')} (this report: {facts['Command']})"
    out = ["## Scale", ""]
    out += [f"- {k}: {v}" for k, v in facts.items()]
    out += [f"- Load average (1, 5, 15 min) at the start and at the end: {load}"]
    out += [
        f"- fd limit per process: {fd_limit():,}; server connections at `max`: "
        f"{fd_limit() - args.fd_margin:,} (limit minus {args.fd_margin}); load generators: "
        f"up to {args.per_generator:,} connections each, one 127.0.0.x source address each",
        f"- settle {args.settle:g} s; echo phase: every connection sends a message every "
        f"{args.interval:g} s for {args.echo_seconds:g} s",
        "",
    ]
    out += [
        "Each row is a fresh server process. *per idle connection*: the growth of the server's"
        " RSS from before the connections to after they were made (one exchange each) and left"
        f" idle for {args.settle:g} s, divided by their number; *after echo*: the same after the"
        " echo phase. The latency columns time each round trip at the load generator (a Python"
        " epoll loop) and move with whatever else runs on the machine (see the load average);"
        " the memory columns do not.",
        "",
    ]
    out += table(results) + [""]
    out += targets(results)
    if models:
        out += ["Model: RSS growth = intercept + slope x N, least squares over the counts above."]
        out += [""]
        out += model_lines(models) + [""]
    return "\n".join(out) + "\n"


def parse_conns(text: str, limit: int) -> list[int]:
    return [limit if part == "max" else int(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default=DEFAULT_PEERS, help=f"default {DEFAULT_PEERS}")
    parser.add_argument("--conns", default="1000,2000,5000,10000,max")
    parser.add_argument("--fd-margin", type=int, default=100)
    parser.add_argument("--per-generator", type=int, default=10_000)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before reading RSS")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between messages")
    parser.add_argument("--echo-seconds", type=float, default=10.0)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--markdown", type=Path, help="write the 'Scale' section of this file")
    parser.add_argument("--json", type=Path, help="write every result here")
    parser.add_argument("--from-json", type=Path, help="report the results of an earlier --json")
    args = parser.parse_args(argv)
    procs.install_exit_signals()
    peers = [p for p in args.peers.split(",") if p]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peers {unknown}; known: {', '.join(PEERS)}")
    counts = parse_conns(args.conns, fd_limit() - args.fd_margin)
    results: list[Result] = []
    unavailable: dict[str, str] = {}
    load_start = loadavg()
    if args.from_json:
        saved = args.saved = json.loads(args.from_json.read_text())
        results = [Result(**r) for r in saved["results"]]
        peers = list(dict.fromkeys(r.peer for r in results))
        unavailable = saved.get("unavailable", {})
        load_start = saved.get("load", "?")
        counts = []
    for n in counts:
        for peer in peers:
            if peer in unavailable:
                continue
            try:
                r = run_one(peer, n, args)
            except procs.ChildExited as exc:
                if exc.returncode == UNAVAILABLE:
                    unavailable[peer] = exc.stderr.splitlines()[-1] if exc.stderr else "?"
                    print(f"{peer}: unavailable ({unavailable[peer]})", flush=True)
                    continue
                raise
            results.append(r)
            print(
                f"{peer:13} N={n:6,}  {r.per_conn:7,.0f} B/conn idle  "
                f"p99 {r.p99_ms:7.2f} ms  max {r.max_ms:7.1f} ms  fds {r.fds:,}  "
                f"late/errors {r.errors}",
                flush=True,
            )
    models = [m for p in peers if (m := model(p, results)) is not None]
    load = load_start if args.from_json else f"{load_start}; {loadavg()}"
    text = markdown(results, models, args, load)
    if unavailable:
        text += "\nUnavailable here: " + "; ".join(f"{p} ({w})" for p, w in unavailable.items())
        text += "\n"
    print()
    print(text)
    if args.json:
        saved = {"results": [r.__dict__ for r in results], "unavailable": unavailable}
        saved["date"] = machine.describe([])["Date"]
        saved["command"] = machine.command_line()
        args.json.write_text(json.dumps({**saved, "load": load}, indent=1))
    if args.markdown:
        replace_section(args.markdown, "Scale", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
