"""Rebuild the unit's sandbox without systemd, to run the agent inside it in a test.

Two stages, as systemd does them: a mount namespace (``unshare --mount`` + a shell script: ProtectSystem=strict,
PrivateTmp=yes, ProtectProc=invisible), then this module as a launcher that drops every capability
(CapabilityBoundingSet=), sets NoNewPrivileges=, MemoryDenyWriteExecute= (the kernel's PR_SET_MDWE), and loads a
seccomp filter built with libseccomp from the unit's own SystemCallFilter= and RestrictAddressFamilies= lines
(groups expanded by ``systemd-analyze syscall-filter``), then execs the command. Not rebuilt: User= (the process
stays uid 0, without capabilities), DeviceAllow=, ProtectKernel*=, RestrictNamespaces=, LockPersonality=.

    python -m tests.service.sandbox UNIT -- COMMAND...
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

# PrivateTmp= hides the real /tmp. The installed agent lives in /opt, but this test runs the checkout's own venv,
# and a checkout may live anywhere (/tmp included): what the command needs from under /tmp ($KEEP, one path a
# line) is bound back, read-only, from a descriptor of the old /tmp opened before the tmpfs covers it.
MOUNTS = """set -e
mount --make-rprivate /
mount --bind "$STATE" "$STATE"
mount -o remount,bind,ro /
exec 3</tmp
mount -t tmpfs -o mode=1777 tmpfs /tmp
printf '%s\\n' "$KEEP" | while IFS= read -r p; do
    [ -n "$p" ] || continue
    mkdir -p "$p"
    mount --no-canonicalize --bind "/proc/self/fd/3/${p#/tmp/}" "$p"
done
exec 3<&-
mount -t proc -o "$PROC_OPTIONS" proc /proc
exec "$@"
"""

PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 38, 24, 65, 1
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4


def SCMP_ACT_ERRNO(e: int) -> int:
    return 0x00050000 | (e & 0xFFFF)


class ScmpArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def proc_options(unit: Path) -> str:
    """/proc mount options as the unit's ProtectProc= and ProcSubset= ask for them."""
    opts = {"hidepid": "default"}
    for line in unit.read_text().splitlines():
        key, _, value = line.strip().partition("=")
        if key == "ProtectProc":
            opts["hidepid"] = value
        elif key == "ProcSubset" and value == "pid":
            opts["subset"] = "pid"
    opts["hidepid"] = {"default": "off", "noaccess": "noaccess", "invisible": "invisible", "ptraceable": "ptraceable"}[
        opts["hidepid"]
    ]
    return ",".join(f"{k}={v}" for k, v in opts.items())


def command(state: Path, unit: Path, argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line (mount namespace, this launcher, ``argv``) and the environment it needs."""
    unshare = shutil.which("unshare")
    assert unshare, "unshare is not installed (util-linux): the sandbox test needs it"
    cmd = [
        unshare,
        "--mount",
        "--",
        "sh",
        "-c",
        MOUNTS,
        "sandbox",
        sys.executable,
        "-m",
        "tests.service.sandbox",
        str(unit),
        "--",
        *argv,
    ]
    return cmd, {"STATE": str(state), "PROC_OPTIONS": proc_options(unit), "KEEP": "\n".join(kept_under_tmp(argv))}


def kept_under_tmp(argv: list[str]) -> list[str]:
    """The paths under /tmp the sandboxed command needs: this checkout, the venv, the interpreters, argv's paths."""
    root = Path(__file__).resolve().parents[2]
    candidates = {root, Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent}
    candidates |= {Path(a).parent for a in argv if a.startswith("/")}
    tmp = Path("/tmp")
    under = sorted({p.resolve() for p in candidates if p.resolve().is_relative_to(tmp) and p.resolve() != tmp})
    # Nested paths come with their parent's bind.
    return [str(p) for p in under if not any(p != q and p.is_relative_to(q) for q in under)]


@functools.cache
def expand(group: str) -> frozenset[str]:
    """Syscall names of a systemd group, nested groups included."""
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, check=True
    ).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        names |= expand(item) if item.startswith("@") else {item}
    return frozenset(names)


def unit_filter(unit: Path) -> tuple[set[str], list[int]]:
    """(allowed syscall names, allowed socket families) from the unit's SystemCallFilter=/RestrictAddressFamilies=."""
    allowed: set[str] | None = None
    families: list[int] = []
    for line in unit.read_text().splitlines():
        key, _, value = line.strip().partition("=")
        if key == "SystemCallFilter":
            deny = value.startswith("~")
            items = value.lstrip("~").split()
            names = set().union(*(expand(i) if i.startswith("@") else {i} for i in items))
            if deny:
                allowed = (allowed or set()) - names
            else:
                allowed = (allowed or set()) | names
        elif key == "RestrictAddressFamilies":
            families += [getattr(socket, f) for f in value.split()]
    assert allowed and families, f"{unit} has no SystemCallFilter= / RestrictAddressFamilies="
    return allowed, families


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise OSError(-rc if rc < 0 else rc, what)


def enter(unit: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):  # CapabilityBoundingSet= (empty): nothing comes back on exec, even for uid 0
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            raise OSError(ctypes.get_errno(), f"PR_CAPBSET_DROP {cap}")
    libcap = ctypes.CDLL(ctypes.util.find_library("cap") or "libcap.so.2", use_errno=True)
    libcap.cap_init.restype = ctypes.c_void_p
    empty = libcap.cap_init()
    if libcap.cap_set_proc(ctypes.c_void_p(empty)) != 0:
        raise OSError(ctypes.get_errno(), "cap_set_proc")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE) failed: the kernel is older than 6.3")
    allowed, families = unit_filter(unit)
    seccomp = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ScmpArgCmp),
    ]
    ctx = ctypes.c_void_p(seccomp.seccomp_init(SCMP_ACT_ERRNO(errno.EPERM)))  # SystemCallErrorNumber=EPERM
    for name in sorted(allowed):
        nr = seccomp.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            continue  # not a syscall of this architecture
        if name == "socket":  # RestrictAddressFamilies=: socket() only for the listed families
            for fam in families:
                cmp = ScmpArgCmp(0, SCMP_CMP_EQ, fam, 0)
                _check(seccomp.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, ctypes.byref(cmp)), "rule socket")
        else:
            _check(seccomp.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 0, None), f"rule {name}")
    _check(seccomp.seccomp_load(ctx), "seccomp_load")


if __name__ == "__main__":
    sep = sys.argv.index("--")
    unit_path, argv = Path(sys.argv[1]), sys.argv[sep + 1 :]
    unit_filter(unit_path)  # runs systemd-analyze (cached) before the filter would forbid starting it
    enter(unit_path)
    os.execv(argv[0], argv)
