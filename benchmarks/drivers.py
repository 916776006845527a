"""redis-py with 50 concurrent workers on a real Redis: unknot against its peers, in one run.

Each peer runs the same job in its own fresh interpreter (``drivers.py --worker PEER``): 50
workers, each with its own key, loop ``SET key n`` / ``GET key`` (two operations per round)
against the Redis on 127.0.0.1:6379, through one shared client (its connection pool ends up
holding 50 connections). The peers:

* **unknot**: ``unknot.patch()``, then plain ``redis.Redis`` in 50 fibers (`unknot.run`).
* **unknot-nocede** (a diagnostic, not a peer): the same, with the rule that a blocking send
  first lets the ready fibers run (``Hub.cede``, docs/reference.md) switched off, to show what
  that rule is worth: without it the 50 requests reach Redis one by one.
* **gevent**: ``gevent.monkey.patch_all()``, then plain ``redis.Redis`` in 50 greenlets.
* **threads**: plain ``redis.Redis`` in 50 OS threads.
* **asyncio** / **uvloop**: ``redis.asyncio.Redis`` in 50 tasks, on the stock loop and on uvloop.

A worker warms up for ``--warmup`` seconds, then counts the operations completed in
``--duration`` seconds. The parent runs every peer ``--repeat`` times, interleaved (each round
starts one peer later in the list, so that no peer always follows the same one), pins each
worker to CPU ``--cpu`` with ``taskset`` (and a local Redis server to CPU ``--redis-cpu`` for
the run, so that the two never compete for a core), and reports the median ops/s and each
peer's ratio to unknot. Targets (from the issue): unknot >= 1.3x gevent and >= redis.asyncio
on stock asyncio.

The client is CPU-bound, so the table also gives its CPU time per operation (less disturbed by
other load on the machine than throughput), and, as a diagnostic, how often the Redis server
went to sleep per operation (read from ``/proc/<redis pid>/status`` when the server runs on
this machine): a command that finds Redis asleep makes the client's ``send`` pay for waking it.

``--ab REF`` adds the peer ``unknot@REF``: the unknot worker run with commit REF's ``src/`` in
its normal configuration, alternating with this checkout's in every round, and reports the A/B
table (``--markdown`` then writes the "A/B: ..." section; see ``benchlib/ab.py``). ``--peers``
may also name ``unknot-nocede@REF``; a variant that lacks the internal names the diagnostic
switches (``SEND_RULE_NAMES``) skips that diagnostic instead of failing. The unknot peers always
import this checkout's ``src/`` (or REF's), never an installed copy.

``--unknot-python PY`` adds the peers ``unknot-compiled`` and ``unknot-pure``: the unknot worker
run by the interpreter PY with the unknot installed in PY's environment (no ``PYTHONPATH``; PY
needs redis-py too), as installed (its mypyc build, docs/compiled.md) and with
``UNKNOT_PURE=1``; each worker checks ``unknot.compiled`` (``benchlib/builds.py``), and the
report adds their ratio compiled / pure.

``--profile`` runs the unknot worker once under cProfile instead and prints the top functions.
``--toggle`` runs unknot alone, switching the rule that the unknot-nocede row turns off (a
blocking client send goes after the ready fibers) on and off every 0.1 s in one process, and
reports both modes: the machine's drift between runs cannot bias that comparison.

Examples::

    python benchmarks/drivers.py                         # the table (about a minute)
    python benchmarks/drivers.py --markdown BENCHMARKS.md
    python benchmarks/drivers.py --profile               # where unknot's time goes
    python benchmarks/drivers.py --toggle --duration 10  # the send rule, on/off in one process
    python benchmarks/drivers.py --ab HEAD~1 --peers unknot --repeat 9  # an A/B
    python benchmarks/drivers.py --unknot-python .venv-compiled/bin/python --peers gevent
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# After the standard library: benchmarks/http.py is named like the http package.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]
from benchlib import ab, builds, machine, mdsection  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SECTION_TITLE = "Drivers: redis-py, 50 workers"
PEERS = ("unknot", "unknot-nocede", "gevent", "threads", "asyncio", "uvloop")
PEER_PACKAGES = {"gevent": "gevent", "uvloop": "uvloop"}
UNKNOT_FAMILY = ("unknot", "unknot-nocede")  # the peers that can also run from the --ab commit
#: The internal names the send-rule diagnostic (unknot-nocede, --toggle) switches, as
#: (module, attribute path); a tree without one of them cannot run that diagnostic.
SEND_RULE_NAMES = (
    ("unknot.socket", "socket._after_ready"),
    ("unknot.socket", "_cede"),
    ("unknot.ssl", "_cede"),
)
WORKERS = 50
HOST, PORT = "127.0.0.1", 6379
TARGETS = {"gevent": 1.3, "asyncio": 1.0}  # unknot / peer, floors

#: What a worker measures: (operations per second, client CPU seconds per operation, times the
#: Redis server went to sleep per operation, or -1 if its /proc entry cannot be read).
Result = tuple[float, float, float]


def _redis_sleeps(pid: int) -> int:
    """How many times process ``pid`` has blocked so far (voluntary context switches), or -1."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _per_op(before: int, after: int, ops: int) -> float:
    return (after - before) / ops if before >= 0 and after >= 0 else -1.0


# ---------------------------------------------------------------------------------------------
# Worker side: one peer per interpreter
# ---------------------------------------------------------------------------------------------


def _sync_worker(client: Any, stop: list[bool], counts: list[int], i: int) -> None:
    """One worker's loop, for the blocking peers (unknot, gevent, threads)."""
    key = f"unknot:bench:{os.getpid()}:{i}"
    set_, get = client.set, client.get
    n = 0
    while not stop[0]:
        set_(key, n)
        get(key)
        n += 2
        counts[i] = n


def _measure_sync(
    spawn_all: Callable[[Callable[[int], None]], Any],
    sleep: Callable[[float], None],
    join_all: Callable[[Any], object],
    warmup: float,
    duration: float,
) -> Result:
    import redis

    client = redis.Redis(host=HOST, port=PORT)
    server_pid = int(client.info("server")["process_id"])
    stop = [False]
    counts = [0] * WORKERS
    handles = spawn_all(lambda i: _sync_worker(client, stop, counts, i))
    sleep(warmup)
    start_ops, t0, cpu0 = sum(counts), time.perf_counter(), time.process_time()
    sleeps0 = _redis_sleeps(server_pid)
    sleep(duration)
    ops, elapsed = sum(counts) - start_ops, time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    sleeps = _per_op(sleeps0, _redis_sleeps(server_pid), ops)
    stop[0] = True
    join_all(handles)
    client.close()
    return ops / elapsed, cpu / ops, sleeps


_SEND_RULE_ON: dict[tuple[str, str], Any] = {}


def _send_rule_owner(module: str, path: str) -> tuple[Any, str] | None:
    """The object holding the attribute ``module``.``path`` and its last name, or None if the
    unknot imported here has no such name."""
    import importlib

    try:
        obj: Any = importlib.import_module(module)
    except ImportError:
        return None
    *parents, name = path.split(".")
    for parent in parents:
        obj = getattr(obj, parent, None)
    return (obj, name) if obj is not None and hasattr(obj, name) else None


def missing_send_rule_names() -> list[str]:
    """The `SEND_RULE_NAMES` the unknot imported here lacks (empty: the diagnostic can run)."""
    return [f"{m}.{p}" for m, p in SEND_RULE_NAMES if _send_rule_owner(m, p) is None]


def _set_send_rule(on: bool) -> None:
    """Switch unknot's rule that a blocking client send goes after the ready fibers (batched
    by the hub) on or off: off, every send is made at once, as before the rule existed."""
    missing = missing_send_rule_names()
    if missing:
        raise SystemExit(f"this unknot has no {', '.join(missing)}: the send rule cannot switch")
    off = {"socket._after_ready": lambda self, data, flags: 0, "_cede": lambda: None}
    for module, path in SEND_RULE_NAMES:
        owner = _send_rule_owner(module, path)
        assert owner is not None
        obj, name = owner
        _SEND_RULE_ON.setdefault((module, path), getattr(obj, name))
        setattr(obj, name, _SEND_RULE_ON[(module, path)] if on else off[path])


def run_unknot(warmup: float, duration: float, cede: bool = True) -> Result:
    """unknot in its normal configuration; ``cede=False`` switches the send rule off."""
    import unknot

    ab.assert_unknot_source(unknot)
    unknot.patch()
    if not cede:
        _set_send_rule(False)

    def main() -> Result:
        return _measure_sync(
            lambda work: [unknot.spawn(work, i) for i in range(WORKERS)],
            time.sleep,  # patched: suspends the root fiber only
            lambda fibers: [f.join() for f in fibers],
            warmup,
            duration,
        )

    result: Result = unknot.run(main)
    return result


def run_gevent(warmup: float, duration: float) -> Result:
    from gevent import monkey

    monkey.patch_all()
    import gevent

    return _measure_sync(
        lambda work: [gevent.spawn(work, i) for i in range(WORKERS)],
        gevent.sleep,
        gevent.joinall,
        warmup,
        duration,
    )


def run_threads(warmup: float, duration: float) -> Result:
    import threading

    def spawn_all(work: Callable[[int], None]) -> list[threading.Thread]:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
        for t in threads:
            t.start()
        return threads

    def join_all(threads: list[threading.Thread]) -> None:
        for t in threads:
            t.join()

    return _measure_sync(spawn_all, time.sleep, join_all, warmup, duration)


async def _measure_async(warmup: float, duration: float) -> Result:
    import asyncio

    import redis.asyncio

    client = redis.asyncio.Redis(host=HOST, port=PORT)
    server_pid = int((await client.info("server"))["process_id"])
    stop = False
    counts = [0] * WORKERS

    async def worker(i: int) -> None:
        key = f"unknot:bench:{os.getpid()}:{i}"
        set_, get = client.set, client.get
        n = 0
        while not stop:
            await set_(key, n)
            await get(key)
            n += 2
            counts[i] = n

    tasks = [asyncio.create_task(worker(i)) for i in range(WORKERS)]
    await asyncio.sleep(warmup)
    start_ops, t0, cpu0 = sum(counts), time.perf_counter(), time.process_time()
    sleeps0 = _redis_sleeps(server_pid)
    await asyncio.sleep(duration)
    ops, elapsed = sum(counts) - start_ops, time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    sleeps = _per_op(sleeps0, _redis_sleeps(server_pid), ops)
    stop = True
    await asyncio.gather(*tasks)
    await client.aclose()
    return ops / elapsed, cpu / ops, sleeps


def run_asyncio(warmup: float, duration: float) -> Result:
    import asyncio

    return asyncio.run(_measure_async(warmup, duration))


def run_uvloop(warmup: float, duration: float) -> Result:
    import uvloop

    return uvloop.run(_measure_async(warmup, duration))


RUNNERS: dict[str, Callable[[float, float], Result]] = {
    "unknot": run_unknot,
    "unknot-nocede": lambda warmup, duration: run_unknot(warmup, duration, cede=False),
    "gevent": run_gevent,
    "threads": run_threads,
    "asyncio": run_asyncio,
    "uvloop": run_uvloop,
}


def run_toggle(warmup: float, duration: float, slice_: float = 0.1) -> dict[str, Result]:
    """unknot alone, with the send rule (see unknot-nocede) switched on and off every
    ``slice_`` seconds inside one process: both modes see the same machine, whose speed drifts
    too much between runs for a 10% effect to show reliably in separate processes."""
    import redis

    import unknot

    ab.assert_unknot_source(unknot)
    _set_send_rule(True)  # fails early, with the names, if this unknot lacks them
    unknot.patch()
    modes = ("cede", "nocede")

    def main() -> dict[str, Result]:
        client = redis.Redis(host=HOST, port=PORT)
        server_pid = int(client.info("server")["process_id"])
        stop = [False]
        counts = [0] * WORKERS
        fibers = [unknot.spawn(_sync_worker, client, stop, counts, i) for i in range(WORKERS)]
        time.sleep(warmup)
        acc = {name: [0, 0.0, 0.0, 0] for name in modes}  # ops, seconds, CPU, Redis sleeps
        end = time.perf_counter() + duration
        name = "cede"
        while time.perf_counter() < end:
            _set_send_rule(name == "cede")
            time.sleep(0.01)  # let the fibers of the other mode finish their operation
            ops0, t0, cpu0 = sum(counts), time.perf_counter(), time.process_time()
            naps0 = _redis_sleeps(server_pid)
            time.sleep(slice_)
            a = acc[name]
            a[0] += sum(counts) - ops0
            a[1] += time.perf_counter() - t0
            a[2] += time.process_time() - cpu0
            a[3] += _redis_sleeps(server_pid) - naps0
            name = "nocede" if name == "cede" else "cede"
        stop[0] = True
        for f in fibers:
            f.join()
        client.close()
        return {n: (a[0] / a[1], a[2] / a[0], a[3] / a[0]) for n, a in acc.items()}

    result: dict[str, Result] = unknot.run(main)
    return result


def worker_main(peer: str, warmup: float, duration: float, profile: bool) -> None:
    """In a worker: run ``peer`` (or a mode: toggle, probe-send-rule) and print JSON."""
    if peer == "probe-send-rule":
        print(json.dumps(missing_send_rule_names()))
        return
    if peer == "toggle":
        print(json.dumps(run_toggle(warmup, duration)))
        return
    if not profile:
        ops, cpu, sleeps = RUNNERS[peer](warmup, duration)
        print(json.dumps({"peer": peer, "ops": ops, "cpu": cpu, "redis_sleeps": sleeps}))
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    ops, _cpu, _sleeps = RUNNERS[peer](warmup, duration)
    profiler.disable()
    print(f"{peer}: {ops:,.0f} ops/s under cProfile (slower than unprofiled)\n")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------


def available(peer: str) -> str | None:
    """None if ``peer`` can run here, else why not (a build peer's interpreter is checked by
    `builds.verify` and its worker)."""
    kind = ab.split(peer)[0]
    needed = ["redis"] + ([PEER_PACKAGES[kind]] if kind in PEER_PACKAGES else [])
    if builds.is_build(peer):
        needed = []
    for name in needed:
        if machine.package_version(name) == "not installed":
            return f"{name} is not installed (pip install -e '.[bench]')"
    return None


def worker_argv(peer: str, args: argparse.Namespace, profile: bool = False) -> list[str]:
    """The command line of a worker for ``peer`` (a variant or a build peer runs its plain
    peer: the environment, `peer_env`, says which tree or build it imports; a build peer's
    interpreter is --unknot-python's)."""
    python = builds.python(peer, args.unknot_python)
    argv = [python, str(Path(__file__).resolve()), "--worker", builds.kind(ab.split(peer)[0])]
    argv += ["--warmup", str(args.warmup), "--duration", str(args.duration)]
    if profile:
        argv.append("--profile")
    if args.cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(args.cpu), *argv]
    return argv


def peer_env(peer: str, head: ab.Tree, base: ab.Tree | None) -> dict[str, str]:
    """The environment of ``peer``'s worker: the unknot family imports from its tree, the
    build peers from --unknot-python's install."""
    if builds.is_build(peer):
        return builds.env(peer)
    if ab.split(peer)[0] in UNKNOT_FAMILY:
        return ab.tree_of(peer, head, base).env()
    return dict(os.environ)


def lacks_send_rule(peer: str, args: argparse.Namespace, env: dict[str, str]) -> str | None:
    """For a peer that switches the send rule off: why its tree cannot (None if it can)."""
    if ab.split(peer)[0] != "unknot-nocede":
        return None
    out = subprocess.run(
        worker_argv("probe-send-rule", args),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    if out.returncode != 0:
        return f"probe failed: {out.stderr.strip()[-300:]}"
    missing = json.loads(out.stdout.strip().splitlines()[-1])
    return f"this unknot lacks {', '.join(missing)} (a diagnostic)" if missing else None


def run_worker(peer: str, args: argparse.Namespace, env: dict[str, str]) -> Result:
    out = subprocess.run(
        worker_argv(peer, args),
        capture_output=True,
        text=True,
        timeout=args.warmup + args.duration + 60,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{peer} worker failed ({out.returncode}):\n{out.stderr[-3000:]}")
    record = json.loads(out.stdout.strip().splitlines()[-1])
    return float(record["ops"]), float(record["cpu"]), float(record["redis_sleeps"])


def check_redis() -> None:
    import socket

    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
    except OSError as exc:
        sys.exit(f"Redis is not reachable on {HOST}:{PORT}: {exc}")


def report(
    results: dict[str, list[Result]], skipped: dict[str, str], peers: list[str]
) -> tuple[str, list[str]]:
    """The table (Markdown) and the target checks.

    Two views of each peer: throughput (ops/s, what the targets are about) and the client's CPU
    time per operation (user + system, all its threads), which other load on the machine
    disturbs much less than throughput. The last column is a diagnostic: how often the Redis
    server went to sleep per operation (commands arriving one by one wake it each time, and
    the client's send pays for that wake-up).
    """
    med = {p: statistics.median(r[0] for r in v) for p, v in results.items() if v}
    cpu = {p: statistics.median(r[1] for r in v) for p, v in results.items() if v}
    naps = {p: statistics.median(r[2] for r in v) for p, v in results.items() if v}
    base, base_cpu = med.get("unknot"), cpu.get("unknot")
    lines = [
        "| peer | ops/s (median) | runs | unknot / peer, ops/s | client CPU µs/op | "
        "peer / unknot, CPU | Redis sleeps / op |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for peer in peers:
        if peer in skipped:
            lines.append(f"| {peer} | unavailable: {skipped[peer]} | | | | | |")
            continue
        if peer not in med:
            continue
        runs = ", ".join(f"{r[0] / 1000:.1f}k" for r in results[peer])
        speed = f"{base / med[peer]:.2f}x" if base else "n/a"
        cost = f"{cpu[peer] / base_cpu:.2f}x" if base_cpu else "n/a"
        us = cpu[peer] * 1e6
        nap = f"{naps[peer]:.2f}" if naps[peer] >= 0 else "n/a"
        lines.append(
            f"| {peer} | {med[peer]:,.0f} | {runs} | {speed} | {us:.1f} | {cost} | {nap} |"
        )
    checks = []
    for peer, floor in TARGETS.items():
        if base and peer in med:
            ratio = base / med[peer]
            verdict = "met" if ratio >= floor else "MISSED"
            checks.append(
                f"unknot / {peer} = {ratio:.2f}x ops/s (target >= {floor}x): {verdict}; "
                f"CPU per op {peer} / unknot = {cpu[peer] / cpu['unknot']:.2f}x"
            )
    compiled, pure = (med.get(p) for p in builds.PEERS)
    if (r := builds.ratio(compiled, pure)) is not None:
        checks.append(
            f"{builds.COMPILED} / {builds.PURE} = {r:.2f}x ops/s; CPU per op compiled / pure "
            f"= {cpu[builds.COMPILED] / cpu[builds.PURE]:.2f}x"
        )
    return "\n".join(lines), checks


@contextlib.contextmanager
def _redis_pinned(cpu: int) -> Iterator[str]:
    """Pin the local Redis server (all its threads) to ``cpu`` while the block runs, so it never
    competes with the client for the client's CPU; its affinity is restored afterwards. Yields
    a description for the report (why it is not pinned, when it cannot be)."""
    if cpu < 0:
        yield "not pinned (--redis-cpu -1)"
        return
    import redis

    pid = int(redis.Redis(host=HOST, port=PORT).info("server")["process_id"])
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        saved = {tid: os.sched_getaffinity(tid) for tid in tids}
        for tid in tids:
            os.sched_setaffinity(tid, {cpu})
    except (OSError, ValueError) as exc:  # not local, not ours, or no such CPU
        yield f"not pinned ({exc})"
        return
    try:
        yield f"pid {pid}, pinned to CPU {cpu} for the run"
    finally:
        for tid, mask in saved.items():
            try:
                os.sched_setaffinity(tid, mask)
            except OSError:
                pass  # the thread has exited


def parse_args() -> argparse.Namespace:
    """The command line; ``--worker PEER`` is internal (the parent starts workers so)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help="comma-separated subset (and unknot@REF, unknot-nocede@REF with --ab REF)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per peer (interleaved)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before counting")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds counted")
    parser.add_argument("--cpu", type=int, default=1, help="CPU to pin workers to (-1: none)")
    parser.add_argument(
        "--redis-cpu",
        type=int,
        default=0,
        help="CPU to pin the local Redis server to for the run, restored after (-1: leave it)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        help=f"write the '{SECTION_TITLE}' section (with --ab: the 'A/B: TITLE' section)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the unknot worker")
    parser.add_argument(
        "--toggle",
        action="store_true",
        help="unknot only: the send rule on and off every 0.1 s in one process (see run_toggle)",
    )
    ab.add_arguments(parser, SECTION_TITLE)
    builds.add_argument(parser)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu is not None and args.cpu < 0:
        args.cpu = None
    if args.worker:
        return args
    if args.ab and (args.toggle or args.profile):
        parser.error("--ab does not combine with --toggle or --profile")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    named = [p.strip() for p in args.peers.split(",") if p.strip()]
    peers = builds.add_peers(named, args.unknot_python)
    try:
        known = builds.known(list(PEERS), args.unknot_python)
        args.peers = ab.expand_peers(peers, args.ab, UNKNOT_FAMILY, known)
    except ab.ABError as exc:
        parser.error(str(exc))
    return args


def run_toggle_parent(args: argparse.Namespace, head: ab.Tree) -> int:
    """``--toggle``: one unknot worker switching the send rule; print both modes."""
    with _redis_pinned(args.redis_cpu):
        argv = worker_argv("toggle", args)
        out = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=head.env()
        )
    if out.returncode != 0:
        sys.exit(f"toggle worker failed:\n{out.stderr[-3000:]}")
    modes = json.loads(out.stdout.strip().splitlines()[-1])
    for name, (ops, cpu, naps) in modes.items():
        us = cpu * 1e6
        print(f"{name:7} {ops:>10,.0f} ops/s  {us:6.1f} µs CPU/op  Redis sleeps/op {naps:.2f}")
    print(f"cede / nocede = {modes['cede'][0] / modes['nocede'][0]:.2f}x ops/s")
    return 0


def _ops_label(value: float) -> str:
    return f"{value:,.0f}"


def _micros_label(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def ab_comparisons(
    results: dict[str, list[Result]], args: argparse.Namespace
) -> list[ab.Comparison]:
    """Per (head, base) pair that ran: ops/s and client CPU per operation, round by round (a
    worker failure ends the run, so every measured peer has one result per round)."""
    out = []
    for head_peer, base_peer in ab.pairs(list(results), args.ab):
        label = "" if head_peer == ab.SUBJECT else f"{head_peer}: "
        for index, name, unit, higher, fmt in (
            (0, "ops/s", "ops/s", True, _ops_label),
            (1, "client CPU per op", "µs", False, _micros_label),
        ):
            cell = ab.Cell(
                name=label + name,
                unit=unit,
                higher_is_better=higher,
                head=[r[index] for r in results[head_peer]],
                base=[r[index] for r in results[base_peer]],
                fmt=fmt,
            )
            out.append(ab.compare(cell))
    return out


def measure(
    args: argparse.Namespace, head: ab.Tree, base: ab.Tree | None
) -> tuple[dict[str, list[Result]], dict[str, str], str]:
    """Every peer, ``--repeat`` rounds, order rotated per round: (results, skipped, how the
    Redis server was pinned)."""
    skipped = {p: why for p in args.peers if (why := available(p))}
    envs = {p: peer_env(p, head, base) for p in args.peers}
    for peer in args.peers:
        if ab.split(peer)[0] in UNKNOT_FAMILY and peer not in skipped:
            print(f"{peer}: imports {ab.verify_import(ab.tree_of(peer, head, base))}")
            if why := lacks_send_rule(peer, args, envs[peer]):
                skipped[peer] = why
                print(f"{peer}: skipped, {why}")
        elif builds.is_build(peer):
            print(f"{peer}: imports {builds.verify(peer, args.unknot_python)}")
    results: dict[str, list[Result]] = {p: [] for p in args.peers if p not in skipped}
    width = max(len(p) for p in args.peers)
    with _redis_pinned(args.redis_cpu) as redis_pinning:
        print(f"Redis server: {redis_pinning}", flush=True)
        order = list(results)
        for round_ in range(args.repeat):
            k = round_ % len(order)
            for peer in order[k:] + order[:k]:
                ops, cpu, sleeps = run_worker(peer, args, envs[peer])
                results[peer].append((ops, cpu, sleeps))
                print(
                    f"round {round_ + 1}/{args.repeat}  {peer:{width}} {ops:>10,.0f} ops/s"
                    f"  {cpu * 1e6:6.1f} µs CPU/op  Redis sleeps/op {sleeps:.2f}",
                    flush=True,
                )
    return results, skipped, redis_pinning


def main() -> int:
    args = parse_args()
    if args.worker:
        worker_main(args.worker, args.warmup, args.duration, args.profile)
        return 0
    check_redis()
    head = ab.this_checkout()
    if args.toggle:
        return run_toggle_parent(args, head)
    if args.profile:
        argv = worker_argv("unknot", args, profile=True)
        return subprocess.run(argv, env=head.env()).returncode

    load_before = _loadavg()
    base = None
    try:
        with contextlib.ExitStack() as stack:
            if args.ab:
                base = stack.enter_context(ab.base_checkout(args.ab))
            results, skipped, redis_pinning = measure(args, head, base)
    except ab.ABError as exc:
        print(f"A/B: {exc}", file=sys.stderr)
        return 2
    except builds.BuildError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    table, checks = report(results, skipped, args.peers)
    print()
    print(table)
    print()
    for line in checks:
        print(line)
    comparisons = ab_comparisons(results, args)
    if base is not None:
        print(f"\nA/B: head = this checkout ({head.revision}), base = {args.ab} ({base.revision})")
        print(ab.console_table(ab.rows(comparisons, head, base)))
        print(ab.summary(comparisons))
    if args.markdown:
        facts = machine.describe(["unknot", "redis", "gevent", "uvloop", "greenlet"])
        facts.update(builds.describe(args.unknot_python))
        facts["Redis"] = _redis_version()
        facts["Redis server process"] = redis_pinning
        facts["Load average (1 min) before / after"] = f"{load_before} / {_loadavg()}"
        setup = (
            "50 workers each looping `SET`/`GET` on their own key through one redis-py client "
            "(redis.asyncio for the asyncio peers), every peer in its own interpreter pinned to "
            f"CPU {args.cpu}, {args.warmup} s warm-up, {args.duration} s counted"
        )
        if base is not None:
            facts.pop("Checkout", None)
            intro = (
                f"`benchmarks/drivers.py --ab {args.ab}`: {setup}; this checkout's unknot "
                f"(head) and commit {base.revision}'s (base), {args.repeat} rounds, each round "
                "every peer once (order rotated per round)."
            )
            notes = [f"{peer} skipped: {why}" for peer, why in skipped.items()]
            extra = ["### A/B: every peer, same run", "", table, ""]
            text = ab.section(args.ab_title, intro, head, base, comparisons, facts, notes, extra)
            title = f"A/B: {args.ab_title}"
        else:
            section = [f"## {SECTION_TITLE}", ""]
            section.append(
                f"`benchmarks/drivers.py`: {setup}, median of {args.repeat} interleaved runs."
            )
            section += ["", table, ""]
            section += [f"- {line}" for line in checks]
            section += ["", NOTE]
            section += [""] + [f"- {k}: {v}" for k, v in facts.items()]
            text, title = "\n".join(section) + "\n", SECTION_TITLE
        mdsection.replace_section(args.markdown, title, text)
        print(f"\nwrote the '{title}' section of {args.markdown}")
    return 0


NOTE = (
    "How to read it: unknot, unknot-nocede, gevent and threads run the same blocking redis-py "
    "client; asyncio and uvloop run redis.asyncio, a different client. The client is "
    "CPU-bound, so CPU per operation tracks ops/s, and other load on this 2-core machine (see "
    "the load average below) inflates both. *Redis sleeps / op* counts how often the server "
    "went idle per command; a command that finds it asleep makes the client's `send` pay for "
    "a cross-CPU wake-up. Written one by one (gevent, threads, unknot-nocede), the blocking "
    "client's commands find Redis asleep nearly every time. unknot's blocking client sends "
    "first let the other ready fibers run, and the hub then makes the sends that waited back "
    "to back (docs/reference.md, `unknot.socket`): the commands of the fibers woken together "
    "reach Redis together, as redis.asyncio's do on an asyncio loop, and Redis stays awake. "
    "unknot-nocede is unknot with that rule switched off."
)


def _loadavg() -> str:
    """The 1-minute load average: other work on the machine disturbs every number here."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def _redis_version() -> str:
    import redis

    try:
        return str(redis.Redis(host=HOST, port=PORT).info("server")["redis_version"])
    except Exception as exc:  # noqa: BLE001 - only for the record
        return f"unknown ({exc})"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
