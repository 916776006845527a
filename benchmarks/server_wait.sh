# Sourced by the shell scripts beside it (echo_callgrind.sh, echo_cpu_ab.sh).
# wait_for_port PORT TRIES DELAY: poll 127.0.0.1:PORT until it accepts a connection, at most
# TRIES times DELAY seconds; returns 1 if it never did.
wait_for_port() {
  local port=$1 tries=$2 delay=$3
  for _ in $(seq "$tries"); do
    sleep "$delay"
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then return 0; fi
  done
  return 1
}
