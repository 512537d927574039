# Shared helpers for bench/*.sh (sourced, not executed).

# need_cmd COMMAND DEBIAN_PACKAGE: install the package with apt-get when the
# command is missing and we are root; otherwise fail with a clear message.
need_cmd() {
  local cmd="$1" pkg="$2"
  if command -v "$cmd" >/dev/null 2>&1 || [ -x "$cmd" ]; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: '$cmd' missing, installing Debian package '$pkg'" >&2
    if [ -z "${_BENCH_APT_UPDATED:-}" ]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
      _BENCH_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >&2
  fi
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$cmd" ]; then
    echo "bench: required command '$cmd' (package '$pkg') is not available" >&2
    return 1
  fi
}

# count_packets FILE: print the exact number of packets in FILE (pcap or
# pcapng), or nothing when the file is missing or unreadable.
count_packets() {
  local f="$1"
  [ -s "$f" ] || return 0
  capinfos -c -M "$f" 2>/dev/null | awk -F: '/Number of packets/ { gsub(/[^0-9]/, "", $2); print $2; exit }'
}

# bench_site WORK ERROR_LOG LEVEL LISTEN...: the benchmark's pages (small 0.5 KiB,
# medium 8 KiB, large 200 KiB, spanning several TCP segments) under WORK/www, and
# WORK/nginx.conf for a private nginx serving them with keep-alive (timeout 5 s,
# 100 requests per connection) on each LISTEN address; its temp files stay in WORK.
bench_site() {
  local work="$1" error_log="$2" level="$3" listen="" a
  shift 3
  for a in "$@"; do listen+="    listen $a;"$'\n'; done
  mkdir -p "$work/www" "$work/tmp"
  { printf '<!doctype html><title>small</title><p>'; head -c 540 < <(yes 'keep-alive bench small page.'); printf '</p>\n'; } > "$work/www/small.html"
  { printf '<!doctype html><title>medium</title><pre>\n'; head -c 8100 < <(yes 'keep-alive benchmark medium response line 0123456789'); printf '</pre>\n'; } > "$work/www/medium.html"
  head -c 204800 < <(yes 'keep-alive benchmark large body, spans several TCP segments 0123456789abcdef') > "$work/www/large.bin"
  chmod 755 "$work/www"; chmod 644 "$work/www/"*
  cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $error_log $level;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/tmp/client_body;
  proxy_temp_path $work/tmp/proxy;
  fastcgi_temp_path $work/tmp/fastcgi;
  uwsgi_temp_path $work/tmp/uwsgi;
  scgi_temp_path $work/tmp/scgi;
  types { text/html html; application/octet-stream bin; }
  default_type application/octet-stream;
  sendfile on;
  keepalive_timeout 5s 5;
  keepalive_requests 100;
  server {
${listen}    server_name localhost;
    root $work/www;
  }
}
CONF
}

# fill_capture NAME PARTIAL TARGET MAX_TOPUPS TOPUP_FN: until the capture being written
# (PARTIAL, by the tcpdump TCPDUMP_PID) holds TARGET packets, calls `TOPUP_FN N` (at most
# MAX_TOPUPS times, N = 1, 2, ...); exits if tcpdump died. Needs BENCH_DIR and log().
fill_capture() {
  local name="$1" partial="$2" target="$3" max="$4" topup="$5" topups=0 n
  while :; do
    capture_alive "$name"
    n=$(node "$BENCH_DIR/count-packets.mjs" "$partial")
    log "captured so far: $n packets ($(du -h "$partial" | cut -f1))"
    [ "$n" -ge "$target" ] && break
    if [ "$topups" -ge "$max" ]; then
      log "warning: still below $target packets after $max top-ups"
      break
    fi
    topups=$((topups + 1))
    "$topup" "$topups"
  done
}

# capture_alive NAME: exits when the tcpdump TCPDUMP_PID is gone before the traffic was done.
capture_alive() {
  if ! kill -0 "$TCPDUMP_PID" 2>/dev/null; then
    echo "$1: tcpdump exited before the traffic was done" >&2
    exit 1
  fi
}
