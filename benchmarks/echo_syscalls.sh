#!/bin/bash
# System calls per echo round trip of one echo server under load, counted by the kernel's
# syscall tracepoints (`perf stat`): whether two servers make the same calls, so that a gap
# between them is user time (BENCHMARKS.md, "Issue 13 on an Intel Xeon host (session 20)").
#
# usage: benchmarks/echo_syscalls.sh KIND PYTHON [CONNS] [SECONDS]
#   KIND     an echo_servers.py peer: unknot (PYTHON's unknot), c-epoll, greenlet-floor...
#   PYTHON   the interpreter that runs echo_servers.py (for greenlet-floor and the compiled
#            build: .venv-compiled/bin/python)
#   CONNS    connections (default 100); SECONDS counted under load (default 3)
# The server runs on CPU 0, echoload on CPU 1 (1 KiB messages, 1 s warm-up, SECONDS + 3 s of
# load); perf counts SECONDS in the middle. Round trips in that window are estimated as
# echoload's requests/s times SECONDS, so the counts per round trip are within a few percent.
set -eu
KIND=$1; PY=$2; C=${3:-100}; D=${4:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/server_wait.sh"
case $PY in */*) PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY") ;; esac
cd "$HERE"
LG=$("$PY" -c 'from benchlib import native; print(native.build("echoload"))')
PORT=$((30000 + RANDOM % 20000))
LOAD=$(mktemp); COUNTS=$(mktemp)
taskset -c 0 "$PY" echo_servers.py "$KIND" "$PORT" > /dev/null 2>&1 &
SERVER=$!
trap 'kill -9 $SERVER 2>/dev/null && wait $SERVER 2>/dev/null; rm -f "$LOAD" "$COUNTS"' EXIT
wait_for_port "$PORT" 200 0.1 || { echo "the server did not listen"; exit 1; }
taskset -c 1 "$LG" -p "$PORT" -c "$C" -s 1024 -d "$((D + 3))" -w 1 > "$LOAD" &
LP=$!
sleep 1.5
EVENTS=raw_syscalls:sys_enter
for call in epoll_wait recvfrom sendto read write epoll_ctl; do
  EVENTS=$EVENTS,syscalls:sys_enter_$call
done
perf stat -x, -e "$EVENTS" -p "$SERVER" -o "$COUNTS" -- sleep "$D"
wait $LP
python3 - "$LOAD" "$COUNTS" "$D" "$KIND" "$C" <<'PY'
import json, sys
load, counts, seconds, kind, conns = sys.argv[1:]
rps = json.load(open(load))["rps"]
trips = rps * float(seconds)
print(f"{kind}, {conns} connections: {rps:,.0f} round trips/s")
for line in open(counts):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].replace(".", "").isdigit():
        name = fields[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "all")
        print(f"  {name:12s} {float(fields[0]) / trips:7.3f} per round trip")
PY
