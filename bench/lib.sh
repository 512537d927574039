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
