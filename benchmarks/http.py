"""HTTP benchmark: unknot's server and client against their peers, all in one run.

Server cases (wrk, one thread, keep-alive): hello world at 10, 100 and 1,000 connections, a
64 KiB body, a routed request (``/items/{id}``, a JSON body) and 64 KiB and 1 MiB static files,
against nginx (the ceiling), uvicorn (httptools + uvloop), granian with each interface (RSGI,
ASGI, WSGI; one worker) and gevent's pywsgi (TCP_NODELAY set); ``http_servers.py`` has them.
Each server runs pinned to one CPU and wrk to the other. Client case: ``--client-workers``
concurrent workers make keep-alive GETs to a local nginx pinned to the other CPU; unknot's
client against aiohttp and httpx on asyncio and requests under gevent (``http_clients.py``).

Method: every peer answers every case once correctly (status, body, keep-alive) before it is
measured; each cell runs wrk ``--warmup`` seconds unmeasured, then ``--duration`` seconds
measured, and any non-2xx response fails the cell. Peers are interleaved in ``--repeat``
rounds, each round starting one peer later in the list; the report gives medians, min-max, and
unknot's ratio to each peer within each round and the median of those ratios (the machine's
speed drifts between rounds; ratios within a round are steadier). nginx must beat every other
server in every cell, or wrk was the limit. The report also gives each side's CPU use.

Examples::

    python benchmarks/http.py --quick                        # smoke run, about a minute
    python benchmarks/http.py --repeat 5 --markdown BENCHMARKS.md
    python benchmarks/http.py --peers nginx,unknot,granian-rsgi --cases hello --conns 100

``--unknot-python PY`` adds the server peers and clients ``unknot-compiled`` and
``unknot-pure``: unknot's server (with ``App``) and client run by the interpreter PY with the
unknot installed in PY's environment (no ``PYTHONPATH``), as installed (its mypyc build,
docs/compiled.md) and with ``UNKNOT_PURE=1``; each child checks ``unknot.compiled``
(``benchlib/builds.py``). The report gives both builds' ratios to every peer and a table of
compiled / pure::

    python benchmarks/http.py --quick --peers nginx,uvicorn,granian-rsgi --clients aiohttp \
        --unknot-python .venv-compiled/bin/python

Everything listens on 127.0.0.1. Servers run in their own process groups and are killed after
each peer, on Ctrl-C, on SIGTERM, and (PR_SET_PDEATHSIG) if the harness dies. wrk and nginx
are found on the PATH or in /usr/sbin; if missing, and running as root with apt-get, the
harness installs the Debian packages ``wrk`` and ``nginx-light``.
"""

from __future__ import annotations

import os
import sys

# This file is named like the standard library's ``http`` package, which every HTTP library
# imports: keep its directory on the path (for benchlib and the sibling modules), but last.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

from benchlib import builds, machine, procs  # noqa: E402
from http_clients import CLIENTS, group_cpu_seconds  # noqa: E402
from http_report import (  # noqa: E402
    CLIENT_CASE,
    SECTION_TITLE,
    Cell,
    Results,
    Sample,
    cell_label,
    console_line,
    replace_section,
    report,
)
from http_servers import (  # noqa: E402
    BODY_64K,
    HELLO,
    ITEM_ID,
    PATHS,
    SERVERS,
    UNAVAILABLE,
    item_json,
    make_fixtures,
    nginx_config,
    static_bytes,
)

HOST = "127.0.0.1"
BENCH_DIR = Path(_HERE)
SRC_DIR = BENCH_DIR.parent / "src"
PEERS = ["nginx", *SERVERS]
CASES = [*PATHS, CLIENT_CASE]
SETTLE = 0.3  # seconds between cells, for the last cell's connections to go
STDERR_LINES = 6  # of a server's stderr, shown after its cells
WRK_TIMEOUT = 5  # seconds: a response slower than this counts as a wrk timeout error
PACKAGES = [
    "greenlet",
    "httptools",
    "uvicorn",
    "uvloop",
    "granian",
    "gevent",
    "aiohttp",
    "httpx",
    "requests",
]

#: (peer, case) pairs that are not measured, and why.
NOT_MEASURED = {
    **{
        (peer, case): "granian serves /static from its Rust static mount, in front of every "
        "interface: measured once, under granian-rsgi"
        for peer in ("granian-asgi", "granian-wsgi")
        for case in ("static64k", "static1m")
    },
    **{
        ("unknot-bare", case): "a plain handler without App: static files are App.static's "
        "job, measured under unknot"
        for case in ("static64k", "static1m")
    },
}


# ---- tools ---------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """The path of executable ``name``: on the PATH, or in an sbin directory."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(directory, name)
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def install_tools() -> str:
    """``apt-get install wrk nginx-light`` when root and apt-get exists; what happened."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "not installed (installing needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk", "nginx-light"]
    print("installing wrk and nginx-light with apt-get...", flush=True)
    for step in ([], [["apt-get", "update", "-q"]]):  # the second try refreshes the lists
        try:
            for argv in [*step, install]:
                subprocess.run(argv, env=env, capture_output=True, timeout=600, check=True)
            return "installed with apt-get"
        except (OSError, subprocess.SubprocessError) as exc:
            error = exc
    return f"apt-get install failed: {error}"


def tool_version(path: str, flag: str) -> str:
    """The first line a tool prints for ``flag`` (its version), for the report."""
    try:
        done = subprocess.run([path, flag], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0].split(" Copyright")[0] if text else "unknown"


# ---- wrk -----------------------------------------------------------------------------------

_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclass
class WrkRun:
    """What one wrk run reported, and the CPU shares measured around it."""

    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = -1.0
    p99_ms: float = -1.0
    non2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    wrk_cpu: float = -1.0
    server_cpu: float = -1.0


def _ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def parse_wrk(text: str) -> WrkRun:
    """Read wrk's report (run with ``--latency``); ValueError if it has no request count."""
    run = WrkRun()
    done = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),", text, re.MULTILINE)
    if done is None:
        raise ValueError(f"no request count in wrk's output: {text.strip()[-300:]!r}")
    run.requests = int(done.group(1))
    run.seconds = _ms(done.group(2), done.group(3)) / 1000.0
    for pct, attr in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
        if m:
            setattr(run, attr, _ms(m.group(1), m.group(2)))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    run.non2xx = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        kinds = ("connect", "read", "write", "timeout")
        run.socket_errors = {k: int(v) for k, v in zip(kinds, m.groups(), strict=True)}
    return run


def run_wrk(
    wrk: str, url: str, conns: int, seconds: int, cpu: int | None, server_pgid: int
) -> WrkRun:
    """One wrk run (one thread) pinned to ``cpu``; measures wrk's and the server's CPU share.
    Raises RuntimeError if wrk fails."""
    argv = [wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", f"--timeout={WRK_TIMEOUT}s"]
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server0, t0 = group_cpu_seconds(server_pgid), time.perf_counter()
    try:
        done = procs.run(procs.pinned([*argv, url], cpu), timeout=seconds + 30)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"wrk still running after {seconds + 30} s, killed") from exc
    wall = time.perf_counter() - t0
    server1, usage1 = group_cpu_seconds(server_pgid), resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()[-300:]}")
    try:
        run = parse_wrk(done.stdout)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from exc
    cpu_used = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    run.wrk_cpu = cpu_used / wall
    if server0 >= 0 and server1 >= 0:
        run.server_cpu = (server1 - server0) / wall
    return run


# ---- checking a server's answers -----------------------------------------------------------


def expected_body(case: str) -> bytes:
    """The exact body every server must answer ``case`` with."""
    if case == "hello":
        return HELLO
    if case == "bytes64k":
        return BODY_64K
    if case == "routed":
        return item_json(ITEM_ID)
    return static_bytes(PATHS[case].rpartition("/")[2])


def _body_problem(case: str, content_type: str, body: bytes) -> str | None:
    if case == "routed":
        try:
            if json.loads(body) != json.loads(expected_body(case)):
                return f"wrong JSON {body[:80]!r}"
        except ValueError:
            return f"not JSON: {body[:80]!r}"
        if not content_type.startswith("application/json"):
            return f"content-type {content_type!r}, not application/json"
        return None
    expected = expected_body(case)
    if body != expected:
        return f"wrong body: {len(body)} bytes, {body[:40]!r}, expected {len(expected)} bytes"
    if case == "hello" and not content_type.startswith("text/plain"):
        return f"content-type {content_type!r}, not text/plain"
    return None


def verify(port: int, case: str) -> str | None:
    """Request ``case`` twice on one connection: None if both answers are right and the
    connection stayed open between them, else what is wrong."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        for attempt in (1, 2):
            conn.request("GET", PATHS[case])
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                return f"status {response.status} for GET {PATHS[case]}"
            problem = _body_problem(case, response.getheader("content-type", ""), body)
            if problem:
                return f"GET {PATHS[case]}: {problem}"
            if attempt == 1 and (response.will_close or conn.sock is None):
                return f"GET {PATHS[case]}: the server closed the connection (no keep-alive)"
    except (OSError, http.client.HTTPException) as exc:
        return f"GET {PATHS[case]} failed: {exc!r}"
    finally:
        conn.close()
    return None


# ---- servers -------------------------------------------------------------------------------


def last_line(text: str) -> str:
    """The last non-blank line of ``text`` (a child's error, usually)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def put_src_first() -> None:
    """Put this checkout's ``src/`` first on the path of every child (they inherit the
    environment): the unknot peers run the working tree, not an installed copy."""
    if (SRC_DIR / "unknot").is_dir():
        paths = [str(SRC_DIR), os.environ.get("PYTHONPATH", "")]
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, paths))


def load_average() -> str:
    """The 1-minute load average: other work on the machine disturbs every number here."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


@dataclass
class Setup:
    """What every run shares: the tools, the fixture files and the settings."""

    args: argparse.Namespace
    root: Path
    wrk: str | None
    nginx: str | None
    tools_note: str = ""
    load_before: str = field(default_factory=load_average)

    def cpu(self, which: int) -> int | None:
        """``which``, or None (no pinning) with ``--no-pin``."""
        return None if self.args.no_pin else which


def server_argv(peer: str, port: int, setup: Setup, workdir: Path) -> list[str]:
    """The command that starts ``peer`` on ``port`` (for nginx, after writing its config)."""
    if peer == "nginx":
        assert setup.nginx is not None
        config = workdir / "nginx.conf"
        config.write_text(nginx_config(HOST, port, setup.root, workdir))
        return [setup.nginx, "-p", str(workdir), "-c", str(config), "-e", "stderr"]
    script = str(BENCH_DIR / "http_servers.py")
    python, kind = builds.python(peer, setup.args.unknot_python), builds.kind(peer)
    return [python, script, kind, str(port), "--host", HOST, "--root", str(setup.root)]


def start_server(
    peer: str, setup: Setup, workdir: Path, cpu: int | None
) -> tuple[procs.Child | None, int, str]:
    """Start ``peer`` pinned to ``cpu`` and wait for its port: (child, port, "") when it
    listens, else (None, 0, why not)."""
    port = procs.free_port(HOST)
    env = builds.env(peer) if builds.is_build(peer) else None
    child = procs.Child(procs.pinned(server_argv(peer, port, setup, workdir), cpu), env=env)
    try:
        procs.wait_for_port(HOST, port, child)
    except procs.ChildExited as exc:
        child.stop()
        if exc.returncode == UNAVAILABLE:
            return None, 0, last_line(exc.stderr) or "unavailable"
        return None, 0, f"failed to start (status {exc.returncode}): {last_line(exc.stderr)}"
    except TimeoutError as exc:
        child.stop()
        return None, 0, f"failed to start: {exc}"
    return child, port, ""


def measure_cell(
    setup: Setup, peer: str, server: procs.Child, port: int, cell: Cell, rnd: int
) -> Sample:
    case, conns = cell
    args = setup.args
    sample = Sample(peer, case, conns, rnd, body_bytes=len(expected_body(case)))
    url = f"http://{HOST}:{port}{PATHS[case]}"
    assert setup.wrk is not None
    try:
        if args.warmup > 0:
            run_wrk(setup.wrk, url, conns, args.warmup, setup.cpu(args.load_cpu), server.proc.pid)
        run = run_wrk(
            setup.wrk, url, conns, args.duration, setup.cpu(args.load_cpu), server.proc.pid
        )
    except RuntimeError as exc:
        sample.error = str(exc)
        return sample
    sample.requests = run.requests
    sample.rps = run.requests / run.seconds if run.seconds else 0.0
    sample.p50_ms, sample.p99_ms = run.p50_ms, run.p99_ms
    sample.server_cpu, sample.load_cpu = run.server_cpu, run.wrk_cpu
    errors = {kind: n for kind, n in run.socket_errors.items() if n}
    sample.socket_errors = ", ".join(f"{kind} {n}" for kind, n in errors.items())
    if run.non2xx:
        sample.error = f"{run.non2xx} of {run.requests} responses were not 2xx/3xx"
    elif not run.requests:
        sample.error = "no response completed"
    elif not server.alive():
        sample.error = f"the server exited with {server.proc.returncode}"
    return sample


def run_server_peer(
    peer: str, setup: Setup, cells: list[Cell], results: Results, rnd: int, workdir: Path
) -> None:
    """One round of one server: start it, check every case, measure every cell, stop it."""
    print(f"{peer}:", flush=True)
    server, port, why = start_server(peer, setup, workdir, setup.cpu(setup.args.server_cpu))
    if server is None:
        results.status[peer] = why
        print(f"  {why}", flush=True)
        return
    with server:
        results.status.setdefault(peer, "ok")
        checked: dict[str, str | None] = {}
        for cell in cells:
            case = cell[0]
            if (peer, case) in NOT_MEASURED:
                results.skipped[(peer, case)] = NOT_MEASURED[(peer, case)]
                continue
            if case not in checked:
                checked[case] = verify(port, case)
            if checked[case]:
                sample = Sample(peer, case, cell[1], rnd, error=f"wrong answer: {checked[case]}")
            else:
                sample = measure_cell(setup, peer, server, port, cell, rnd)
            results.add(sample)
            print(console_line(sample), flush=True)
            time.sleep(SETTLE)
        note = server.stderr_text()
        if not server.alive():
            results.status[peer] = (
                f"failed: exited with {server.proc.returncode}: {last_line(note)}"
            )
        if note:
            tail = "\n    ".join(note.splitlines()[-STDERR_LINES:])
            print(f"  server stderr (last lines):\n    {tail}", flush=True)


# ---- clients -------------------------------------------------------------------------------


def run_client(setup: Setup, client: str, port: int, nginx_pid: int, rnd: int) -> Sample:
    """One client process against the running nginx (pinned to the server CPU)."""
    args = setup.args
    sample = Sample(client, CLIENT_CASE, args.client_workers, rnd, body_bytes=len(HELLO))
    python, kind = builds.python(client, args.unknot_python), builds.kind(client)
    argv = [python, str(BENCH_DIR / "http_clients.py"), kind]
    argv += [f"http://{HOST}:{port}/", "--workers", str(args.client_workers)]
    argv += ["--warmup", str(args.warmup or 0.5), "--duration", str(args.duration)]
    argv += ["--watch-pgid", str(nginx_pid)]
    limit = (args.warmup or 0.5) + args.duration + 60
    try:
        env = builds.env(client) if builds.is_build(client) else None
        done = procs.run(procs.pinned(argv, setup.cpu(args.server_cpu)), timeout=limit, env=env)
    except subprocess.TimeoutExpired:
        sample.error = f"still running after {limit:g} s, killed"
        return sample
    if done.returncode == UNAVAILABLE:
        sample.error = "unavailable: " + last_line(done.stderr).removeprefix("unavailable: ")
        return sample
    if done.returncode != 0 or not done.stdout.strip():
        sample.error = f"exited with {done.returncode}: {last_line(done.stderr)}"
        return sample
    record = json.loads(done.stdout.strip().splitlines()[-1])
    sample.requests, sample.rps = int(record["requests"]), float(record["rps"])
    sample.load_cpu, sample.server_cpu = record["client_cpu"], record["server_cpu"]
    if record["errors"]:
        sample.error = f"{record['errors']} failed requests, first: {record['first_error']}"
    return sample


def run_client_round(
    setup: Setup, clients: list[str], results: Results, rnd: int, workdir: Path
) -> None:
    """One round of the client case: nginx on the load CPU, each client in turn."""
    print(f"clients, against nginx on CPU {setup.args.load_cpu}:", flush=True)
    nginx, port, why = start_server("nginx", setup, workdir, setup.cpu(setup.args.load_cpu))
    if nginx is None:
        for client in clients:
            results.client_status[client] = f"not measured: nginx {why}"
        print(f"  nginx {why}", flush=True)
        return
    with nginx:
        problem = verify(port, "hello")
        for client in clients:
            if problem:
                sample = Sample(client, CLIENT_CASE, setup.args.client_workers, rnd)
                sample.error = f"nginx answered wrong: {problem}"
            else:
                sample = run_client(setup, client, port, nginx.proc.pid, rnd)
            if sample.error.startswith("unavailable"):
                results.client_status[client] = sample.error
                print(f"  {client:<15} {sample.error}", flush=True)
                continue
            results.client_status.setdefault(client, "ok")
            results.add(sample)
            print(console_line(sample), flush=True)
            time.sleep(SETTLE)


# ---- command line --------------------------------------------------------------------------


def _names(choices: list[str]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names, each one of ``choices``."""

    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown)}; choose from {', '.join(choices)}"
            )
        return names

    return parse


def _ints(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError("expected positive integers, comma-separated")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the ``--quick`` or full-run defaults filled in."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--peers", type=_names([*PEERS, *builds.PEERS]), default=PEERS, help="servers to measure"
    )
    parser.add_argument(
        "--clients",
        type=_names([*CLIENTS, *builds.PEERS]),
        default=list(CLIENTS),
        help="clients to measure",
    )
    parser.add_argument(
        "--cases", type=_names(CASES), default=CASES, help=f"cases, from {','.join(CASES)}"
    )
    parser.add_argument(
        "--conns", type=_ints, help="connection counts for hello (default 10,100,1000)"
    )
    parser.add_argument(
        "--case-conns", type=int, default=100, help="connections for the other server cases"
    )
    parser.add_argument("--client-workers", type=int, default=100, help="client case workers")
    parser.add_argument("--repeat", type=int, help="rounds (default 3)")
    parser.add_argument("--duration", type=int, help="measured seconds per cell (default 5)")
    parser.add_argument("--warmup", type=int, help="unmeasured seconds first (default 2)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run, about a minute: 1 round, 1 s per cell, no warm-up, hello at 100 "
        "connections (options given explicitly still win)",
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU for the servers")
    parser.add_argument("--load-cpu", type=int, default=1, help="CPU for wrk (client case: nginx)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--markdown", type=Path, metavar="FILE", help=f"write the '{SECTION_TITLE}' section of FILE"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every run as JSON")
    builds.add_argument(parser)
    args = parser.parse_args(argv)
    if not args.unknot_python and any(map(builds.is_build, args.peers + args.clients)):
        parser.error(f"{', '.join(builds.PEERS)} need --unknot-python")
    args.peers = builds.add_peers(args.peers, args.unknot_python)
    args.clients = builds.add_peers(args.clients, args.unknot_python)
    quick = args.quick
    defaults = {"conns": [100] if quick else [10, 100, 1000], "repeat": 1 if quick else 3}
    defaults |= {"duration": 1 if quick else 5, "warmup": 0 if quick else 2}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.duration < 1 or args.warmup < 0 or args.repeat < 1:
        parser.error("--duration and --repeat must be at least 1 and --warmup not negative")
    if args.case_conns < 1 or args.client_workers < 1:
        parser.error("--case-conns and --client-workers must be positive")
    return args


def plan(args: argparse.Namespace) -> list[Cell]:
    """The cells to measure, in order: hello at each ``--conns``, the other cases once."""
    cells: list[Cell] = []
    for case in CASES:
        if case not in args.cases:
            continue
        if case == "hello":
            cells += [(case, n) for n in args.conns]
        elif case == CLIENT_CASE:
            cells.append((case, args.client_workers))
        else:
            cells.append((case, args.case_conns))
    return cells


def settings(setup: Setup) -> dict[str, str]:
    """The run's settings and tools, for the report."""
    args = setup.args
    pinning = (
        "unpinned"
        if args.no_pin
        else f"servers on CPU {args.server_cpu}, wrk on CPU {args.load_cpu}; client case: "
        f"clients on CPU {args.server_cpu}, nginx on CPU {args.load_cpu}"
    )
    unknot_from = (
        f"{SRC_DIR} (first on the children's PYTHONPATH)"
        if (SRC_DIR / "unknot").is_dir()
        else "the installed package"
    )
    facts = {
        "wrk": tool_version(setup.wrk, "-v") if setup.wrk else "not found",
        "nginx": tool_version(setup.nginx, "-v") if setup.nginx else "not found",
        "unknot from": unknot_from,
        **builds.describe(args.unknot_python),
        "Pinning": pinning,
        "Per cell": f"{args.warmup} s warm-up, {args.duration} s measured, wrk -t1 "
        f"--timeout {WRK_TIMEOUT}s; {args.repeat} round(s), peers rotated each round",
    }
    facts["Load average (1 min) before / after"] = f"{setup.load_before} / {load_average()}"
    if setup.tools_note:
        facts["Tools"] = setup.tools_note
    return facts


def markdown_section(results: Results, setup: Setup, interrupted: bool) -> str:
    """The whole ``## HTTP`` section of BENCHMARKS.md."""
    lines = [f"## {SECTION_TITLE}", ""]
    lines.append(
        "`benchmarks/http.py`: every server peer answers the same requests with the same bytes "
        "(hello: 13-byte `Hello, world!`; a fixed 64 KiB body; `GET /items/42` answered with "
        '`{"id": 42, "name": "item 42"}`; 64 KiB and 1 MiB static files), loaded by wrk with '
        "keep-alive; ratios are unknot divided by the peer within each round, then the median "
        "of the rounds. uvicorn, granian and gevent run raw ASGI/RSGI/WSGI apps without a "
        "framework; `unknot` runs its router (`App`) and `App.static`, `unknot-bare` a plain "
        "handler. uvicorn and gevent serve static files by reading 64 KiB chunks in Python."
    )
    lines += [""] + report(results)
    facts = {**machine.describe(PACKAGES), **settings(setup)}
    if interrupted:
        facts["Note"] = "the run was interrupted; some cells are missing"
    lines += [""] + [f"- {key}: {value}" for key, value in facts.items()]
    return "\n".join(lines) + "\n"


def raise_fd_limit() -> None:
    """Children inherit it: 1,000 connections need more than a 1,024-descriptor default."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 if every cell was measured and both wrk checks passed."""
    args = parse_args(argv)
    procs.install_exit_signals()
    raise_fd_limit()
    put_src_first()
    try:
        for peer in builds.PEERS if args.unknot_python else ():
            print(f"{peer}: imports {builds.verify(peer, args.unknot_python)}", flush=True)
    except builds.BuildError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    cells = plan(args)
    server_cells = [c for c in cells if c[0] != CLIENT_CASE]
    wants_nginx = "nginx" in args.peers or CLIENT_CASE in args.cases
    wrk, nginx = find_tool("wrk"), find_tool("nginx")
    note = ""
    if (server_cells and wrk is None) or (wants_nginx and nginx is None):
        note = install_tools()
        wrk, nginx = find_tool("wrk"), find_tool("nginx")
    root = Path(tempfile.mkdtemp(prefix="unknot-http-bench-"))
    setup = Setup(args, root, wrk, nginx, note)
    results = Results(args.peers, args.clients, cells)

    per_peer = len(server_cells) * (args.warmup + args.duration + SETTLE + 0.3) + 2
    per_client = args.duration + (args.warmup or 0.5) + 1.5
    estimate = args.repeat * (
        len(args.peers) * per_peer * bool(server_cells)
        + len(args.clients) * per_client * (CLIENT_CASE in args.cases)
    )
    print(
        f"{len(args.peers)} servers x {len(server_cells)} cells, {len(args.clients)} clients, "
        f"{args.repeat} round(s): about {estimate / 60:.1f} min",
        flush=True,
    )
    interrupted = False
    try:
        make_fixtures(root)
        workdir = root / "nginx"
        workdir.mkdir()
        workdir.chmod(0o755)
        peers = list(args.peers)
        if server_cells and wrk is None:
            for peer in peers:
                results.status[peer] = f"unavailable: wrk not found ({note})"
            peers = []
        if nginx is None and "nginx" in peers:
            results.status["nginx"] = f"unavailable: nginx not found ({note})"
            peers.remove("nginx")
        clients = list(args.clients) if CLIENT_CASE in args.cases else []
        if clients and nginx is None:
            for client in clients:
                results.client_status[client] = f"not measured: nginx not found ({note})"
            clients = []
        for rnd in range(1, args.repeat + 1):
            print(f"== round {rnd}/{args.repeat}", flush=True)
            if server_cells:
                live = [p for p in peers if not results.status.get(p, "").startswith("unavail")]
                shift = (rnd - 1) % max(len(live), 1)
                for peer in live[shift:] + live[:shift]:
                    run_server_peer(peer, setup, server_cells, results, rnd, workdir)
            live_clients = [
                c for c in clients if not results.client_status.get(c, "").startswith("unavail")
            ]
            if live_clients:
                shift = (rnd - 1) % len(live_clients)
                order = live_clients[shift:] + live_clients[:shift]
                run_client_round(setup, order, results, rnd, workdir)
    except (KeyboardInterrupt, SystemExit):
        interrupted = True
        print("\ninterrupted: servers stopped, reporting what was measured", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print()
    print("\n".join(report(results)))
    if args.markdown:
        replace_section(args.markdown, markdown_section(results, setup, interrupted))
        print(f"\nwrote the '{SECTION_TITLE}' section of {args.markdown}")
    if args.json:
        data = {
            "machine": machine.describe(PACKAGES),
            "settings": settings(setup),
            "cells": [cell_label(c) for c in cells],
            **results.to_json(),
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")
    if interrupted:
        return 130
    failed = [p for p, s in results.status.items() if s.startswith("failed")]
    wrong = [s for runs in results.samples.values() for s in runs if s.error]
    return 1 if failed or wrong or results.ceiling_failures() else 0


if __name__ == "__main__":
    sys.exit(main())
