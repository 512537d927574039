#!/usr/bin/env bash
# Proxy tap benchmark: wrk (keep-alive, small responses) against a private nginx
#   - directly,
#   - through HAProxy 2.6 in `mode tcp`,
#   - through the proxy tap (the built daemon: node dist/cli/main.js --proxy ...),
#   - through a bare Node.js relay with pipe() both ways (bench/pipe-relay.mjs),
# all on the same machine in the same run, several rounds (targets interleaved),
# medians. Run via `npm run bench` (bench/run.sh calls it) or:
#
#   bash bench/proxy.sh [--rounds N] [--duration S] [--profile] [--out FILE]
#
#   --rounds N     measured wrk runs per target (default 5); medians reported
#   --duration S   seconds per wrk run (default 6)
#   --profile      afterwards, run the tap once more under `node --cpu-prof`
#                  with the same load and summarise where its time went
#   --profile-if-missed   the same, only when the goal below is missed
#   --out FILE     also write the markdown report to FILE
#
# Environment: WRK_THREADS (2), WRK_CONNS (50), WARMUP (2, seconds per target
# before the rounds), HAPROXY_NBTHREAD (empty: HAProxy's default, one thread
# per CPU), ports NGINX_PORT (18391), TAP_PORT (18392), HAPROXY_PORT (18393),
# PIPE_PORT (18394), NODE (node).
#
# Prints the markdown report on stdout (progress on stderr). Goal (issue 4):
# the tap's requests/s at least 0.7 x HAProxy's.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$BENCH_DIR/.." && pwd)"
cd "$ROOT_DIR"
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

ROUNDS=5
DURATION=6
PROFILE=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift ;;
    --rounds=*) ROUNDS="${1#*=}" ;;
    --duration) DURATION="$2"; shift ;;
    --duration=*) DURATION="${1#*=}" ;;
    --profile) PROFILE=1 ;;
    --profile-if-missed) PROFILE=if-missed ;;
    --out) OUT="$2"; shift ;;
    --out=*) OUT="${1#*=}" ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "proxy.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "proxy.sh: --rounds needs a positive integer" >&2; exit 2; }
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || { echo "proxy.sh: --duration needs a positive integer (seconds)" >&2; exit 2; }

WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNS="${WRK_CONNS:-50}"
WARMUP="${WARMUP:-2}"
HAPROXY_NBTHREAD="${HAPROXY_NBTHREAD:-}"
NGINX_PORT="${NGINX_PORT:-18391}"
TAP_PORT="${TAP_PORT:-18392}"
HAPROXY_PORT="${HAPROXY_PORT:-18393}"
PIPE_PORT="${PIPE_PORT:-18394}"
NODE="${NODE:-node}"
HOST=127.0.0.1
GOAL_RATIO=0.7

need_cmd nginx nginx
need_cmd wrk wrk
need_cmd haproxy haproxy
need_cmd curl curl
need_cmd node nodejs
[ -f dist/cli/main.js ] || { echo "proxy.sh: dist/cli/main.js is missing: run npm run build" >&2; exit 1; }

log() { printf '[%(%H:%M:%S)T] proxy: %s\n' -1 "$*" >&2; }
CLK_TCK="$(getconf CLK_TCK)"

for port in "$NGINX_PORT" "$TAP_PORT" "$HAPROXY_PORT" "$PIPE_PORT"; do
  if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
    echo "proxy.sh: something already listens on $HOST:$port; stop it or set the *_PORT variables" >&2
    exit 1
  fi
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ka-bench-proxy.XXXXXX")"
chmod 755 "$WORK"
declare -A PID=()

# stop_pid PID: SIGTERM one process we started, wait up to 10 s, then SIGKILL it.
stop_pid() {
  local pid="$1"
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local k
  for k in "${!PID[@]}"; do stop_pid "${PID[$k]}"; done
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "proxy.sh: temp dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # wait_port PORT NAME PID
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { echo "proxy.sh: $2 exited; its log:" >&2; tail -n 20 "$WORK/$2.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "proxy.sh: $2 did not listen on $HOST:$1" >&2
  exit 1
}

# ---------------------------------------------------------------- the upstream
mkdir -p "$WORK/www" "$WORK/run"
chmod 755 "$WORK/www"
# A small page (600 bytes), like most responses of a busy site.
head -c 600 /dev/zero | tr '\0' 'k' > "$WORK/www/small.html"
chmod 644 "$WORK/www/small.html"
cat > "$WORK/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $WORK/run/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type text/html;
  keepalive_timeout 65s;
  keepalive_requests 100000000;
  client_body_temp_path $WORK/run/body;
  proxy_temp_path $WORK/run/proxy;
  fastcgi_temp_path $WORK/run/fastcgi;
  uwsgi_temp_path $WORK/run/uwsgi;
  scgi_temp_path $WORK/run/scgi;
  server {
    listen $HOST:$NGINX_PORT;
    root $WORK/www;
  }
}
EOF
nginx -t -p "$WORK/" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" > "$WORK/nginx.log" 2>&1 ||
  { echo "proxy.sh: nginx config test failed:" >&2; cat "$WORK/nginx.log" >&2; exit 1; }
nginx -p "$WORK/" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" >> "$WORK/nginx.log" 2>&1 &
PID[nginx]=$!
wait_port "$NGINX_PORT" nginx "${PID[nginx]}"

# ---------------------------------------------------------------- the relays
cat > "$WORK/haproxy.cfg" <<EOF
global
  maxconn 4096
${HAPROXY_NBTHREAD:+  nbthread $HAPROXY_NBTHREAD}
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen bench
  bind $HOST:$HAPROXY_PORT
  server nginx $HOST:$NGINX_PORT
EOF
haproxy -c -f "$WORK/haproxy.cfg" > "$WORK/haproxy.log" 2>&1 ||
  { echo "proxy.sh: haproxy config check failed:" >&2; cat "$WORK/haproxy.log" >&2; exit 1; }
haproxy -db -f "$WORK/haproxy.cfg" >> "$WORK/haproxy.log" 2>&1 &
PID[haproxy]=$!
wait_port "$HAPROXY_PORT" haproxy "${PID[haproxy]}"

start_tap() { # start_tap [NODE_OPTIONS...]: the daemon, proxy tap only (no capture)
  "$NODE" "$@" dist/cli/main.js --proxy "$HOST:$TAP_PORT=$HOST:$NGINX_PORT" \
    --web.listen-address "$HOST:0" --log.level info > "$WORK/tap.log" 2>&1 &
  PID[tap]=$!
  wait_port "$TAP_PORT" tap "${PID[tap]}"
  # Where its /metrics is: the daemon logs the address it bound (port 0: the OS picked it).
  TAP_METRICS=""
  for _ in $(seq 100); do
    TAP_METRICS="$(grep -o 'listening on http://[^"]*/metrics' "$WORK/tap.log" | head -n1 | sed 's/^listening on //')" || true
    [ -n "$TAP_METRICS" ] && break
    sleep 0.05
  done
}
start_tap

"$NODE" bench/pipe-relay.mjs "$HOST:$PIPE_PORT" "$HOST:$NGINX_PORT" > "$WORK/pipe.log" 2>&1 &
PID[pipe]=$!
wait_port "$PIPE_PORT" pipe "${PID[pipe]}"

for port in "$NGINX_PORT" "$HAPROXY_PORT" "$TAP_PORT" "$PIPE_PORT"; do
  curl -fsS -o /dev/null --max-time 5 "http://$HOST:$port/small.html" ||
    { echo "proxy.sh: no 200 for /small.html through port $port" >&2; exit 1; }
done

# ---------------------------------------------------------------- measuring
TARGETS=(direct haproxy tap pipe)
declare -A PORT_OF=([direct]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [tap]=$TAP_PORT [pipe]=$PIPE_PORT)
declare -A LABEL=(
  [direct]="direct to nginx"
  [haproxy]="HAProxy $(haproxy -v 2>/dev/null | head -n1 | awk '{ print $3 }') mode tcp${HAPROXY_NBTHREAD:+ (nbthread $HAPROXY_NBTHREAD)}"
  [tap]="keepalive-exporter proxy tap"
  [pipe]="bare Node.js net relay, pipe() both ways"
)
# The process whose CPU time is charged to the target (the relay; nginx for direct).
cpu_pid() {
  case "$1" in
    direct) pgrep -P "${PID[nginx]}" | head -n1 ;; # the nginx worker
    *) echo "${PID[$1]}" ;;
  esac
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
metric_sum() { # metric_sum NAME: sum of a counter over all its series on the tap's /metrics
  [ -n "$TAP_METRICS" ] || { echo 0; return; }
  curl -fsS --max-time 5 "$TAP_METRICS" 2>/dev/null | awk -v n="$1" '$1 ~ "^"n"({|$)" { s += $NF } END { printf "%d", s }'
}

# run_wrk TARGET SECONDS FILE
run_wrk() {
  wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${2}s" --latency "http://$HOST:${PORT_OF[$1]}/small.html" > "$3" 2>&1
}

# Results: one line per run in $WORK/results: TARGET ROUND RPS P50_MS REQUESTS CPU_S ERRORS
: > "$WORK/results"
measure() { # measure TARGET ROUND
  local t="$1" r="$2" pid c0 c1 out="$WORK/wrk-$1-$2.txt" m0=0 m1=0
  pid="$(cpu_pid "$t")"
  [ "$t" = tap ] && m0="$(metric_sum keepalive_requests_total)"
  c0="$(cpu_ticks "$pid")"
  run_wrk "$t" "$DURATION" "$out"
  c1="$(cpu_ticks "$pid")"
  if [ "$t" = tap ]; then
    sleep 0.3 # the last responses' facts
    m1="$(metric_sum keepalive_requests_total)"
    TAP_COUNTED+=("$((m1 - m0))")
  fi
  awk -v t="$t" -v r="$r" -v cpu="$(awk -v a="$c0" -v b="$c1" -v k="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / k }')" '
    /Requests\/sec:/ { rps = $2 }
    /^ +50%/ { v = $2; if (v ~ /us$/) p50 = v / 1000; else if (v ~ /ms$/) p50 = v + 0; else if (v ~ /s$/) p50 = v * 1000; }
    / requests in / { n = $1 }
    /Socket errors|Non-2xx/ { err = err $0 ";" }
    END { printf "%s %s %s %.3f %s %s %s\n", t, r, rps, p50, n, cpu, (err == "" ? "-" : err) }
  ' "$out" | sed 's/ \+;/;/g' >> "$WORK/results"
  log "$(tail -n1 "$WORK/results" | awk '{ printf "%-8s round %s: %s req/s, p50 %s ms, %s requests, %s s CPU", $1, $2, $3, $4, $5, $6 }')"
}

TAP_COUNTED=()
log "warming up (${WARMUP} s per target)"
for t in "${TARGETS[@]}"; do run_wrk "$t" "$WARMUP" "$WORK/warmup-$t.txt"; done
T0=$(date +%s)
for r in $(seq 1 "$ROUNDS"); do
  # Rotate the order each round so no target always runs first or last.
  for i in "${!TARGETS[@]}"; do
    t="${TARGETS[$(( (i + r - 1) % ${#TARGETS[@]} ))]}"
    measure "$t" "$r"
  done
done
ELAPSED=$(( $(date +%s) - T0 ))

# ---------------------------------------------------------------- report
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A RPS P50 CPU_US ERRS
for t in "${TARGETS[@]}"; do
  RPS[$t]=$(awk -v t="$t" '$1 == t { print $3 }' "$WORK/results" | median)
  P50[$t]=$(awk -v t="$t" '$1 == t { print $4 }' "$WORK/results" | median)
  CPU_US[$t]=$(awk -v t="$t" '$1 == t && $5 > 0 { printf "%.2f\n", $6 / $5 * 1e6 }' "$WORK/results" | median)
  ERRS[$t]=$(awk -v t="$t" '$1 == t && $7 != "-" { n++ } END { print n + 0 }' "$WORK/results")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
R_TAP_HA=$(ratio "${RPS[tap]}" "${RPS[haproxy]}")
R_HA_DIRECT=$(ratio "${RPS[haproxy]}" "${RPS[direct]}")
R_TAP_DIRECT=$(ratio "${RPS[tap]}" "${RPS[direct]}")
R_PIPE_DIRECT=$(ratio "${RPS[pipe]}" "${RPS[direct]}")
R_TAP_PIPE=$(ratio "${RPS[tap]}" "${RPS[pipe]}")
if awk -v r="$R_TAP_HA" -v g="$GOAL_RATIO" 'BEGIN { exit !(r >= g) }'; then VERDICT=PASS; else VERDICT=FAIL; fi

REPORT="$WORK/report.md"
{
  echo "## Proxy tap: wrk through the relays"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(nproc) CPUs; node $("$NODE" -v); nginx $(nginx -v 2>&1 | sed 's|.*/||'); $(haproxy -v 2>/dev/null | head -n1 | awk '{ print "HAProxy " $3 }'); $(wrk -v 2>&1 | head -n1 | awk '{ print $1, $2 }')"
  echo "- load: \`wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s --latency http://$HOST:PORT/small.html\` (HTTP/1.1 keep-alive, 600-byte responses from one nginx worker); rounds: $ROUNDS, targets interleaved (order rotated each round), ${WARMUP} s warm-up each; medians over rounds; measuring took ${ELAPSED} s"
  echo "- CPU/request: utime+stime of the relay process (/proc/PID/stat) over the run / requests; for \"direct\" the nginx worker's"
  echo
  echo "| target | req/s | p50 ms | CPU µs/request | runs with errors |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for t in "${TARGETS[@]}"; do
    printf '| %s | %.0f | %.3f | %s | %s |\n' "${LABEL[$t]}" "${RPS[$t]}" "${P50[$t]}" "${CPU_US[$t]}" "${ERRS[$t]}"
  done
  echo
  echo "Per run (req/s): $(for t in "${TARGETS[@]}"; do printf '%s %s; ' "$t" "$(awk -v t="$t" '$1 == t { printf "%.0f ", $3 }' "$WORK/results" | sed 's/ $//')"; done | sed 's/; $//')"
  if [ "${#TAP_COUNTED[@]}" -gt 0 ]; then
    echo
    echo "Requests the tap counted (keepalive_requests_total) per measured run: ${TAP_COUNTED[*]}; wrk completed: $(awk '$1 == "tap" { printf "%s ", $5 }' "$WORK/results" | sed 's/ $//') (wrk stops with up to $WRK_CONNS requests in flight)"
  fi
  echo
  echo "- proxy tap / HAProxy: **$R_TAP_HA** (goal >= $GOAL_RATIO: **$VERDICT**)"
  echo "- HAProxy / direct: $R_HA_DIRECT; proxy tap / direct: $R_TAP_DIRECT; pipe() relay / direct: $R_PIPE_DIRECT; proxy tap / pipe() relay: $R_TAP_PIPE"
} > "$REPORT"

# ---------------------------------------------------------------- profile
if [ "$PROFILE" = 1 ] || { [ "$PROFILE" = if-missed ] && [ "$VERDICT" != PASS ]; }; then
  log "profiling the tap (node --cpu-prof) under the same load"
  stop_pid "${PID[tap]}"
  PROF_DIR="$ROOT_DIR/bench/out/profile"
  mkdir -p "$PROF_DIR"
  rm -f "$PROF_DIR"/*.cpuprofile
  start_tap --cpu-prof --cpu-prof-dir="$PROF_DIR"
  run_wrk tap "$WARMUP" "$WORK/profile-warmup.txt"
  run_wrk tap "$DURATION" "$WORK/profile-wrk.txt"
  stop_pid "${PID[tap]}"
  unset 'PID[tap]'
  PROF="$(ls -t "$PROF_DIR"/*.cpuprofile 2>/dev/null | head -n1)"
  {
    echo
    echo "### Where the tap's time goes (\`node --cpu-prof\`, ${DURATION} s of the same load)"
    echo
    if [ -n "$PROF" ]; then
      echo "wrk under the profiler: $(awk '/Requests\/sec:/ { print $2 " req/s" }' "$WORK/profile-wrk.txt") (the profiler costs some). Profile: \`${PROF#"$ROOT_DIR"/}\`"
      echo
      "$NODE" bench/cpuprofile-top.mjs "$PROF" 25
    else
      echo "no profile written (see $WORK/tap.log)"
    fi
  } >> "$REPORT"
fi

cat "$REPORT"
if [ -n "$OUT" ]; then cp "$REPORT" "$OUT"; fi
