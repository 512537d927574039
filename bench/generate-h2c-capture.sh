#!/usr/bin/env bash
# Generate a large loopback HTTP/2 cleartext (h2c) capture for the benchmark.
#
#   bash bench/generate-h2c-capture.sh [OUT]      (default: bench/out/h2c.pcap)
#
# Starts a private nginx (own prefix/config/pid/logs in a temp dir, never the
# system instance) with two h2c servers (`listen 127.0.0.1:PORT http2;`:
# cleartext, prior knowledge; nginx 1.22 does not do Upgrade: h2c), serving
# the benchmark pages (0.5 KiB, 8 KiB, 200 KiB; bench/lib.sh), keepalive_timeout 5s:
#   PORT    keepalive_requests 100 (nginx >= 1.19.7 applies it to HTTP/2
#           streams: GOAWAY NO_ERROR after the 100th)
#   PORT+1  keepalive_requests 1000000 (long multiplexed connections)
# captures both ports with tcpdump on lo and drives h2load (nghttp2) at them.
# h2load does not reconnect after a GOAWAY (the streams left count as
# "errored"), so each connection of a run is one h2load client:
#   * limit:  h2load -c LIMIT_CONNS -m H2_STREAMS -n 100*LIMIT_CONNS on PORT,
#             LIMIT_ROUNDS times: every connection ends with nginx's GOAWAY
#             after exactly 100 streams; one more round asks 105 per client,
#             so streams opened while the GOAWAY is in flight are refused
#             (RFC 9113 section 6.8: not processed; a race)
#   * short:  h2load -c SHORT_CONNS -m 2 -n 2*SHORT_CONNS on PORT, SHORT_ROUNDS
#             times: 2 streams per connection, the client closes
#   * idle:   IDLE_PROBES connections with one stream, then silent until
#             nginx's keepalive_timeout GOAWAY
#   * long:   h2load -c H2_CONNS -m H2_STREAMS -D LONG_DURATION on PORT+1, URL
#             mix (95% small, 3% medium, 1% large, 1% 404)
# and tops up with h2load -D TOPUP_DURATION on PORT+1 until the file holds
# TARGET_PACKETS (at most MAX_TOPUPS times).
# h2load's own totals (requests total/started/done/succeeded/failed/errored,
# status classes) are summed over the runs into OUT.h2load ("key value" lines)
# for the cross-check in `run.sh --only h2c`.
#
# Tunables (environment): PORT (18095; PORT+1 too), TARGET_PACKETS (1000000),
# H2_THREADS (2), H2_CONNS (20), H2_STREAMS (10, h2load -m), LIMIT_CONNS (50),
# LIMIT_ROUNDS (4), SHORT_CONNS (500), SHORT_ROUNDS (4), IDLE_PROBES (4),
# LONG_DURATION (15), TOPUP_DURATION (3), MAX_TOPUPS (15), LOAD_NICE (10),
# CAPTURE_BUFFER_KB (262144).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

OUT="${1:-$ROOT_DIR/bench/out/h2c.pcap}"
OUT="$(realpath -m "$OUT")"
PORT="${PORT:-18095}"
TARGET_PACKETS="${TARGET_PACKETS:-1000000}"
H2_THREADS="${H2_THREADS:-2}"
H2_CONNS="${H2_CONNS:-20}"
H2_STREAMS="${H2_STREAMS:-10}"
LIMIT_CONNS="${LIMIT_CONNS:-50}"
LIMIT_ROUNDS="${LIMIT_ROUNDS:-4}"
LONG_DURATION="${LONG_DURATION:-15}"
SHORT_CONNS="${SHORT_CONNS:-500}"
SHORT_ROUNDS="${SHORT_ROUNDS:-4}"
IDLE_PROBES="${IDLE_PROBES:-4}"
TOPUP_DURATION="${TOPUP_DURATION:-3}"
MAX_TOPUPS="${MAX_TOPUPS:-15}"
# As in generate-capture.sh: the load runs below tcpdump's priority, and the
# 256 MiB ring is what kept loopback captures in --immediate-mode drop-free.
LOAD_NICE="${LOAD_NICE:-10}"
CAPTURE_BUFFER_KB="${CAPTURE_BUFFER_KB:-262144}"
LOAD_RUN=(nice -n "$LOAD_NICE")
PORT_LONG=$((PORT + 1))
BASE="http://127.0.0.1:$PORT"
BASE_LONG="http://127.0.0.1:$PORT_LONG"

need_cmd nginx nginx
need_cmd tcpdump tcpdump
need_cmd h2load nghttp2-client
need_cmd curl curl
need_cmd capinfos tshark
need_cmd node nodejs

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

T_START=$(date +%s%N)
mkdir -p "$(dirname "$OUT")"
PARTIAL="$OUT.partial"
TOTALS="$OUT.h2load"
rm -f "$PARTIAL" "$TOTALS.partial"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ka-bench-h2c.XXXXXX")"
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
    rm -f "$PARTIAL" "$TOTALS.partial"
    [ -f "$WORK/error.log" ] && { echo "--- nginx error.log (tail)" >&2; tail -n 20 "$WORK/error.log" >&2; }
    [ -f "$WORK/tcpdump.log" ] && { echo "--- tcpdump log" >&2; cat "$WORK/tcpdump.log" >&2; }
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- private nginx, h2c ----------------------------------------------------------
for p in "$PORT" "$PORT_LONG"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "generate-h2c-capture: something already listens on 127.0.0.1:$p" >&2
    exit 1
  fi
done
chmod 755 "$WORK"
# `http2` on a listen without `ssl` is h2c with prior knowledge.
bench_site "$WORK" "$WORK/error.log" warn "127.0.0.1:$PORT http2"
# A second server for long connections: the same pages, no practical stream
# limit (the config's last line closes the http block).
sed -i '$d' "$WORK/nginx.conf"
cat >> "$WORK/nginx.conf" <<CONF
  server {
    listen 127.0.0.1:$PORT_LONG http2;
    server_name localhost;
    root $WORK/www;
    keepalive_requests 1000000;
  }
}
CONF
nginx -t -q -p "$WORK/" -e "$WORK/error.log" -c "$WORK/nginx.conf"
"${LOAD_RUN[@]}" nginx -p "$WORK/" -e "$WORK/error.log" -c "$WORK/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
for _ in $(seq 1 100); do
  if curl -fs --http2-prior-knowledge -o /dev/null "$BASE/small.html"; then break; fi
  kill -0 "$NGINX_PID" 2>/dev/null || { echo "generate-h2c-capture: nginx exited" >&2; exit 1; }
  sleep 0.05
done
for b in "$BASE" "$BASE_LONG"; do
  curl -fs --http2-prior-knowledge -o /dev/null "$b/small.html" || { echo "generate-h2c-capture: nginx not answering h2c on $b" >&2; exit 1; }
done
for f in small.html medium.html large.bin; do
  log "serving /$f ($(stat -c %s "$WORK/www/$f") bytes)"
done

# URL mix (h2load -i cycles through the lines in order): per 100 lines 95
# small, 3 medium, 1 large, 1 404. One file per port (h2load wants one origin).
url_mix() {
  local i
  for i in $(seq 1 100); do
    if [ "$i" = 50 ]; then echo "$1/missing.html"
    elif [ "$i" = 75 ]; then echo "$1/large.bin"
    elif [ $((i % 33)) = 0 ]; then echo "$1/medium.html"
    else echo "$1/small.html"
    fi
  done
}
url_mix "$BASE" > "$WORK/urls.txt"
url_mix "$BASE_LONG" > "$WORK/urls-long.txt"

# --- capture -----------------------------------------------------------------------
log "starting tcpdump -> $OUT"
tcpdump -i lo -n -s 0 -B "$CAPTURE_BUFFER_KB" --immediate-mode -U -w "$PARTIAL" "tcp port $PORT or tcp port $PORT_LONG" 2> "$WORK/tcpdump.log" &
TCPDUMP_PID=$!
for _ in $(seq 1 200); do
  grep -q 'listening on' "$WORK/tcpdump.log" 2>/dev/null && break
  kill -0 "$TCPDUMP_PID" 2>/dev/null || { echo "generate-h2c-capture: tcpdump exited" >&2; exit 1; }
  sleep 0.05
done
grep -q 'listening on' "$WORK/tcpdump.log" || { echo "generate-h2c-capture: tcpdump did not start" >&2; exit 1; }

# h2load_run LABEL ARGS...: run h2load (nice, bounded by -D or -n), show its
# summary and add its totals to the tally.
H2_RUNS=0
h2load_run() {
  local label="$1"; shift
  H2_RUNS=$((H2_RUNS + 1))
  local out="$WORK/h2load.$H2_RUNS.txt"
  log "$label: h2load $*"
  # timeout: a bound even if h2load hangs on a connection nginx never answers.
  "${LOAD_RUN[@]}" timeout 120 h2load "$@" > "$out" 2>&1 || log "  h2load exited $?"
  grep -E '^(requests|status codes|traffic):' "$out" | sed 's/^/  /' >&2 || true
  # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
  awk '/^requests:/ { gsub(",", ""); print "total", $2; print "started", $4; print "done", $6; print "succeeded", $8; print "failed", $10; print "errored", $12; print "timeout", $14 }
       /^status codes:/ { gsub(",", ""); print "2xx", $3; print "3xx", $5; print "4xx", $7; print "5xx", $9 }' "$out" >> "$TOTALS.partial"
  echo "runs 1" >> "$TOTALS.partial"
}

# Idle probes: one stream on a connection that then stays silent until nginx
# ends it with GOAWAY at keepalive_timeout (5 s). h2load, nghttp and curl
# close as soon as their streams are done, so this is a Node.js http2 client
# (bounded: it gives up after 15 s).
idle_probe() {
  "${LOAD_RUN[@]}" node -e '
    const h2 = require("node:http2");
    const s = h2.connect(process.argv[1]);
    const t = setTimeout(() => s.destroy(), 15000);
    s.on("error", () => {});
    s.on("close", () => clearTimeout(t));
    const r = s.request({ ":path": "/small.html" });
    r.resume(); r.on("error", () => {});' "$BASE" 2>/dev/null || true
}
for _ in $(seq 1 "$IDLE_PROBES"); do
  idle_probe &
  BG_PIDS+=($!)
done

for r in $(seq 1 "$LIMIT_ROUNDS"); do
  h2load_run "limit $r/$LIMIT_ROUNDS" -t "$H2_THREADS" -c "$LIMIT_CONNS" -m "$H2_STREAMS" -n $((100 * LIMIT_CONNS)) -i "$WORK/urls.txt"
done
h2load_run "limit + refused" -t "$H2_THREADS" -c "$LIMIT_CONNS" -m "$H2_STREAMS" -n $((105 * LIMIT_CONNS)) -i "$WORK/urls.txt"
for r in $(seq 1 "$SHORT_ROUNDS"); do
  h2load_run "short $r/$SHORT_ROUNDS" -t "$H2_THREADS" -c "$SHORT_CONNS" -m 2 -n $((2 * SHORT_CONNS)) "$BASE/small.html"
done
h2load_run "long" -t "$H2_THREADS" -c "$H2_CONNS" -m "$H2_STREAMS" -D "$LONG_DURATION" -i "$WORK/urls-long.txt"

for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
BG_PIDS=()

topup() {
  h2load_run "top-up $1" -t "$H2_THREADS" -c "$H2_CONNS" -m "$H2_STREAMS" -D "$TOPUP_DURATION" -i "$WORK/urls-long.txt"
}
fill_capture generate-h2c-capture "$PARTIAL" "$TARGET_PACKETS" "$MAX_TOPUPS" topup

# Let trailing frames, FINs and ACKs land, then stop the capture cleanly.
sleep 0.5
capture_alive generate-h2c-capture
kill -INT "$TCPDUMP_PID"
wait "$TCPDUMP_PID" || true
TCPDUMP_PID=""
grep -E 'packets (captured|received|dropped)' "$WORK/tcpdump.log" | sed 's/^/tcpdump: /' >&2
DROPPED=$(awk '/packets dropped by kernel/ { print $1; exit }' "$WORK/tcpdump.log")

kill -TERM "$NGINX_PID" 2>/dev/null || true
wait "$NGINX_PID" 2>/dev/null || true
NGINX_PID=""

chown "$(id -u):$(id -g)" "$PARTIAL" 2>/dev/null || true
mv -f "$PARTIAL" "$OUT"
# Sum h2load's totals over the runs (idle probes excluded: IDLE_PROBES
# streams more, listed separately).
awk '{ s[$1] += $2 } END { for (k in s) print k, s[k] }' "$TOTALS.partial" | sort > "$TOTALS"
echo "idle_probes $IDLE_PROBES" >> "$TOTALS"
rm -f "$TOTALS.partial"

T_END=$(date +%s%N)
PACKETS=$(count_packets "$OUT")
SIZE=$(stat -c %s "$OUT")
CONNS=$(tcpdump -r "$OUT" -n 'tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn' 2>/dev/null | wc -l)
echo "capture: $OUT"
echo "packets: $PACKETS"
echo "dropped by kernel: ${DROPPED:-unknown}"
echo "connections (SYNs): $CONNS"
echo "h2load streams: started $(awk '$1 == "started" { print $2 }' "$TOTALS"), succeeded $(awk '$1 == "succeeded" { print $2 }' "$TOTALS"), plus $IDLE_PROBES idle probes (totals in ${TOTALS#"$ROOT_DIR"/})"
echo "size: $SIZE bytes ($(awk -v s="$SIZE" 'BEGIN { printf "%.1f MiB", s / 1048576 }'))"
echo "generation time: $(awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "%.1f s", (b - a) / 1e9 }')"
