#!/bin/bash
# The echo server's CPU time per round trip, user and system, for two servers alternating
# (BENCHMARKS.md, "Echo: issue 13's target cells (session 9)"): where the server's time goes,
# which throughput alone does not say on a noisy host.
#
# usage: benchmarks/echo_cpu_ab.sh SIDE_A SIDE_B [ROUNDS] [CONNS]
# A side is a Python interpreter (a path: its unknot runs echo_servers.py unknot) or a peer
# name of echo_servers.py run by $PEER_PYTHON (default: python3), such as c-epoll (the native
# echo server, loadgen/echoserver.c: where the two servers' CPU goes for the same syscalls,
# BENCHMARKS.md "Echo: methods without a frame (session 11)"), c-epoll+500ns (the native
# server spending 500 ns of user time per message) or uvloop-streams.
# Each round runs A then B: the server pinned to CPU 0, echoload on CPU 1 (-s 1024 -d 6 -w 1),
# the server's utime/stime read from /proc over the middle 5 s. "cpu" is the share of one CPU
# the server used.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/server_wait.sh"
abs() { case $1 in */*) echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")" ;; *) echo "$1" ;; esac; }
A=$(abs "$1"); B=$(abs "$2"); ROUNDS=${3:-4}; C=${4:-100}
PEER_PYTHON=$(abs "${PEER_PYTHON:-python3}")
cd "$HERE"
LG=$("$PEER_PYTHON" -c 'from benchlib import native; print(native.build("echoload"))')
HZ=$(getconf CLK_TCK)
OUT=$(mktemp); trap 'rm -f "$OUT"' EXIT
for round in $(seq "$ROUNDS"); do
  for name in A B; do
    if [ $name = A ]; then PY=$A; else PY=$B; fi
    PORT=$((30000 + RANDOM % 20000))
    case $PY in
      */*) taskset -c 0 "$PY" echo_servers.py unknot "$PORT" > /dev/null 2>&1 & ;;
      *) taskset -c 0 "$PEER_PYTHON" echo_servers.py "$PY" "$PORT" > /dev/null 2>&1 & ;;
    esac
    SP=$!
    wait_for_port "$PORT" 200 0.1 || { echo "the server did not listen"; kill -9 $SP; exit 1; }
    taskset -c 1 "$LG" -p "$PORT" -c "$C" -s 1024 -d 6 -w 1 > "$OUT" &
    LP=$!
    sleep 1.5
    read -r U1 S1 < <(awk '{print $14, $15}' /proc/$SP/stat)
    sleep 5
    read -r U2 S2 < <(awk '{print $14, $15}' /proc/$SP/stat)
    wait $LP
    kill -9 $SP; wait $SP 2>/dev/null || true
    python3 - "$OUT" "$round" "$name" "$U1" "$S1" "$U2" "$S2" "$HZ" <<'PY'
import json, sys
out, rnd, name, u1, s1, u2, s2, hz = sys.argv[1:]
rps = json.load(open(out))["rps"]
u = (int(u2) - int(u1)) / int(hz); s = (int(s2) - int(s1)) / int(hz); rt = rps * 5
print(f"round {rnd} {name}: {rps:,.0f} req/s  user {u / rt * 1e6:.3f} us/rt  "
      f"system {s / rt * 1e6:.3f} us/rt  user share {u / (u + s):.2f}  cpu {(u + s) / 5:.2f}")
PY
  done
done
