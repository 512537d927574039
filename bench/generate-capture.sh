#!/usr/bin/env bash
# Generate a large loopback HTTP capture for the benchmark.
#
#   bash bench/generate-capture.sh [OUT]      (default: bench/out/bench.pcap)
#
# Starts a private nginx (own prefix/config/pid/logs in a temp dir, never the
# system instance) on 127.0.0.1:18090, captures its port with tcpdump and
# drives a mix of traffic at it:
#   * ab -n N -c 10            HTTP/1.0, a new connection per request
#   * ab -k -n N -c 10         HTTP/1.0 keep-alive (server closes every 100)
#   * curl Connection: close   HTTP/1.1, server closes after each response
#   * idle probes              HTTP/1.1 connections left idle > keepalive_timeout
#   * wrk -t2 -c50 + Lua mix   HTTP/1.1 keep-alive, mostly small responses
# and tops up with short extra wrk runs until the file holds TARGET_PACKETS.
#
# Tunables (environment): PORT (18090), TARGET_PACKETS (1000000),
# WRK_THREADS (2), WRK_CONNS (50), WRK_DURATION (8, seconds), TOPUP_DURATION
# (3), MAX_TOPUPS (15), LOAD_NICE (10), CAPTURE_BUFFER_KB (262144),
# AB_N (20000), ABK_N (50000), CLOSE_N (500), IDLE_PROBES (4),
# MIX_SMALL/MIX_MEDIUM/MIX_LARGE (see wrk-mix.lua).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

OUT="${1:-$ROOT_DIR/bench/out/bench.pcap}"
OUT="$(realpath -m "$OUT")"
PORT="${PORT:-18090}"
TARGET_PACKETS="${TARGET_PACKETS:-1000000}"
WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNS="${WRK_CONNS:-50}"
WRK_DURATION="${WRK_DURATION:-8}"
TOPUP_DURATION="${TOPUP_DURATION:-3}"
MAX_TOPUPS="${MAX_TOPUPS:-15}"
# nginx and the load generators run at a lower priority than tcpdump so that
# the capture keeps up (fewer "dropped by kernel") on a small machine.
LOAD_NICE="${LOAD_NICE:-10}"
# tcpdump -B (KiB). In --immediate-mode libpcap uses a TPACKET_V2 ring of
# fixed-size frames sized for loopback's 64 KiB MTU, so the 64 MiB of
# -B 65536 holds only ~1000 packets and dropped 0.4-1% here; 256 MiB gave no
# drops.
CAPTURE_BUFFER_KB="${CAPTURE_BUFFER_KB:-262144}"
# (Pinning tcpdump and the load to different CPUs was tried and made drops
# worse: loopback's softirq work, which copies into tcpdump's ring, runs on
# the sender's CPU.)
LOAD_RUN=(nice -n "$LOAD_NICE")
AB_N="${AB_N:-20000}"
ABK_N="${ABK_N:-50000}"
CLOSE_N="${CLOSE_N:-500}"
IDLE_PROBES="${IDLE_PROBES:-4}"
BASE="http://127.0.0.1:$PORT"

need_cmd nginx nginx
need_cmd tcpdump tcpdump
need_cmd wrk wrk
need_cmd ab apache2-utils
need_cmd curl curl
need_cmd capinfos tshark
need_cmd node nodejs

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

T_START=$(date +%s%N)
mkdir -p "$(dirname "$OUT")"
PARTIAL="$OUT.partial"
rm -f "$PARTIAL"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ka-bench-nginx.XXXXXX")"
NGINX_PID=""
TCPDUMP_PID=""
BG_PIDS=()

cleanup() {
  local rc=$?
  for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$TCPDUMP_PID" ] && kill -0 "$TCPDUMP_PID" 2>/dev/null; then
    kill -INT "$TCPDUMP_PID" 2>/dev/null || true
    wait "$TCPDUMP_PID" 2>/dev/null || true
  fi
  if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
    kill -TERM "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    rm -f "$PARTIAL"
    [ -f "$WORK/error.log" ] && { echo "--- nginx error.log (tail)" >&2; tail -n 20 "$WORK/error.log" >&2; }
    [ -f "$WORK/tcpdump.log" ] && { echo "--- tcpdump log" >&2; cat "$WORK/tcpdump.log" >&2; }
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- private nginx -----------------------------------------------------------
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "generate-capture: something already listens on 127.0.0.1:$PORT" >&2
  exit 1
fi

mkdir -p "$WORK/www" "$WORK/tmp" "$WORK/logs"
# Workers may run as an unprivileged user when started as root: make the
# document root readable.
chmod 755 "$WORK" "$WORK/www"
# Deterministic content: ~600 B, ~8 KB, ~200 KB.
# (head reads from a process substitution so that yes' SIGPIPE does not trip
# pipefail.)
bench_site "$WORK" "$WORK/error.log" warn "127.0.0.1:$PORT"

nginx -t -q -p "$WORK/" -e "$WORK/error.log" -c "$WORK/nginx.conf"
"${LOAD_RUN[@]}" nginx -p "$WORK/" -e "$WORK/error.log" -c "$WORK/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
for _ in $(seq 1 100); do
  if curl -fs -o /dev/null "$BASE/small.html"; then break; fi
  kill -0 "$NGINX_PID" 2>/dev/null || { echo "generate-capture: nginx exited" >&2; exit 1; }
  sleep 0.05
done
curl -fs -o /dev/null "$BASE/small.html" || { echo "generate-capture: nginx not answering" >&2; exit 1; }
for f in small.html medium.html large.bin; do
  log "serving /$f ($(stat -c %s "$WORK/www/$f") bytes)"
done

# --- capture -------------------------------------------------------------------
log "starting tcpdump -> $OUT"
tcpdump -i lo -n -s 0 -B "$CAPTURE_BUFFER_KB" --immediate-mode -U -w "$PARTIAL" "tcp port $PORT" 2> "$WORK/tcpdump.log" &
TCPDUMP_PID=$!
for _ in $(seq 1 200); do
  grep -q 'listening on' "$WORK/tcpdump.log" 2>/dev/null && break
  kill -0 "$TCPDUMP_PID" 2>/dev/null || { echo "generate-capture: tcpdump exited" >&2; exit 1; }
  sleep 0.05
done
grep -q 'listening on' "$WORK/tcpdump.log" || { echo "generate-capture: tcpdump did not start" >&2; exit 1; }

# Idle probes: one request on an HTTP/1.1 connection, then stay silent until
# nginx closes it after keepalive_timeout (5 s). Run in the background while
# the rest of the traffic flows.
idle_probe() {
  exec 3<>"/dev/tcp/127.0.0.1/$PORT"
  printf 'GET /small.html HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: idle-probe\r\n\r\n' >&3
  timeout 10 cat <&3 > /dev/null || true
  exec 3<&-
}
for _ in $(seq 1 "$IDLE_PROBES"); do
  idle_probe &
  BG_PIDS+=($!)
done

log "ab: $AB_N requests, HTTP/1.0, new connection per request (-c 10)"
ab_run() { # N URL [extra ab args]: ab with -c 10 (fewer when N < 10)
  local n="$1" url="$2"; shift 2
  [ "$n" -gt 0 ] || return 0
  "${LOAD_RUN[@]}" ab -q -r "$@" -n "$n" -c $((n < 10 ? n : 10)) "$url" \
    | grep -E '^(Complete|Failed|Keep-Alive) requests' | sed 's/^/  /' >&2
}
ab_run "$AB_N" "$BASE/small.html"
ab_run $((AB_N / 10)) "$BASE/medium.html"

log "ab -k: $ABK_N requests, HTTP/1.0 keep-alive (-c 10)"
ab_run "$ABK_N" "$BASE/small.html" -k

log "curl: $CLOSE_N HTTP/1.1 requests with Connection: close"
[ "$CLOSE_N" -gt 0 ] && "${LOAD_RUN[@]}" curl -s -o /dev/null -H 'Connection: close' "$BASE/small.html?c=[1-$CLOSE_N]"

log "wrk: -t$WRK_THREADS -c$WRK_CONNS -d${WRK_DURATION}s, HTTP/1.1 keep-alive URL mix"
"${LOAD_RUN[@]}" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_DURATION}s" -s "$BENCH_DIR/wrk-mix.lua" "$BASE/" \
  | grep -E 'requests in|Requests/sec|Socket errors|Non-2xx' >&2 || true

for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
BG_PIDS=()

topup() {
  log "top-up $1: wrk -d${TOPUP_DURATION}s"
  "${LOAD_RUN[@]}" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${TOPUP_DURATION}s" -s "$BENCH_DIR/wrk-mix.lua" "$BASE/" \
    | grep -E 'requests in' >&2 || true
}
fill_capture generate-capture "$PARTIAL" "$TARGET_PACKETS" "$MAX_TOPUPS" topup

# Let trailing FINs/ACKs land, then stop the capture cleanly.
sleep 0.5
capture_alive generate-capture
kill -INT "$TCPDUMP_PID"
wait "$TCPDUMP_PID" || true
TCPDUMP_PID=""
grep -E 'packets (captured|received|dropped)' "$WORK/tcpdump.log" | sed 's/^/tcpdump: /' >&2
DROPPED=$(awk '/packets dropped by kernel/ { print $1; exit }' "$WORK/tcpdump.log")

kill -TERM "$NGINX_PID" 2>/dev/null || true
wait "$NGINX_PID" 2>/dev/null || true
NGINX_PID=""

# tcpdump may have dropped privileges to its own user: hand the file back.
chown "$(id -u):$(id -g)" "$PARTIAL" 2>/dev/null || true
mv -f "$PARTIAL" "$OUT"

T_END=$(date +%s%N)
PACKETS=$(count_packets "$OUT")
SIZE=$(stat -c %s "$OUT")
echo "capture: $OUT"
echo "packets: $PACKETS"
echo "dropped by kernel: ${DROPPED:-unknown}"
echo "size: $SIZE bytes ($(awk -v s="$SIZE" 'BEGIN { printf "%.1f MiB", s / 1048576 }'))"
echo "generation time: $(awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "%.1f s", (b - a) / 1e9 }')"
