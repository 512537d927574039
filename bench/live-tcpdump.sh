#!/usr/bin/env bash
# tcpdump wrapper for bench/live-capture.sh: lets the daemon run tcpdump with
# other capture flags without changing its code (`--tcpdump bench/live-tcpdump.sh`).
#
# The daemon calls `tcpdump -i IFACE -n -s 0 -B KIB --immediate-mode -U -w - FILTER`
# (src/capture/live.ts). This keeps -i, -w - and the filter (the last argument)
# and replaces everything else with $KAE_TCPDUMP_FLAGS, e.g.
#   KAE_TCPDUMP_FLAGS="-s 65535 -B 131072 -U"
# then execs the real tcpdump ($KAE_TCPDUMP_REAL, default /usr/bin/tcpdump), so
# the daemon's child pid is tcpdump's and its signals (SIGUSR1 for stats, SIGINT
# to stop) reach tcpdump directly.
set -euo pipefail
real="${KAE_TCPDUMP_REAL:-/usr/bin/tcpdump}"
iface=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [ "${args[$i]}" = "-i" ]; then iface="${args[$((i + 1))]}"; fi
done
filter="${args[$((${#args[@]} - 1))]}"
[ -n "$iface" ] || { echo "live-tcpdump.sh: no -i in the daemon's arguments: $*" >&2; exit 2; }
# shellcheck disable=SC2086 # the flags are a word list on purpose
exec "$real" -i "$iface" -n ${KAE_TCPDUMP_FLAGS:--s 0 -B 32768 --immediate-mode -U} -w - "$filter"
