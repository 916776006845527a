"""Instructions per operation, counted by callgrind: an A/B of two checkouts that load cannot blur.

Wall-clock A/Bs on this shared 2-CPU machine move by tens of percent between rounds (see the A/B
sections of BENCHMARKS.md); instruction counts do not: valgrind's callgrind counts every
instruction the process executes, the same for the same code and input whatever else runs. Each
case runs in a fresh interpreter with N and 3N operations; the difference divided by 2N is the
cost of one operation, free of start-up and import costs. Cases:

* ``echo``: two fibers ping-pong 1 KiB over a TCP loopback connection (client ``sendall`` +
  ``recv``, server ``recv`` + ``sendall``): the echo server's hot path, plus the client's.
  ``echo-into`` the same with ``recv_into`` and ``send`` on both sides: the general path
  (`unknot._sockio.general_io`), which readers over ``makefile`` (http.client, PyMySQL) take.
* ``event``: two fibers hand control back and forth through a fresh `unknot.Event` each time
  (core.py's *switch* cell).
* ``queue``: a producer and a consumer fiber through an `unknot.Queue(1)`.
* ``sleep0``: two fibers each calling ``sleep(0)`` in a loop (core.py's *sleep(0), 2 fibers*).
* ``spawn``: spawn a fiber that returns at once, and join it (core.py's *spawn+join*).
* ``http``: one keep-alive ``GET /`` round trip, a raw socket client against the server's
  per-connection loop (`unknot.http._conn.HTTPConnection`) and a plain hello handler;
  ``http-app`` the same through an `unknot.http.App` route (what benchmarks/http.py's
  ``unknot`` peer serves); ``http-floor`` the same client answered with the same bytes by a
  bare recv/sendall loop. The table adds ``http`` less ``http-floor``: the HTTP layer's cost.
  The Date line's clock is frozen and every case runs with ``PYTHONHASHSEED=0``, so the
  counts repeat.

Usage::

    python benchmarks/instructions.py --ab 96d1087                 # this checkout vs 96d1087
    python benchmarks/instructions.py --refs 96d1087,dd25249,HEAD --markdown BENCHMARKS.md
    # an installed unknot (the compiled build, docs/compiled.md) against its own pure modules:
    py=.venv-compiled/bin/python
    python benchmarks/instructions.py --refs python=$py@pure,python=$py

A ref ``python=PATH`` runs the cases with the interpreter PATH and the unknot installed in its
environment (no ``PYTHONPATH``); ``python=PATH@pure`` the same with ``UNKNOT_PURE=1``.

Needs valgrind. Instruction counts are not time (a cache miss costs more than an add), but for
the same Python program on the same interpreter they track its cost closely.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# After the standard library: benchmarks/http.py is named like the http package.
_HERE = str(BENCH_DIR)
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

from benchlib import builds, mdsection  # noqa: E402

CASES: dict[str, str] = {}

# The echo cases: two fibers ping-pong 1 KiB over TCP loopback; SERVE and ASK are what the
# server and the client do per round trip.
_ECHO = r"""
import sys, unknot
from unknot import socket
N = int(sys.argv[1])
MSG = b"x" * 1024
def main():
    srv = socket.create_server(("127.0.0.1", 0))
    def server():
        conn, _ = srv.accept()
        buf = bytearray(65536)
        view = memoryview(buf)
        with conn:
            for _ in range(N):
                SERVE
    f = unknot.spawn(server)
    c = socket.create_connection(srv.getsockname())
    buf = bytearray(65536)
    with c:
        for _ in range(N):
            ASK
    f.join()
    srv.close()
unknot.run(main)
"""
CASES["echo"] = _ECHO.replace(
    "SERVE",
    """data = b""
                while len(data) < 1024:
                    data += conn.recv(65536)
                conn.sendall(data)""",
).replace(
    "ASK",
    """c.sendall(MSG)
            got = 0
            while got < 1024:
                got += len(c.recv(65536))""",
)
CASES["echo-into"] = _ECHO.replace(
    "SERVE",
    """got = 0
                while got < 1024:
                    got += conn.recv_into(view[got:])
                sent = 0
                while sent < 1024:
                    sent += conn.send(view[sent:1024])""",
).replace(
    "ASK",
    """sent = 0
            while sent < 1024:
                sent += c.send(MSG[sent:] if sent else MSG)
            got = 0
            while got < 1024:
                got += c.recv_into(buf)""",
)
CASES.update(
    {
        "event": r"""
import sys, unknot
N = int(sys.argv[1])
def main():
    state = {"e": unknot.Event()}
    def side():
        for _ in range(N):
            state["e"].wait()
            state["e"] = unknot.Event()
            state["f"].set()
    f = unknot.spawn(side)
    for _ in range(N):
        state["f"] = unknot.Event()
        state["e"].set()
        state["f"].wait()
    f.join()
unknot.run(main)
""",
        "queue": r"""
import sys, unknot
N = int(sys.argv[1])
def main():
    q = unknot.Queue(1)
    def consumer():
        for _ in range(N):
            q.get()
    f = unknot.spawn(consumer)
    for i in range(N):
        q.put(i)
    f.join()
unknot.run(main)
""",
        "sleep0": r"""
import sys, unknot
N = int(sys.argv[1])
def yielder():
    for _ in range(N):
        unknot.sleep(0)
def main():
    fibers = [unknot.spawn(yielder) for _ in range(2)]
    for f in fibers:
        f.join()
unknot.run(main)
""",
        "spawn": r"""
import sys, unknot
N = int(sys.argv[1])
def nothing():
    return None
def main():
    spawn = unknot.spawn
    for _ in range(N):
        spawn(nothing).join()
unknot.run(main)
""",
    }
)

# The HTTP cases: one keep-alive ``GET /`` after another from a raw socket client, answered by
# an `HTTPConnection` (the server's per-connection loop, without the accepting server and its
# watchdog, whose wake-ups follow the clock) on the accepted socket. The Date line's clock is
# frozen (one refresh, at the first response) and the hash seed fixed (see `count`), so the
# counts repeat. ``http-floor`` answers with the same bytes from a bare recv/sendall loop: the
# client's cost and the socket I/O's; ``http`` minus ``http-floor`` is the HTTP layer's.
_HTTP = r"""
import sys, unknot
from unknot import socket
N = int(sys.argv[1])
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: instructions\r\n\r\n"
def hello(request):
    return 200, {"content-type": "text/plain"}, b"Hello, world!"
from unknot.http._protocol._writer import DATE_LINE
DATE_LINE.refresh()
DATE_LINE.expires = float("inf")  # the clock, frozen for the Date line
def serve_http(conn, handler):
    from unknot.http._conn import ConnectionSettings, HTTPConnection, Timeouts
    from unknot.http._protocol import DEFAULT_LIMITS
    settings = ConnectionSettings(handler, DEFAULT_LIMITS, Timeouts(), None, False)
    HTTPConnection(settings, conn, conn.getpeername()).run()
def main():
    srv = socket.create_server(("127.0.0.1", 0))
    def server():
        conn, _ = srv.accept()
        with conn:
            SERVE(conn)
    f = unknot.spawn(server)
    c = socket.create_connection(srv.getsockname())
    c.sendall(REQUEST)
    response = c.recv(65536)  # the first answer tells the size of each
    with c:
        for _ in range(N - 1):
            c.sendall(REQUEST)
            got = 0
            while got < len(response):
                got += len(c.recv(65536))
    f.join()
    srv.close()
unknot.run(main)
"""
CASES["http"] = _HTTP.replace("SERVE(conn)", "serve_http(conn, hello)")
CASES["http-app"] = _HTTP.replace(
    "SERVE(conn)",
    """app = unknot.http.App()
            app.get("/")(hello)
            serve_http(conn, app)""",
).replace("from unknot import socket", "from unknot import socket\nimport unknot.http")
CASES["http-floor"] = _HTTP.replace(
    "SERVE(conn)",
    """from unknot.http._protocol import ServerConnection
            proto = ServerConnection()  # the same response bytes, framed once
            proto.receive_data(REQUEST)
            proto.next_events()
            response = proto.send_response(200, {"content-type": "text/plain"}, b"Hello, world!")
            while conn.recv(65536):
                conn.sendall(response)""",
)
UNITS = {
    "echo": "round trip",
    "echo-into": "round trip",
    "event": "hand-off pair",
    "queue": "item",
    "sleep0": "pair of yields",
    "spawn": "fiber",
    "http": "request",
    "http-app": "request",
    "http-floor": "request",
}
#: The derived row: ``http`` less ``http-floor``.
LAYER = "http layer (http - http-floor)"
UNITS[LAYER] = "request"


def count(src: Path | str, case: str, n: int) -> int:
    """Instructions callgrind counted for ``case`` with ``n`` operations, unknot from ``src``
    (a source tree, or a ``python=PATH[@pure]`` ref: see the module docstring)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(CASES[case])
        script = f.name
    try:
        python, env = interpreter(src)
        env["PYTHONHASHSEED"] = "0"  # the same dict and set layouts (and costs) in every run
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                python,
                script,
                str(n),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{case} with {src} failed:\n{out.stderr[-2000:]}")
        m = re.search(r"Collected : (\d+)", out.stderr)
        assert m is not None, out.stderr[-500:]
        return int(m.group(1))
    finally:
        os.unlink(script)


def interpreter(src: Path | str) -> tuple[str, dict[str, str]]:
    """The interpreter and environment that run a case for ``src`` (see `count`)."""
    if isinstance(src, Path):
        return sys.executable, dict(builds.installed_env(False), PYTHONPATH=str(src))
    python, _, mode = src.removeprefix("python=").partition("@")
    if mode not in ("", "pure"):
        raise SystemExit(f"unknown mode in {src!r} (only @pure)")
    return python, builds.installed_env(mode == "pure")


def tree(ref: str, workdir: Path) -> Path | str:
    """``src/`` of git ``ref`` ("." for this checkout as it is); a ``python=`` ref as it is."""
    if ref.startswith("python="):
        return ref
    if ref == ".":
        return ROOT / "src"
    dest = workdir / ref.replace("/", "_")
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(dest / "src")], check=True)
    return dest / "src"


def label(ref: str) -> str:
    if ref.startswith("python="):
        python, _, mode = ref.removeprefix("python=").partition("@")
        out = subprocess.run(
            [python, "-c", "import unknot; print(unknot.compiled)"],
            capture_output=True,
            text=True,
            env=interpreter(ref)[1],
        ).stdout.strip()
        return f"{python} ({'compiled' if out == 'True' else 'pure'})"
    if ref == ".":
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True, text=True
        ).stdout.strip()
        return f"this checkout ({head}{' + changes' if dirty else ''})"
    return ref


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ab", help="compare this checkout with git REF")
    parser.add_argument("--refs", help="comma-separated git refs ('.' = this checkout)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("-n", type=int, default=2000, help="N (3N is run too)")
    parser.add_argument("--markdown", type=Path, help="write the '## Instructions' section")
    args = parser.parse_args(argv)
    refs = args.refs.split(",") if args.refs else [args.ab, "."] if args.ab else ["."]
    cases = args.cases.split(",")
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="unknot-instr-") as tmp:
        trees = {ref: tree(ref, Path(tmp)) for ref in refs}
        for case in cases:
            rows[case] = {}
            for ref in refs:
                lo, hi = count(trees[ref], case, args.n), count(trees[ref], case, 3 * args.n)
                rows[case][ref] = (hi - lo) / (2 * args.n)
                print(
                    f"{case:10} {label(ref):40} {rows[case][ref]:>10,.0f} instructions per "
                    f"{UNITS[case]}",
                    flush=True,
                )
    if "http" in rows and "http-floor" in rows:
        # The server's HTTP layer: the round trip less the client's and the I/O's share.
        cases.append(LAYER)
        rows[LAYER] = {ref: rows["http"][ref] - rows["http-floor"][ref] for ref in refs}
    base = refs[0]
    header = "| case | " + " | ".join(label(r) for r in refs)
    if len(refs) > 1:
        header += " | " + " | ".join(f"{label(r)} / {label(base)}" for r in refs[1:])
    lines = [header + " |", "|" + " --- |" * header.count("|")]
    for case in cases:
        cells = [f"{rows[case][r]:,.0f}" for r in refs]
        cells += [f"{rows[case][r] / rows[case][base]:.3f}" for r in refs[1:]]
        lines.append(f"| {case} (per {UNITS[case]}) | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        cmd = "python benchmarks/instructions.py " + " ".join(argv or sys.argv[1:])
        body = "## Instructions\n\n" + (
            "Instructions per operation counted by callgrind (N and 3N operations in fresh "
            "interpreters, the difference over 2N): unaffected by the machine's load, unlike "
            f"the wall-clock A/Bs. Python {sys.version.split()[0]}. Command: `{cmd}`.\n\n"
            + table
            + "\n"
        )
        mdsection.replace_section(args.markdown, "Instructions", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
