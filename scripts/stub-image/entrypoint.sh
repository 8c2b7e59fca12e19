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
#
# With [source-list] use-nvmultiurisrcbin=1 and http-port=N (N > 0) it also serves nvmultiurisrcbin's REST API on
# port N, all interfaces, as DeepStream does (busybox `nc -ll`, this script again with "--rest" per request):
# POST stream/add, stream/remove; GET stream/get-stream-info, health/get-dsready-state, metrics. DS 7.0+ paths
# start with /api/v1, DS 6.2/6.3 ones do not: STUB_DS_VERSION (default 7.0) decides, the other style is a 404. The
# HTTP status is always 200; the body {"status":"HTTP/1.1 <code> <text>","reason":"..."} carries the outcome
# (STREAM_ADD_FAIL past max-batch-size, "Duplicate Camera id", "No record found"). The initial streams are the
# entries of list= / sensor-id-list= / sensor-name-list=. A stream whose URL host is listed in STUB_DOWN_HOSTS
# (space-separated) or in the file /tmp/stub-down (one a line; change it with `docker exec`) is dropped by the
# stub itself after one interval with a WARNING line, as DeepStream drops a source it cannot open. Each interval
# prints a **PERF line with one column per active stream (by source id) and one line
# "STREAM <camera_id> source=<source_id> frames=<n>" per stream; a stream's frame counter runs from its add on,
# whatever happens to the others. STUB_REST_FAIL=1: every add/remove answers 200 with a failure body.
CONF_DIR=/workspace/configs
DS=/tmp/ds
CR=$(printf '\r')

json_field() { # json_field KEY TEXT: the string value of "KEY" in TEXT (flat JSON as DeepStream's clients send it)
    printf '%s' "$2" | tr -d '\n' | sed -n "s/.*\"$1\"[ ]*:[ ]*\"\([^\"]*\)\".*/\1/p"
}

reply() { # reply BODY: HTTP 200 whatever the outcome, as nvds_rest_server does
    printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
        "$(printf '%s' "$1" | wc -c)" "$1"
}

outcome() { # outcome CODE TEXT REASON
    reply "{\"status\":\"HTTP/1.1 $1 $2\",\"reason\":\"$3\"}"
}

lock() { until mkdir "$DS/lock" 2>/dev/null; do sleep 0.01; done; }
unlock() { rmdir "$DS/lock"; }

stream_add() { # stream_add ID NAME URL: prints the outcome reason; 0 when added
    [ -n "$1" ] && [ -n "$3" ] || { echo "Source id/url empty"; return 1; }
    if grep -qxF "$1" "$DS"/streams/*/id 2>/dev/null; then echo "Duplicate Camera id"; return 1; fi
    count=$(ls "$DS/streams" | grep -c .)
    if [ "$count" -ge "$(cat "$DS/max")" ]; then echo "STREAM_ADD_FAIL"; return 1; fi
    sid=0
    while [ -e "$DS/streams/$sid" ]; do sid=$((sid + 1)); done
    mkdir "$DS/streams/$sid.new"
    printf '%s\n' "$1" > "$DS/streams/$sid.new/id"
    printf '%s\n' "${2:-$1}" > "$DS/streams/$sid.new/name"
    printf '%s\n' "$3" > "$DS/streams/$sid.new/url"
    echo 0 > "$DS/streams/$sid.new/frames"
    echo 0 > "$DS/streams/$sid.new/age"
    mv "$DS/streams/$sid.new" "$DS/streams/$sid"
    echo "STREAM_ADD_SUCCESS"
}

serve_rest() {
    read -r method path proto
    path=${path%"$CR"}
    len=0
    while read -r line; do
        line=${line%"$CR"}
        [ -z "$line" ] && break
        case "$line" in [Cc]ontent-[Ll]ength:*) len=$(echo "${line#*:}" | tr -d ' ') ;; esac
    done
    body=""
    [ "$len" -gt 0 ] 2>/dev/null && body=$(head -c "$len")
    path=${path%%\?*}
    case "${STUB_DS_VERSION:-7.0}" in
        6.*) route="$path"; case "$path" in /api/*) route="" ;; esac ;;
        *) route=""; case "$path" in /api/v1/*) route="${path#/api/v1}" ;; esac ;;
    esac
    case "$method $route" in
        "POST /stream/add"|"POST /stream/remove")
            id=$(json_field camera_id "$body"); name=$(json_field camera_name "$body")
            url=$(json_field camera_url "$body"); change=$(json_field change "$body")
            if [ -n "$STUB_REST_FAIL" ]; then outcome 500 "Internal Server Error" "STUB_REST_FAIL"; return; fi
            case "$route:$change" in
                /stream/add:*add*|/stream/add:*streaming*)
                    lock; reason=$(stream_add "$id" "$name" "$url"); rc=$?; unlock
                    if [ $rc -eq 0 ]; then
                        echo "** INFO: stream added camera_id=$id" >&2
                        outcome 200 OK "$reason"
                    else outcome 500 "Internal Server Error" "$reason"; fi ;;
                /stream/remove:*remove*)
                    lock
                    found=""
                    for d in "$DS"/streams/*; do
                        [ -f "$d/id" ] || continue
                        if [ "$(cat "$d/id")" = "$id" ] && [ "$(cat "$d/url")" = "$url" ]; then found="$d"; fi
                    done
                    [ -n "$found" ] && rm -rf "$found"
                    unlock
                    if [ -n "$found" ]; then
                        echo "** INFO: stream removed camera_id=$id" >&2
                        outcome 200 OK "STREAM_REMOVE_SUCCESS"
                    else outcome 400 "Bad Request" "No record found"; fi ;;
                *) outcome 400 "Bad Request" "unknown change: $change" ;;
            esac ;;
        "GET /stream/get-stream-info")
            items=""; n=0
            for d in "$DS"/streams/*; do
                [ -f "$d/id" ] || continue
                item="{\"camera_id\":\"$(cat "$d/id")\",\"camera_name\":\"$(cat "$d/name")\",\"source_id\":${d##*/}}"
                items="${items:+$items,}$item"; n=$((n + 1))
            done
            reply "{\"reason\":\"GET_LIVE_STREAM_INFO_SUCCESS\",\"status\":\"HTTP/1.1 200 OK\",\"stream-info\":{\"stream-count\":$n,\"stream-info\":[$items]}}" ;;
        "GET /health/get-dsready-state")
            case "${STUB_DS_VERSION:-7.0}" in
                6.*) printf 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' ;;
                *) reply '{"ds-ready":"YES","status":"HTTP/1.1 200 OK","reason":"DS_READY"}' ;;
            esac ;;
        "GET /metrics")
            items=""
            fps=$(echo "${STUB_FPS:-30.00}" | cut -d' ' -f1)
            for d in "$DS"/streams/*; do
                [ -f "$d/id" ] || continue
                item="{\"sensor_id\":\"$(cat "$d/id")\",\"source_id\":${d##*/},\"fps\":$fps,\"frame_number\":$(cat "$d/frames" 2>/dev/null || echo 0),\"latency_ms\":${STUB_LATENCY_MS:-42.5}}"
                items="${items:+$items,}$item"
            done
            reply "{\"status\":\"HTTP/1.1 200 OK\",\"reason\":\"GET_METRICS_SUCCESS\",\"stream-metrics\":[$items]}" ;;
        *)
            printf 'HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n' ;;
    esac
}

if [ "$1" = "--rest" ]; then
    serve_rest
    exit 0
fi

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

ini_get() { # ini_get GROUP KEY FILE: the value of KEY in [GROUP]
    awk -v g="[$1]" -v k="$2" '
        /^[ \t]*\[/ { sub(/[ \t]+$/, ""); ing = ($0 == g); next }
        ing { line = $0; sub(/^[ \t]+/, "", line); n = index(line, "=")
              if (n) { key = substr(line, 1, n - 1); sub(/[ \t]+$/, "", key)
                       if (key == k) { v = substr(line, n + 1); sub(/^[ \t]+/, "", v); sub(/[ \t;]+$/, "", v); print v; exit } } }' "$3"
}

MULTI=""
if [ "$(ini_get source-list use-nvmultiurisrcbin "$APP" 2>/dev/null)" = 1 ]; then
    PORT=$(ini_get source-list http-port "$APP")
    [ -n "$PORT" ] && [ "$PORT" -gt 0 ] 2>/dev/null && MULTI=1
fi

url_host() { echo "$1" | sed -e 's|^[a-zA-Z0-9+.-]*://||' -e 's|/.*||' -e 's|.*@||' -e 's|:[0-9]*$||'; }

is_down() { # is_down HOST
    for h in $STUB_DOWN_HOSTS; do [ "$h" = "$1" ] && return 0; done
    [ -f /tmp/stub-down ] && grep -qxF "$1" /tmp/stub-down
}

if [ -n "$MULTI" ]; then
    rm -rf "$DS"; mkdir -p "$DS/streams"
    max=$(ini_get source-list max-batch-size "$APP"); echo "${max:-30}" > "$DS/max"
    urls=$(ini_get source-list list "$APP" | tr ';' '\n')
    ids=$(ini_get source-list sensor-id-list "$APP" | tr ';' '\n')
    names=$(ini_get source-list sensor-name-list "$APP" | tr ';' '\n')
    i=1
    for url in $urls; do
        id=$(echo "$ids" | sed -n "${i}p"); name=$(echo "$names" | sed -n "${i}p")
        stream_add "${id:-$((i - 1))}" "$name" "$url" >/dev/null || echo "** WARN: source $i not added" >&2
        i=$((i + 1))
    done
    nc -ll -p "$PORT" -e /bin/sh /entrypoint.sh --rest &
    echo "** INFO: nvmultiurisrcbin REST server on port $PORT (DeepStream ${STUB_DS_VERSION:-7.0})"
fi

trap 'echo "Quitting"; echo "App run successful"; exit 0' TERM INT
if [ -z "$STUB_SAY" ] && [ -n "$STUB_SAY_FILE" ]; then STUB_SAY="$(cat "$STUB_SAY_FILE")"; fi
[ -n "$STUB_SAY" ] && echo "$STUB_SAY" >&2
echo "** INFO: <bus_callback:301>: Pipeline ready"
echo "** INFO: <bus_callback:287>: Pipeline running"

INTERVAL="${STUB_PERF_INTERVAL:-1}"
elapsed=0
lines=0

multi_tick() { # drop streams it cannot open, count frames, print **PERF and STREAM lines
    lock
    set -- ${STUB_FPS:-30.00}
    step=$(( ${1%%.*} * INTERVAL ))
    line="**PERF:  "; header="**PERF:  "
    for d in $(ls "$DS/streams" | sort -n); do
        d="$DS/streams/$d"
        [ -f "$d/id" ] || continue
        id=$(cat "$d/id"); age=$(cat "$d/age")
        host=$(url_host "$(cat "$d/url")")
        if [ "$age" -ge 1 ] && is_down "$host"; then
            echo "WARNING from src_elem${d##*/}: Could not open resource for reading and writing. (camera_id=$id host=$host)" >&2
            echo "** WARN: removing source ${d##*/} camera_id=$id: Could not open resource" >&2
            rm -rf "$d"
            continue
        fi
        frames=$(( $(cat "$d/frames") + step ))
        echo "$frames" > "$d/frames.t"; mv "$d/frames.t" "$d/frames"; echo $((age + 1)) > "$d/age"
        header="${header}FPS ${d##*/} (Avg)	"
        line="${line}$1 ($1)	"
        echo "STREAM $id source=${d##*/} frames=$frames"
    done
    unlock
    if [ "$header" != "$LAST_HEADER" ] || [ $((lines % 20)) -eq 0 ]; then printf '\n%s\n' "$header"; LAST_HEADER="$header"; fi
    echo "$line"
}

while :; do
  if [ -n "$MULTI" ]; then
    multi_tick
    lines=$((lines + 1))
  else
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
  fi
    sleep "$INTERVAL" &
    wait $!
    elapsed=$((elapsed + INTERVAL))
    if [ -n "$STUB_CRASH_AFTER" ] && [ "$elapsed" -ge "$STUB_CRASH_AFTER" ]; then
        echo "ERROR from src_bin_muxer: Internal data stream error (STUB_CRASH_AFTER=$STUB_CRASH_AFTER)" >&2
        echo "App run failed"
        exit "${STUB_CRASH_CODE:-255}"
    fi
done
