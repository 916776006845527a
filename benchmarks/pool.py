"""``Pool(20).map`` and ``imap`` over 200,000 items: unknot against gevent, in one run.

Each peer maps the same function over ``range(--items)`` with a pool of ``--size`` (20), in its
library's own idiom (``unknot.Pool(20).map(fn, items)`` inside `unknot.run`;
``gevent.pool.Pool(20).map(fn, items)``; ``imap`` consumed by a ``for`` loop). Two functions:

* **trivial**: ``lambda x: x * 2``, the pool's own overhead per item;
* **sleep(0)**: ``sleep(0)`` then ``x * 2``, every call yields to the other fibers once.

Every measurement is one fresh interpreter (``pool.py --worker PEER CASE``), pinned to CPU
``--cpu`` with ``taskset`` when it is available. The parent runs ``--rounds`` rounds; each round
runs every case for every peer once, the peers' order rotated per round, and reports the
medians and the ratios unknot / gevent. Targets (from the issue): time and peak memory at most
1.0x gevent's.

Peak memory is the growth of the process's peak RSS over a baseline read in the same process
after imports and a small warm-up map, just before the timed one. RSS rather than
``tracemalloc``: it counts everything the work costs, including the greenlets' C-level stack
copies and allocator overhead, and it costs nothing while the work runs, so one run gives both
the time and the memory (``tracemalloc`` slows Python code several times over, which would need
separate runs, and it misses memory not allocated through Python's allocators). The peak is
the kernel's high-water mark: on Linux it is first reset to the current RSS (``5`` written to
``/proc/self/clear_refs``) and read back as ``VmHWM`` (``/proc/self/status``), so the baseline
is the RSS just before the work. ``getrusage(RUSAGE_SELF).ru_maxrss`` is the fallback; it
cannot be reset, so growth that stays below the peak reached while importing is invisible
with it (an ``imap`` in constant memory then shows 0 for both peers).

Examples::

    python benchmarks/pool.py                          # the table (about a minute)
    python benchmarks/pool.py --markdown BENCHMARKS.md # ...and its "Pool" section
    python benchmarks/pool.py --rounds 3 --items 50000 --cases map-trivial,imap-sleep0
    python benchmarks/pool.py --profile imap-trivial   # cProfile of the unknot worker
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# After the standard library: benchmarks/http.py is named like the http package.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]
from benchlib import ab, machine, mdsection  # noqa: E402

SECTION_TITLE = "Pool"
PEERS = ("unknot", "gevent")
CASES = ("map-trivial", "map-sleep0", "imap-trivial", "imap-sleep0")
WARMUP_ITEMS = 2_000
TARGET = 1.0  # unknot / gevent, a ceiling for both time and memory
#: Peak-memory growth this small is noise (allocator arenas, a few pages), not a difference.
MEMORY_GRAIN = 256 * 1024
WORKER_TIMEOUT = 600.0

#: What one worker measures: seconds of the timed map, and peak RSS growth in bytes.
Result = tuple[float, float]


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``), or None."""
    try:
        with open("/proc/self/status") as f:
            found = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def rss_baseline(reset: bool) -> int:
    """Bytes: the current RSS after a reset of the peak, else the peak so far (``ru_maxrss``)."""
    kib = _status_kib("VmRSS") if reset else None
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib * 1024


def rss_peak(reset: bool) -> int:
    """Bytes: the peak RSS since the reset, else since the process started."""
    kib = _status_kib("VmHWM") if reset else None
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024


def functions(sleep: Callable[[float], None]) -> dict[str, Callable[[int], int]]:
    """The two mapped functions, for a library's ``sleep``."""

    def yielding(x: int) -> int:
        sleep(0)
        return x * 2

    return {"trivial": lambda x: x * 2, "sleep0": yielding}


def measure(
    pool_map: Callable[[Callable[[int], int], range], list[int]],
    pool_imap: Callable[[Callable[[int], int], range], Any],
    fn: Callable[[int], int],
    kind: str,
    items: int,
) -> Result:
    """Warm up, read the baseline, then time one map (or imap, consumed) of ``items``."""
    n = items
    if kind == "map":
        assert pool_map(fn, range(WARMUP_ITEMS))[-1] == 2 * (WARMUP_ITEMS - 1)
        gc.collect()
        reset = reset_peak_rss()
        baseline = rss_baseline(reset)
        start = time.perf_counter()
        results = pool_map(fn, range(n))
        elapsed = time.perf_counter() - start
        assert len(results) == n and results[-1] == 2 * (n - 1)
    else:
        assert sum(1 for _ in pool_imap(fn, range(WARMUP_ITEMS))) == WARMUP_ITEMS
        gc.collect()
        reset = reset_peak_rss()
        baseline = rss_baseline(reset)
        start = time.perf_counter()
        count = 0
        last = None
        for last in pool_imap(fn, range(n)):  # noqa: B007 - checked after the loop
            count += 1
        elapsed = time.perf_counter() - start
        assert count == n and last == 2 * (n - 1)
    return elapsed, float(max(0, rss_peak(reset) - baseline))


def run_unknot(case: str, items: int, size: int) -> Result:
    import unknot

    ab.assert_unknot_source(unknot)
    kind, fn_name = case.split("-")
    fn = functions(unknot.sleep)[fn_name]

    def main() -> Result:
        pool = unknot.Pool(size)
        return measure(pool.map, pool.imap, fn, kind, items)

    result: Result = unknot.run(main)
    return result


def run_gevent(case: str, items: int, size: int) -> Result:
    import gevent
    import gevent.pool

    kind, fn_name = case.split("-")
    fn = functions(gevent.sleep)[fn_name]
    pool = gevent.pool.Pool(size)
    return measure(pool.map, pool.imap, fn, kind, items)


RUNNERS: dict[str, Callable[[str, int, int], Result]] = {
    "unknot": run_unknot,
    "gevent": run_gevent,
}


def worker_main(peer: str, case: str, items: int, size: int, profile: bool) -> None:
    """In a worker: measure ``case`` for ``peer`` and print one JSON line."""
    if not profile:
        seconds, peak = RUNNERS[peer](case, items, size)
        print(json.dumps({"peer": peer, "case": case, "seconds": seconds, "peak": peak}))
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    seconds, _peak = RUNNERS[peer](case, items, size)
    profiler.disable()
    print(f"{peer} {case}: {seconds:.3f} s under cProfile (slower than unprofiled)\n")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(20)


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------


def worker_argv(peer: str, case: str, args: argparse.Namespace, profile: bool = False) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", peer, case]
    argv += ["--items", str(args.items), "--size", str(args.size)]
    if profile:
        argv.append("--profile-worker")
    if args.cpu is not None and args.cpu >= 0 and shutil.which("taskset"):
        argv = ["taskset", "-c", str(args.cpu), *argv]
    return argv


def run_worker(peer: str, case: str, args: argparse.Namespace, env: dict[str, str]) -> Result:
    out = subprocess.run(
        worker_argv(peer, case, args),
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{peer} {case} worker failed ({out.returncode}):\n{out.stderr[-3000:]}")
    record = json.loads(out.stdout.strip().splitlines()[-1])
    return float(record["seconds"]), float(record["peak"])


def available(peer: str) -> str | None:
    """None if ``peer`` can run here, else why not."""
    if peer == "gevent" and machine.package_version("gevent") == "not installed":
        return "gevent is not installed (pip install -e '.[bench]')"
    return None


def collect(args: argparse.Namespace, peers: list[str]) -> dict[tuple[str, str], list[Result]]:
    """Every case for every peer, ``--rounds`` times, the peers' order rotated per round."""
    envs = {p: ab.this_checkout().env() if p == "unknot" else dict(os.environ) for p in peers}
    results: dict[tuple[str, str], list[Result]] = {(p, c): [] for p in peers for c in args.cases}
    for round_ in range(args.rounds):
        k = round_ % len(peers)
        order = peers[k:] + peers[:k]
        for case in args.cases:
            for peer in order:
                seconds, peak = run_worker(peer, case, args, envs[peer])
                results[peer, case].append((seconds, peak))
                print(
                    f"round {round_ + 1}/{args.rounds}  {case:13} {peer:7} {seconds:8.3f} s"
                    f"  peak +{peak / 1024:9,.0f} KiB",
                    flush=True,
                )
    return results


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def report(
    results: dict[tuple[str, str], list[Result]], cases: list[str], peers: list[str]
) -> tuple[str, list[str]]:
    """The Markdown table and one verdict line per case."""

    def med(peer: str, case: str, i: int) -> float | None:
        runs = results.get((peer, case))
        return statistics.median(r[i] for r in runs) if runs else None

    lines = [
        "| case | unknot s | gevent s | time unknot / gevent | unknot peak KiB "
        "| gevent peak KiB | memory unknot / gevent |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    checks = []
    for case in cases:
        u_t, g_t = med("unknot", case, 0), med("gevent", case, 0)
        u_m, g_m = med("unknot", case, 1), med("gevent", case, 1)
        t_ratio = _ratio(u_t, g_t)
        # Below the grain both are flat: a ratio of two noises means nothing.
        flat = u_m is not None and g_m is not None and max(u_m, g_m) < MEMORY_GRAIN
        m_ratio = None if flat else _ratio(u_m, g_m)

        def cell(v: float | None, fmt: str, suffix: str = "") -> str:
            return format(v, fmt) + suffix if v is not None else "n/a"

        memory = "both flat" if flat else cell(m_ratio, ".3f", "x")
        lines.append(
            f"| {case} | {cell(u_t, '.3f')} | {cell(g_t, '.3f')} | {cell(t_ratio, '.3f', 'x')} "
            f"| {cell(u_m and u_m / 1024, ',.0f')} | {cell(g_m and g_m / 1024, ',.0f')} "
            f"| {memory} |"
        )
        if t_ratio is not None and u_m is not None and g_m is not None:
            memory_ok = u_m <= g_m + MEMORY_GRAIN
            ok = t_ratio <= TARGET and memory_ok
            memory_text = (
                f"peak memory +{u_m / 1024:,.0f} KiB vs +{g_m / 1024:,.0f} KiB (both flat)"
                if flat
                else f"peak memory {m_ratio:.3f}x gevent's"
            )
            checks.append(
                f"{case}: time {t_ratio:.3f}x gevent's, {memory_text} (target <= {TARGET}x for "
                f"both, memory within {MEMORY_GRAIN // 1024} KiB): {'met' if ok else 'MISSED'}"
            )
    return "\n".join(lines), checks


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--items", type=int, default=200_000, help="items mapped (200,000)")
    parser.add_argument("--size", type=int, default=20, help="pool size (20)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {CASES}")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated: {PEERS}")
    parser.add_argument("--cpu", type=int, default=1, help="CPU to pin workers to (-1: none)")
    parser.add_argument(
        "--markdown", type=Path, metavar="FILE", help="write the 'Pool' section of FILE"
    )
    parser.add_argument(
        "--profile", metavar="CASE", help="run the unknot worker for CASE under cProfile"
    )
    parser.add_argument("--worker", nargs=2, metavar=("PEER", "CASE"), help=argparse.SUPPRESS)
    parser.add_argument("--profile-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cases = [c for c in args.cases.split(",") if c]
    args.peers = [p for p in args.peers.split(",") if p]
    for case in args.cases + ([args.profile] if args.profile else []):
        if case not in CASES:
            parser.error(f"unknown case {case!r} (known: {', '.join(CASES)})")
    for peer in args.peers:
        if peer not in PEERS:
            parser.error(f"unknown peer {peer!r} (known: {', '.join(PEERS)})")
    if args.rounds < 1 or args.items < 1 or args.size < 1:
        parser.error("--rounds, --items and --size must be positive")
    return args


def main() -> int:
    args = parse_args()
    if args.worker:
        peer, case = args.worker
        worker_main(peer, case, args.items, args.size, profile=args.profile_worker)
        return 0
    if args.profile:
        argv = worker_argv("unknot", args.profile, args, profile=True)
        return subprocess.run(argv, env=ab.this_checkout().env()).returncode
    skipped = {p: why for p in args.peers if (why := available(p))}
    for peer, why in skipped.items():
        print(f"{peer}: skipped, {why}")
    peers = [p for p in args.peers if p not in skipped]
    if "unknot" in peers:
        print(f"unknot: imports {ab.verify_import(ab.this_checkout())}")
    load_before = _loadavg()
    results = collect(args, peers)
    table, checks = report(results, args.cases, peers)
    print()
    print(table)
    print()
    for line in checks:
        print(line)
    if args.markdown:
        facts = machine.describe(["unknot", "gevent", "greenlet"])
        facts["Load average (1 min) before / after"] = f"{load_before} / {_loadavg()}"
        pinned = f"pinned to CPU {args.cpu}" if args.cpu >= 0 else "not pinned"
        section = [
            f"## {SECTION_TITLE}",
            "",
            f"`benchmarks/pool.py`: `Pool({args.size}).map` and `imap` (consumed by a `for` loop) "
            f"over `range({args.items:,})`, unknot against gevent; each measurement in a fresh "
            f"interpreter {pinned}, {args.rounds} rounds with the peers' order rotated, medians. "
            "*trivial* maps `lambda x: x * 2`; *sleep0* calls the library's `sleep(0)` first. "
            "Peak memory: growth of the process's peak RSS over its RSS just before the timed "
            "map (after a warm-up map), read as the kernel's high-water mark `VmHWM` reset "
            "through `/proc/self/clear_refs` (fallback: `ru_maxrss`).",
            "",
            table,
            "",
            *[f"- {line}" for line in checks],
            *[f"- {peer} skipped: {why}" for peer, why in skipped.items()],
            "",
            *[f"- {k}: {v}" for k, v in facts.items()],
        ]
        mdsection.replace_section(args.markdown, SECTION_TITLE, "\n".join(section) + "\n")
        print(f"\nwrote the '{SECTION_TITLE}' section of {args.markdown}")
    return 0


def _loadavg() -> str:
    """The 1-minute load average: other work on the machine disturbs every number here."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
