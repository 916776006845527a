"""The blocking detector's overhead on a TCP echo workload: detector off and on, alternating.

One process, one hub: an unknot echo server fiber per connection and ``--conns`` client fibers
doing closed-loop round trips of ``--size`` bytes over loopback. Each round measures
``--duration`` seconds of round trips with the detector off, then on (``unknot.stop_monitor`` /
``unknot.start_monitor``), the order flipped every other round (ABBA) so that a drift in the
machine's load does not favour one side. The result is the ratio of the medians.

What this measures is the detector's thread: its wake-ups every ``threshold / 4``, reading the
hubs' counters, the loop-lag probe it posts every quarter second, the GIL hand-offs they cause.
The hub's side (one integer store per loop iteration) is paid whether the detector runs or not;
``benchmarks/instructions.py`` counts it.

    taskset -c 1 python benchmarks/monitor.py --rounds 10 --duration 2
    taskset -c 1 python benchmarks/monitor.py --markdown BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "src"))

from benchlib import mdsection  # noqa: E402

import unknot  # noqa: E402
from unknot import socket  # noqa: E402

TITLE = "Blocking detector overhead"


def measure(conns: int, size: int, duration: float) -> float:
    """Round trips per second over ``duration`` seconds (run inside a fiber)."""
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
        start_count, start = count[0], time.perf_counter()
        unknot.sleep(duration)
        done, elapsed = count[0] - start_count, time.perf_counter() - start
        stop[0] = True
        for f in clients:
            f.join()
    return done / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="off/on pairs")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threshold", type=float, default=0.1, help="the detector's threshold")
    parser.add_argument("--markdown", type=Path, help=f"write the '## {TITLE}' section")
    args = parser.parse_args(argv)

    results: dict[str, list[float]] = {"off": [], "on": []}

    def one(mode: str) -> None:
        if mode == "on":
            unknot.start_monitor(args.threshold)
        else:
            unknot.stop_monitor()
        rate = unknot.run(measure, args.conns, args.size, args.duration)
        results[mode].append(rate)
        print(f"  {mode:3} {rate:10,.0f} round trips/s", flush=True)

    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
            one(mode)
    unknot.stop_monitor()

    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    ratio = on / off
    summary = (
        f"median round trips/s: off {off:,.0f}, on {on:,.0f}; on / off = {ratio:.3f} "
        f"({(1 - ratio) * 100:+.1f}% overhead)"
    )
    print(summary)
    if args.markdown:
        cmd = "taskset -c 1 python benchmarks/monitor.py " + " ".join(argv or sys.argv[1:])
        rows = "\n".join(
            f"| {i + 1} | {a:,.0f} | {b:,.0f} | {b / a:.3f} |"
            for i, (a, b) in enumerate(zip(results["off"], results["on"], strict=True))
        )
        section = (
            f"## {TITLE}\n\n"
            f"The blocking detector (`unknot.start_monitor`, threshold {args.threshold * 1000:g} "
            f"ms) off and on, alternating (ABBA) in one run: {args.conns} connections echoing "
            f"{args.size} B closed-loop over loopback, client and server fibers on one hub, "
            f"{args.duration:g} s per measurement, {args.rounds} rounds. Python "
            f"{sys.version.split()[0]}. This measures the detector's thread; the hub's part "
            "(one integer store per loop iteration) is paid either way and is counted in the "
            f"instruction A/B. Command: `{cmd}`.\n\n"
            f"**{summary}.**\n\n"
            "| round | off (round trips/s) | on | on / off |\n| --- | --- | --- | --- |\n"
            f"{rows}\n"
        )
        mdsection.replace_section(args.markdown, TITLE, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
