#!/bin/sh
# Remove the battery-twin service. Idempotent. Keeps the config, certificates, store and user unless --purge.
#
#   sudo systemd/uninstall.sh [--purge] [--root DIR]
#
#   --purge      also delete /etc/battery-twin (config, certificates, key), /var/lib/battery-twin (the store,
#                with any readings not yet uploaded) and the battery-twin user and group
#   --root DIR   act on the file tree at DIR instead of / (as install.sh --root)
set -eu

NAME=battery-twin
ROOT=""
PURGE=0

say() { printf '%s: %s\n' "uninstall" "$*"; }
die() { printf '%s: error: %s\n' "uninstall" "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --purge) PURGE=1; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "run as root (sudo $0 ...)"
if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "--root $ROOT is not a directory"
    ROOT=$(cd "$ROOT" && pwd)
    [ "$ROOT" = / ] && ROOT=""
fi

UNIT=/etc/systemd/system/$NAME.service

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl disable --now "$NAME.service" >/dev/null 2>&1 || true  # SIGTERM: the agent stores what is in flight
elif [ -e "$ROOT$UNIT" ]; then
    systemctl --root="${ROOT:-/}" disable "$NAME.service" >/dev/null 2>&1 || true
fi
if [ -e "$ROOT$UNIT" ]; then
    rm -f "$ROOT$UNIT"
    say "removed $UNIT"
fi
rm -f "$ROOT/etc/systemd/system/multi-user.target.wants/$NAME.service" "$ROOT$UNIT.d/50-dns.conf"
rmdir "$ROOT$UNIT.d" 2>/dev/null || true  # kept if it holds the operator's own drop-ins
if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl reset-failed "$NAME.service" >/dev/null 2>&1 || true
fi
if [ -e "$ROOT/opt/$NAME" ]; then
    rm -rf "$ROOT/opt/$NAME"
    say "removed /opt/$NAME"
fi

if [ "$PURGE" = 1 ]; then
    rm -rf "$ROOT/etc/${NAME:?}" "$ROOT/var/lib/${NAME:?}" "$ROOT/usr/lib/sysusers.d/$NAME.conf"
    say "removed /etc/$NAME and /var/lib/$NAME"
    R=""; [ -n "$ROOT" ] && R="--root $ROOT"
    # shellcheck disable=SC2086
    if grep -q "^$NAME:" "$ROOT/etc/passwd" 2>/dev/null; then userdel $R "$NAME" && say "removed user $NAME"; fi
    # shellcheck disable=SC2086
    if grep -q "^$NAME:" "$ROOT/etc/group" 2>/dev/null; then groupdel $R "$NAME" && say "removed group $NAME"; fi
else
    for kept in "/etc/$NAME" "/var/lib/$NAME"; do
        [ -e "$ROOT$kept" ] && say "kept $kept (--purge deletes it)"
    done
    grep -q "^$NAME:" "$ROOT/etc/passwd" 2>/dev/null && say "kept user $NAME (--purge deletes it)"
fi
say "done"
