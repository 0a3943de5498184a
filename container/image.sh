#!/bin/bash
# Build the battery-twin image without a container registry: a Debian bookworm base made by mmdebstrap (cached),
# then `podman build` of container/Containerfile on it (layer cache reused). Prints the image id, size and time.
#
#   container/image.sh [amd64|arm64]                  (what `make image` and `make image ARCH=arm64` run)
#
# Environment (all optional):
#   BATTERY_TWIN_CACHE  cache of base root filesystems (default /var/cache/battery-twin: outside the checkout, so a
#                       fresh clone on the same machine reuses it; podman's layer cache is in /var/lib/containers)
#   IMAGE               tag to build (default localhost/battery-twin:edge-ARCH)
#   IIDFILE             also write the built image id to this file (the tests run the image by id)
#   PODMAN              podman command (default container/podman.sh: the settings in container/containers.conf)
#   PIP_INDEX_URL       package index (default: the machine's pip `global.index-url`, else https://pypi.org/simple)
#   PIP_CA              CA bundle for the index (default: pip's `global.cert`, else /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
ARCH="${1:-amd64}"
case "$ARCH" in
    amd64|x86_64) ARCH=amd64 ;;
    arm64|aarch64) ARCH=arm64 ;;
    *) echo "image.sh: unknown architecture '$ARCH' (amd64 or arm64)" >&2; exit 2 ;;
esac
CACHE="${BATTERY_TWIN_CACHE:-/var/cache/battery-twin}"
IMAGE="${IMAGE:-localhost/battery-twin:edge-$ARCH}"
PODMAN="${PODMAN:-$HERE/podman.sh}"

need() { command -v "$1" >/dev/null 2>&1 || { echo "image.sh: $1 is not installed ($2)" >&2; exit 1; }; }
need podman "apt-get install podman runc"
need mmdebstrap "apt-get install mmdebstrap"
pip_config() { python3 -m pip config get "$1" 2>/dev/null || true; }
PIP_INDEX_URL="${PIP_INDEX_URL:-$(pip_config global.index-url)}"
PIP_INDEX_URL="${PIP_INDEX_URL:-https://pypi.org/simple}"
PIP_CA="${PIP_CA:-$(pip_config global.cert)}"
PIP_CA="${PIP_CA:-/etc/ssl/certs/ca-certificates.crt}"

if [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
    "$HERE/binfmt.sh" "$ARCH"
fi

# The base: Debian's essential set plus python3 and python3-venv, passwd (useradd) and libstdc++6 (the manylinux
# wheels of numpy and onnxruntime need it); mmdebstrap installs no Recommends, and its merged-usr hook installs
# usr-is-merged (else apt picks usrmerge, which drags in 50 MB of perl). No docs, man pages or locales, and no
# apt: the image installs nothing from Debian later.
# The base's tag carries a hash of these arguments: changing them builds a new base instead of reusing a stale one.
# shellcheck disable=SC2054  # the commas separate the packages of one --include
MMDEBSTRAP_ARGS=(--variant=essential --include=python3,python3-venv,passwd,libstdc++6 --format=tar
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --dpkgopt=path-exclude=/usr/share/doc/* --dpkgopt=path-include=/usr/share/doc/*/copyright
    --dpkgopt=path-exclude=/usr/share/man/* --dpkgopt=path-exclude=/usr/share/locale/*
    --dpkgopt=path-exclude=/usr/share/info/*)
KEY="$(printf '%s\n' "${MMDEBSTRAP_ARGS[@]}" | sha256sum | cut -c1-12)"
BASE="localhost/battery-twin-base:bookworm-$ARCH-$KEY"
TAR="$CACHE/base-bookworm-$ARCH-$KEY.tar"

t0=$(date +%s)
mkdir -p "$CACHE"
(
    flock 9  # two builds at once (two checkouts running make test) make the base once
    if ! "$PODMAN" image exists "$BASE"; then
        if [ ! -s "$TAR" ]; then
            echo "image.sh: building the $ARCH base with mmdebstrap into $TAR (cached for next time)"
            rm -f "$TAR.part"
            mmdebstrap --quiet --arch="$ARCH" "${MMDEBSTRAP_ARGS[@]}" bookworm "$TAR.part"
            mv "$TAR.part" "$TAR"
        fi
        "$PODMAN" import --quiet --arch "$ARCH" "$TAR" "$BASE" >/dev/null
        # Bases made with other arguments are stale: drop their tars (their images go once no image uses them).
        for old in "$CACHE"/base-bookworm-"$ARCH"-*.tar; do
            [ "$old" = "$TAR" ] || [ ! -e "$old" ] || rm -f "$old"
        done
        "$PODMAN" images --format '{{.Repository}}:{{.Tag}}' localhost/battery-twin-base \
            | grep -- "-$ARCH-" | grep -v -- "-$KEY\$" | xargs -r "$PODMAN" rmi >/dev/null 2>&1 || true
    fi
) 9>"$CACHE/.base-$ARCH.lock"
t1=$(date +%s)

BUILD_ARGS=(build --format docker --layers --arch "$ARCH" --network host -f "$HERE/Containerfile"
    --build-arg "BASE=$BASE" --build-arg "PIP_INDEX_URL=$PIP_INDEX_URL" -t "$IMAGE")
if [ -s "$PIP_CA" ]; then
    BUILD_ARGS+=(--secret "id=pip_ca,src=$PIP_CA")
fi
if [ -n "${IIDFILE:-}" ]; then
    BUILD_ARGS+=(--iidfile "$IIDFILE")
fi
"$PODMAN" "${BUILD_ARGS[@]}" "$ROOT"
t2=$(date +%s)
# Earlier builds of this image left untagged images behind; drop those older than an hour (a build running in
# another checkout right now keeps its own).
"$PODMAN" image prune -f --filter label=io.battery-twin.image=edge --filter until=1h >/dev/null || true

size=$("$PODMAN" image inspect --format '{{.Size}}' "$IMAGE")
echo "image.sh: $IMAGE ($ARCH) $(( size / 1000000 )) MB; base $(( t1 - t0 )) s, podman build $(( t2 - t1 )) s"
