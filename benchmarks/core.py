"""Core runtime micro-benchmarks: unknot against gevent and asyncio, all in one run.

What is measured, for each peer (the library's own idiom for each job):

* **switch**: two fibers hand control back and forth through a one-shot wake-up primitive
  (unknot ``Event``, gevent ``Event``, asyncio ``Future``); hand-offs per second.
* **sleep(0)**: every fiber calls ``sleep(0)`` in a loop, with 2 and with 100 fibers; total
  yields per second.
* **spawn+join**: spawn a fiber that returns at once and join it, one at a time; and spawn
  10,000, then join them all. Fibers per second.
* **memory per idle fiber**: 10,000 fibers each blocked at stack depth 10 (a recursive function
  that waits on an ``Event`` at the bottom); growth of RSS (``/proc/self/statm``) and of
  ``tracemalloc``'s traced memory after ``gc.collect()``, divided by 10,000.

Every measurement runs in a fresh interpreter (``core.py --worker PEER BENCH``), pinned to one
CPU with ``taskset`` when it is available, so peers cannot disturb each other. The parent runs
every peer, repeats each measurement (interleaving the peers, their order rotated each round)
and reports the median, with the ratios unknot/gevent and unknot/asyncio. Inside a worker each
timed loop first calibrates its iteration count (which also warms it up), then runs three times
for ``--min-time`` seconds in all, and the fastest of the three counts.

Examples::

    python benchmarks/core.py                      # the table (about two minutes)
    python benchmarks/core.py --markdown           # ...and the "Core" section of BENCHMARKS.md
    python benchmarks/core.py --benches spawn-join,memory --repeat 3
    python benchmarks/core.py --ab HEAD~1 --peers unknot --repeat 9 --markdown  # an A/B

``--ab REF`` adds the peer ``unknot@REF``, the unknot worker run with commit REF's ``src/``,
alternating with this checkout's in every round, and reports the A/B table (with
``--markdown``: the "A/B: Core" section instead of "Core"; see ``benchlib/ab.py``). The
``unknot`` peer always imports from this checkout's ``src/``.

``--unknot-python PY`` adds the peers ``unknot-compiled`` and ``unknot-pure``: the unknot worker
run by the interpreter PY with the unknot installed in PY's environment (no ``PYTHONPATH``), as
installed (its mypyc build, docs/compiled.md) and with ``UNKNOT_PURE=1``; each worker checks
``unknot.compiled`` (``benchlib/builds.py``), and the report adds a compiled / pure column::

    python benchmarks/core.py --unknot-python .venv-compiled/bin/python --peers gevent
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import ab, builds, mdsection
from benchlib.machine import cpu_model, git_revision, package_version

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MARKDOWN = REPO / "BENCHMARKS.md"
SECTION_TITLE = "Core"

PEERS = ("unknot", "gevent", "asyncio")
PEER_MODULES = {"unknot": "unknot", "gevent": "gevent", "asyncio": "asyncio"}
UNKNOT_FAMILY = ("unknot",)  # the peers that can also run from the --ab commit

BATCH = 10_000  # fibers per batch in spawn-batch
IDLE_FIBERS = 10_000  # fibers kept blocked in the memory benchmark
IDLE_DEPTH = 10  # stack depth (Python frames of the recursive function) they block at
SLEEPERS = (2, 100)  # fiber counts for the sleep(0) benchmark
WORKER_TIMEOUT = 120.0  # seconds; a worker taking longer is reported as failed


# ---------------------------------------------------------------------------------------------
# What is reported
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One row of the report."""

    label: str
    unit: str
    higher_is_better: bool
    #: The unknot/gevent ratio the issue sets as a target, if any (a floor for throughput, a
    #: ceiling for memory).
    target_vs_gevent: float | None = None


METRICS: dict[str, Metric] = {
    "switch": Metric("switch (2 fibers, wake/wait hand-off)", "switches/s", True),
    "sleep0-2": Metric("sleep(0), 2 fibers", "yields/s", True),
    "sleep0-100": Metric("sleep(0), 100 fibers", "yields/s", True),
    "spawn-join": Metric("spawn+join, one at a time", "fibers/s", True, 1.0),
    "spawn-batch": Metric(f"spawn {BATCH:,} then join all", "fibers/s", True, 1.0),
    "mem-rss": Metric("memory per idle fiber, RSS", "bytes", False, 1.0),
    "mem-traced": Metric("memory per idle fiber, tracemalloc", "bytes", False, 1.0),
}

#: Worker benchmarks (one subprocess each) and the metrics each one produces.
BENCHES: dict[str, tuple[str, ...]] = {
    "switch": ("switch",),
    "sleep0": ("sleep0-2", "sleep0-100"),
    "spawn-join": ("spawn-join",),
    "spawn-batch": ("spawn-batch",),
    "memory": ("mem-rss", "mem-traced"),
}

#: How each peer implements the switch benchmark's hand-off, for the report.
SWITCH_PRIMITIVE = {
    "unknot": "`unknot.Event` (a fresh one per hand-off: `set()` / `wait()`)",
    "gevent": "`gevent.event.Event` (a fresh one per hand-off: `set()` / `wait()`)",
    "asyncio": "`loop.create_future()` (a fresh one per hand-off: `set_result()` / `await`)",
}


# ---------------------------------------------------------------------------------------------
# Worker side: timing and memory helpers shared by the peers
# ---------------------------------------------------------------------------------------------


def rate(
    timed: Callable[[int], float], min_time: float, ops_per_unit: int = 1, runs: int = 3
) -> float:
    """Operations per second of ``timed(n)``, which runs ``n`` units and returns the seconds taken.

    Grows ``n`` until one call takes a tenth of ``min_time`` (calibration, which also warms the
    code up), then makes ``runs`` calls sized to take ``min_time`` together and keeps the
    fastest: on a shared machine the fastest run is the one least disturbed by others.
    """
    n = 1
    while True:
        elapsed = timed(n)
        if elapsed >= min_time / 10:
            break
        n *= 2 if elapsed > min_time / 100 else 10
    n = max(1, round(n * min_time / runs / elapsed))
    return n * ops_per_unit / min(timed(n) for _ in range(runs))


def rss_bytes() -> int:
    """The resident set size of this process, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


class IdleMemory:
    """Measures memory per idle fiber in two passes: RSS first, then ``tracemalloc``.

    The passes are separate because tracemalloc's own bookkeeping would inflate RSS. Call
    `begin_rss`, create the blocked fibers, `end_rss`, release them; then the same with
    `begin_traced` / `end_traced`. Usable from plain and from async code.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.result: dict[str, float] = {}
        self._start = 0

    def begin_rss(self) -> None:
        gc.collect()
        self._start = rss_bytes()

    def end_rss(self) -> None:
        gc.collect()
        self.result["mem-rss"] = (rss_bytes() - self._start) / self.count

    def begin_traced(self) -> None:
        gc.collect()
        tracemalloc.start()
        self._start = tracemalloc.get_traced_memory()[0]

    def end_traced(self) -> None:
        gc.collect()
        self.result["mem-traced"] = (tracemalloc.get_traced_memory()[0] - self._start) / self.count
        tracemalloc.stop()


def _return_at_once() -> None:
    """The body of the fibers in the spawn benchmarks."""


async def _areturn_at_once() -> None:
    """The body of the tasks in the asyncio spawn benchmarks."""


# ---------------------------------------------------------------------------------------------
# The peers. Each method runs its loop inside the library's runtime and returns seconds taken
# (or, for memory, bytes per fiber); loops bind hot names to locals the same way in every peer.
# ---------------------------------------------------------------------------------------------


class AsyncioPeer:
    """asyncio: tasks made with `asyncio.create_task` and awaited, on the default event loop."""

    def __init__(self) -> None:
        import asyncio

        self.asyncio = asyncio

    def switch(self, rounds: int) -> float:
        asyncio = self.asyncio

        async def relay(rounds: int, slot: list[Any]) -> None:
            new_future = asyncio.get_running_loop().create_future
            for _ in range(rounds):
                mine = new_future()
                partner, slot[0] = slot[0], mine
                partner.set_result(None)
                await mine
            if not slot[0].done():
                slot[0].set_result(None)

        async def main() -> float:
            slot = [asyncio.get_running_loop().create_future()]
            start = time.perf_counter()
            tasks = [asyncio.create_task(relay(rounds, slot)) for _ in range(2)]
            for t in tasks:
                await t
            return time.perf_counter() - start

        return asyncio.run(main())

    def sleep0(self, fibers: int, rounds: int) -> float:
        asyncio = self.asyncio

        async def yielder(n: int) -> None:
            sleep = asyncio.sleep
            for _ in range(n):
                await sleep(0)

        async def main() -> float:
            start = time.perf_counter()
            tasks = [asyncio.create_task(yielder(rounds)) for _ in range(fibers)]
            for t in tasks:
                await t
            return time.perf_counter() - start

        return asyncio.run(main())

    def spawn_join(self, n: int) -> float:
        asyncio = self.asyncio

        async def main() -> float:
            create_task = asyncio.create_task
            start = time.perf_counter()
            for _ in range(n):
                await create_task(_areturn_at_once())
            return time.perf_counter() - start

        return asyncio.run(main())

    def spawn_batch(self, batches: int) -> float:
        asyncio = self.asyncio

        async def main() -> float:
            create_task = asyncio.create_task
            start = time.perf_counter()
            for _ in range(batches):
                tasks = [create_task(_areturn_at_once()) for _ in range(BATCH)]
                for t in tasks:
                    await t
            return time.perf_counter() - start

        return asyncio.run(main())

    def memory(self, count: int) -> dict[str, float]:
        asyncio = self.asyncio
        probe = IdleMemory(count)

        async def descend(depth: int, event: Any, parked: list[int]) -> None:
            if depth > 1:
                return await descend(depth - 1, event, parked)
            parked[0] += 1
            await event.wait()

        async def park_all() -> Callable[[], Any]:
            event, parked = asyncio.Event(), [0]
            tasks = [asyncio.create_task(descend(IDLE_DEPTH, event, parked)) for _ in range(count)]
            while parked[0] < count:
                await asyncio.sleep(0)

            async def release() -> None:
                event.set()
                for t in tasks:
                    await t

            return release

        async def main() -> None:
            probe.begin_rss()
            release = await park_all()
            probe.end_rss()
            await release()
            probe.begin_traced()
            release = await park_all()
            probe.end_traced()
            await release()

        asyncio.run(main())
        return probe.result


class GreenletPeer:
    """The peers whose fibers are greenlets with ``spawn``, ``join``, ``sleep`` and ``Event``.

    unknot and gevent share these bodies, so that they measure the same code. They run in the
    calling greenlet; a subclass sets the three names (and may run the bodies elsewhere).
    """

    spawn: Callable[..., Any]
    sleep: Callable[[float], None]
    Event: Callable[[], Any]

    def switch(self, rounds: int) -> float:
        Event = self.Event

        def relay(rounds: int, slot: list[Any]) -> None:
            for _ in range(rounds):
                mine = Event()
                partner, slot[0] = slot[0], mine
                partner.set()
                mine.wait()
            slot[0].set()  # release the partner's last wait

        slot = [Event()]
        start = time.perf_counter()
        fibers = [self.spawn(relay, rounds, slot) for _ in range(2)]
        for f in fibers:
            f.join()
        return time.perf_counter() - start

    def sleep0(self, fibers: int, rounds: int) -> float:
        def yielder(n: int) -> None:
            sleep = self.sleep
            for _ in range(n):
                sleep(0)

        start = time.perf_counter()
        spawned = [self.spawn(yielder, rounds) for _ in range(fibers)]
        for f in spawned:
            f.join()
        return time.perf_counter() - start

    def spawn_join(self, n: int) -> float:
        spawn = self.spawn
        start = time.perf_counter()
        for _ in range(n):
            spawn(_return_at_once).join()
        return time.perf_counter() - start

    def spawn_batch(self, batches: int) -> float:
        spawn = self.spawn
        start = time.perf_counter()
        for _ in range(batches):
            fibers = [spawn(_return_at_once) for _ in range(BATCH)]
            for f in fibers:
                f.join()
        return time.perf_counter() - start

    def memory(self, count: int) -> dict[str, float]:
        # (unknot keeps the line a fiber was spawned at: an int object per fiber past line 256,
        # a cached one before it. The spawn below stands past it, as in most programs.)
        probe = IdleMemory(count)

        def descend(depth: int, event: Any, parked: list[int]) -> None:
            if depth > 1:
                return descend(depth - 1, event, parked)
            parked[0] += 1
            event.wait()

        def park_all() -> Callable[[], None]:
            event, parked = self.Event(), [0]
            fibers = [self.spawn(descend, IDLE_DEPTH, event, parked) for _ in range(count)]
            while parked[0] < count:
                self.sleep(0)

            def release() -> None:
                event.set()
                for f in fibers:
                    f.join()

            return release

        probe.begin_rss()
        release = park_all()
        probe.end_rss()
        release()
        probe.begin_traced()
        release = park_all()
        probe.end_traced()
        release()
        return probe.result


class UnknotPeer(GreenletPeer):
    """unknot: fibers spawned with `unknot.spawn` from the root fiber of `unknot.run`."""

    def __init__(self) -> None:
        import unknot

        ab.assert_unknot_source(unknot)
        self.unknot = unknot
        self.spawn, self.sleep, self.Event = unknot.spawn, unknot.sleep, unknot.Event

    # The shared bodies, each run in the root fiber of its own `unknot.run`.
    def switch(self, rounds: int) -> float:
        return self.unknot.run(super().switch, rounds)

    def sleep0(self, fibers: int, rounds: int) -> float:
        return self.unknot.run(super().sleep0, fibers, rounds)

    def spawn_join(self, n: int) -> float:
        return self.unknot.run(super().spawn_join, n)

    def spawn_batch(self, batches: int) -> float:
        return self.unknot.run(super().spawn_batch, batches)

    def memory(self, count: int) -> dict[str, float]:
        return self.unknot.run(super().memory, count)


class GeventPeer(GreenletPeer):
    """gevent: greenlets spawned with `gevent.spawn` from the main greenlet (no monkey-patching)."""

    def __init__(self) -> None:
        import gevent
        import gevent.event

        self.spawn, self.sleep, self.Event = gevent.spawn, gevent.sleep, gevent.event.Event


PEER_CLASSES: dict[str, Callable[[], Any]] = {
    "unknot": UnknotPeer,
    "gevent": GeventPeer,
    "asyncio": AsyncioPeer,
}


def _sleep0(peer: Any, fibers: int, rounds: int) -> float:
    return float(peer.sleep0(fibers, rounds))


def run_worker(peer_name: str, bench: str, min_time: float) -> dict[str, float]:
    """Run one benchmark for one peer in this process; return its metrics."""
    peer = PEER_CLASSES[peer_name]()
    if bench == "switch":
        return {"switch": rate(peer.switch, min_time, 2)}  # each round: 2 hand-offs
    if bench == "sleep0":
        return {
            f"sleep0-{fibers}": rate(functools.partial(_sleep0, peer, fibers), min_time, fibers)
            for fibers in SLEEPERS
        }
    if bench == "spawn-join":
        return {"spawn-join": rate(peer.spawn_join, min_time)}
    if bench == "spawn-batch":
        return {"spawn-batch": rate(peer.spawn_batch, min_time, BATCH)}
    if bench == "memory":
        return peer.memory(IDLE_FIBERS)
    raise ValueError(f"unknown benchmark {bench!r}")


# ---------------------------------------------------------------------------------------------
# Parent side: run the workers, aggregate, report
# ---------------------------------------------------------------------------------------------


@dataclass
class Samples:
    """Every repeat's value of every metric, per peer."""

    values: dict[tuple[str, str], list[float]]
    failures: list[str]
    #: The same values by round (the A/B pairs the two variants within each round).
    by_round: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)

    def add(self, peer: str, metric: str, round_: int, value: float) -> None:
        self.values.setdefault((peer, metric), []).append(value)
        self.by_round.setdefault((peer, metric), {})[round_] = value

    def per_round(self, peer: str, metric: str, rounds: int) -> list[float | None]:
        """The value of each round, None where the worker failed."""
        got = self.by_round.get((peer, metric), {})
        return [got.get(i) for i in range(rounds)]

    def median(self, peer: str, metric: str) -> float | None:
        vals = self.values.get((peer, metric))
        return statistics.median(vals) if vals else None

    def spread(self, peer: str, metric: str) -> float | None:
        """The largest deviation of one repeat from the median, relative to the median."""
        vals = self.values.get((peer, metric))
        med = self.median(peer, metric)
        if not vals or not med:
            return None
        return max(abs(v - med) for v in vals) / abs(med)


def pin_prefix(cpu: int | None) -> tuple[list[str], str]:
    """The command prefix that pins a worker to ``cpu``, and a sentence saying what was done."""
    if cpu is None:
        return [], "not pinned (--no-pin)"
    if shutil.which("taskset") is None:
        return [], "not pinned (taskset not found)"
    if hasattr(os, "sched_getaffinity") and cpu not in os.sched_getaffinity(0):
        return [], f"not pinned (CPU {cpu} is not available to this process)"
    return ["taskset", "-c", str(cpu)], f"each worker pinned to CPU {cpu} with `taskset -c {cpu}`"


def peer_envs(peers: list[str], head: ab.Tree, base: ab.Tree | None) -> dict[str, dict[str, str]]:
    """Each peer's environment: the unknot family imports from its tree (this checkout's
    ``src/``, or the --ab commit's), the build peers from --unknot-python's install, the others
    get this process's. Same hash seed for all."""
    envs = {}
    for peer in peers:
        name, _ = ab.split(peer)
        if builds.is_build(peer):
            env = builds.env(peer)
        elif name in UNKNOT_FAMILY:
            env = ab.tree_of(peer, head, base).env()
        else:
            env = dict(os.environ)
        envs[peer] = dict(env, PYTHONHASHSEED="0")  # same set/dict layouts in every run
    return envs


def available_peers(
    peers: list[str], envs: dict[str, dict[str, str]], unknot_python: str | None = None
) -> tuple[list[str], list[str]]:
    """Split ``peers`` into those whose library imports here and notes about the others."""
    ok, notes = [], []
    for peer in peers:
        module = PEER_MODULES[builds.kind(ab.split(peer)[0])]
        probe = subprocess.run(
            [builds.python(peer, unknot_python), "-P", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            env=envs[peer],
        )
        if probe.returncode == 0:
            ok.append(peer)
        else:
            notes.append(f"{peer} skipped: cannot import {module}")
    return ok, notes


def launch_worker(
    prefix: list[str],
    peer: str,
    bench: str,
    min_time: float,
    env: dict[str, str],
    unknot_python: str | None = None,
) -> tuple[dict[str, float] | None, str]:
    """Run one worker subprocess; return its metrics (None on failure) and an error text.
    ``peer`` may be a variant (``unknot@REF``) or a build peer (``unknot-compiled``, run by
    ``unknot_python``): the worker runs its plain peer, and ``env`` says which tree or build
    that imports."""
    kind = builds.kind(ab.split(peer)[0])
    python = builds.python(peer, unknot_python)
    cmd = [*prefix, python, str(Path(__file__).resolve()), "--worker", kind, bench]
    cmd += ["--min-time", str(min_time)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        return None, f"{peer} {bench}: timed out after {WORKER_TIMEOUT:.0f} s"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return None, f"{peer} {bench}: exit status {proc.returncode}: {tail}"
    return json.loads(lines[-1]), ""


def collect(
    peers: list[str],
    benches: list[str],
    repeat: int,
    min_time: float,
    prefix: list[str],
    envs: dict[str, dict[str, str]],
    unknot_python: str | None = None,
) -> Samples:
    """Run every (benchmark, peer) ``repeat`` times, peers interleaved within each repeat and
    their order rotated by one each repeat (no peer always runs first, or after the same one)."""
    samples = Samples({}, [])
    width = max(len(p) for p in peers)
    for bench in benches:
        for i in range(repeat):
            shift = i % len(peers)
            for peer in peers[shift:] + peers[:shift]:
                result, error = launch_worker(
                    prefix, peer, bench, min_time, envs[peer], unknot_python
                )
                if result is None:
                    samples.failures.append(error)
                    print(f"  FAILED {error}", file=sys.stderr)
                    continue
                for metric, value in result.items():
                    samples.add(peer, metric, i, value)
                shown = ", ".join(f"{m} {fmt_value(v, METRICS[m])}" for m, v in result.items())
                print(f"  [{i + 1}/{repeat}] {bench:<11} {peer:<{width}} {shown}", file=sys.stderr)
    return samples


def fmt_value(value: float | None, metric: Metric) -> str:
    """A number for humans: 1.23M/s style for rates, whole bytes for memory."""
    if value is None:
        return "n/a"
    if metric.unit == "bytes":
        return f"{value:,.0f} B"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def ratio(samples: Samples, metric: str, other: str) -> float | None:
    """unknot's median divided by ``other``'s, or None if either is missing."""
    mine, theirs = samples.median("unknot", metric), samples.median(other, metric)
    if mine is None or not theirs:
        return None
    return mine / theirs


def fmt_ratio(value: float | None) -> str:
    """A ratio with two decimals, or "n/a"."""
    return "n/a" if value is None else f"{value:.2f}"


def target_verdict(samples: Samples, name: str) -> str | None:
    """A met/MISSED verdict with the numbers, for metrics that have a target against gevent."""
    metric = METRICS[name]
    if metric.target_vs_gevent is None:
        return None
    r = ratio(samples, name, "gevent")
    if r is None:
        return f"{metric.label}: no gevent result, target not checked"
    if metric.higher_is_better:
        met, rule = r >= metric.target_vs_gevent, f">= {metric.target_vs_gevent:.2f}"
    else:
        met, rule = r <= metric.target_vs_gevent, f"<= {metric.target_vs_gevent:.2f}"
    return f"{metric.label}: unknot/gevent = {r:.2f} (target {rule}): {'met' if met else 'MISSED'}"


def table_rows(samples: Samples, peers: list[str], metrics: list[str]) -> list[list[str]]:
    """Header plus one row per metric: label, unit, each peer's median, the ratios (unknot /
    gevent and asyncio; with both build peers, unknot-compiled / unknot-pure), direction."""
    others = [p for p in ("gevent", "asyncio") if p in peers]
    both_builds = all(p in peers for p in builds.PEERS)
    header = ["benchmark", "unit", *peers, *(f"unknot/{p}" for p in others)]
    header += ["compiled/pure"] if both_builds else []
    rows = [header + ["better"]]
    for name in metrics:
        m = METRICS[name]
        cells = [m.label, m.unit]
        cells += [fmt_value(samples.median(p, name), m) for p in peers]
        if "unknot" in peers:
            cells += [fmt_ratio(ratio(samples, name, p)) for p in others]
        else:
            cells += ["n/a" for _ in others]
        if both_builds:
            compiled, pure = (samples.median(p, name) for p in builds.PEERS)
            cells.append(fmt_ratio(builds.ratio(compiled, pure)))
        cells.append("higher" if m.higher_is_better else "lower")
        rows.append(cells)
    return rows


def console_table(rows: list[list[str]]) -> str:
    """``table_rows`` output as aligned plain text."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[list[str]]) -> str:
    """``table_rows`` output as a Markdown table (numbers right-aligned)."""
    lines = ["| " + " | ".join(rows[0]) + " |"]
    lines.append("| " + " | ".join("---" if i < 2 else "---:" for i in range(len(rows[0]))) + " |")
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def machine_facts(pinning: str, unknot_python: str | None = None) -> list[tuple[str, str]]:
    """Label/value pairs describing where and how the run happened."""
    packages = ", ".join(f"{p} {package_version(p)}" for p in ("unknot", "greenlet", "gevent"))
    return [
        *builds.describe(unknot_python).items(),
        (
            "Machine",
            f"{cpu_model()}, {os.cpu_count()} CPUs (nproc), "
            f"{platform.system()} {platform.release()}",
        ),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Packages", f"{packages}; asyncio on its default event loop (no uvloop)"),
        ("Pinning", pinning),
        ("Checkout", git_revision()),
        ("Command", f"`{shlex.join(['python', *sys.orig_argv[1:]])}`"),
        ("Date", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
    ]


def markdown_section(
    samples: Samples,
    peers: list[str],
    metrics: list[str],
    args: argparse.Namespace,
    facts: list[tuple[str, str]],
    notes: list[str],
) -> str:
    """The body of BENCHMARKS.md's "Core" section (its own header included)."""
    out = [f"## {SECTION_TITLE}", ""]
    out.append(
        "Micro-benchmarks of the fiber runtime (`benchmarks/core.py`): unknot against gevent "
        "and asyncio, measured in the same run. Every cell is the median of "
        f"{args.repeat} runs, each in a fresh interpreter that keeps the fastest of three timed "
        "loops; ratios are unknot divided by the "
        "peer, so for rates (per second) a ratio above 1 means unknot is faster, and for memory "
        "a ratio below 1 means unknot uses less. With `--unknot-python`, *compiled/pure* is "
        "unknot-compiled divided by unknot-pure, read the same way."
    )
    out.append("")
    out += [f"- {label}: {value}" for label, value in facts]
    out += ["", markdown_table(table_rows(samples, peers, metrics)), ""]
    verdicts = [v for v in (target_verdict(samples, m) for m in metrics) if v]
    if verdicts:
        out += [
            "Targets (from the issue: spawn+join no slower than gevent, memory per idle "
            "fiber no more than gevent's):",
            "",
        ]
        out += [f"- {v}" for v in verdicts]
        out.append("")
    spread = worst_spread(samples, peers, metrics)
    if spread:
        out += [f"Largest deviation of a single run from its median: {spread}.", ""]
    out += ["What each row does:", ""]
    out.append(
        "- *switch*: two fibers pass control back and forth; each hand-off creates a one-shot "
        "primitive to wait on, wakes the partner's and waits. unknot: "
        f"{SWITCH_PRIMITIVE['unknot']}; gevent: {SWITCH_PRIMITIVE['gevent']}; asyncio: "
        f"{SWITCH_PRIMITIVE['asyncio']}. Of the primitives tried (unknot `Event` and `Channel`; "
        "gevent `Event`, reused or fresh, and `AsyncResult`; asyncio `Event` and `Future`), "
        "these were each library's cheapest."
    )
    out.append(
        "- *sleep(0)*: N fibers each call `sleep(0)` (`unknot.sleep`, `gevent.sleep`, "
        "`asyncio.sleep`) in a loop; total yields per second."
    )
    out.append(
        "- *spawn+join*: `unknot.spawn(f).join()` inside `unknot.run`; "
        "`gevent.spawn(f).join()` from the main greenlet; `await asyncio.create_task(f())`; "
        f"`f` returns at once. The batch variant spawns {BATCH:,} before joining them in order."
    )
    out.append(
        f"- *memory per idle fiber*: {IDLE_FIBERS:,} fibers each recurse to depth "
        f"{IDLE_DEPTH} and wait on one `Event` (unknot, gevent, asyncio `Event`); growth of RSS "
        "(`/proc/self/statm`), then, in a second pass, of `tracemalloc`'s traced memory, both "
        "after `gc.collect()`, divided by the fiber count. Includes everything the library "
        "keeps per fiber (the fiber object, saved C stack, frames, wait-queue entries). "
        "tracemalloc does not see memory CPython takes outside its allocators (for instance "
        "the per-greenlet frame data stack), so RSS is the number that matters."
    )
    if notes or samples.failures:
        out += ["", "Notes:", ""]
        out += [f"- {n}" for n in notes + samples.failures]
    out.append("")
    return "\n".join(out)


def worst_spread(samples: Samples, peers: list[str], metrics: list[str]) -> str:
    """The largest relative deviation among all cells, as text ("" if there is none)."""
    worst: tuple[float, str] | None = None
    for metric in metrics:
        for peer in peers:
            s = samples.spread(peer, metric)
            if s is not None and (worst is None or s > worst[0]):
                worst = (s, f"{METRICS[metric].label}, {peer}")
    return "" if worst is None else f"{worst[0]:.0%} ({worst[1]})"


def csv_list(choices: tuple[str, ...] | list[str]) -> Callable[[str], list[str]]:
    """An argparse type for a comma-separated subset of ``choices``."""

    def parse(text: str) -> list[str]:
        items = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [i for i in items if i not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown)} (choose from {', '.join(choices)})"
            )
        return items

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--worker PEER BENCH`` is internal (the parent starts workers so)."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument(
        "--min-time", type=float, default=0.3, help="measured seconds per metric in a worker"
    )
    parser.add_argument(
        "--peers",
        type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
        default=list(PEERS),
        help=f"comma-separated, from {', '.join(PEERS)} (and unknot@REF with --ab REF)",
    )
    parser.add_argument("--benches", type=csv_list(list(BENCHES)), default=list(BENCHES))
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin workers to")
    parser.add_argument("--no-pin", action="store_true", help="do not pin workers")
    parser.add_argument(
        "--markdown",
        nargs="?",
        type=Path,
        const=DEFAULT_MARKDOWN,
        metavar="PATH",
        help=f"write the results to the '{SECTION_TITLE}' section of PATH "
        "(with --ab: the 'A/B: TITLE' section)",
    )
    ab.add_arguments(parser, SECTION_TITLE)
    builds.add_argument(parser)
    parser.add_argument("--worker", nargs=2, metavar=("PEER", "BENCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.worker:
        args.peers = builds.add_peers(args.peers, args.unknot_python)
        known = builds.known(list(PEERS), args.unknot_python)
        try:
            args.peers = ab.expand_peers(args.peers, args.ab, UNKNOT_FAMILY, known)
        except ab.ABError as exc:
            parser.error(str(exc))
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def ab_comparisons(
    samples: Samples, peers: list[str], metrics: list[str], args: argparse.Namespace
) -> list[ab.Comparison]:
    """One A/B cell per (unknot-family pair, metric): the head's and the base's value per round."""
    out = []
    for head_peer, base_peer in ab.pairs(peers, args.ab):
        for name in metrics:
            m = METRICS[name]
            prefix = "" if head_peer == "unknot" else f"{head_peer}: "
            cell = ab.Cell(
                name=prefix + m.label,
                unit=m.unit,
                higher_is_better=m.higher_is_better,
                head=samples.per_round(head_peer, name, args.repeat),
                base=samples.per_round(base_peer, name, args.repeat),
                fmt=functools.partial(fmt_value, metric=m),
            )
            out.append(ab.compare(cell))
    return out


def ab_section(
    comparisons: list[ab.Comparison],
    head: ab.Tree,
    base: ab.Tree,
    samples: Samples,
    peers: list[str],
    metrics: list[str],
    args: argparse.Namespace,
    facts: list[tuple[str, str]],
    notes: list[str],
) -> str:
    """The "A/B: <title>" section: the A/B table, then every peer's medians from the same run."""
    intro = (
        f"`benchmarks/core.py --ab {args.ab}`: the core micro-benchmarks with this checkout's "
        f"unknot (head) and commit {base.revision}'s (base), {args.repeat} rounds, each round "
        "every peer once in a fresh interpreter (order rotated per round) keeping the fastest "
        "of three timed loops."
    )
    kept = [(k, v) for k, v in facts if k not in ("Checkout",)]
    medians = markdown_table(table_rows(samples, peers, metrics))
    extra = ["### A/B: every peer, medians", "", medians, ""]
    failures = notes + samples.failures
    return ab.section(args.ab_title, intro, head, base, comparisons, dict(kept), failures, extra)


def main(argv: list[str] | None = None) -> int:
    """Worker mode: print one JSON line of metrics. Otherwise: run everything and report."""
    args = parse_args(argv)
    if args.worker:
        peer, bench = args.worker
        print(json.dumps(run_worker(peer, bench, args.min_time)))
        return 0

    prefix, pinning = pin_prefix(None if args.no_pin else args.cpu)
    metrics = [m for b in args.benches for m in BENCHES[b]]
    head = ab.this_checkout()
    with contextlib.ExitStack() as stack:
        try:
            base = stack.enter_context(ab.base_checkout(args.ab)) if args.ab else None
            for peer in args.peers:
                if ab.split(peer)[0] in UNKNOT_FAMILY:
                    where = ab.verify_import(ab.tree_of(peer, head, base))
                    print(f"{peer}: imports {where}", file=sys.stderr)
                elif builds.is_build(peer):
                    where = builds.verify(peer, args.unknot_python)
                    print(f"{peer}: imports {where}", file=sys.stderr)
        except ab.ABError as exc:
            print(f"A/B: {exc}", file=sys.stderr)
            return 2
        except builds.BuildError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        envs = peer_envs(args.peers, head, base)
        peers, notes = available_peers(args.peers, envs, args.unknot_python)
        if not peers:
            print("no peer can be imported", file=sys.stderr)
            return 1
        print(
            f"core benchmarks: peers {', '.join(peers)}; {pinning}; median of {args.repeat}",
            file=sys.stderr,
        )
        for note in notes:
            print(f"  {note}", file=sys.stderr)
        started = time.monotonic()
        samples = collect(
            peers, args.benches, args.repeat, args.min_time, prefix, envs, args.unknot_python
        )

    facts = machine_facts(pinning, args.unknot_python)
    print()
    for label, value in facts:
        print(f"{label}: {value.replace('`', '')}")
    print()
    print(console_table(table_rows(samples, peers, metrics)))
    print(
        "\nRatios are unknot / peer (and compiled / pure: unknot-compiled / unknot-pure); "
        "'better' says which direction favours unknot (the compiled build)."
    )
    for verdict in (target_verdict(samples, m) for m in metrics):
        if verdict:
            print(verdict)
    spread = worst_spread(samples, peers, metrics)
    if spread:
        print(f"largest deviation of one run from its median: {spread}")
    comparisons = ab_comparisons(samples, peers, metrics, args)
    if base is not None:
        print(f"\nA/B: head = this checkout ({head.revision}), base = {args.ab} ({base.revision})")
        print(ab.console_table(ab.rows(comparisons, head, base)))
        print(ab.summary(comparisons))
    print(f"(took {time.monotonic() - started:.0f} s)")

    if args.markdown is not None:
        if base is not None:
            section = ab_section(
                comparisons, head, base, samples, peers, metrics, args, facts, notes
            )
            mdsection.replace_section(args.markdown, f"A/B: {args.ab_title}", section)
            print(f"wrote the 'A/B: {args.ab_title}' section of {args.markdown}")
        else:
            section = markdown_section(samples, peers, metrics, args, facts, notes)
            mdsection.replace_section(args.markdown, SECTION_TITLE, section)
            print(f"wrote the '{SECTION_TITLE}' section of {args.markdown}")
    return 1 if samples.failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
