#!/usr/bin/env bash
# Build the stand-in DeepStream image dsfleet/deepstream-stub:latest (and :<content hash>) with `docker import`
# from Debian's busybox-static: /bin/busybox + applet links + scripts/stub-image/entrypoint.sh. No registry needed.
# Idempotent: when the image of this content hash exists, only the :latest tag is (re)pointed at it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="${STUB_IMAGE_REPO:-dsfleet/deepstream-stub}"
busybox="${BUSYBOX:-/bin/busybox}"
entry="$here/stub-image/entrypoint.sh"
[ -x "$busybox" ] || { echo "error: $busybox missing (apt-get install busybox-static)" >&2; exit 2; }
"$busybox" --list >/dev/null 2>&1 || { echo "error: $busybox is not a static busybox" >&2; exit 2; }
hash=$(cat "$busybox" "$entry" "$0" | sha256sum | cut -c1-12)
if docker image inspect "$repo:$hash" >/dev/null 2>&1; then
    docker tag "$repo:$hash" "$repo:latest"
    echo "$repo:$hash (exists)"
    exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/workspace/configs" "$root/workspace/build" "$root/tmp" "$root/proc" "$root/sys" "$root/dev" "$root/etc"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
install -m 0755 "$entry" "$root/entrypoint.sh"
ln -sf /bin/busybox "$root/bin/deepstream-app"
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
tar -C "$root" -c . | docker import \
    -c 'ENTRYPOINT ["/bin/sh", "/entrypoint.sh"]' \
    -c 'WORKDIR /workspace' \
    -c 'ENV PATH=/bin' \
    -c "LABEL io.dsfleet.stub-hash=$hash" \
    - "$repo:$hash" >/dev/null
docker tag "$repo:$hash" "$repo:latest"
echo "$repo:$hash"
