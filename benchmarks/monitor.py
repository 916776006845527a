"""The blocking detector's overhead on a TCP echo workload: detector off and on, alternating.

One process, one hub: an unknot echo server fiber per connection and ``--conns`` client fibers
doing closed-loop round trips of ``--size`` bytes over loopback. Each round measures
``--duration`` seconds of round trips with the detector off, then on (``unknot.stop_monitor`` /
``unknot.start_monitor``), the order flipped every other round (ABBA) so that a drift in the
machine's load does not favour one side. Each measurement counts round trips per second of the
process's CPU time (``time.process_time``: both threads, the detector's included), which other
processes on a shared machine cannot blur the way they blur wall-clock rates (also shown). The
result is the median of the rounds' on/off ratios.

What this measures is the detector's thread: its wake-ups every ``threshold / 4``, reading the
hubs' counters, the loop-lag probe it posts every quarter second, the GIL hand-offs they cause.
A park stores its time (for the report) only while the detector runs, so that is measured too.
The hub's other side (one attribute store per loop iteration) is paid whether the detector runs
or not; ``benchmarks/instructions.py`` counts it.

    taskset -c 1 python benchmarks/monitor.py --rounds 10 --duration 2
    taskset -c 1 python benchmarks/monitor.py --markdown BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# After the standard library: benchmarks/http.py is named like the http package.
_HERE = str(BENCH_DIR)
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]
sys.path.insert(0, str(BENCH_DIR.parent / "src"))

from benchlib import mdsection  # noqa: E402

import unknot  # noqa: E402
from unknot import socket  # noqa: E402

TITLE = "Blocking detector overhead"


def measure(conns: int, size: int, duration: float) -> tuple[float, float]:
    """Round trips per CPU second and per wall second over ``duration`` seconds (in a fiber)."""
    srv = socket.create_server(("127.0.0.1", 0))
    msg = b"x" * size
    count = [0]
    stop = [False]

    def serve(conn: socket.socket) -> None:
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    def client() -> None:
        with socket.create_connection(srv.getsockname()) as c:
            while not stop[0]:
                c.sendall(msg)
                got = 0
                while got < size:
                    got += len(c.recv(65536))
                count[0] += 1

    with srv, unknot.TaskGroup() as tg:
        clients = [tg.spawn(client) for _ in range(conns)]
        for _ in range(conns):
            conn, _addr = srv.accept()
            tg.spawn(serve, conn)
        unknot.sleep(0.2)  # warm up
        start_count, start, cpu = count[0], time.perf_counter(), time.process_time()
        unknot.sleep(duration)
        done = count[0] - start_count
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        stop[0] = True
        for f in clients:
            f.join()
    return done / cpu, done / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="off/on pairs")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threshold", type=float, default=0.1, help="the detector's threshold")
    parser.add_argument("--markdown", type=Path, help=f"write the '## {TITLE}' section")
    args = parser.parse_args(argv)

    results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    thread_cpu = [0.0, 0.0]  # the detector thread's CPU seconds, the process's, in "on" runs

    def detector_cpu() -> float:
        from unknot._core._monitor import _monitor  # (its thread, to read its CPU clock)

        t = _monitor.thread
        if t is None or t.ident is None:
            return 0.0
        return time.clock_gettime(time.pthread_getcpuclockid(t.ident))

    def one(mode: str) -> None:
        if mode == "on":
            unknot.start_monitor(args.threshold)
        else:
            unknot.stop_monitor()
        before, process_before = detector_cpu(), time.process_time()
        cpu_rate, wall_rate = unknot.run(measure, args.conns, args.size, args.duration)
        if mode == "on":
            thread_cpu[0] += detector_cpu() - before
            thread_cpu[1] += time.process_time() - process_before
        results[mode].append((cpu_rate, wall_rate))
        print(f"  {mode:3} {cpu_rate:10,.0f} per CPU s {wall_rate:10,.0f} per s", flush=True)

    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
            one(mode)
    unknot.stop_monitor()

    pairs = list(zip(results["off"], results["on"], strict=True))
    cpu_ratio = statistics.median(on[0] / off[0] for off, on in pairs)
    wall_ratio = statistics.median(on[1] / off[1] for off, on in pairs)
    share = thread_cpu[0] / thread_cpu[1] if thread_cpu[1] else 0.0
    summary = (
        f"the detector thread used {share * 100:.3f}% of the process's CPU time; round trips "
        f"per CPU second, on / off: median {cpu_ratio:.3f}; per wall-clock second: "
        f"{wall_ratio:.3f}"
    )
    print(summary)
    if args.markdown:
        cmd = "python benchmarks/monitor.py " + " ".join(argv or sys.argv[1:])
        rows = "\n".join(
            f"| {i + 1} | {off[0]:,.0f} | {on[0]:,.0f} | {on[0] / off[0]:.3f} | "
            f"{off[1]:,.0f} | {on[1]:,.0f} |"
            for i, (off, on) in enumerate(pairs)
        )
        section = (
            f"## {TITLE}\n\n"
            f"The blocking detector (`unknot.start_monitor`, threshold {args.threshold * 1000:g} "
            f"ms) off and on, alternating (ABBA) in one run: {args.conns} connections echoing "
            f"{args.size} B closed-loop over loopback, client and server fibers on one hub, "
            f"{args.duration:g} s per measurement, {args.rounds} rounds, Python "
            f"{sys.version.split()[0]}. Rates are round trips per second of the process's CPU "
            "time (both threads), which the other load on this shared 2-CPU machine does not "
            "blur as it does wall-clock rates (shown too); the result is the median of the "
            "rounds' on/off ratios. The detector thread's own CPU time is read from its "
            "thread CPU clock (`time.pthread_getcpuclockid`), which no other load blurs. "
            "This measures the detector's thread and the store of each park's time, which a "
            "park makes only while the detector runs; the hub's other part (one attribute "
            "store per loop iteration) is paid either way and is counted by the instruction "
            "A/B below. Command (pinned to one CPU with taskset): "
            f"`{cmd}`.\n\n"
            f"**{summary}.**\n\n"
            "| round | off (per CPU s) | on (per CPU s) | on / off | off (per s) | on (per s) |\n"
            "| --- | --- | --- | --- | --- | --- |\n"
            f"{rows}\n"
        )
        mdsection.replace_section(args.markdown, TITLE, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
