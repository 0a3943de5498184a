#!/bin/bash
# A Raspberry Pi's userland under emulation: a Debian bookworm arm64 root (mmdebstrap: the essential set, python3,
# libstdc++6; the same recipe as the image's base, see image.sh) with the locked edge install
# in /opt/battery-twin/venv, installed by pip inside the root (qemu-user-static) from wheels the host's pip fetched.
# Built once and cached in $BATTERY_TWIN_CACHE (default /var/cache/battery-twin); the venv is redone when the lock
# changes.
#
#   container/arm64-root.sh build           build or reuse the root; prints its path
#   container/arm64-root.sh install WHEEL   install (or reinstall) a wheel of battery-twin into the agent's venv
#   container/arm64-root.sh run CMD [ARG]   run CMD inside the root, as root, sharing the host's network
#   container/arm64-root.sh cpuinfo         print the Raspberry Pi 4 /proc/cpuinfo that emulation needs (below)
#
# pip inside the root is Debian's pip wheel, unpacked in /opt/pip (`PYTHONPATH=/opt/pip python -m pip`): the venv
# itself holds no pip, only the lock and battery-twin.
#
# Bytecode: Python 3.11's .pyc files are the same on every architecture, so the host's python3.11 compiles the
# venv and /opt/pip at native speed (compileall, with the paths as the root sees them) instead of the emulated
# interpreter compiling on every start: $PYTHONDONTWRITEBYTECODE, often set, would keep it from ever caching them.
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
pi_cpuinfo() {
    n="$(nproc --all)"
    for i in $(seq 0 $((n - 1))); do
        printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n'
        printf 'CPU revision\t: 3\n\n'
    done
    printf 'Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n'
}

write_cpuinfo() {
    pi_cpuinfo >"$DIR$EMULATED_CPUINFO"
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

SITE=opt/battery-twin/venv/lib/python3.11/site-packages
compile_for_root() {  # compile these folders of the root (relative paths) with the host's Python 3.11
    if python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        for d in "$@"; do
            python3 -m compileall -q -j 0 -s "$DIR" -p / "$DIR/$d" >/dev/null
        done
    else
        echo "arm64-root.sh: the host's python3 is not 3.11: bytecode is left to the emulated interpreter" >&2
    fi
}

install_project() {
    whl="$1"
    [ -f "$whl" ] || die "no such wheel: $whl"
    [ -x "$DIR/opt/battery-twin/venv/bin/python" ] || die "no arm64 root at $DIR yet: run $0 build"
    work="tmp/install-$$"
    install -d "$DIR/$work"
    cp "$whl" "$DIR/$work/"
    (in_root /usr/bin/env PYTHONPATH=/opt/pip /opt/battery-twin/venv/bin/python -m pip install -q --no-deps \
        --no-index --no-compile --force-reinstall --disable-pip-version-check --root-user-action=ignore \
        "/$work/$(basename "$whl")")
    rm -rf "${DIR:?}/$work"
    compile_for_root "$SITE"
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
    # wheelhouse. That pip is Debian's own wheel (python3-venv ships it) unpacked in /opt/pip, so the venv holds the
    # lock and nothing else, and no ensurepip runs under emulation. pip compiles nothing under emulation (minutes);
    # the host compiles the venv instead (compile_for_root, seconds). Redone when the lock or this recipe changes.
    # shellcheck disable=SC2016  # expanded by the sh inside the root
    install_cmd='python3 -m venv --without-pip /opt/battery-twin/venv \
        && PYTHONPATH=/opt/pip /opt/battery-twin/venv/bin/python -m pip install -q --require-hashes \
           --no-deps --no-index --find-links /opt/battery-twin/wheels --no-compile \
           -r /opt/battery-twin/requirements-edge.txt'
    want="$( (cat "$LOCK"; echo "$install_cmd"; declare -f compile_for_root) | sha256sum | cut -c1-64)"
    copy_host_network_files
    if [ "$(cat "$DIR/opt/battery-twin/installed.sha256" 2>/dev/null || true)" != "$want" ]; then
        echo "arm64-root.sh: installing the locked edge install into $DIR/opt/battery-twin/venv" >&2
        rm -rf "$DIR/opt/battery-twin" "$DIR/opt/pip"
        install -d "$DIR/opt/battery-twin/wheels" "$DIR/opt/pip"
        python3 -m zipfile -e "$(echo "$DIR"/usr/share/python-wheels/pip-*.whl)" "$DIR/opt/pip"
        compile_for_root opt/pip
        cp "$LOCK" "$DIR/opt/battery-twin/requirements-edge.txt"
        platforms=(--platform manylinux2014_aarch64)
        for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
        python3 -m pip download -q --disable-pip-version-check --no-deps --require-hashes --only-binary=:all: \
            --implementation cp --python-version 3.11 --abi cp311 "${platforms[@]}" \
            -d "$DIR/opt/battery-twin/wheels" -r "$LOCK"
        (in_root /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root PIP_DISABLE_PIP_VERSION_CHECK=1 \
            PIP_ROOT_USER_ACTION=ignore /bin/sh -c "$install_cmd")
        rm -rf "$DIR/opt/battery-twin/wheels"
        compile_for_root "$SITE"
        echo "$want" >"$DIR/opt/battery-twin/installed.sha256"
    fi
    echo "$DIR"
}

case "${1:-}" in
    build) build ;;
    cpuinfo) pi_cpuinfo ;;  # for the arm64 image under emulation: -v FILE:/proc/cpuinfo:ro
    install)
        [ "$#" = 2 ] || { echo "usage: $0 install WHEEL" >&2; exit 2; }
        [ "$(id -u)" = 0 ] || die "needs root (chroot, mount)"
        "$HERE/binfmt.sh" arm64
        install_project "$2"
        ;;
    run)
        shift
        [ -x "$DIR/opt/battery-twin/venv/bin/python" ] || die "no arm64 root at $DIR yet: run $0 build"
        "$HERE/binfmt.sh" arm64
        in_root "$@"
        ;;
    *) echo "usage: $0 build | install WHEEL | run CMD [ARG...] | cpuinfo" >&2; exit 2 ;;
esac
