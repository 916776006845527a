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

``--profile`` runs the unknot worker once under cProfile instead and prints the top functions.
``--toggle`` runs unknot alone, switching the rule that the unknot-nocede row turns off (a
blocking client send goes after the ready fibers) on and off every 0.1 s in one process, and
reports both modes: the machine's drift between runs cannot bias that comparison.

Examples::

    python benchmarks/drivers.py                         # the table (about a minute)
    python benchmarks/drivers.py --markdown BENCHMARKS.md
    python benchmarks/drivers.py --profile               # where unknot's time goes
    python benchmarks/drivers.py --toggle --duration 10  # the send rule, on/off in one process
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SECTION_TITLE = "Drivers: redis-py, 50 workers"
PEERS = ("unknot", "unknot-nocede", "gevent", "threads", "asyncio", "uvloop")
PEER_PACKAGES = {"gevent": "gevent", "uvloop": "uvloop"}
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


_SEND_RULE_ON: dict[str, Any] = {}


def _set_send_rule(on: bool) -> None:
    """Switch unknot's rule that a blocking client send goes after the ready fibers (batched
    by the hub) on or off: off, every send is made at once, as before the rule existed."""
    import unknot.socket
    import unknot.ssl

    if not _SEND_RULE_ON:
        _SEND_RULE_ON.update(after_ready=unknot.socket.socket._after_ready, cede=unknot.ssl._cede)
    if on:
        after_ready, cede = _SEND_RULE_ON["after_ready"], _SEND_RULE_ON["cede"]
    else:
        after_ready, cede = (lambda self, data, flags: 0), (lambda: None)
    unknot.socket.socket._after_ready = after_ready  # type: ignore[method-assign]
    unknot.socket._cede = unknot.ssl._cede = cede


def run_unknot(warmup: float, duration: float, cede: bool = True) -> Result:
    import unknot

    unknot.patch()
    _set_send_rule(cede)

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
    """None if ``peer`` can run here, else why not."""
    needed = ["redis"] + ([PEER_PACKAGES[peer]] if peer in PEER_PACKAGES else [])
    for name in needed:
        if machine.package_version(name) == "not installed":
            return f"{name} is not installed (pip install -e '.[bench]')"
    return None


def worker_argv(peer: str, args: argparse.Namespace, profile: bool = False) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", peer]
    argv += ["--warmup", str(args.warmup), "--duration", str(args.duration)]
    if profile:
        argv.append("--profile")
    if args.cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(args.cpu), *argv]
    return argv


def run_worker(peer: str, args: argparse.Namespace) -> Result:
    out = subprocess.run(
        worker_argv(peer, args),
        capture_output=True,
        text=True,
        timeout=args.warmup + args.duration + 60,
        stdin=subprocess.DEVNULL,
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


def report(results: dict[str, list[Result]], skipped: dict[str, str]) -> tuple[str, list[str]]:
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
    for peer in PEERS:
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


def update_markdown(path: Path, section: str) -> None:
    """Replace this benchmark's section of ``path`` (up to the next level-2 header), or add it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(
        rf"^## {re.escape(SECTION_TITLE)}[ \t]*\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL
    )
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
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
    parser.add_argument("--markdown", type=Path, help=f"write the '{SECTION_TITLE}' section")
    parser.add_argument("--profile", action="store_true", help="cProfile the unknot worker")
    parser.add_argument(
        "--toggle",
        action="store_true",
        help="unknot only: the send rule on and off every 0.1 s in one process (see run_toggle)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu is not None and args.cpu < 0:
        args.cpu = None
    if args.worker:
        worker_main(args.worker, args.warmup, args.duration, args.profile)
        return 0
    check_redis()
    if args.toggle:
        with _redis_pinned(args.redis_cpu):
            argv = worker_argv("toggle", args)
            out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            sys.exit(f"toggle worker failed:\n{out.stderr[-3000:]}")
        modes = json.loads(out.stdout.strip().splitlines()[-1])
        for name, (ops, cpu, naps) in modes.items():
            us = cpu * 1e6
            print(f"{name:7} {ops:>10,.0f} ops/s  {us:6.1f} µs CPU/op  Redis sleeps/op {naps:.2f}")
        print(f"cede / nocede = {modes['cede'][0] / modes['nocede'][0]:.2f}x ops/s")
        return 0
    if args.profile:
        return subprocess.run(worker_argv("unknot", args, profile=True)).returncode

    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {sorted(unknown)}")
    skipped = {p: why for p in peers if (why := available(p))}
    load_before = _loadavg()
    results: dict[str, list[Result]] = {p: [] for p in peers if p not in skipped}
    with _redis_pinned(args.redis_cpu) as redis_pinning:
        print(f"Redis server: {redis_pinning}", flush=True)
        order = list(results)
        for round_ in range(args.repeat):
            k = round_ % len(order)
            for peer in order[k:] + order[:k]:
                ops, cpu, sleeps = run_worker(peer, args)
                results[peer].append((ops, cpu, sleeps))
                print(
                    f"round {round_ + 1}/{args.repeat}  {peer:13} {ops:>10,.0f} ops/s"
                    f"  {cpu * 1e6:6.1f} µs CPU/op  Redis sleeps/op {sleeps:.2f}",
                    flush=True,
                )
    table, checks = report(results, skipped)
    print()
    print(table)
    print()
    for line in checks:
        print(line)
    if args.markdown:
        facts = machine.describe(["unknot", "redis", "gevent", "uvloop", "greenlet"])
        facts["Redis"] = _redis_version()
        facts["Redis server process"] = redis_pinning
        facts["Load average (1 min) before / after"] = f"{load_before} / {_loadavg()}"
        section = [f"## {SECTION_TITLE}", ""]
        section.append(
            "`benchmarks/drivers.py`: 50 workers each looping `SET`/`GET` on their own key "
            "through one redis-py client (redis.asyncio for the asyncio peers), every peer in "
            f"its own interpreter pinned to CPU {args.cpu}, {args.warmup} s warm-up, "
            f"{args.duration} s counted, median of {args.repeat} interleaved runs."
        )
        section += ["", table, ""]
        section += [f"- {line}" for line in checks]
        section += ["", NOTE]
        section += [""] + [f"- {k}: {v}" for k, v in facts.items()]
        update_markdown(args.markdown, "\n".join(section) + "\n")
        print(f"\nwrote the '{SECTION_TITLE}' section of {args.markdown}")
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
    sys.exit(main())
