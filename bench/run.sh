#!/usr/bin/env bash
# Benchmark keepalive-exporter against tshark and other readers on one large
# loopback capture. Run via `npm run bench` or:
#
#   bash bench/run.sh [--regenerate] [--runs N] [--only LIST] [FILE]
#
#   FILE           capture to use (default bench/out/bench.pcap); generated
#                  with bench/generate-capture.sh when missing or when it has
#                  fewer than MIN_PACKETS (1000000) packets
#   --regenerate   regenerate the capture even if it is usable
#   --runs N       timed runs per tool (default 3); best and median reported
#   --only LIST    comma-separated subset of: analyze, tshark, read,
#                  pcap-parser, pcap-parser-hwm, tcpdump, proxy, h2c, tls,
#                  tls-small
#
# `h2c` times analyze against `tshark -q -z http2,tree` on an HTTP/2 cleartext capture
# (bench/out/h2c.pcap, >= 1M packets of nginx and h2load, made by
# bench/generate-h2c-capture.sh when missing or with --regenerate; about 30 s).
# `tls` times `analyze --tls-keylog` against tshark decrypting with the same key log
# (`-o tls.keylog_file:`, `-q -z http,tree`) on bench/out/tls-web.pcap + tls-web.keylog (>= 1M
# packets of nginx TLS 1.3/1.2 and bench/tls-load.mjs --mix web, about 23 KB a response, made by
# bench/generate-tls-capture.sh when missing or with --regenerate; about a minute, 6.6 GB).
# `tls-small` does the same on bench/out/tls.pcap + tls.keylog (--mix bench: 95% 0.5 KiB
# pages, the worst case for analyze; 1.5 GB), reported without a goal. TLS_RUNS (default:
# --runs) sets their runs.
# `proxy` is the proxy tap benchmark (bench/proxy.sh: wrk through the tap,
# HAProxy and a bare Node.js relay, and directly to nginx; about 2.5 minutes).
#
# Environment: BENCH_STRICT=1 exits 1 when a goal is not met (or cannot be
# checked); MIN_PACKETS overrides the reuse threshold; PROXY_ROUNDS (5) and
# PROXY_DURATION (6 s) size the proxy part; PROXY_PROFILE=1 always profiles
# the tap (by default only when its goal is missed).
#
# Prints a markdown table and writes it to bench/out/results.md.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$BENCH_DIR/.." && pwd)"
cd "$ROOT_DIR"
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

FILE="$ROOT_DIR/bench/out/bench.pcap"
REGENERATE=0
RUNS=3
ONLY="analyze,tshark,read,pcap-parser,pcap-parser-hwm,tcpdump,proxy,h2c,tls,tls-small"
MIN_PACKETS="${MIN_PACKETS:-1000000}"
GOAL_SPEEDUP=10
GOAL_RSS_MB=200

while [ $# -gt 0 ]; do
  case "$1" in
    --regenerate) REGENERATE=1 ;;
    --runs) RUNS="$2"; shift ;;
    --runs=*) RUNS="${1#*=}" ;;
    --only) ONLY="$2"; shift ;;
    --only=*) ONLY="${1#*=}" ;;
    -h|--help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) FILE="$1" ;;
  esac
  shift
done
FILE="$(realpath -m "$FILE")"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --runs needs a positive integer" >&2; exit 2; }

need_cmd /usr/bin/time time
need_cmd tshark tshark
need_cmd capinfos tshark
need_cmd tcpdump tcpdump
need_cmd node nodejs

OUT_DIR="$ROOT_DIR/bench/out"
RESULTS="$OUT_DIR/results.md"
mkdir -p "$OUT_DIR"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/ka-bench-run.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
wanted() { [[ ",$ONLY," == *",$1,"* ]]; }

# --- 1. build ------------------------------------------------------------------
build_needed() {
  [ -f dist/cli/main.js ] && [ -f dist/capture/file.js ] || return 0
  [ -n "$(find src tsconfig.json tsconfig.build.json package.json -newer dist/cli/main.js -print -quit 2>/dev/null)" ]
}
if build_needed; then
  log "building (npm run build)"
  if ! npm run --silent build >&2; then
    log "warning: build failed; benchmarking whatever is in dist/"
  fi
else
  log "dist/ is up to date"
fi

# --- 2. capture ------------------------------------------------------------------
# (only when a tool that reads it is wanted: --only proxy needs none)
USES_CAPTURE=0
for k in analyze tshark read pcap-parser pcap-parser-hwm tcpdump; do wanted "$k" && USES_CAPTURE=1; done
PACKETS=0
SIZE=0
if [ "$USES_CAPTURE" = 1 ]; then
  PACKETS="$(count_packets "$FILE")"
  if [ "$REGENERATE" = 1 ] || [ -z "$PACKETS" ] || [ "$PACKETS" -lt "$MIN_PACKETS" ]; then
    if [ "$REGENERATE" = 1 ]; then log "regenerating $FILE"; else log "no usable capture at $FILE (${PACKETS:-0} packets), generating"; fi
    bash "$BENCH_DIR/generate-capture.sh" "$FILE" >&2
    PACKETS="$(count_packets "$FILE")"
  else
    log "reusing $FILE ($PACKETS packets; --regenerate to force a new one)"
  fi
  [ -n "$PACKETS" ] && [ "$PACKETS" -gt 0 ] || { echo "run.sh: capture $FILE is unusable" >&2; exit 1; }
  SIZE=$(stat -c %s "$FILE")
  log "warming the page cache"
  cat "$FILE" > /dev/null
fi

# --- 3. measurements -------------------------------------------------------------
declare -A LABEL STATUS NPKT BEST MEDIAN RSS NOTE
KEYS=()

# bench KEY "LABEL" stdout|null CMD... : run CMD $RUNS times. Wall time from
# date(1) in ns; peak RSS (max over runs) from GNU time's %M.
bench() {
  local key="$1" label="$2" outmode="$3"; shift 3
  KEYS+=("$key"); LABEL[$key]="$label"; STATUS[$key]=ok; NOTE[$key]=""
  local i t0 t1 rc rss maxrss=0 times=() out="$TMP/$key.out" err="$TMP/$key.err"
  for i in $(seq 1 "$RUNS"); do
    log "$label: run $i/$RUNS"
    t0=$(date +%s%N)
    if [ "$outmode" = null ]; then
      if /usr/bin/time -f '%e %M' -o "$TMP/time" "$@" > /dev/null 2> "$err"; then rc=0; else rc=$?; fi
    else
      if /usr/bin/time -f '%e %M' -o "$TMP/time" "$@" > "$out" 2> "$err"; then rc=0; else rc=$?; fi
    fi
    t1=$(date +%s%N)
    if [ "$outmode" = stdout ] && grep -q '^skipped' "$out"; then
      STATUS[$key]=skipped; NOTE[$key]="$(head -n1 "$out")"
      log "$label: $(head -n1 "$out")"
      return 0
    fi
    if [ "$rc" -ne 0 ]; then
      STATUS[$key]=failed
      NOTE[$key]="exit $rc: $( { grep -v -i 'running as user "root"' "$err" | grep -m1 . | cut -c1-160; } || true)"
      log "$label: failed (${NOTE[$key]})"
      return 0
    fi
    rss=$(tail -n1 "$TMP/time" | awk '{ print $2 }')
    [ "$rss" -gt "$maxrss" ] && maxrss=$rss
    times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')")
    log "$label: ${times[-1]} s, peak RSS $((rss / 1024)) MB"
  done
  local sorted
  sorted=$(printf '%s\n' "${times[@]}" | sort -g)
  BEST[$key]=$(head -n1 <<< "$sorted")
  MEDIAN[$key]=$(awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }' <<< "$sorted")
  RSS[$key]=$(awk -v k="$maxrss" 'BEGIN { printf "%.1f", k / 1024 }')
  if [ "$outmode" = stdout ]; then
    local n
    n=$( { grep -o 'packets=[0-9]*' "$out" | head -n1 | cut -d= -f2; } || true)
    NPKT[$key]="${n:-?}"
    [ "${n:-}" = "$PACKETS" ] || NOTE[$key]="packet count differs from capinfos ($PACKETS)"
  else
    NPKT[$key]="$PACKETS"
  fi
}

NODE="${NODE:-node}"
if wanted analyze; then
  if [ -f dist/cli/main.js ]; then
    bench analyze "keepalive-exporter analyze --json" null "$NODE" dist/cli/main.js analyze "$FILE" --json
  else
    KEYS+=(analyze); LABEL[analyze]="keepalive-exporter analyze --json"; STATUS[analyze]=skipped
    NOTE[analyze]="skipped: dist/cli/main.js not built"
  fi
fi
wanted tshark && bench tshark "tshark -q -z http,tree" null tshark -r "$FILE" -q -z http,tree
wanted read && bench read "reader only (dist/capture/file.js)" stdout "$NODE" bench/read-only.mjs "$FILE"
wanted pcap-parser && bench pcap-parser "pcap-parser (default)" stdout "$NODE" bench/pcap-parser-only.mjs "$FILE" default
wanted pcap-parser-hwm && bench pcap-parser-hwm "pcap-parser (1 MiB highWaterMark)" stdout "$NODE" bench/pcap-parser-only.mjs "$FILE" hwm
wanted tcpdump && bench tcpdump "tcpdump -r -w /dev/null (floor)" null tcpdump -r "$FILE" -w /dev/null

# HTTP/2 in cleartext: its own capture, the same two readers.
H2C_FILE="$ROOT_DIR/bench/out/h2c.pcap"
H2C_PACKETS=0
if wanted h2c; then
  if [ "$REGENERATE" = 1 ] || [ ! -s "$H2C_FILE" ]; then
    log "generating $H2C_FILE (bench/generate-h2c-capture.sh)"
    bash "$BENCH_DIR/generate-h2c-capture.sh" "$H2C_FILE" >&2
  fi
  H2C_PACKETS="$(count_packets "$H2C_FILE")"
  cat "$H2C_FILE" > /dev/null
  saved_packets=$PACKETS
  PACKETS=$H2C_PACKETS
  if [ -f dist/cli/main.js ]; then
    bench h2c-analyze "keepalive-exporter analyze --json (h2c)" null "$NODE" dist/cli/main.js analyze "$H2C_FILE" --json
  fi
  # tshark does not take these ports for HTTP/2 by itself: decode-as, or its tree counts nothing.
  bench h2c-tshark "tshark -q -z http2,tree (h2c)" null tshark -r "$H2C_FILE" -q -z http2,tree -d tcp.port==18095,http2 -d tcp.port==18096,http2
  PACKETS=$saved_packets
fi

# TLS with a key log: captures of their own; analyze decrypting against tshark decrypting.
# `tls` (the goal is judged here): bench/out/tls-web.pcap, the web mix of bench/tls-load.mjs
# (about 23 KB a response). `tls-small` (reported, no goal): bench/out/tls.pcap, the cleartext
# benchmark's mix (95% 0.5 KiB pages, about 2.8 KB a response), where analyze gains least: tshark
# decrypts every byte and analyze only the heads.
declare -A TLS_PACKETS
# tls_part KEY FILE MIX REQUESTS TOPUP DISK_GB TSHARK_GB: generate FILE (and its .keylog) when
# missing (it needs about DISK_GB free), time both (tshark peaks near TSHARK_GB on it).
tls_part() {
  local key="$1" file="$2" mix="$3" requests="$4" topup="$5" disk_gb="$6" tshark_gb="$7" keylog="${2%.pcap}.keylog"
  if [ "$REGENERATE" = 1 ] || [ ! -s "$file" ] || [ ! -s "$keylog" ]; then
    local free_kb
    free_kb=$(df -Pk "$(dirname "$file")" | awk 'NR == 2 { print $4 }')
    if [ "$free_kb" -lt $((disk_gb * 1048576)) ]; then
      log "$key: skipped: its capture needs about $disk_gb GB free in $(dirname "$file"), $((free_kb / 1048576)) GB are (free some, or leave $key out of --only)"
      return 0
    fi
    log "generating $file (bench/generate-tls-capture.sh, LOAD_MIX=$mix)"
    LOAD_MIX="$mix" LOAD_REQUESTS="$requests" TOPUP_REQUESTS="$topup" bash "$BENCH_DIR/generate-tls-capture.sh" "$file" >&2
  fi
  TLS_PACKETS[$key]="$(count_packets "$file")"
  cat "$file" > /dev/null
  local saved_packets=$PACKETS saved_runs=$RUNS
  PACKETS=${TLS_PACKETS[$key]}
  RUNS="${TLS_RUNS:-$RUNS}"
  [ -f dist/cli/main.js ] && bench "$key-analyze" "keepalive-exporter analyze --json --tls-keylog ($key)" null "$NODE" dist/cli/main.js analyze "$file" --json --tls-keylog "$keylog"
  local avail_kb
  avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
  [ "$avail_kb" -ge $((tshark_gb * 1048576)) ] || log "$key: warning: tshark peaks near $tshark_gb GB on this capture and $((avail_kb / 1048576)) GB are available: it may be killed (its rows then say failed)"
  # Decode-as for the three ports: tshark's heuristics alone took a few of the thousands of
  # connections for something else (one whose client port was 57000 decoded as "HTTP Response",
  # never decrypted), and its http tree then missed their requests. ALPN picks http or http2.
  bench "$key-tshark" "tshark -o tls.keylog_file -q -z http,tree ($key)" null tshark -r "$file" -o "tls.keylog_file:$keylog" -q -z http,tree \
    -d tcp.port==18097,tls -d tcp.port==18098,tls -d tcp.port==18099,tls
  PACKETS=$saved_packets RUNS=$saved_runs
}
# The web mix's responses are eight times larger: 150,000 requests (then top-ups of 20,000) make
# the 1,000,000 packets (about 6.6 GB; tshark then peaks near 13 GB).
wanted tls && tls_part tls "$ROOT_DIR/bench/out/tls-web.pcap" web 150000 20000 8 13
wanted tls-small && tls_part tls-small "$ROOT_DIR/bench/out/tls.pcap" bench 400000 40000 2 4

# The proxy tap: a load test of its own (bench/proxy.sh), reported in its own section.
PROXY_STATUS="not run"
if wanted proxy; then
  log "proxy tap benchmark (bench/proxy.sh)"
  if [ "${PROXY_PROFILE:-0}" = 1 ]; then PROXY_PROFILE_ARG=--profile; else PROXY_PROFILE_ARG=--profile-if-missed; fi
  if bash "$BENCH_DIR/proxy.sh" --rounds "${PROXY_ROUNDS:-5}" --duration "${PROXY_DURATION:-6}" "$PROXY_PROFILE_ARG" \
      --out "$TMP/proxy.md" > /dev/null; then
    PROXY_STATUS=ok
  else
    PROXY_STATUS="failed (exit $?; see the log above)"
    log "proxy: $PROXY_STATUS"
  fi
fi

# --- 4. report ---------------------------------------------------------------------
ok() { [ "${STATUS[$1]:-}" = ok ]; }
fmt_mpps() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.3f", n / s / 1e6; else print "-" }'; }

GOALS_OK=1
{
  echo "# keepalive-exporter benchmark"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  if [ "$USES_CAPTURE" = 1 ]; then
    echo "- capture: \`${FILE#"$ROOT_DIR"/}\`, $PACKETS packets, $(awk -v s="$SIZE" 'BEGIN { printf "%.1f MiB", s / 1048576 }')"
  fi
  echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM; node $("$NODE" -v); tshark $(tshark -v 2>/dev/null | head -n1 | awk "{ print \$3 }"); tcpdump $(tcpdump --version 2>&1 | head -n1 | awk '{ print $3 }')"
  if [ "${#KEYS[@]}" -gt 0 ]; then
  echo "- runs per tool: $RUNS; warm page cache; wall time includes process start-up; Mpps = packets / best time; peak RSS = max over runs (GNU time %M)"
  echo
  echo "| tool | packets | best s | median s | Mpps | peak RSS MB |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for k in "${KEYS[@]}"; do
    if ok "$k"; then
      echo "| ${LABEL[$k]} | ${NPKT[$k]} | ${BEST[$k]} | ${MEDIAN[$k]} | $(fmt_mpps "${NPKT[$k]/\?/0}" "${BEST[$k]}") | ${RSS[$k]} |"
    else
      echo "| ${LABEL[$k]} | ${STATUS[$k]} | - | - | - | - |"
    fi
  done
  fi
  notes=0
  for k in "${KEYS[@]}"; do
    if [ -n "${NOTE[$k]}" ]; then
      [ "$notes" = 0 ] && { echo; echo "Notes:"; notes=1; }
      echo "- ${LABEL[$k]}: ${NOTE[$k]}"
    fi
  done
  echo
  echo "## Goals"
  echo
  if ok analyze && ok tshark; then
    speed_med=$(awk -v t="${MEDIAN[tshark]}" -v a="${MEDIAN[analyze]}" 'BEGIN { printf "%.1f", t / a }')
    speed_best=$(awk -v t="${BEST[tshark]}" -v a="${BEST[analyze]}" 'BEGIN { printf "%.1f", t / a }')
    if awk -v s="$speed_med" -v g="$GOAL_SPEEDUP" 'BEGIN { exit !(s >= g) }'; then v=PASS; else v=FAIL; GOALS_OK=0; fi
    echo "- analyze vs tshark: ${speed_med}x faster on median time (${speed_best}x on best); goal >= ${GOAL_SPEEDUP}x: **$v**"
  else
    GOALS_OK=0
    echo "- analyze vs tshark: n/a (analyze ${STATUS[analyze]:-not run}, tshark ${STATUS[tshark]:-not run}); goal >= ${GOAL_SPEEDUP}x: **not checked**"
  fi
  if ok analyze; then
    if awk -v r="${RSS[analyze]}" -v g="$GOAL_RSS_MB" 'BEGIN { exit !(r < g) }'; then v=PASS; else v=FAIL; GOALS_OK=0; fi
    echo "- analyze peak RSS: ${RSS[analyze]} MB; goal < ${GOAL_RSS_MB} MB: **$v**"
  else
    GOALS_OK=0
    echo "- analyze peak RSS: n/a (analyze ${STATUS[analyze]:-not run}); goal < ${GOAL_RSS_MB} MB: **not checked**"
  fi
  if wanted h2c; then
    if ok h2c-analyze && ok h2c-tshark; then
      speed_med=$(awk -v t="${MEDIAN[h2c-tshark]}" -v a="${MEDIAN[h2c-analyze]}" 'BEGIN { printf "%.1f", t / a }')
      if awk -v s="$speed_med" -v g="$GOAL_SPEEDUP" 'BEGIN { exit !(s >= g) }'; then v=PASS; else v=FAIL; GOALS_OK=0; fi
      echo "- h2c: analyze vs tshark -z http2,tree: ${speed_med}x faster on median time ($H2C_PACKETS packets); goal >= ${GOAL_SPEEDUP}x: **$v**"
      if awk -v r="${RSS[h2c-analyze]}" -v g="$GOAL_RSS_MB" 'BEGIN { exit !(r < g) }'; then v=PASS; else v=FAIL; GOALS_OK=0; fi
      echo "- h2c: analyze peak RSS: ${RSS[h2c-analyze]} MB; goal < ${GOAL_RSS_MB} MB: **$v**"
    else
      GOALS_OK=0
      echo "- h2c: n/a (analyze ${STATUS[h2c-analyze]:-not run}, tshark ${STATUS[h2c-tshark]:-not run}): **not checked**"
    fi
  fi
  if wanted tls; then
    if ok tls-analyze && ok tls-tshark; then
      speed_med=$(awk -v t="${MEDIAN[tls-tshark]}" -v a="${MEDIAN[tls-analyze]}" 'BEGIN { printf "%.1f", t / a }')
      if awk -v s="$speed_med" -v g="$GOAL_SPEEDUP" 'BEGIN { exit !(s >= g) }'; then v=PASS; else v=FAIL; GOALS_OK=0; fi
      echo "- tls (web mix): analyze --tls-keylog vs tshark decrypting: ${speed_med}x faster on median time (${TLS_PACKETS[tls]} packets); goal >= ${GOAL_SPEEDUP}x: **$v**"
      if awk -v r="${RSS[tls-analyze]}" -v g="$GOAL_RSS_MB" 'BEGIN { exit !(r < g) }'; then v=PASS; else v=FAIL; GOALS_OK=0; fi
      echo "- tls (web mix): analyze peak RSS: ${RSS[tls-analyze]} MB; goal < ${GOAL_RSS_MB} MB: **$v**"
    else
      GOALS_OK=0
      echo "- tls: n/a (analyze ${STATUS[tls-analyze]:-not run}, tshark ${STATUS[tls-tshark]:-not run}): **not checked**"
    fi
  fi
  if wanted tls-small; then
    if ok tls-small-analyze && ok tls-small-tshark; then
      speed_med=$(awk -v t="${MEDIAN[tls-small-tshark]}" -v a="${MEDIAN[tls-small-analyze]}" 'BEGIN { printf "%.1f", t / a }')
      echo "- tls-small (95% 0.5 KiB pages, the worst case; reported, no goal): ${speed_med}x faster on median time (${TLS_PACKETS[tls-small]} packets), analyze peak RSS ${RSS[tls-small-analyze]} MB"
    else
      echo "- tls-small: n/a (analyze ${STATUS[tls-small-analyze]:-not run}, tshark ${STATUS[tls-small-tshark]:-not run})"
    fi
  fi
  if [ "$PROXY_STATUS" = ok ]; then
    line="$(grep -m1 '^- proxy tap / HAProxy:' "$TMP/proxy.md")"
    echo "${line/- proxy tap \/ HAProxy:/- proxy tap vs HAProxy (req\/s):}"
    grep -q 'goal >= [0-9.]*: \*\*PASS\*\*' <<< "$line" || GOALS_OK=0
  else
    GOALS_OK=0
    echo "- proxy tap vs HAProxy (req/s): n/a (proxy ${PROXY_STATUS}); goal >= 0.7: **not checked**"
  fi
  if [ "$PROXY_STATUS" = ok ]; then
    echo
    cat "$TMP/proxy.md"
  fi
} > "$TMP/results.md"

cp "$TMP/results.md" "$RESULTS"
echo
cat "$RESULTS"
echo
echo "(written to ${RESULTS#"$ROOT_DIR"/})"

if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$GOALS_OK" != 1 ]; then
  exit 1
fi
exit 0
