#!/usr/bin/env bash
# Instructions a relay process spends on a fixed workload, counted by
# valgrind's callgrind: repeatable where wall-clock rates are not (they move
# with whatever else the machine does). One polymur process (--workers 1),
# hash routing (carbon_ch) to 3 destinations (MODE=broadcast: broadcast to 2),
# N lines over 100,000 names sent on one connection; the same run with no
# lines gives the start/stop cost to subtract. Needs valgrind and nc
# (netcat-openbsd); takes about a minute per 400,000 lines.
#
#   [MODE=hash|broadcast] [NODE_FLAGS=…] [RELAY_FLAGS=…] bash bench/instructions.sh [LINES] [REPO]
#                                 # defaults: hash, no flags, 400000 lines, this repo
#                                 # RELAY_FLAGS: more relay flags (--resend-window 4MiB)
#
# V8 marks the heap on background threads, whose share of the count moves
# with their timing (a few percent); NODE_FLAGS=--single-threaded keeps
# garbage collection on the main thread and the count steadier.
#
# Prints: lines, total instructions with and without the lines, and per line.
set -euo pipefail
mode=${MODE:-hash}
lines=${1:-400000}
repo=$(cd "${2:-$(dirname "$0")/..}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$lines" "$work/lines.txt" <<'PY'
import random, sys
n, out = int(sys.argv[1]), sys.argv[2]
random.seed(1)
names = [f"servers.host{random.randint(0, 9999)}.cpu.core{random.randint(0, 31)}."
         f"{random.choice(['user', 'system', 'idle', 'iowait'])}" for _ in range(100000)]
with open(out, "w") as f:
    for i in range(n):
        f.write(f"{names[i % 100000]} {i % 1000}.5 1700000000\n")
PY
: > "$work/none.txt"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Runs the relay under callgrind, sends $1, waits until every line arrived, stops it; prints the total.
count() {
  local input=$1 p1 p2 p3 pl sinks=() relay want got routing
  p1=$(free_port); p2=$(free_port); p3=$(free_port); pl=$(free_port)
  if [ "$mode" = broadcast ]; then
    routing=(--destinations "127.0.0.1:$p1,127.0.0.1:$p2" --distribution broadcast)
    ports=("$p1" "$p2")
  else
    routing=(--destinations "127.0.0.1:$p1:a,127.0.0.1:$p2:b,127.0.0.1:$p3:c"
      --distribution hash-route --hash carbon_ch --compat carbon --replication 1)
    ports=("$p1" "$p2" "$p3")
  fi
  for p in "${ports[@]}"; do nc -lk 127.0.0.1 "$p" > "$work/sink.$p" & sinks+=($!); done
  (cd "$repo" && exec valgrind --tool=callgrind --smc-check=all-non-file \
    --callgrind-out-file="$work/callgrind.out" node_modules/.bin/node ${NODE_FLAGS:-} bin/polymur.js relay \
    --workers 1 --listen-addr "127.0.0.1:$pl" "${routing[@]}" \
    --api-addr= --stat-addr= --metrics-flush 0 ${RELAY_FLAGS:-} > "$work/relay.log" 2>&1) &
  relay=$!
  for _ in $(seq 1 600); do nc -z 127.0.0.1 "$pl" 2>/dev/null && break; sleep 0.5; done
  want=$(( $(wc -l < "$input") * ${#ports[@]} ))
  [ "$mode" = broadcast ] || want=$(wc -l < "$input")
  [ "$want" -eq 0 ] || nc -N 127.0.0.1 "$pl" < "$input"
  for _ in $(seq 1 2400); do
    got=$(cat "$work"/sink.* | wc -l)
    [ "$got" -ge "$want" ] && break
    sleep 0.5
  done
  kill -TERM "$relay"; wait "$relay" || true
  kill "${sinks[@]}" 2>/dev/null || true
  [ "$got" -ge "$want" ] || { echo "only $got of $want lines arrived" >&2; exit 1; }
  sed -n 's/^totals: //p' "$work/callgrind.out"
}

idle=$(count "$work/none.txt")
busy=$(count "$work/lines.txt")
echo "$mode  lines $lines  instructions $busy  without lines $idle  per line $(( (busy - idle) / lines ))"
