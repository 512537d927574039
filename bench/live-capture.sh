#!/usr/bin/env bash
# Live-capture benchmark: does the daemon keep up with what tcpdump alone keeps
# up with, and which tcpdump flags should it use? Run as root, via
# `npm run bench:live` or:
#
#   bash bench/live-capture.sh
#
# 1. Makes two network namespaces of its own (kae-bench-a-PID, kae-bench-b-PID)
#    joined by a veth pair (veth-a 198.18.0.1/24, veth-b 198.18.0.2/24, MTU
#    1500, offloads off so frames are NIC-sized). The host's interfaces and
#    addresses are never touched; an EXIT trap kills every process in both
#    namespaces and deletes them (also on Ctrl-C or failure).
# 2. Runs a private nginx in B, drives keep-alive traffic at it from A (wrk with
#    the bench URL mix, keepalive_requests 100 so connections also close, and
#    ab -k), captures it on veth-b, and takes the truth (requests, connections)
#    from `analyze --json` on that capture.
# 3. Delivery latency on an idle link: the daemon in B, 3 requests from A, time
#    until keepalive_requests_total counts them (per flag variant).
# 4. Replays the capture from A onto veth-a (tcpreplay --pps R or --topspeed,
#    --loop with --unique-ip so every loop is new flows) while B captures on
#    veth-b and on `any`: tcpdump alone (-w /dev/null) and the daemon, scraped
#    at the end. B's address is removed first so B's own TCP stack ignores the
#    replayed frames (no RSTs mixed in).
# 5. The loopback case of issue 9: nginx on 127.0.0.1 in B, `ab -k -n 20000
#    -c 4` and `-n 5000 -c 2`, daemon with `--ports 80` (so `any`).
#
# Every run prints one markdown row: packets sent (tcpreplay's report) and its
# achieved pps, packets the capture saw, kernel drops, requests counted / truth,
# CPU µs per captured packet of node and of tcpdump (utime+stime from
# /proc/PID/stat), and how often tcpdump was found blocked in pipe_write
# (/proc/PID/stack sampled ~100 times a second: the daemon making it wait).
#
# Environment:
#   RATES          "50000 100000 150000 200000 250000 max" (pps; max = --topspeed)
#   RUN_SECONDS    5     length of each replay (loops sized from RATE)
#   MAX_PPS_GUESS  300000  rate assumed for sizing --topspeed runs
#   IFACES         "veth-b any"
#   VARIANTS       "imm;default"  flag variants for tcpdump alone and the daemon
#                  (names below, or NAME=FLAGS, ;-separated): the daemon's
#                  earlier default and its default now
#   TCPDUMP_ALONE  1     also run tcpdump alone for each variant
#   LATENCY        1     latency phase, LATENCY_VARIANTS (default: VARIANTS + v3)
#   LOOPBACK       1     loopback ab phase, LOOPBACK_VARIANTS (default VARIANTS)
#   KAE_CLI        dist/cli/main.js (build first: npm run build)
#   OUT            bench/out/live-capture.md (the tables are also written there)
#
# Variant names (flags given to tcpdump besides -i, -n, -w and the filter):
#   default    -s 0 -B 131072 -U                   (the daemon's default: run
#              without the wrapper, exactly as the daemon starts tcpdump)
#   imm        -s 0 -B 32768 --immediate-mode -U   (the daemon's default before
#              this benchmark chose the one above)
#   v3U        -s 0 -B 32768 -U                    (TPACKET_V3 blocks, packet-buffered)
#   v3         -s 0 -B 32768                       (no -U: stdio-buffered output)
#   imm64M     -s 0 -B 65536 --immediate-mode -U
#   imm128M    -s 0 -B 131072 --immediate-mode -U
#   imm256M    -s 0 -B 262144 --immediate-mode -U
#   imms65535  -s 65535 -B 32768 --immediate-mode -U
#   v3U128M    -s 0 -B 131072 -U
#   v3Us65535  -s 65535 -B 32768 -U
# The daemon gets other flags through bench/live-tcpdump.sh (--tcpdump), so its
# code is unchanged.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$BENCH_DIR/.." && pwd)"
cd "$ROOT_DIR"
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

if [ "$(id -u)" != 0 ]; then
  echo "live-capture: run as root (it creates network namespaces and captures packets)" >&2
  exit 2
fi

RATES="${RATES:-50000 100000 150000 200000 250000 max}"
RUN_SECONDS="${RUN_SECONDS:-5}"
MAX_PPS_GUESS="${MAX_PPS_GUESS:-300000}"
IFACES="${IFACES:-veth-b any}"
VARIANTS="${VARIANTS:-imm;default}"
TCPDUMP_ALONE="${TCPDUMP_ALONE:-1}"
LATENCY="${LATENCY:-1}"
LATENCY_VARIANTS="${LATENCY_VARIANTS:-$VARIANTS;v3}"
LOOPBACK="${LOOPBACK:-1}"
LOOPBACK_VARIANTS="${LOOPBACK_VARIANTS:-$VARIANTS}"
CLI="$(realpath -m "${KAE_CLI:-$ROOT_DIR/dist/cli/main.js}")"
OUT="$(realpath -m "${OUT:-$ROOT_DIR/bench/out/live-capture.md}")"
WRAPPER="$BENCH_DIR/live-tcpdump.sh"
TCPDUMP_BIN="$(command -v tcpdump || echo /usr/bin/tcpdump)"
WEB=127.0.0.1:10842 # inside namespace B: its own loopback, no clash with the host
CLK_TCK="$(getconf CLK_TCK)"

need_cmd ip iproute2
need_cmd ethtool ethtool
need_cmd tcpdump tcpdump
need_cmd tcpreplay tcpreplay
need_cmd nginx nginx-light
need_cmd wrk wrk
need_cmd ab apache2-utils
need_cmd curl curl
need_cmd node nodejs
[ -f "$CLI" ] || { echo "live-capture: $CLI missing: run npm run build" >&2; exit 2; }

variant_flags() {
  case "$1" in
    *=*) printf '%s' "${1#*=}" ;;
    default) printf '%s' '-s 0 -B 131072 -U' ;;
    imm) printf '%s' '-s 0 -B 32768 --immediate-mode -U' ;;
    v3U) printf '%s' '-s 0 -B 32768 -U' ;;
    v3) printf '%s' '-s 0 -B 32768' ;;
    imm64M) printf '%s' '-s 0 -B 65536 --immediate-mode -U' ;;
    imm128M) printf '%s' '-s 0 -B 131072 --immediate-mode -U' ;;
    imm256M) printf '%s' '-s 0 -B 262144 --immediate-mode -U' ;;
    imms65535) printf '%s' '-s 65535 -B 32768 --immediate-mode -U' ;;
    v3U128M) printf '%s' '-s 0 -B 131072 -U' ;;
    v3Us65535) printf '%s' '-s 65535 -B 32768 -U' ;;
    *) echo "live-capture: unknown variant '$1'" >&2; exit 2 ;;
  esac
}
variant_name() { printf '%s' "${1%%=*}"; }
split_variants() { local IFS=';'; for v in $1; do [ -n "$v" ] && printf '%s\n' "$v"; done; }
# Validate every variant before any namespace exists.
while IFS= read -r v; do variant_flags "$v" > /dev/null; done < <(split_variants "$VARIANTS;$LATENCY_VARIANTS;$LOOPBACK_VARIANTS")

NS_A="kae-bench-a-$$"
NS_B="kae-bench-b-$$"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kae-live.XXXXXX")"
chmod 755 "$WORK"
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
SAMPLER_PID=""

# (Background jobs call `ip netns exec` directly, not these functions: then $!
# is the pid of ip, which execs the command, rather than of a subshell.)
in_a() { ip netns exec "$NS_A" "$@"; }
in_b() { ip netns exec "$NS_B" "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$SAMPLER_PID" ]; then kill "$SAMPLER_PID" 2>/dev/null || true; fi
  local ns p
  for ns in "$NS_A" "$NS_B"; do
    ip netns list 2>/dev/null | grep -qw "$ns" || continue
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$p" 2>/dev/null || true; done
  done
  sleep 0.5
  for ns in "$NS_A" "$NS_B"; do
    ip netns list 2>/dev/null | grep -qw "$ns" || continue
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ] && [ -f "$WORK/nginx-error.log" ]; then
    echo "--- nginx error.log (tail)" >&2; tail -n 5 "$WORK/nginx-error.log" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
say() { printf '%s\n' "$*" | tee -a "$OUT"; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# cpu_ticks PID: utime+stime in clock ticks (0 when the process is gone).
cpu_ticks() {
  local s
  read -r s < "/proc/$1/stat" 2>/dev/null || { echo 0; return; }
  s="${s##*) }"
  # shellcheck disable=SC2086
  set -- $s
  echo $(( ${12} + ${13} ))
}
# us_per TICKS PACKETS: CPU µs per packet.
us_per() { awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "-" }'; }

# sampler PID OUTFILE: ~100 Hz, counts tcpdump's states until killed (bounded to
# 120 s). No fork per sample: read -t on a fifo nobody writes is the sleep.
sampler() {
  local pid="$1" out="$2" n=0 pw=0 run=0 st s fd
  mkfifo "$WORK/never.$BASHPID"
  exec {fd}<>"$WORK/never.$BASHPID"
  trap 'printf "%s %s %s\n" "$n" "$pw" "$run" > "$out"; exit 0' TERM
  while [ "$n" -lt 12000 ]; do
    read -r s < "/proc/$pid/stat" 2>/dev/null || break
    s="${s##*) }"
    st=""
    read -r -d '' st < "/proc/$pid/stack" 2>/dev/null || true
    n=$((n + 1))
    case "$s" in R*) run=$((run + 1)) ;; esac
    case "$st" in *pipe_write*) pw=$((pw + 1)) ;; esac
    # (also written every 50 samples: a TERM that lands mid-builtin still leaves counts)
    [ $((n % 50)) -ne 0 ] || printf "%s %s %s\n" "$n" "$pw" "$run" > "$out"
    read -r -t 0.01 -u "$fd" _ || true
  done
  printf "%s %s %s\n" "$n" "$pw" "$run" > "$out"
}
start_sampler() { sampler "$1" "$WORK/sample" & SAMPLER_PID=$!; }
stop_sampler() { # prints "pipe_write% running%"
  [ -n "$SAMPLER_PID" ] || { echo "- -"; return; }
  kill -TERM "$SAMPLER_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=""
  awk '{ if ($1 > 0) printf "%.0f %.0f", 100 * $2 / $1, 100 * $3 / $1; else print "- -" }' "$WORK/sample" 2>/dev/null || echo "- -"
}

# --- machine ------------------------------------------------------------------
say "# live-capture benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
say ""
say "- machine: $(nproc) CPUs, kernel $(uname -r), $("$TCPDUMP_BIN" --version 2>&1 | head -2 | tr '\n' ' ')"
say "- node $(node --version), $(tcpreplay --version 2>&1 | head -1), $(nginx -v 2>&1), CLI $CLI"
say "- uptime: $(uptime)"
say "- replay: ${RUN_SECONDS} s per rate, rates: $RATES; variants: $VARIANTS"
say ""

# --- namespaces and veth --------------------------------------------------------
log "namespaces $NS_A, $NS_B"
ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add veth-a netns "$NS_A" type veth peer name veth-b netns "$NS_B"
ip -n "$NS_A" link set lo up
ip -n "$NS_B" link set lo up
ip -n "$NS_A" link set veth-a mtu 1500 up
ip -n "$NS_B" link set veth-b mtu 1500 up
ip -n "$NS_A" addr add 198.18.0.1/24 dev veth-a
ip -n "$NS_B" addr add 198.18.0.2/24 dev veth-b
# Offloads off: TSO/GSO would hand the capture 64 KiB super-frames and GRO would
# merge segments; with them off frames are NIC-sized (<= 1514 bytes), as on a
# real NIC with GRO off. tx/rx checksum offload off so captured checksums are real.
in_a ethtool -K veth-a tso off gso off gro off tx off rx off > /dev/null 2>&1 || true
in_b ethtool -K veth-b tso off gso off gro off tx off rx off > /dev/null 2>&1 || true

# --- private nginx in B -----------------------------------------------------------
bench_site "$WORK" "$WORK/nginx-error.log" crit 198.18.0.2:80 127.0.0.1:80
in_b nginx -t -q -p "$WORK/" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf"
ip netns exec "$NS_B" nginx -p "$WORK/" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" -g 'daemon off;' &
for _ in $(seq 1 100); do
  in_a curl -fs -o /dev/null --max-time 1 http://198.18.0.2/small.html && break
  sleep 0.05
done
in_a curl -fs -o /dev/null --max-time 2 http://198.18.0.2/small.html || { echo "live-capture: nginx in $NS_B not answering" >&2; exit 1; }

# wait_listening LOG: until tcpdump says "listening on" (5 s at most).
wait_listening() {
  for _ in $(seq 1 100); do grep -q 'listening on' "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "live-capture: tcpdump did not start: $(tail -n 2 "$1")" >&2; return 1
}
# tcpdump is stopped with SIGTERM (same clean exit and summary as SIGINT): a
# background job of a non-interactive shell starts with SIGINT ignored.
# tcpdump_stat LOG WORD: the number before "packets WORD" in tcpdump's summary.
tcpdump_stat() { awk -v w="$2" '$2 ~ /^packets?$/ && $3 == w { v = $1 } END { print (v == "" ? "-" : v) }' "$1"; }

# --- 2. the traffic and its truth -------------------------------------------------
PCAP="$WORK/traffic.pcap"
log "capturing keep-alive traffic on veth-b"
ip netns exec "$NS_B" "$TCPDUMP_BIN" -Z root -i veth-b -n -s 0 -B 262144 --immediate-mode -U -w "$PCAP" 'tcp port 80' 2> "$WORK/truth-tcpdump.log" &
TRUTH_TCPDUMP=$!
wait_listening "$WORK/truth-tcpdump.log"
in_a timeout 20 wrk -t2 -c16 -d3s -s "$BENCH_DIR/wrk-mix.lua" http://198.18.0.2/ > "$WORK/wrk.out" 2>&1 || true
in_a timeout 30 ab -q -k -n 10000 -c 4 http://198.18.0.2/small.html > "$WORK/ab.out" 2>&1 || true
sleep 1
kill -TERM "$TRUTH_TCPDUMP"; wait "$TRUTH_TCPDUMP" 2>/dev/null || true
TRUTH_DROPS=$(tcpdump_stat "$WORK/truth-tcpdump.log" dropped)
node "$CLI" analyze --json --ports 80 --no-progress "$PCAP" > "$WORK/truth.json"
read -r PCAP_PACKETS TRUTH_REQ TRUTH_CONN < <(node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(r.capture.packets, r.totals.requests, r.totals.connections);' "$WORK/truth.json")
say "## Traffic (wrk -t2 -c16 -d3s bench URL mix + ab -k -n 10000 -c 4, nginx keepalive_requests 100)"
say ""
say "captured on veth-b: $PCAP_PACKETS packets, $(stat -c %s "$PCAP") bytes, $TRUTH_REQ requests on $TRUTH_CONN connections (analyze --json); capture drops: $TRUTH_DROPS"
say "wrk: $(grep -E 'requests in' "$WORK/wrk.out" | xargs); ab: $(grep -E '^Complete requests' "$WORK/ab.out" | xargs)"
say ""
[ "$TRUTH_DROPS" = 0 ] || log "warning: the reference capture itself dropped $TRUTH_DROPS packets"

# --- the daemon --------------------------------------------------------------------
DAEMON_PID=""
TD_PID=""
# start_daemon IFACE VARIANT [PORTS]
start_daemon() {
  local iface="$1" v="$2" ports="${3:-80}" extra=()
  [ "$(variant_name "$v")" = default ] || extra=(--tcpdump "$WRAPPER")
  KAE_TCPDUMP_FLAGS="$(variant_flags "$v")" KAE_TCPDUMP_REAL="$TCPDUMP_BIN" \
    ip netns exec "$NS_B" node "$CLI" --interface "$iface" --ports "$ports" --web.listen-address "$WEB" --log.level warn "${extra[@]}" \
    > "$WORK/daemon.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 1 200); do
    in_b curl -fs -o /dev/null --max-time 1 "http://$WEB/readyz" && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { echo "live-capture: daemon exited: $(tail -n 3 "$WORK/daemon.log")" >&2; return 1; }
    sleep 0.05
  done
  TD_PID="$(pgrep -P "$DAEMON_PID" | head -1)"
  [ -n "$TD_PID" ] || { echo "live-capture: no tcpdump under the daemon" >&2; return 1; }
}
stop_daemon() {
  local td="$TD_PID"
  kill -TERM "$DAEMON_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$DAEMON_PID" "$td" 2>/dev/null || true
  wait "$DAEMON_PID" 2>/dev/null || true
  DAEMON_PID=""; TD_PID=""
}
# scrape: "requests packets kernel_drops" from the daemon's /metrics.
scrape() {
  in_b curl -fs --max-time 5 "http://$WEB/metrics" | awk '
    /^keepalive_requests_total[{ ]/ { r += $NF }
    /^keepalive_packets_total[{ ]/ { p += $NF }
    /^keepalive_capture_dropped_packets_total[{ ]/ && /where="kernel"/ { d += $NF }
    END { printf "%d %d %d\n", r, p, d }'
}
# fresh_drops: ask tcpdump for its counts now (the daemon also asks every 5 s).
fresh_drops() { kill -USR1 "$TD_PID" 2>/dev/null || true; sleep 0.5; }

# --- 3. delivery latency on an idle link ---------------------------------------------
if [ "$LATENCY" = 1 ]; then
  say "## Delivery latency: one request (new connection, ~10 packets) on an idle link, ms until the daemon counts it, 5 probes"
  say ""
  say "uptime: $(uptime)"
  say ""
  say "| interface | variant | tcpdump flags | probe 1 | 2 | 3 | 4 | 5 |"
  say "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
  for iface in $IFACES; do
    while IFS= read -r v; do
      start_daemon "$iface" "$v"
      sleep 2 # idle: nothing in flight
      cells=()
      for _ in 1 2 3 4 5; do
        # The counter baseline is read before each probe: a request stuck from
        # an earlier probe and released by this one counts for this one, so a
        # stuck variant shows as a timeout followed by short delays.
        res="$(in_b node "$BENCH_DIR/live-latency.mjs" "http://$WEB/metrics" 1 3000 -- \
          ip netns exec "$NS_A" curl -s -o /dev/null --max-time 2 http://198.18.0.2/small.html)"
        cells+=("$(node -e 'const r = JSON.parse(process.argv[1]); console.log(r.delayMs === null ? ">3000" : r.delayMs)' "$res")")
        sleep 1.3 # not a multiple of the 1 s block timeout
      done
      say "| $iface | $(variant_name "$v") | \`$(variant_flags "$v")\` | $(IFS="|"; echo "${cells[*]}" | sed "s/|/ | /g") |"
      stop_daemon
    done < <(split_variants "$LATENCY_VARIANTS")
  done
  say ""
fi

# --- 4. replay at rising rates ------------------------------------------------------
# B's address goes: the replayed frames carry B's MAC and address, and B's TCP
# would answer them with resets (extra packets the captures would count).
ip -n "$NS_B" addr flush dev veth-b

loops_for() { # RATE -> loops so the run lasts about RUN_SECONDS
  local r="$1"; [ "$r" = max ] && r="$MAX_PPS_GUESS"
  awk -v r="$r" -v s="$RUN_SECONDS" -v n="$PCAP_PACKETS" 'BEGIN { l = int(r * s / n + 0.5); print (l < 1 ? 1 : l) }'
}
# replay RATE LOOPS: tcpreplay from A; sets SENT and PPS.
replay() {
  local rate="$1" loops="$2" how=(--pps "$1")
  [ "$rate" = max ] && how=(--topspeed)
  in_a timeout $((RUN_SECONDS * 6 + 30)) tcpreplay -i veth-a -K "${how[@]}" --loop "$loops" --unique-ip --no-flow-stats "$PCAP" \
    > "$WORK/replay.out" 2>&1 || true
  SENT="$(awk '/Actual:/ { print $2; exit }' "$WORK/replay.out")"
  PPS="$(awk '/Rated:/ { for (i = 1; i <= NF; i++) if ($i ~ /^pps/) { v = $(i - 1) } } END { printf "%.0f", v }' "$WORK/replay.out")"
  FAILED="$(awk '/Failed packets:/ { print $3; exit }' "$WORK/replay.out")"
  [ -n "$SENT" ] || { SENT="-"; log "tcpreplay: $(tail -n 3 "$WORK/replay.out")"; }
}

row_header() {
  say "| case | interface | variant | rate asked | sent | tcpreplay pps | seen | kernel drops | requests / truth | node µs/pkt | tcpdump µs/pkt | tcpdump in pipe_write / running % | load |"
  say "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
}

run_tcpdump_alone() { # IFACE VARIANT RATE
  local iface="$1" v="$2" rate="$3" loops t0 t1 pid
  loops="$(loops_for "$rate")"
  # shellcheck disable=SC2046
  ip netns exec "$NS_B" "$TCPDUMP_BIN" -i "$iface" -n $(variant_flags "$v") -w /dev/null 'tcp and (port 80)' 2> "$WORK/alone.log" &
  pid=$!
  wait_listening "$WORK/alone.log"
  t0="$(cpu_ticks "$pid")"
  replay "$rate" "$loops"
  sleep 1.5 # TPACKET_V3 block timeout
  t1="$(cpu_ticks "$pid")"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  local seen drops
  seen="$(tcpdump_stat "$WORK/alone.log" captured)"
  drops="$(tcpdump_stat "$WORK/alone.log" dropped)"
  say "| tcpdump alone | $iface | $(variant_name "$v") | $rate | $SENT | $PPS | $seen | $drops | - | - | $(us_per $((t1 - t0)) "$seen") | - | $(load1) |"
}

run_daemon() { # IFACE VARIANT RATE
  local iface="$1" v="$2" rate="$3" loops n0 n1 t0 t1 req seen drops samp
  loops="$(loops_for "$rate")"
  start_daemon "$iface" "$v"
  read -r req0 _ _ < <(scrape)
  n0="$(cpu_ticks "$DAEMON_PID")"; t0="$(cpu_ticks "$TD_PID")"
  start_sampler "$TD_PID"
  replay "$rate" "$loops"
  samp="$(stop_sampler)"
  sleep 1.5 # TPACKET_V3 block timeout
  fresh_drops
  n1="$(cpu_ticks "$DAEMON_PID")"; t1="$(cpu_ticks "$TD_PID")"
  read -r req seen drops < <(scrape)
  stop_daemon
  say "| daemon | $iface | $(variant_name "$v") | $rate | $SENT | $PPS | $seen | $drops | $((req - req0)) / $((TRUTH_REQ * loops)) | $(us_per $((n1 - n0)) "$seen") | $(us_per $((t1 - t0)) "$seen") | ${samp% *} / ${samp#* } | $(load1) |"
}

say "## Replay from A onto veth-a, capture in B (tcpreplay -K --loop N --unique-ip; ${RUN_SECONDS} s per run)"
say ""
say "uptime: $(uptime)"
say ""
row_header
for iface in $IFACES; do
  while IFS= read -r v; do
    for rate in $RATES; do
      [ "$TCPDUMP_ALONE" = 1 ] && run_tcpdump_alone "$iface" "$v" "$rate"
      run_daemon "$iface" "$v" "$rate"
    done
  done < <(split_variants "$VARIANTS")
done
say ""
say "uptime: $(uptime)"
say ""

# --- 5. loopback, as in the issue ---------------------------------------------------
if [ "$LOOPBACK" = 1 ]; then
  say "## Loopback in B: nginx on 127.0.0.1:80, ab -k, capture on any (--ports 80)"
  say ""
  say "uptime: $(uptime)"
  say ""
  say "| case | variant | ab | requests ab completed | seen | kernel drops | requests counted | node µs/pkt | tcpdump µs/pkt | tcpdump in pipe_write / running % | load |"
  say "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  while IFS= read -r v; do
    for abargs in "-n 20000 -c 4" "-n 5000 -c 2"; do
      # tcpdump alone
      # shellcheck disable=SC2046
      ip netns exec "$NS_B" "$TCPDUMP_BIN" -i any -n $(variant_flags "$v") -w /dev/null 'tcp and (port 80)' 2> "$WORK/alone.log" &
      pid=$!
      wait_listening "$WORK/alone.log"
      t0="$(cpu_ticks "$pid")"
      # shellcheck disable=SC2086
      in_b timeout 60 ab -q -k $abargs http://127.0.0.1/small.html > "$WORK/ab.out" 2>&1 || true
      sleep 1.5
      t1="$(cpu_ticks "$pid")"
      kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
      seen="$(tcpdump_stat "$WORK/alone.log" captured)"
      say "| tcpdump alone | $(variant_name "$v") | ab -k $abargs | $(awk '/^Complete requests/ { print $3 }' "$WORK/ab.out") | $seen | $(tcpdump_stat "$WORK/alone.log" dropped) | - | - | $(us_per $((t1 - t0)) "$seen") | - | $(load1) |"
      # the daemon
      start_daemon any "$v" 80
      read -r req0 _ _ < <(scrape)
      n0="$(cpu_ticks "$DAEMON_PID")"; t0="$(cpu_ticks "$TD_PID")"
      start_sampler "$TD_PID"
      # shellcheck disable=SC2086
      in_b timeout 60 ab -q -k $abargs http://127.0.0.1/small.html > "$WORK/ab.out" 2>&1 || true
      samp="$(stop_sampler)"
      sleep 1.5
      fresh_drops
      n1="$(cpu_ticks "$DAEMON_PID")"; t1="$(cpu_ticks "$TD_PID")"
      read -r req seen drops < <(scrape)
      stop_daemon
      say "| daemon | $(variant_name "$v") | ab -k $abargs | $(awk '/^Complete requests/ { print $3 }' "$WORK/ab.out") | $seen | $drops | $((req - req0)) | $(us_per $((n1 - n0)) "$seen") | $(us_per $((t1 - t0)) "$seen") | ${samp% *} / ${samp#* } | $(load1) |"
    done
  done < <(split_variants "$LOOPBACK_VARIANTS")
  say ""
  say "uptime: $(uptime)"
fi
log "tables written to $OUT"
