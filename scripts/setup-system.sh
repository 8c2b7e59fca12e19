#!/usr/bin/env bash
# System packages the tests and the demo use, installed with apt when missing:
#  - python3-gi: GLib's key-file parser (what DeepStream itself uses) to check rendered files;
#  - postgresql: the store's tests also run against a real PostgreSQL server (started by the tests).
set -euo pipefail
need=()
/usr/bin/python3 -c 'import gi; gi.require_version("GLib", "2.0"); from gi.repository import GLib' >/dev/null 2>&1 || need+=(python3-gi)
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
{ [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ]; } || need+=(postgresql)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "warning: missing system packages: ${need[*]} (install with: sudo apt-get install -y ${need[*]})" >&2
    echo "         tests that need them fail under CI=true and are skipped otherwise" >&2
    exit 0
fi
echo "installing system packages: ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
# Debian starts a cluster on install; dsfleet's tests start their own throw-away server instead.
