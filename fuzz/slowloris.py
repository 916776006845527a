"""Slowloris: thousands of connections trickle their request heads while a normal client measures
its latency; the server's head timeout must cut the slow ones.

    python fuzz/slowloris.py                       # 5,000 connections, 20 s
    python fuzz/slowloris.py --gc-freeze --gc-threshold 20000 --attacker-nice 10   # make slowloris
    python fuzz/slowloris.py --conns 500 --seconds 4 --head-timeout 1 --json

Three processes: the server (an `HTTPServer` with ``Timeouts(head=...)``), the attacker (one
unknot process, a fiber per slow connection, bound to source addresses 127.0.0.2 and up;
``--attacker-nice`` lowers its priority, as a real attacker is another machine) and this one,
whose thread is the normal client: a new connection and one GET every 10 ms, its latency from
connect to the last byte of the answer.

Each slow connection sends a request line and ``Host``, then one byte of a header every
``--interval`` seconds (jittered), never finishing the head, and meanwhile waits for the
server's answer; when the server cuts it (a 408, or the connection closed) it connects again,
so that ``--conns`` stay open all along. Printed: how many slow connections were open at the
peak (as the server counts them), how many were cut and after how long (the head timeout plus
up to a quarter of it: the watchdog's tick), whether each cut came with a 408, the normal
client's p50/p99/max latency and failures, and the server's CPU time, event-loop lag (p99, max)
and longest full garbage collection (with ``--gc-stats``: every generation's collections, the
loop's stalls and how much of them was garbage collection, and the gc-tracked objects per
connection). ``--gc-freeze`` and ``--gc-threshold`` apply in the server docs/production.md's
advice for many connections. Exit status 1 if a slow connection was never cut, a normal request
failed, or, with ``--max-p99``, the p99 was over it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

SERVER = """
import collections, gc, json, resource, sys, time
import unknot
from unknot.http import HTTPServer, Timeouts

gc_pauses = {}   # generation -> longest collection (s)
gc_counts = {}   # generation -> [collections, total seconds, objects collected]
gc_started = 0.0
gc_long = []     # (start, end) of the collections over 20 ms

def on_gc(phase, info):
    global gc_started
    if phase == "start":
        gc_started = time.monotonic()
    else:
        gen = info["generation"]
        took = time.monotonic() - gc_started
        gc_pauses[gen] = max(gc_pauses.get(gen, 0.0), took)
        count = gc_counts.setdefault(gen, [0, 0.0, 0])
        count[0] += 1
        count[1] += took
        count[2] += info["collected"]
        if took > 0.02:
            gc_long.append((time.monotonic() - took, time.monotonic()))

gc.callbacks.append(on_gc)

def handler(request):
    return 200, None, b"hello"

def census():
    return collections.Counter(type(o).__name__ for o in gc.get_objects())

def main(head, conns, gc_stats, freeze, threshold):
    if threshold:
        gc.set_threshold(threshold)
    baseline = census() if gc_stats else None
    sample = {}
    server = HTTPServer(handler, "127.0.0.1", 0, backlog=4096,
                        timeouts=Timeouts(head=head, keep_alive=head))
    server.start()
    if freeze:  # what exists now is never garbage: out of every later collection's scan
        gc.freeze()
    print(server.port, flush=True)
    peak = 0
    lags = []
    stalls = []  # (start, end) of the watcher's sleeps overrun by more than 30 ms
    def watch():  # the peak of open connections, and the loop's lag (a 10 ms sleep's overrun)
        nonlocal peak
        while True:
            peak = max(peak, server.connections)
            if gc_stats and not sample and peak >= conns * 0.9:  # once, near the peak
                open_now = server.connections
                now = census()
                now.subtract(baseline)
                sample.update(connections=open_now,
                              per_connection=round(sum(now.values()) / open_now, 1),
                              top={k: round(v / open_now, 2) for k, v in now.most_common(15)})
            start = time.monotonic()
            unknot.sleep(0.01)
            lag = time.monotonic() - start - 0.01
            lags.append(lag)
            if lag > 0.03:
                stalls.append((start, time.monotonic()))
    watcher = unknot.spawn(watch)
    unknot.to_thread(sys.stdin.readline)
    watcher.cancel()
    server.stop(grace=1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    lags.sort()
    print(peak, usage.ru_utime + usage.ru_stime, lags[len(lags) * 99 // 100], lags[-1],
          gc_pauses.get(2, 0.0), flush=True)
    in_gc = sum(max(0.0, min(e, ge) - max(s, gs)) for s, e in stalls for gs, ge in gc_long)
    stalled = sum(e - s - 0.01 for s, e in stalls)
    print(json.dumps({"stalls_over_30ms": len(stalls),
                      "stall_time_ms": round(stalled * 1000),
                      "of_which_in_gc_ms": round(in_gc * 1000),
                      "gc": {g: {"collections": c[0], "total_ms": round(c[1] * 1000, 1),
                                 "max_ms": round(gc_pauses[g] * 1000, 1), "collected": c[2]}
                             for g, c in sorted(gc_counts.items())},
                      "tracked_objects": sample}), flush=True)

unknot.run(main, float(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1",
           int(sys.argv[5]))
"""


def attacker(
    port: int, conns: int, seconds: float, interval: float, addrs: int, ramp: float, nice: int
) -> None:
    """The slow connections (run in a subprocess: ``--attacker``); prints its stats as JSON."""
    import random

    import unknot

    if nice:
        os.nice(nice)

    stats = {"connects": 0, "cuts": 0, "cuts_408": 0, "cut_after": [], "errors": 0, "open": 0}
    stop_at = time.monotonic() + seconds

    def cut(sock: socket.socket, began: float, wait: float) -> bool:
        """Whether the server cut the connection within ``wait`` seconds (a 408 is noted).

        Waits for the server's answer (a 408, or the close) rather than looking only when the
        next byte is due, so that the cut is seen, and timed, when it happens."""
        sock.settimeout(max(wait, 0.0))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            return False
        except OSError:
            data = b""
        stats["cuts"] += 1
        stats["cuts_408"] += data.startswith(b"HTTP/1.1 408")
        stats["cut_after"].append(time.monotonic() - began)  # type: ignore[attr-defined]
        return True

    def slow(i: int) -> None:
        unknot.sleep(ramp * i / conns)  # ramp up
        source = f"127.0.0.{2 + i % addrs}"
        while time.monotonic() < stop_at:
            sock = unknot.socket.socket()
            try:
                sock.bind((source, 0))
                sock.connect(("127.0.0.1", port))
                stats["connects"] += 1
                stats["open"] += 1
                began = time.monotonic()
                sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                while time.monotonic() < stop_at:
                    wait = min(interval * random.uniform(0.5, 1.5), stop_at - time.monotonic())
                    if cut(sock, began, wait):
                        break
                    if time.monotonic() >= stop_at:
                        break
                    try:
                        sock.sendall(b"s")
                    except OSError:
                        pass  # cut: seen at the next look
            except OSError:
                stats["errors"] += 1
                unknot.sleep(0.1)
            finally:
                stats["open"] -= 1
                sock.close()

    def main() -> None:
        with unknot.TaskGroup() as group:
            for i in range(conns):
                group.spawn(slow, i)

    unknot.run(main)
    print(json.dumps(stats), flush=True)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def normal_client(
    port: int, seconds: float, latencies: list[float], connects: list[float], failures: list[str]
) -> None:
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        start = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                connects.append(time.monotonic() - start)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            if not data.startswith(b"HTTP/1.1 200") or not data.endswith(b"hello"):
                failures.append(repr(data[:80]))
            latencies.append(time.monotonic() - start)
        except OSError as exc:
            failures.append(str(exc))
        time.sleep(max(0.0, 0.01 - (time.monotonic() - start)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--head-timeout", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between bytes")
    parser.add_argument("--addrs", type=int, default=50, help="127.0.0.x source addresses")
    parser.add_argument(
        "--ramp",
        type=float,
        default=None,
        help="seconds over which the slow connections open (default: the head "
        "timeout, so that their cuts do not all fall in one tick)",
    )
    parser.add_argument("--max-p99", type=float, default=None, help="fail above (ms)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--gc-stats",
        action="store_true",
        help="also report the server's garbage collections per generation and, near the "
        "peak, its gc-tracked objects per open connection by type",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="the server calls gc.freeze() once started (docs/production.md)",
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=0,
        help="the server calls gc.set_threshold(N) first (docs/production.md)",
    )
    parser.add_argument(
        "--attacker-nice",
        type=int,
        default=0,
        help="the attacker process runs at this niceness: a real attacker is another machine, "
        "not a process taking this one's CPU from the server",
    )
    parser.add_argument("--attacker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ramp is None:
        args.ramp = args.head_timeout
    if args.attacker is not None:
        attacker(
            args.attacker,
            args.conns,
            args.seconds,
            args.interval,
            args.addrs,
            args.ramp,
            args.attacker_nice,
        )
        return 0

    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVER,
            str(args.head_timeout),
            str(args.conns),
            "1" if args.gc_stats else "0",
            "1" if args.gc_freeze else "0",
            str(args.gc_threshold),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    port = int(server.stdout.readline())
    fds_before = len(os.listdir(f"/proc/{server.pid}/fd"))
    attack = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--attacker",
            str(port),
            "--conns",
            str(args.conns),
            "--seconds",
            str(args.seconds),
            "--interval",
            str(args.interval),
            "--addrs",
            str(args.addrs),
            "--ramp",
            str(args.ramp),
            "--attacker-nice",
            str(args.attacker_nice),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    warmup = min(args.ramp, args.seconds / 4)
    time.sleep(warmup)  # the slow connections ramp up first
    latencies: list[float] = []
    connects: list[float] = []
    failures: list[str] = []
    client = threading.Thread(
        target=normal_client, args=(port, args.seconds - 2 * warmup, latencies, connects, failures)
    )
    client.start()
    client.join()
    out, _ = attack.communicate(timeout=args.seconds + 60)
    stats = json.loads(out.strip().splitlines()[-1])
    # every slow connection ended: the server has nothing left open but its own descriptors
    deadline = time.monotonic() + args.head_timeout * 2 + 5
    while len(os.listdir(f"/proc/{server.pid}/fd")) > fds_before:
        if time.monotonic() > deadline:
            failures.append("the server's descriptors did not come back to their count")
            break
        time.sleep(0.1)
    server.stdin.write("stop\n")
    server.stdin.flush()
    peak_text, cpu_text, lag99, lagmax, gc2 = server.stdout.readline().split()
    peak = int(peak_text)
    gc_report = json.loads(server.stdout.readline())
    server.wait(timeout=30)
    cut_after = stats.pop("cut_after")
    report = {
        "slow_connections": args.conns,
        "peak_open_on_server": peak,
        "slow_connects": stats["connects"],
        "cuts": stats["cuts"],
        "cuts_with_408": stats["cuts_408"],
        "cut_after_p50_s": round(percentile(cut_after, 50), 2),
        "cut_after_max_s": round(max(cut_after, default=float("nan")), 2),
        "head_timeout_s": args.head_timeout,
        "attacker_errors": stats["errors"],
        "server_cpu_s": round(float(cpu_text), 1),
        "server_loop_lag_p99_ms": round(float(lag99) * 1000, 1),
        "server_loop_lag_max_ms": round(float(lagmax) * 1000, 1),
        "server_gc_gen2_max_ms": round(float(gc2) * 1000, 1),
        "normal_requests": len(latencies),
        "normal_failures": len(failures),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 2),
        "connect_p99_ms": round(percentile(connects, 99) * 1000, 2),
    }
    if args.gc_stats:
        for key in ("stalls_over_30ms", "stall_time_ms", "of_which_in_gc_ms"):
            report[f"server_{key}"] = gc_report[key]
        report["server_gc"] = gc_report["gc"]
        report["server_tracked_objects"] = gc_report["tracked_objects"]
    problems = list(failures[:5])
    expected_cuts = args.conns * int(args.seconds // (args.head_timeout * 1.25 + args.interval))
    if stats["cuts"] < max(expected_cuts, 1) * 0.9 or not cut_after:
        problems.append(f"only {stats['cuts']} cuts, at least {expected_cuts} expected")
    if cut_after and max(cut_after) > args.head_timeout * 1.25 + 2 * args.interval + 1:
        problems.append("a slow connection was cut late")
    if args.max_p99 is not None and report["p99_ms"] > args.max_p99:
        problems.append(f"p99 {report['p99_ms']} ms over {args.max_p99} ms")
    report["problems"] = problems
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>22}: {value}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
