#!/usr/bin/env bash
# Run before `npm start`: live capture needs tcpdump. On Debian or Ubuntu, as root, install it
# when missing; otherwise say what to do. Never fails the start for a user who only reads files.
if command -v tcpdump >/dev/null 2>&1 || [ -x /usr/sbin/tcpdump ] || [ -x /usr/bin/tcpdump ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "keepalive-exporter: tcpdump is missing; installing it with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump >/dev/null && exit 0
fi
echo "keepalive-exporter: tcpdump is missing: install it (sudo apt-get install tcpdump), or read files with --pcap FILE" >&2
exit 0
