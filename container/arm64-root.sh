#!/bin/bash
# A Raspberry Pi's userland under emulation: a Debian bookworm arm64 root (mmdebstrap: the essential set, python3,
# libstdc++6; the same recipe as the image's base, see image.sh) with the locked edge install
# in /opt/battery-twin/venv, installed by pip inside the root (qemu-user-static) from wheels the host's pip fetched.
# Built once and cached in $BATTERY_TWIN_CACHE (default /var/cache/battery-twin); the venv is redone when the lock
# changes.
#
#   container/arm64-root.sh build           build or reuse the root; prints its path
#   container/arm64-root.sh run CMD [ARG]   run CMD inside the root, as root, sharing the host's network
#
# pip inside the root: `run /opt/battery-twin/venv/bin/python /usr/share/python-wheels/pip-VERSION-py3-none-any.whl/pip
# install ...` adds to the agent's venv (Debian's pip wheel, run in place: the venv itself holds no pip).
#
# `run` mounts /proc and /sys in a private mount namespace (unshare -m), so they disappear with the command, even
# when it is killed: nothing stays mounted under the cached root. The host's resolv.conf, hosts and CA bundle are
# copied in, so that pip inside the root can reach a package index too.
# Environment: BATTERY_TWIN_CACHE, PIP_CA (default: pip's `global.cert`, else the system bundle).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
LOCK="$HERE/requirements-edge.txt"
CACHE="${BATTERY_TWIN_CACHE:-/var/cache/battery-twin}"
# shellcheck disable=SC2054  # the commas separate the packages of one --include
MMDEBSTRAP_ARGS=(--arch=arm64 --variant=essential --include=python3,python3-venv,libstdc++6 --format=directory
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --dpkgopt=path-exclude=/usr/share/doc/* --dpkgopt=path-include=/usr/share/doc/*/copyright
    --dpkgopt=path-exclude=/usr/share/man/* --dpkgopt=path-exclude=/usr/share/locale/*
    --dpkgopt=path-exclude=/usr/share/info/*)
KEY="$(printf '%s\n' "${MMDEBSTRAP_ARGS[@]}" | sha256sum | cut -c1-12)"
DIR="$CACHE/arm64-root-$KEY"

die() { echo "arm64-root.sh: $*" >&2; exit 1; }

# qemu-user (7.2, bookworm) shows the emulated program the host's /proc/cpuinfo: an x86 CPU. onnxruntime's cpuinfo
# library, reading it with /sys mounted, crashes (SIGSEGV at import); on a Pi it reads an ARM one. So the root gets
# what a Raspberry Pi 4 (Cortex-A72) shows, one entry per host CPU (matching /sys/devices/system/cpu/present).
EMULATED_CPUINFO=/etc/battery-twin-emulated-cpuinfo
write_cpuinfo() {
    n="$(nproc --all)"
    for i in $(seq 0 $((n - 1))); do
        printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n'
        printf 'CPU revision\t: 3\n\n'
    done >"$DIR$EMULATED_CPUINFO"
    printf 'Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n' \
        >>"$DIR$EMULATED_CPUINFO"
}

in_root() {
    # Private mount namespace: /proc, /sys and the cpuinfo above go away with the process. `exec` all the way down,
    # so a signal sent to this script's pid reaches the command itself.
    write_cpuinfo
    # shellcheck disable=SC2016  # expanded by the inner sh, where $0 is the root and $1 the cpuinfo file
    exec unshare --mount --propagation private -- /bin/sh -c \
        'mount -t proc proc "$0/proc" && mount -t sysfs sysfs "$0/sys" && mount --bind "$0$1" "$0/proc/cpuinfo" \
         && shift && exec chroot "$0" "$@"' "$DIR" "$EMULATED_CPUINFO" "$@"
}

copy_host_network_files() {
    pip_ca="${PIP_CA:-$(python3 -m pip config get global.cert 2>/dev/null || true)}"
    pip_ca="${pip_ca:-/etc/ssl/certs/ca-certificates.crt}"
    install -d "$DIR/etc/ssl/certs"
    cp -L /etc/resolv.conf "$DIR/etc/resolv.conf"
    cp -L /etc/hosts "$DIR/etc/hosts"
    cp -L "$pip_ca" "$DIR/etc/ssl/certs/ca-certificates.crt"
}

build() {
    [ "$(id -u)" = 0 ] || die "needs root (mmdebstrap, chroot, mount)"
    for tool in mmdebstrap unshare chroot; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (apt-get install mmdebstrap util-linux)"
    done
    "$HERE/binfmt.sh" arm64
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.arm64-root.lock"
    flock 9
    if [ ! -x "$DIR/usr/bin/python3" ]; then
        echo "arm64-root.sh: building the arm64 root with mmdebstrap into $DIR (cached for next time)" >&2
        rm -rf "$DIR.part"
        mmdebstrap --quiet "${MMDEBSTRAP_ARGS[@]}" bookworm "$DIR.part"
        rm -rf "$DIR"
        mv "$DIR.part" "$DIR"
    fi
    # The wheels come through the host's pip (native speed, its cache, the project's index and CA bundle), checked
    # against the lock's hashes; pip inside the root installs them offline into the agent's venv, as on a Pi with a
    # wheelhouse. That pip is Debian's own wheel run in place (python3-venv ships it: `python PIP.whl/pip`), so the
    # venv holds the lock and nothing else, and no ensurepip runs under emulation. No bytecode at install time:
    # compiling everything under emulation takes minutes; Python writes what it imports on first use (the root is
    # writable) and the cache keeps it. Redone when the lock or this recipe changes.
    # shellcheck disable=SC2016  # expanded by the sh inside the root
    install_cmd='python3 -m venv --without-pip /opt/battery-twin/venv \
        && pip_whl=$(echo /usr/share/python-wheels/pip-*.whl) \
        && /opt/battery-twin/venv/bin/python "$pip_whl/pip" install -q --require-hashes \
           --no-deps --no-index --find-links /opt/battery-twin/wheels --no-compile \
           -r /opt/battery-twin/requirements-edge.txt'
    want="$( (cat "$LOCK"; echo "$install_cmd") | sha256sum | cut -c1-64)"
    copy_host_network_files
    if [ "$(cat "$DIR/opt/battery-twin/installed.sha256" 2>/dev/null || true)" != "$want" ]; then
        echo "arm64-root.sh: installing the locked edge install into $DIR/opt/battery-twin/venv" >&2
        rm -rf "$DIR/opt/battery-twin"
        install -d "$DIR/opt/battery-twin/wheels"
        cp "$LOCK" "$DIR/opt/battery-twin/requirements-edge.txt"
        platforms=(--platform manylinux2014_aarch64)
        for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
        python3 -m pip download -q --disable-pip-version-check --no-deps --require-hashes --only-binary=:all: \
            --implementation cp --python-version 3.11 --abi cp311 "${platforms[@]}" \
            -d "$DIR/opt/battery-twin/wheels" -r "$LOCK"
        (in_root /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root PIP_DISABLE_PIP_VERSION_CHECK=1 \
            PIP_ROOT_USER_ACTION=ignore /bin/sh -c "$install_cmd")
        rm -rf "$DIR/opt/battery-twin/wheels"
        echo "$want" >"$DIR/opt/battery-twin/installed.sha256"
    fi
    echo "$DIR"
}

case "${1:-}" in
    build) build ;;
    run)
        shift
        [ -x "$DIR/opt/battery-twin/venv/bin/python" ] || die "no arm64 root at $DIR yet: run $0 build"
        "$HERE/binfmt.sh" arm64
        in_root "$@"
        ;;
    *) echo "usage: $0 build | run CMD [ARG...]" >&2; exit 2 ;;
esac
