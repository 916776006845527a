#!/bin/bash
# Instructions per echo round trip of the unknot echo server under the echo benchmark's load,
# counted by callgrind (docs/compiled.md, "The echo path"): load cannot blur the count.
#
# usage: benchmarks/echo_callgrind.sh PYTHON [SECONDS] [CONNS] [OUT]
#   PYTHON   the interpreter whose installed (or PYTHONPATH) unknot runs the server;
#            UNKNOT_PURE=1 in the environment runs the pure modules of a compiled install
#   SECONDS  load duration (default 15); CONNS connections (default 100)
#   OUT      callgrind's output file (default: a temporary file, removed at the end)
#   KIND     (environment) the echo_servers.py peer to count, default unknot; greenlet-floor
#            (with PYTHON the compiled build's interpreter) gives the floor under unknot's count
# Prints the round trips, the total and the count per round trip, then the top functions.
# The count includes setting up the connections (they connect once instrumentation is on): for
# the steady state, run two durations and divide the difference of the totals by the
# difference of the round trips (BENCHMARKS.md, "The greenlet floor (session 16)").
set -eu
PY=$1; D=${2:-15}; C=${3:-100}; OUT=${4:-}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/server_wait.sh"
case $PY in */*) PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY") ;; esac
KEEP=1
if [ -z "$OUT" ]; then OUT=$(mktemp /tmp/echo-cg.XXXXXX); KEEP=0; fi
LG=$(cd "$HERE" && "$PY" -c 'from benchlib import native; print(native.build("echoload"))')
PORT=$((20000 + RANDOM % 20000))
LOG=$(mktemp); LOAD=$(mktemp)
cd "$HERE"
taskset -c 0 valgrind --tool=callgrind --instr-atstart=no ${CG_EXTRA:-} --callgrind-out-file="$OUT" \
    "$PY" echo_servers.py "${KIND:-unknot}" "$PORT" > "$LOG" 2>&1 &
SERVER=$!
trap 'kill -9 $SERVER 2>/dev/null || true; rm -f "$LOG" "$LOAD"; [ $KEEP = 1 ] || rm -f "$OUT" "$OUT".*' EXIT
wait_for_port "$PORT" 240 0.5 || { echo "the server did not listen:"; cat "$LOG"; exit 1; }
sleep 1
callgrind_control -i on "$SERVER" > /dev/null
taskset -c 1 "$LG" -p "$PORT" -c "$C" -s 1024 -d "$D" -w 0 > "$LOAD"
callgrind_control -d "$SERVER" > /dev/null
sleep 2
DUMP=$(ls -t "$OUT".* | head -1)
RT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["round_trips"])' "$LOAD")
TOTAL=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
echo "round trips: $RT   instructions: $TOTAL   per round trip: $((TOTAL / RT))"
echo "top functions (instructions per round trip):"
callgrind_annotate --inclusive=no "$DUMP" 2>/dev/null \
    | awk -v rt="$RT" '/file:function/ {on=1; getline; next} on && NF >= 2 && $1 ~ /^[0-9,]+$/ {
        n=$1; gsub(",","",n); if (n / rt < 40) exit; $1=""; sub(/\([^)]*\)/,""); sub(/ \[.*\]$/,""); printf "%7.0f %s\n", n/rt, $0 }'
