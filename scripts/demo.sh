#!/usr/bin/env bash
# `make demo`: the live loop on this machine — `dsfleet demo` (reconciler/demo.py) starts an embedded broker, the
# coordinator on a copy of manifests/ and one agent per node with real containers of the stand-in DeepStream image,
# then shows a live edit converging, a killed container healed and a bad commit rejected; it removes everything it
# started at the end (or on Ctrl-C). Writes only under .dsfleet/demo/. Pass flags with DEMO_ARGS="--duration 60".
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
# shellcheck disable=SC2086
exec "$BIN/dsfleet" demo ${DEMO_ARGS:-} "$@"
