#!/bin/sh
# dsfleet/deepstream-stub: a stand-in for a DeepStream container (busybox sh), used by dsfleet's tests.
#
# Reads /workspace/configs like deepstream-app would: the app config is the file after "-c" in the arguments,
# else /workspace/configs/deepstream_app_config.txt, else app_conf.json (the ccm layout). It checks that the
# app config is a key file (or JSON for app_conf.json) and that every "config-file=" it names exists and is a
# key file; otherwise it prints a DeepStream-like error and exits 255 ("App run failed").
# Then it prints "**PERF:" lines once a second, one "cur (avg)" pair per source of the config
# ([sourceN] groups, or the entries of a [source-list] list=, or the URLs of source_list.json), with a header
# every 20 lines.
# Environment: STUB_FPS (default 30.00; a space-separated list gives each source its own value, the last one
# repeats), STUB_SOURCES (override the source count), STUB_CRASH_AFTER=N (after N seconds print an error and
# exit STUB_CRASH_CODE, default 255), STUB_PERF_INTERVAL (seconds, default 1), STUB_SAY (a line printed to stderr
# once at start, e.g. to see what the agent does with a credential in a log; or read from the file STUB_SAY_FILE
# names, as a secret env variable reaches a container). SIGTERM: "Quitting", exit 0.
CONF_DIR=/workspace/configs
APP=""
prev=""
for arg in "$@"; do
    if [ "$prev" = "-c" ]; then APP="$arg"; fi
    prev="$arg"
done
if [ -z "$APP" ]; then
    if [ -f "$CONF_DIR/deepstream_app_config.txt" ]; then APP="$CONF_DIR/deepstream_app_config.txt"
    else APP="$CONF_DIR/app_conf.json"; fi
fi

fail() {
    echo "$1" >&2
    echo "App run failed"
    exit 255
}

is_keyfile() {
    # a GLib key file: comments, blank lines, [groups] and key=value lines, the first entry a group
    awk 'BEGIN { ok = 1; seen = 0 }
         /^[ \t]*(#.*)?$/ { next }
         /^\[[^]]+\][ \t]*$/ { seen = 1; next }
         /^[^=\[]+=/ { if (!seen) ok = 0; next }
         { ok = 0 }
         END { exit(ok && seen ? 0 : 1) }' "$1"
}

[ -f "$APP" ] || fail "** ERROR: <main:706>: Failed to set pipeline to PAUSED: config file not found: $APP"
case "$APP" in
    *.json)
        grep -q '{' "$APP" || fail "** ERROR: <parse_config_file:112>: Failed to parse config file: $APP" ;;
    *)
        is_keyfile "$APP" || fail "** ERROR: <parse_config_file:540>: Failed to parse config file: $APP" ;;
esac
for ref in $(grep -E '^[ \t]*config-file[ \t]*=' "$APP" 2>/dev/null | sed 's/^[^=]*=[ \t]*//'); do
    case "$ref" in /*) path="$ref" ;; *) path="$(dirname "$APP")/$ref" ;; esac
    [ -f "$path" ] || fail "** ERROR: <parse_gie:1082>: Failed to parse config file: $path (no such file)"
    is_keyfile "$path" || fail "Error: Could not parse config file: $path (not a key file)"
done

if [ -n "$STUB_SOURCES" ]; then
    SOURCES="$STUB_SOURCES"
else
    SOURCES=$(grep -cE '^\[source[0-9]+\]' "$APP")
    if [ "$SOURCES" -eq 0 ]; then
        list=$(grep -E '^[ \t]*list[ \t]*=' "$APP" | head -n 1 | sed 's/^[^=]*=//')
        [ -n "$list" ] && SOURCES=$(echo "$list" | tr ';' '\n' | grep -c .)
    fi
    if [ "$SOURCES" -eq 0 ] && [ -f "$CONF_DIR/source_list.json" ]; then
        SOURCES=$(grep -oE '(rtsp|rtsps|file|http|https)://' "$CONF_DIR/source_list.json" | grep -c .)
    fi
    [ "$SOURCES" -gt 0 ] 2>/dev/null || SOURCES=1
fi

trap 'echo "Quitting"; echo "App run successful"; exit 0' TERM INT
if [ -z "$STUB_SAY" ] && [ -n "$STUB_SAY_FILE" ]; then STUB_SAY="$(cat "$STUB_SAY_FILE")"; fi
[ -n "$STUB_SAY" ] && echo "$STUB_SAY" >&2
echo "** INFO: <bus_callback:301>: Pipeline ready"
echo "** INFO: <bus_callback:287>: Pipeline running"

INTERVAL="${STUB_PERF_INTERVAL:-1}"
elapsed=0
lines=0
while :; do
    if [ $((lines % 20)) -eq 0 ]; then
        header="**PERF:  "
        i=0
        while [ $i -lt "$SOURCES" ]; do header="${header}FPS $i (Avg)	"; i=$((i + 1)); done
        printf '\n%s\n' "$header"
    fi
    line="**PERF:  "
    i=0
    set -- ${STUB_FPS:-30.00}
    value="$1"
    while [ $i -lt "$SOURCES" ]; do
        if [ $# -gt 0 ]; then value="$1"; shift; fi
        line="${line}${value} (${value})	"
        i=$((i + 1))
    done
    echo "$line"
    lines=$((lines + 1))
    sleep "$INTERVAL" &
    wait $!
    elapsed=$((elapsed + INTERVAL))
    if [ -n "$STUB_CRASH_AFTER" ] && [ "$elapsed" -ge "$STUB_CRASH_AFTER" ]; then
        echo "ERROR from src_bin_muxer: Internal data stream error (STUB_CRASH_AFTER=$STUB_CRASH_AFTER)" >&2
        echo "App run failed"
        exit "${STUB_CRASH_CODE:-255}"
    fi
done
