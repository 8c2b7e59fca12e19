#!/usr/bin/env bash
# Checks that the interpreter is Python >= 3.11 and can make virtualenvs; on Debian installs python3-venv if needed.
set -euo pipefail
py=${1:-python3}
if ! command -v "$py" >/dev/null; then
    echo "error: $py not found; install Python 3.11 (Debian: apt-get install -y python3 python3-venv)" >&2
    exit 2
fi
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "error: dsfleet needs Python >= 3.11, $py is $("$py" --version 2>&1)" >&2; exit 2; }
if ! "$py" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${ver}-venv" python3-venv
    else
        echo "error: $py cannot create virtualenvs; run: sudo apt-get install -y python3-venv" >&2; exit 2
    fi
fi
