"""Closed-loop TCP echo benchmark: unknot against its peers, all in one run.

For every peer (see ``echo_servers.py``) the harness starts the server pinned to one CPU, waits
for its port, then for every message size and connection count runs the native load generator
(``loadgen/echoload.c``, compiled on demand into ``.build/``) pinned to another CPU, and finally
stops the server. The native ``c-epoll`` server calibrates the load generator: it must get more
round trips than every Python peer, otherwise the load generator was the bottleneck.

Example (the full matrix takes about 9 peers x 9 cells x 7 s, roughly ten minutes)::

    python benchmarks/echo.py --markdown BENCHMARKS-echo.md
    python benchmarks/echo.py --peers c-epoll,unknot,gevent --sizes 1024 --conns 10,100 \\
        --duration 2
    python benchmarks/echo.py --ab HEAD~1 --peers unknot --repeat 5 --markdown BENCHMARKS.md

``--ab REF`` adds the peer ``unknot@REF``: the same unknot server run with commit REF's
``src/``, alternating with this checkout's in every round, and reports the A/B table; with it,
``--markdown FILE`` writes (or replaces) the "A/B: Echo" section of FILE instead of writing the
whole report (see ``benchlib/ab.py``; ``--json`` still has every cell).

``--unknot-python PY`` adds the peers ``unknot-compiled`` and ``unknot-pure``: the unknot server
run by the interpreter PY with the unknot installed in PY's environment (no ``PYTHONPATH``), as
installed (its mypyc build, docs/compiled.md) and with ``UNKNOT_PURE=1``; each server checks
``unknot.compiled`` (``benchlib/builds.py``), and the report adds a "Compiled against pure"
table::

    python benchmarks/echo.py --peers c-epoll,uvloop-streams \\
        --unknot-python .venv-compiled/bin/python

Everything listens on loopback only. Servers run in their own process groups and are killed
after each peer, on Ctrl-C, on SIGTERM, and (through PR_SET_PDEATHSIG) if the harness dies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchlib import ab, builds, machine, mdsection, native, procs
from echo_report import NATIVE_PEER, Cell, Results, console_line, markdown, rps_label, size_label
from echo_servers import SERVERS, SPIN_PREFIX, SPIN_SUFFIX, UNAVAILABLE, is_server

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
SRC_DIR = BENCH_DIR.parent / "src"
CONNECT_TIMEOUT = 10.0
SETTLE = 0.3  # seconds between cells, so the server can reap the last cell's connections
STDERR_LINES = 6  # of a server's stderr, shown on the console after its cells
PACKAGES = ["greenlet", "gevent", "uvloop", "trio"]
UNKNOT_FAMILY = ("unknot",)  # the servers that can also run from the --ab commit
AB_TITLE = "Echo"


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def peer_list(text: str) -> list[str]:
    """Comma-separated peer names (checked against SERVERS once --ab is known)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--peers",
        type=peer_list,
        default=",".join(SERVERS),
        help=f"comma-separated servers to measure, from {', '.join(SERVERS)} "
        f"(and unknot@REF with --ab REF; {SPIN_PREFIX}NNN{SPIN_SUFFIX}: the native server "
        "spending NNN ns of user time per message, see echo_servers.py)",
    )
    parser.add_argument(
        "--sizes",
        type=int_list,
        default="1024,10240,102400",
        help="comma-separated message sizes in bytes",
    )
    parser.add_argument(
        "--conns",
        type=int_list,
        default="10,100,1000",
        help="comma-separated numbers of concurrent connections",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds: every peer measured this many times, peers in rotated order each round; "
        "the report gives medians and every run",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="unmeasured seconds before each cell (replies are verified)",
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU for the servers")
    parser.add_argument("--loadgen-cpu", type=int, default=1, help="CPU for the load generator")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin with taskset (numbers are then much noisier)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="FILE",
        help="write the Markdown report (tables, ratios, machine) to FILE; with --ab, write "
        "the 'A/B: TITLE' section of FILE instead",
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="write the raw results as JSON to FILE"
    )
    builds.add_argument(parser)
    ab.add_arguments(parser, AB_TITLE)
    args = parser.parse_args(argv)
    args.peers = builds.add_peers(args.peers, args.unknot_python)
    try:
        spinning = [p for p in args.peers if p.startswith(SPIN_PREFIX) and is_server(p)]
        known = builds.known([*SERVERS, *spinning], args.unknot_python)
        args.peers = ab.expand_peers(args.peers, args.ab, UNKNOT_FAMILY, known)
    except ab.ABError as exc:
        parser.error(str(exc))
    if args.duration <= 0 or args.warmup < 0 or args.repeat < 1:
        parser.error("--duration and --repeat must be positive and --warmup not negative")
    if not args.sizes or not args.conns or min(args.sizes) <= 0 or min(args.conns) <= 0:
        parser.error("--sizes and --conns need positive integers")
    return args


def last_line(text: str) -> str:
    """The last non-blank line of ``text`` (an exception message, usually)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def server_env(peer: str, head: ab.Tree, base: ab.Tree | None) -> dict[str, str]:
    """A server's environment: its tree's ``src/`` first on the path (this checkout's, or the
    --ab commit's for ``unknot@REF``), so the unknot peer measures that tree rather than
    whatever copy is installed."""
    if ab.split(peer)[0] in UNKNOT_FAMILY:
        return ab.tree_of(peer, head, base).env()
    if builds.is_build(peer):  # the installed unknot: nothing on the path, the build checked
        return builds.env(peer)
    if peer in builds.USES_COMPILED:  # the installed unknot's C helpers
        return builds.installed_env(pure=False)
    env = dict(os.environ)
    if (SRC_DIR / "unknot").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    return env


def run_cell(
    loadgen: Path,
    peer: str,
    port: int,
    size: int,
    conns: int,
    args: argparse.Namespace,
    round_: int = 0,
) -> Cell:
    """One load generator run against the server listening on ``port``."""
    cell = Cell(peer=peer, size=size, conns=conns, round=round_)
    argv = [
        str(loadgen),
        "-h",
        HOST,
        "-p",
        str(port),
        "-c",
        str(conns),
        "-s",
        str(size),
        "-d",
        str(args.duration),
        "-w",
        str(args.warmup),
        "-t",
        str(CONNECT_TIMEOUT),
    ]
    limit = CONNECT_TIMEOUT + args.warmup + args.duration + 15
    try:
        done = procs.run(procs.pinned(argv, None if args.no_pin else args.loadgen_cpu), limit)
    except subprocess.TimeoutExpired:
        cell.error = f"load generator still running after {limit:g} s, killed"
        return cell
    if done.returncode != 0:
        cell.error = done.stderr.strip() or f"load generator exited with {done.returncode}"
        return cell
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("rps", "p50_us", "p99_us", "max_us", "round_trips", "starved_conns"):
        setattr(cell, key, report[key])
    if not cell.round_trips:
        cell.error = "no round trip completed in the measured window"
    return cell


def run_peer(
    peer: str,
    loadgen: Path,
    results: Results,
    args: argparse.Namespace,
    env: dict[str, str],
    round_: int = 0,
) -> None:
    """Start one server (``unknot@REF``: the unknot server, with ``env`` naming REF's tree),
    measure every cell against it, stop it. Records the peer's status."""
    port = procs.free_port(HOST)
    kind = builds.kind(ab.split(peer)[0])
    python = builds.python(peer, args.unknot_python)
    argv = [python, str(BENCH_DIR / "echo_servers.py"), kind, str(port), "--host", HOST]
    print(f"{peer}:", flush=True)
    with procs.Child(
        procs.pinned(argv, None if args.no_pin else args.server_cpu), env=env
    ) as server:
        try:
            procs.wait_for_port(HOST, port, server)
        except procs.ChildExited as exc:
            if exc.returncode == UNAVAILABLE:
                status = last_line(exc.stderr) or "unavailable"
            else:
                status = f"failed to start (status {exc.returncode}): {last_line(exc.stderr)}"
                print(f"  server stderr:\n{exc.stderr}", flush=True)
            results.peer_status[peer] = status
            print(f"  {status}", flush=True)
            return
        except TimeoutError as exc:
            results.peer_status[peer] = f"failed to start: {exc}"
            print(f"  {results.peer_status[peer]}", flush=True)
            return
        results.peer_status.setdefault(peer, "ok")  # a failure in an earlier round stays
        for size in args.sizes:
            for conns in args.conns:
                if not server.alive():
                    cell = Cell(peer, size, conns, error="server is no longer running")
                    cell.round = round_
                else:
                    cell = run_cell(loadgen, peer, port, size, conns, args, round_)
                results.add(cell)
                print(console_line(cell), flush=True)
                time.sleep(SETTLE)
        note = server.stderr_text()
        if not server.alive():
            results.peer_status[peer] = (
                f"failed: server exited with {server.proc.returncode}: {last_line(note)}"
            )
        if note:
            tail = "\n    ".join(note.splitlines()[-STDERR_LINES:])
            print(f"  server stderr (last lines):\n    {tail}", flush=True)


def settings(args: argparse.Namespace, base: ab.Tree | None = None) -> dict[str, str]:
    pinning = (
        "unpinned"
        if args.no_pin
        else f"server on CPU {args.server_cpu}, load generator on CPU {args.loadgen_cpu}"
    )
    unknot_from = (
        f"{SRC_DIR} (first on the servers' PYTHONPATH)"
        if (SRC_DIR / "unknot").is_dir()
        else "the installed package"
    )
    if base is not None:
        unknot_from += f"; unknot@{base.label}: {base.revision}, from {base.src}"
    return {
        "unknot from": unknot_from,
        **builds.describe(args.unknot_python),
        "Compiler": f"{native.compiler_version()} ({' '.join(native.CFLAGS)})",
        "Pinning": pinning,
        "Per cell": f"{args.warmup:g} s warm-up (replies verified), {args.duration:g} s measured"
        + (f", {args.repeat} rounds (medians reported)" if args.repeat > 1 else ""),
    }


def ab_comparisons(results: Results, args: argparse.Namespace) -> list[ab.Comparison]:
    """One A/B cell per (unknot-family pair, size, connection count): requests/s per round."""
    out = []
    for head_peer, base_peer in ab.pairs(args.peers, args.ab):
        prefix = "" if head_peer == ab.SUBJECT else f"{head_peer}: "
        for size in args.sizes:
            for conns in args.conns:
                cell = ab.Cell(
                    name=f"{prefix}{size_label(size)} x {conns}",
                    unit="requests/s",
                    higher_is_better=True,
                    head=results.per_round(head_peer, size, conns, args.repeat),
                    base=results.per_round(base_peer, size, conns, args.repeat),
                    fmt=rps_label,
                )
                out.append(ab.compare(cell))
    return out


def ab_section(
    comparisons: list[ab.Comparison],
    head: ab.Tree,
    base: ab.Tree,
    results: Results,
    args: argparse.Namespace,
    interrupted: bool,
) -> str:
    """The "A/B: <title>" section: the A/B table, every round, every peer's status."""
    info = machine.describe(PACKAGES)
    info.pop("Checkout", None)
    facts = {**info, **settings(args, base)}
    if interrupted:
        facts["Note"] = "the run was interrupted; some cells are missing"
    intro = (
        f"`benchmarks/echo.py --ab {args.ab}`: the closed-loop echo benchmark with this "
        f"checkout's unknot server (head) and commit {base.revision}'s (base), {args.repeat} "
        "rounds, each round every peer's server started afresh (order rotated per round) and "
        "measured on every cell by the native load generator."
    )
    notes = [
        f"`{peer}`: {status}" for peer, status in results.peer_status.items() if status != "ok"
    ]
    notes += [
        f"{c.peer}, {size_label(c.size)} x {c.conns}, round {c.round + 1}: {c.error}"
        for v in results.samples.values()
        for c in v
        if c.error
    ]
    others = [p for p in args.peers if ab.split(p)[0] not in UNKNOT_FAMILY]
    extra = []
    if others:
        rows = [["peer", "cell", "requests/s (median)"]]
        rows += [
            [peer, f"{size_label(s)} x {c}", rps_label(rps)]
            for peer in others
            for s in args.sizes
            for c in args.conns
            if (rps := results.rps(peer, s, c)) is not None
        ]
        extra = ["### A/B: the other peers, same run", "", ab.markdown_table(rows, right=(2,)), ""]
    return ab.section(args.ab_title, intro, head, base, comparisons, facts, notes, extra)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.install_exit_signals()
    loadgen = native.build("echoload")
    if NATIVE_PEER in args.peers:
        native.build("echoserver")
    cells = len(args.peers) * len(args.sizes) * len(args.conns) * args.repeat
    estimate = cells * (args.warmup + args.duration + SETTLE + 0.2)
    print(
        f"{len(args.peers)} peers x {len(args.sizes)} sizes x {len(args.conns)} connection "
        f"counts = {cells} cells, about {estimate / 60:.1f} min",
        flush=True,
    )

    results = Results(args.peers, args.sizes, args.conns)
    head, base = ab.this_checkout(), None
    interrupted: int | None = None  # the exit status to end with, if the run was cut short
    try:
        with contextlib.ExitStack() as stack:
            if args.ab:
                base = stack.enter_context(ab.base_checkout(args.ab))
            for peer in args.peers:
                if ab.split(peer)[0] in UNKNOT_FAMILY:
                    print(f"{peer}: imports {ab.verify_import(ab.tree_of(peer, head, base))}")
                elif builds.is_build(peer):
                    print(f"{peer}: imports {builds.verify(peer, args.unknot_python)}")
            envs = {peer: server_env(peer, head, base) for peer in args.peers}
            for rnd in range(args.repeat):
                if args.repeat > 1:
                    print(f"== round {rnd + 1}/{args.repeat}", flush=True)
                shift = rnd % len(args.peers)  # rotate, so no peer always runs first or last
                for peer in args.peers[shift:] + args.peers[:shift]:
                    run_peer(peer, loadgen, results, args, envs[peer], rnd)
    except ab.ABError as exc:
        print(f"A/B: {exc}", file=sys.stderr)
        return 2
    except builds.BuildError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, or SIGTERM/SIGHUP via procs
        code = exc.code if isinstance(exc, SystemExit) else None
        interrupted = code if isinstance(code, int) and code else 130
        print("\ninterrupted: servers stopped, reporting what was measured", file=sys.stderr)

    failures = results.headroom_failures()
    if NATIVE_PEER not in results.peer_status:
        print(f"load generator headroom: not checked ({NATIVE_PEER} not run)")
    elif failures:
        print("load generator headroom: CHECK FAILED, a Python peer matched the native server:")
        for failure in failures:
            print(f"  {failure}")
    else:
        worst = min(
            ((n / b, s, c) for s, c, n, _, b in results.headroom() if n and b), default=None
        )
        print(
            "load generator headroom: ok"
            + (
                f" (smallest margin {worst[0]:.2f}x, {size_label(worst[1])} x {worst[2]} conns)"
                if worst
                else ""
            )
        )

    comparisons = ab_comparisons(results, args)
    if base is not None:
        print(f"\nA/B: head = this checkout ({head.revision}), base = {args.ab} ({base.revision})")
        print(ab.console_table(ab.rows(comparisons, head, base)))
        print(ab.summary(comparisons))
    if args.markdown and base is not None:
        section = ab_section(comparisons, head, base, results, args, interrupted is not None)
        mdsection.replace_section(args.markdown, f"A/B: {args.ab_title}", section)
        print(f"wrote the 'A/B: {args.ab_title}' section of {args.markdown}")
    elif args.markdown:
        info = machine.describe(PACKAGES)
        extra = settings(args)
        if interrupted is not None:
            extra["Note"] = "the run was interrupted; some cells are missing"
        args.markdown.write_text(markdown(results, info, extra))
        print(f"wrote {args.markdown}")
    if args.json:
        data = {
            "machine": machine.describe(PACKAGES),
            "settings": settings(args, base),
            **results.to_json(),
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")
    if interrupted is not None:
        return interrupted
    broken = [p for p, status in results.peer_status.items() if status.startswith("failed")]
    return 1 if failures or broken else 0


if __name__ == "__main__":
    sys.exit(main())
