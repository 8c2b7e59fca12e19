#!/usr/bin/env bash
# System packages the tests and the demo use, installed with apt when missing:
#  - python3-gi: GLib's key-file parser (what DeepStream itself uses) to check rendered files;
#  - postgresql: the store's tests also run against a real PostgreSQL server (started by the tests);
#  - docker.io, busybox-static: the agent's tests run real containers of the stand-in DeepStream image built from
#    Debian's static busybox (the tests start `dockerd --bridge=none --iptables=false --ip6tables=false` when no
#    engine answers);
#  - chromium: the dashboard's browser test drives Debian's headless Chromium through Playwright (never
#    `playwright install`).
set -euo pipefail
need=()
/usr/bin/python3 -c 'import gi; gi.require_version("GLib", "2.0"); from gi.repository import GLib' >/dev/null 2>&1 || need+=(python3-gi)
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
{ [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ]; } || need+=(postgresql)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
{ command -v dpkg >/dev/null && dpkg -s busybox-static >/dev/null 2>&1; } || need+=(busybox-static)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "warning: missing system packages: ${need[*]} (install with: sudo apt-get install -y ${need[*]})" >&2
    echo "         tests that need them fail under CI=true and are skipped otherwise" >&2
    exit 0
fi
echo "installing system packages: ${need[*]}"
apt-get -o DPkg::Lock::Timeout=300 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}"
# Debian starts a cluster on install; dsfleet's tests start their own throw-away server instead.
