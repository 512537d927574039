#!/usr/bin/env bash
# Make the TLS benchmark capture (issue 13): a private nginx with TLS 1.3 and TLS 1.2
# listeners, driven by a keep-alive HTTPS client that writes an NSS key log, captured by
# tcpdump on lo.
#
#   bash bench/generate-tls-capture.sh [OUT.pcap]     (default bench/out/tls.pcap)
#
# Writes OUT (pcap), OUT without .pcap + .keylog (the key log: bench/out/tls.keylog) and
# OUT.load (the client's totals summed over its runs, "key value" lines, for run.sh's
# cross-check). nginx (config, pid, logs, document root, certificate in a temp dir removed on
# exit) listens on
#   PORT   (18097) ssl, TLS 1.3 only,
#   PORT+1 (18098) ssl, TLS 1.2 only (ECDHE-RSA AES-GCM and ChaCha20-Poly1305),
#   PORT+2 (18099) ssl http2, TLS 1.3 (HTTP/2 over TLS, ALPN h2),
# with a self-signed RSA 2048 certificate made here by openssl, `ssl_session_cache
# shared:SSL:10m`, `ssl_session_tickets on`, `keepalive_requests 100`, `keepalive_timeout 5s`,
# and the benchmark's pages (bench_site in lib.sh). bench/tls-load.mjs drives it (raw
# HTTP/1.1 over node:tls, and a share of HTTP/2 over TLS; half the connections TLS 1.3, half
# TLS 1.2; some resumed; see its header), LOAD_REQUESTS requests in LOAD_SECONDS at most, then
# top-ups of TOPUP_REQUESTS until the capture holds TARGET_PACKETS (at most MAX_TOPUPS). It
# fails unless tcpdump reports 0 packets dropped by the kernel: decryption needs every byte.
#
# Tunables (environment): PORT (18097; PORT+1, PORT+2 too), TARGET_PACKETS (1000000),
# LOAD_REQUESTS (400000), LOAD_SECONDS (70), LOAD_CONCURRENCY (64), TOPUP_REQUESTS (40000),
# MAX_TOPUPS (10), H2_SHARE (0.05), IDLE_PROBES (2 per version), LOAD_MIX (bench; or web: see
# bench/tls-load.mjs --mix), LOAD_NICE (10),
# CAPTURE_BUFFER_KB (262144).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

OUT="${1:-$ROOT_DIR/bench/out/tls.pcap}"
OUT="$(realpath -m "$OUT")"
KEYLOG="${OUT%.pcap}.keylog"
PORT="${PORT:-18097}"
TARGET_PACKETS="${TARGET_PACKETS:-1000000}"
LOAD_REQUESTS="${LOAD_REQUESTS:-400000}"
LOAD_SECONDS="${LOAD_SECONDS:-70}"
LOAD_CONCURRENCY="${LOAD_CONCURRENCY:-64}"
TOPUP_REQUESTS="${TOPUP_REQUESTS:-40000}"
MAX_TOPUPS="${MAX_TOPUPS:-10}"
H2_SHARE="${H2_SHARE:-0.05}"
LOAD_MIX="${LOAD_MIX:-bench}"
IDLE_PROBES="${IDLE_PROBES:-2}"
# As in generate-capture.sh: the load runs below tcpdump's priority, and the 256 MiB ring is
# what kept loopback captures in --immediate-mode drop-free.
LOAD_NICE="${LOAD_NICE:-10}"
CAPTURE_BUFFER_KB="${CAPTURE_BUFFER_KB:-262144}"
LOAD_RUN=(nice -n "$LOAD_NICE")
PORT12=$((PORT + 1))
PORT_H2=$((PORT + 2))

need_cmd nginx nginx
need_cmd tcpdump tcpdump
need_cmd openssl openssl
need_cmd curl curl
need_cmd capinfos tshark
need_cmd node nodejs

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

T_START=$(date +%s%N)
mkdir -p "$(dirname "$OUT")"
PARTIAL="$OUT.partial"
TOTALS="$OUT.load"
rm -f "$PARTIAL" "$TOTALS.partial" "$KEYLOG.partial"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ka-bench-tls.XXXXXX")"
NGINX_PID=""
TCPDUMP_PID=""

cleanup() {
  local rc=$?
  if [ -n "$TCPDUMP_PID" ] && kill -0 "$TCPDUMP_PID" 2>/dev/null; then
    kill -INT "$TCPDUMP_PID" 2>/dev/null || true
    wait "$TCPDUMP_PID" 2>/dev/null || true
  fi
  if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
    kill -TERM "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    rm -f "$PARTIAL" "$TOTALS.partial" "$KEYLOG.partial"
    [ -f "$WORK/error.log" ] && { echo "--- nginx error.log (tail)" >&2; tail -n 20 "$WORK/error.log" >&2; }
    [ -f "$WORK/tcpdump.log" ] && { echo "--- tcpdump log" >&2; cat "$WORK/tcpdump.log" >&2; }
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- private nginx, TLS 1.3 / TLS 1.2 / h2 over TLS ----------------------------------------
for p in "$PORT" "$PORT12" "$PORT_H2"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "generate-tls-capture: something already listens on 127.0.0.1:$p" >&2
    exit 1
  fi
done
chmod 755 "$WORK"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2> "$WORK/openssl.log" \
  || { cat "$WORK/openssl.log" >&2; exit 1; }
bench_site "$WORK" "$WORK/error.log" crit "127.0.0.1:$PORT ssl"
# TLS settings for every server, and the TLS 1.2 and h2 servers (the config's last line
# closes the http block). Each listener is its own port, so each server's ssl_protocols
# applies (nginx takes them from the default server of an address).
sed -i '$d' "$WORK/nginx.conf"
cat >> "$WORK/nginx.conf" <<CONF
  ssl_certificate $WORK/cert.pem;
  ssl_certificate_key $WORK/key.pem;
  ssl_protocols TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  ssl_session_timeout 10m;
  ssl_session_tickets on;
  server {
    listen 127.0.0.1:$PORT12 ssl;
    server_name localhost;
    root $WORK/www;
    ssl_protocols TLSv1.2;
    # AEAD suites only (what key-log decryption covers); the client varies its offer.
    ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_prefer_server_ciphers off;
  }
  server {
    listen 127.0.0.1:$PORT_H2 ssl http2;
    server_name localhost;
    root $WORK/www;
  }
}
CONF
nginx -t -q -p "$WORK/" -e "$WORK/error.log" -c "$WORK/nginx.conf"
"${LOAD_RUN[@]}" nginx -p "$WORK/" -e "$WORK/error.log" -c "$WORK/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
for _ in $(seq 1 100); do
  if curl -fsk -o /dev/null "https://127.0.0.1:$PORT/small.html"; then break; fi
  kill -0 "$NGINX_PID" 2>/dev/null || { echo "generate-tls-capture: nginx exited" >&2; exit 1; }
  sleep 0.05
done
curl -fsk --tlsv1.3 -o /dev/null "https://127.0.0.1:$PORT/small.html" || { echo "generate-tls-capture: nginx not answering TLS 1.3 on $PORT" >&2; exit 1; }
curl -fsk --tlsv1.2 --tls-max 1.2 -o /dev/null "https://127.0.0.1:$PORT12/small.html" || { echo "generate-tls-capture: nginx not answering TLS 1.2 on $PORT12" >&2; exit 1; }
curl -fsk --http2 -o /dev/null "https://127.0.0.1:$PORT_H2/small.html" || { echo "generate-tls-capture: nginx not answering h2 on $PORT_H2" >&2; exit 1; }
for f in small.html medium.html large.bin; do
  log "serving /$f ($(stat -c %s "$WORK/www/$f") bytes)"
done

# --- capture -----------------------------------------------------------------------------
log "starting tcpdump -> $OUT"
tcpdump -i lo -n -s 0 -B "$CAPTURE_BUFFER_KB" --immediate-mode -U -w "$PARTIAL" \
  "tcp port $PORT or tcp port $PORT12 or tcp port $PORT_H2" 2> "$WORK/tcpdump.log" &
TCPDUMP_PID=$!
for _ in $(seq 1 200); do
  grep -q 'listening on' "$WORK/tcpdump.log" 2>/dev/null && break
  kill -0 "$TCPDUMP_PID" 2>/dev/null || { echo "generate-tls-capture: tcpdump exited" >&2; exit 1; }
  sleep 0.05
done
grep -q 'listening on' "$WORK/tcpdump.log" || { echo "generate-tls-capture: tcpdump did not start" >&2; exit 1; }

# load_run LABEL REQUESTS SECONDS IDLE SEED: one bounded run of the client, key log and totals
# appended.
load_run() {
  log "$1: tls-load, $2 requests, at most $3 s, $LOAD_CONCURRENCY connections at a time"
  "${LOAD_RUN[@]}" node "$BENCH_DIR/tls-load.mjs" --keylog "$KEYLOG.partial" \
    --tls13 "$PORT" --tls12 "$PORT12" --h2 "$PORT_H2" --h2-share "$H2_SHARE" \
    --requests "$2" --duration "$3" --concurrency "$LOAD_CONCURRENCY" --idle "$4" --seed "$5" \
    --totals "$TOTALS.partial" --mix "$LOAD_MIX" \
    || { echo "generate-tls-capture: tls-load failed (exit $?)" >&2; exit 1; }
  echo "runs 1" >> "$TOTALS.partial"
}
load_run "main" "$LOAD_REQUESTS" "$LOAD_SECONDS" "$IDLE_PROBES" 13
topup() { load_run "top-up $1" "$TOPUP_REQUESTS" 20 0 $((100 + $1)); }
fill_capture generate-tls-capture "$PARTIAL" "$TARGET_PACKETS" "$MAX_TOPUPS" topup

# Let trailing records, FINs and ACKs land, then stop the capture cleanly.
sleep 0.5
capture_alive generate-tls-capture
kill -INT "$TCPDUMP_PID"
wait "$TCPDUMP_PID" || true
TCPDUMP_PID=""
grep -E 'packets (captured|received|dropped)' "$WORK/tcpdump.log" | sed 's/^/tcpdump: /' >&2
DROPPED=$(awk '/packets dropped by kernel/ { print $1; exit }' "$WORK/tcpdump.log")
if [ "${DROPPED:-x}" != 0 ]; then
  echo "generate-tls-capture: tcpdump dropped ${DROPPED:-an unknown number of} packets; a TLS capture must be complete to decrypt (raise CAPTURE_BUFFER_KB or LOAD_NICE)" >&2
  exit 1
fi

kill -TERM "$NGINX_PID" 2>/dev/null || true
wait "$NGINX_PID" 2>/dev/null || true
NGINX_PID=""

chown "$(id -u):$(id -g)" "$PARTIAL" "$KEYLOG.partial" 2>/dev/null || true
mv -f "$PARTIAL" "$OUT"
mv -f "$KEYLOG.partial" "$KEYLOG"
awk '{ s[$1] += $2 } END { for (k in s) print k, s[k] }' "$TOTALS.partial" | sort > "$TOTALS"
rm -f "$TOTALS.partial"

T_END=$(date +%s%N)
PACKETS=$(count_packets "$OUT")
SIZE=$(stat -c %s "$OUT")
CONNS=$(tcpdump -r "$OUT" -n 'tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn' 2>/dev/null | wc -l)
tot() { awk -v k="$1" '$1 == k { print $2 }' "$TOTALS"; }
echo "capture: $OUT"
echo "key log: $KEYLOG ($(wc -l < "$KEYLOG") lines, $(grep -c '^CLIENT_RANDOM ' "$KEYLOG") CLIENT_RANDOM, $(grep -c '^CLIENT_TRAFFIC_SECRET_0 ' "$KEYLOG") CLIENT_TRAFFIC_SECRET_0)"
echo "packets: $PACKETS"
echo "dropped by kernel: $DROPPED"
echo "connections (SYNs): $CONNS"
echo "client: $(tot requests_sent) requests sent ($(tot h2_streams) of them h2 streams), $(tot responses) responses; connections TLS 1.3 $(tot connections_tls13) (h2 $(tot connections_h2)), TLS 1.2 $(tot connections_tls12), resumed $(tot resumed) (1.3: $(tot resumed_tls13), 1.2: $(tot resumed_tls12)) of $(tot session_offered) offered (totals in ${TOTALS#"$ROOT_DIR"/})"
echo "size: $SIZE bytes ($(awk -v s="$SIZE" 'BEGIN { printf "%.1f MiB", s / 1048576 }'))"
echo "generation time: $(awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "%.1f s", (b - a) / 1e9 }')"
