#!/bin/sh
# Install (or upgrade) the battery-twin agent as a systemd service. Idempotent: run it again to upgrade or repair.
#
#   sudo systemd/install.sh [--cert FILE --key FILE --ca FILE] [--no-start]
#
# Debian 12+, Ubuntu 22.04+, Raspberry Pi OS (64-bit); x86_64 and arm64. What it does:
#   - the system user battery-twin (sysusers.d; group dialout for serial ports)
#   - /opt/battery-twin/venv with the package installed (pip), the unit in /etc/systemd/system
#   - /etc/battery-twin/config.toml from the commented template, only if no config exists
#   - /etc/battery-twin/certs (0700) with the device key 0600, owned by battery-twin
#   - /var/lib/battery-twin (the store, 0700)
#   - enables the unit and (re)starts it unless --no-start
#
# Options:
#   --root DIR      install into the file tree at DIR instead of / (like useradd/systemctl --root); for staging
#                   and tests. Uses this machine's Python for the venv, so the venv only runs here.
#   --source SPEC   what pip installs (default: the source tree this script is in); a path, wheel or requirement
#   --python PY     the interpreter for the venv (default: python3, or python3.1x if python3 is older than 3.11)
#   --pip-args ARGS extra pip options, e.g. "--no-index --find-links /media/usb/wheels" on a rig without internet
#   --cert/--key/--ca FILE   copy the device certificate, private key and CA into /etc/battery-twin/certs
#   --no-start      enable but do not (re)start the service
#   --check         only check the platform and Python, change nothing
#   --force         skip the distribution / architecture check
set -eu

NAME=battery-twin
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=""
SOURCE=""
PYTHON=""
CERT="" KEY="" CA=""
PIP_ARGS=""
START=1
FORCE=0
CHECK=0

say() { printf '%s: %s\n' "install" "$*"; }
die() { printf '%s: error: %s\n' "install" "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --source) SOURCE=${2:?}; shift 2 ;;
        --python) PYTHON=${2:?}; shift 2 ;;
        --cert) CERT=${2:?}; shift 2 ;;
        --key) KEY=${2:?}; shift 2 ;;
        --ca) CA=${2:?}; shift 2 ;;
        --pip-args) PIP_ARGS=${2?}; shift 2 ;;
        --no-start) START=0; shift ;;
        --check) CHECK=1; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run as root (sudo $0 ...)"
if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "--root $ROOT is not a directory"
    ROOT=$(cd "$ROOT" && pwd)
    [ "$ROOT" = / ] && ROOT=""
fi

OPT=/opt/$NAME
VENV=$OPT/venv
ETC=/etc/$NAME
CERTS=$ETC/certs
STATE=/var/lib/$NAME
UNIT=/etc/systemd/system/$NAME.service
SYSUSERS=/usr/lib/sysusers.d/$NAME.conf

# ---------------------------------------------------------------- platform
os_release="$ROOT/etc/os-release"
[ -r "$os_release" ] || os_release="$ROOT/usr/lib/os-release"
os_var() {  # one variable of os-release, parsed, never sourced: this script runs as root and --root is any tree
    [ -r "$os_release" ] || return 0
    # KEY=value, KEY="value" or KEY='value' (os-release(5)); the last assignment wins; \X stands for X.
    sed -n "s/^$1=//p" "$os_release" | tail -n 1 \
        | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\\(.*\\)'\$/\\1/" -e 's/\\\(.\)/\1/g'
}
ID=$(os_var ID) ID_LIKE=$(os_var ID_LIKE) PRETTY_NAME=$(os_var PRETTY_NAME)
ARCH=${BATTERY_TWIN_ARCH:-$(uname -m)}
if [ "$FORCE" = 0 ]; then
    case " $ID $ID_LIKE " in
        *" debian "*|*" ubuntu "*|*" raspbian "*) ;;
        *) die "${PRETTY_NAME:-this system (no /etc/os-release)} is not Debian, Ubuntu or Raspberry Pi OS; --force to try anyway" ;;
    esac
    case "$ARCH" in
        x86_64|amd64|aarch64|arm64) ;;
        armv7l|armv6l|armhf)
            die "32-bit ARM ($ARCH) is not supported: onnxruntime publishes no wheels for it. Use the 64-bit Raspberry Pi OS (arm64)" ;;
        *) die "architecture $ARCH is not supported (x86_64 and arm64 are); --force to try anyway" ;;
    esac
fi
say "target ${ROOT:-/}: ${PRETTY_NAME:-unknown OS}, $ARCH"

# ---------------------------------------------------------------- python >= 3.11 with venv
py_ok() { "$1" -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
find_python() {
    for p in ${PYTHON:-python3 python3.13 python3.12 python3.11}; do
        if command -v "$p" >/dev/null 2>&1 && py_ok "$p"; then command -v "$p"; return 0; fi
    done
    return 1
}
if ! PY=$(find_python); then
    [ -n "$PYTHON" ] && die "$PYTHON is not Python >= 3.11 with the venv module"
    if [ -z "$ROOT" ] && command -v apt-get >/dev/null 2>&1; then
        say "installing Python 3.11+ with venv (apt)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
        if ! PY=$(find_python); then  # Ubuntu 22.04 ships 3.10 as python3; 3.11 is a separate package there
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11 python3.11-venv >/dev/null || true
            PY=$(find_python) || die "no Python >= 3.11 with venv available (apt-get install python3.11-venv)"
        fi
    else
        die "no Python >= 3.11 with the venv module found (Debian/Ubuntu: apt-get install python3 python3-venv)"
    fi
fi
say "python: $PY ($("$PY" -c 'import platform; print(platform.python_version())'))"
if [ "$CHECK" = 1 ]; then say "this machine can run $NAME (--check: nothing changed)"; exit 0; fi

# ---------------------------------------------------------------- user and group
install -D -m 0644 "$HERE/$NAME.sysusers" "$ROOT$SYSUSERS"
if command -v systemd-sysusers >/dev/null 2>&1; then
    if [ -n "$ROOT" ]; then systemd-sysusers --root="$ROOT" "$ROOT$SYSUSERS"; else systemd-sysusers "$SYSUSERS"; fi
else
    R=""; [ -n "$ROOT" ] && R="--root $ROOT"
    # shellcheck disable=SC2086
    if ! grep -q "^$NAME:" "$ROOT/etc/passwd"; then
        useradd $R --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin \
            --comment "battery-twin edge agent" "$NAME"
    fi
    # shellcheck disable=SC2086
    usermod $R -a -G dialout "$NAME"
fi
uid=$(awk -F: -v u="$NAME" '$1 == u { print $3 }' "$ROOT/etc/passwd")
gid=$(awk -F: -v u="$NAME" '$1 == u { print $4 }' "$ROOT/etc/passwd")
if [ -z "$uid" ] || [ -z "$gid" ]; then die "user $NAME was not created"; fi
say "user $NAME: uid $uid gid $gid (groups: $NAME, dialout)"

# ---------------------------------------------------------------- directories
install -d -m 0755 -o 0 -g 0 "$ROOT$OPT"
install -d -m 0750 -o 0 -g "$gid" "$ROOT$ETC"
install -d -m 0700 -o "$uid" -g "$gid" "$ROOT$CERTS" "$ROOT$STATE"

# ---------------------------------------------------------------- virtual environment and package
if [ -z "$SOURCE" ]; then
    SOURCE=$(cd "$HERE/.." && pwd)
    [ -f "$SOURCE/pyproject.toml" ] || die "no source tree at $SOURCE: pass --source (a path, wheel or requirement)"
fi
if ! "$ROOT$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "creating $VENV"
    rm -rf "$ROOT$VENV"
    "$PY" -m venv "$ROOT$VENV"
fi
say "installing $SOURCE into $VENV (pip)"
# shellcheck disable=SC2086
"$ROOT$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade $PIP_ARGS "$SOURCE" \
    || die "pip could not install $SOURCE into $VENV"
"$ROOT$VENV/bin/battery-twin" --version >/dev/null || die "the installed battery-twin does not run"
install -m 0644 "$HERE/config.toml.example" "$ROOT$OPT/config.toml.example"

# ---------------------------------------------------------------- config (never overwritten)
if [ -e "$ROOT$ETC/config.toml" ]; then
    say "keeping the existing $ETC/config.toml (the current template is $OPT/config.toml.example)"
else
    install -m 0640 -o 0 -g "$gid" "$HERE/config.toml.example" "$ROOT$ETC/config.toml"
    say "wrote $ETC/config.toml from the template: set rig, [uplink] and [[drivers]]"
fi

# ---------------------------------------------------------------- certificates and key modes
# certs/ belongs to the service user, so anything in it may be a link planted to make root chown or chmod another
# file. Root takes the directory back first (then nobody else can swap an entry while it is checked), refuses
# links, resolves each key's real path and checks it lies in $ETC/<dir>/, and only then changes modes; every
# chown is -h (never through a link). The service user gets the directory back at the end.
lock_dir() {  # $1: a directory directly under $ROOT$ETC (root-owned 0750, so its entries cannot be swapped)
    [ -L "$1" ] && die "${1#"$ROOT"} is a symbolic link: refusing to change modes through it (make it a directory)"
    chown -h 0:0 "$1" && chmod 0700 "$1"
}
lock_dir "$ROOT$CERTS"
if [ -n "$CERT" ]; then install -m 0644 -o "$uid" -g "$gid" "$CERT" "$ROOT$CERTS/device.pem.crt"; say "cert -> $CERTS/device.pem.crt"; fi
if [ -n "$CA" ]; then install -m 0644 -o "$uid" -g "$gid" "$CA" "$ROOT$CERTS/AmazonRootCA1.pem"; say "ca -> $CERTS/AmazonRootCA1.pem"; fi
if [ -n "$KEY" ]; then install -m 0600 -o "$uid" -g "$gid" "$KEY" "$ROOT$CERTS/private.pem.key"; say "key -> $CERTS/private.pem.key"; fi
# Every key in certs/, and the key the config names: 0600, owned by the service user; its directory 0700.
keyfile=$("$ROOT$VENV/bin/python" - "$ROOT$ETC/config.toml" "$ETC" <<'EOF' 2>/dev/null || true
import posixpath, sys, tomllib
with open(sys.argv[1], "rb") as f:
    key = tomllib.load(f).get("uplink", {}).get("key", "")
print(posixpath.normpath(posixpath.join(sys.argv[2], key)) if key else "")
EOF
)
for k in "$ROOT$CERTS"/*key* ${keyfile:+"$ROOT$keyfile"}; do
    [ -e "$k" ] || [ -L "$k" ] || continue
    d=$(dirname "$k")
    case "$d/" in
        "$ROOT$ETC/"[!/]*/) ;;
        *) say "warning: key ${k#"$ROOT"} is outside $ETC/<dir>/: not changed; keep it in $CERTS (0700) so only $NAME can read it"
           continue ;;
    esac
    case "${d#"$ROOT$ETC/"}" in */*) say "warning: key ${k#"$ROOT"} is not directly in a folder of $ETC: not changed; keep it in $CERTS"; continue ;; esac
    [ -d "$d" ] || continue
    lock_dir "$d"
    [ -L "$k" ] && die "key ${k#"$ROOT"} is a symbolic link: refusing to change modes through it (copy the key there instead)"
    real=$(realpath -e -- "$k") || die "cannot resolve ${k#"$ROOT"}"
    [ "$real" = "$(realpath -e -- "$d")/$(basename "$k")" ] || die "key ${k#"$ROOT"} resolves to $real: refusing"
    [ -f "$real" ] || { say "warning: key ${k#"$ROOT"} is not a regular file: not changed"; continue; }
    [ "$(stat -c %h -- "$real")" = 1 ] || die "key ${k#"$ROOT"} has other hard links: refusing to hand it to $NAME (copy it instead)"
    chown -h "$uid:$gid" "$real" && chmod 0600 "$real"
    [ "$d" = "$ROOT$CERTS" ] || { chown -h "$uid:$gid" "$d" && chmod 0700 "$d"; }
    say "key ${k#"$ROOT"}: 0600, owner $NAME; directory 0700"
done
# Hand certs/ back to the service user: never through a link (-h, and -R -P does not follow links below), never
# a file that is also linked elsewhere.
hard=$(find "$ROOT$CERTS" -xdev ! -type d -links +1 -print | head -n 3)
[ -z "$hard" ] || die "$CERTS holds hard-linked files ($hard): refusing to hand them to $NAME"
chown -R -h -P "$uid:$gid" "$ROOT$CERTS"

# ---------------------------------------------------------------- unit
install -D -m 0644 "$HERE/$NAME.service" "$ROOT$UNIT"
# The unit denies the LAN (IPAddressDeny=any; loopback and public addresses allowed). A DNS server on the LAN
# (/etc/resolv.conf as DHCP writes it on Debian and Raspberry Pi OS) must stay reachable, or the IoT endpoint's
# name does not resolve: a drop-in allows exactly those, rewritten on every run (rerun after the LAN changes).
DNS_DROPIN=$UNIT.d/50-dns.conf
resolvers=$(awk '$1 == "nameserver" { sub(/%.*/, "", $2); print $2 }' "$ROOT/etc/resolv.conf" 2>/dev/null \
    | grep -E '^[0-9A-Fa-f.:]+$' | grep -v -E '^(127\.|::1$)' || true)
if [ -n "$resolvers" ]; then
    install -d -m 0755 "$ROOT$UNIT.d"
    {
        printf '# Written by install.sh from /etc/resolv.conf: the LAN DNS servers the agent must reach.\n[Service]\n'
        # shellcheck disable=SC2086 # one address per word (checked above: digits, hex, '.', ':')
        printf 'IPAddressAllow=%s\n' $resolvers
    } > "$ROOT$DNS_DROPIN.tmp"
    chmod 0644 "$ROOT$DNS_DROPIN.tmp" && mv -f "$ROOT$DNS_DROPIN.tmp" "$ROOT$DNS_DROPIN"
    say "DNS servers allowed through the unit's address filter ($DNS_DROPIN): $(printf '%s ' "$resolvers" | tr '\n' ' ')"
elif [ -e "$ROOT$DNS_DROPIN" ]; then
    rm -f "$ROOT$DNS_DROPIN"
fi
if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable "$NAME.service" 2>&1 | sed 's/^/install: /'
    if [ "$START" = 1 ]; then
        if systemctl is-active --quiet "$NAME.service"; then systemctl restart "$NAME.service"; else systemctl start "$NAME.service"; fi
        say "service started: systemctl status $NAME; journalctl -u $NAME -f"
    fi
else
    systemctl --root="${ROOT:-/}" enable "$NAME.service" 2>&1 | sed 's/^/install: /'
    say "unit enabled offline (no running systemd at ${ROOT:-/}); it starts at the next boot"
fi

if ! problems=$("$ROOT$VENV/bin/battery-twin" config check "$ROOT$ETC/config.toml" 2>&1 >/dev/null); then
    say "warning: $ETC/config.toml has problems (the service will not start until they are fixed):"
    printf '%s\n' "$problems" | sed 's/^/    /' >&2
fi
say "done. Next: edit $ETC/config.toml, then: sudo -u $NAME $VENV/bin/battery-twin doctor; systemctl reload $NAME"
