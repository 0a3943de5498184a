#!/bin/sh
# Make sure the kernel runs foreign binaries of ARCH (arm64) through qemu-user-static: binfmt_misc mounted and the
# qemu-aarch64 handler enabled. Debian's binfmt-support does this at boot under systemd; machines without systemd
# (containers, CI runners) need it done here. Needs root the first time; a no-op once enabled.
set -eu
ARCH="${1:-arm64}"
case "$ARCH" in
    arm64|aarch64) handler=qemu-aarch64 ;;
    *) echo "binfmt.sh: no qemu handler known for '$ARCH'" >&2; exit 2 ;;
esac
dir=/proc/sys/fs/binfmt_misc
if [ "$(head -1 "$dir/$handler" 2>/dev/null)" = enabled ]; then
    exit 0
fi
for tool in update-binfmts qemu-aarch64-static; do
    command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || {
        echo "binfmt.sh: $tool is missing: apt-get install qemu-user-static binfmt-support" >&2; exit 1; }
done
if [ ! -e "$dir/register" ]; then
    mount -t binfmt_misc binfmt_misc "$dir" || { echo "binfmt.sh: cannot mount binfmt_misc (root needed)" >&2; exit 1; }
fi
PATH="$PATH:/usr/sbin:/sbin" update-binfmts --enable "$handler" >/dev/null 2>&1 || true
if [ "$(head -1 "$dir/$handler" 2>/dev/null)" != enabled ]; then
    echo "binfmt.sh: $handler is not registered in $dir (apt-get install --reinstall qemu-user-static)" >&2
    exit 1
fi
