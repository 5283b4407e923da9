#!/bin/sh
# relay-stats.sh NODE URL OUT QUEUE-DIR DEAD RELAY-COMMAND...
#
# relaybench's --relay-cmd for the disk-queue scenarios (bench/run.ts disk-spill,
# disk-idle): runs the relay in a session of its own, and when relaybench stops
# the run (SIGTERM to this script's process group, after it has taken its
# measurements) has bench/disk/settle-stats.ts write the relay's last /stats
# (URL) to OUT before passing the SIGTERM on. relaybench would otherwise stop
# the relay before anything could read how much went to disk.
#
# DEAD is the destination that is down for the whole run (host:port), or "-":
# at the SIGTERM this script first sums the bytes of its disk queue's segments
# under QUEUE-DIR (what had reached the disk when the live sinks had every
# line), for settle-stats to compare with what is there once the relay's
# memory queues are empty.
#
# The relay is this script's child, so relaybench still measures its CPU and
# memory (it walks the process tree); this shell adds about a megabyte of RSS.
# relaybench kills this group 10 s after its SIGTERM: settle-stats gives up
# after 5.5 s, and the relay (run with a short --shutdown-timeout) gets 3 s
# after its own SIGTERM before its process group is killed, so that no relay
# outlives the run.
node=$1 url=$2 out=$3 qdir=$4 dead=$5
shift 5
here=$(dirname "$0")

setsid "$@" &
pid=$!

stop() {
  trap '' TERM INT
  at=$(date +%s%3N)
  bytes=0
  if [ "$dead" != "-" ]; then
    # queue-dir.ts names a destination's directory <id with ':' as '_'>-<hash>
    bytes=$(find "$qdir/$(echo "$dead" | tr ':' '_')-"* -name '*.spool' -printf '%s\n' 2>/dev/null |
      awk '{ s += $1 } END { print s + 0 }')
  fi
  "$node" "$here/settle-stats.ts" "$url" "$out" "$pid" "$qdir" "$dead" "$at" "$bytes" ||
    echo "relay-stats: no /stats from $url" >&2
  kill -TERM "$pid" 2>/dev/null
  # up to 3 s for it to exit (a zombie, state Z, has exited), then kill its group:
  # setsid made it a process-group leader, and its workers are in its group
  i=0
  while [ "$i" -lt 30 ]; do
    state=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)
    case $state in Z | '') break ;; esac
    sleep 0.1
    i=$((i + 1))
  done
  kill -KILL -- "-$pid" 2>/dev/null
  wait "$pid"
  exit $?
}
trap stop TERM INT

wait "$pid"
