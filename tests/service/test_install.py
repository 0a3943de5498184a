"""install.sh / uninstall.sh in a throwaway root (`--root DIR`, like `useradd --root` and `systemctl --root`): the
machine's own /etc is never touched. The root starts as a copy of this Debian system's account databases and
os-release, so the script meets what it meets on a real Debian/Ubuntu/Raspberry Pi OS install (group dialout
exists, systemd-sysusers and systemctl work offline)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.service.conftest import ROOT
from tests.service.test_unit import make_verify_root, systemd_analyze

INSTALL = ROOT / "systemd" / "install.sh"
UNINSTALL = ROOT / "systemd" / "uninstall.sh"
HOST_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")


def digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes() if Path(p).exists() else b"-")
    return h.hexdigest()


def make_root(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    for f in HOST_FILES:
        shutil.copy2(f, root / f.lstrip("/"))
    shutil.copy(Path("/etc/os-release").resolve(), root / "etc/os-release")
    return root


def sh(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )


def account(root: Path, db: str, name: str) -> list[str] | None:
    for line in (root / "etc" / db).read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    return None


def mode_owner(p: Path) -> tuple[str, int, int]:
    st = p.stat()
    return f"{stat.S_IMODE(st.st_mode):04o}", st.st_uid, st.st_gid


@pytest.fixture()
def host_untouched():
    before = digest(HOST_FILES)
    yield
    assert digest(HOST_FILES) == before, "the installer changed this machine's own account databases"
    assert not Path("/opt/battery-twin").exists() or os.environ.get("BATTERY_TWIN_INSTALLED_HERE")


def test_install_upgrade_uninstall_in_a_throwaway_root(tmp_path, rig_cert, pki, host_untouched):
    assert shutil.which("systemd-sysusers") and shutil.which("systemctl"), (
        "systemd-sysusers and systemctl are needed (apt-get install systemd)"
    )
    root = make_root(tmp_path / "root")
    cert, key = rig_cert
    loose_key = tmp_path / "device.key"
    shutil.copy(key, loose_key)
    os.chmod(loose_key, 0o644)  # as it often arrives from a download: the installer must fix it

    # --no-compile: the .pyc files are the slow part of pip here, and not what this test is about.
    p = sh(
        INSTALL,
        "--root",
        root,
        "--no-start",
        "--pip-args",
        "--no-compile",
        "--cert",
        cert,
        "--key",
        loose_key,
        "--ca",
        pki.ca_cert,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    user = account(root, "passwd", "battery-twin")
    assert user and user[5] == "/var/lib/battery-twin" and user[6] == "/usr/sbin/nologin"
    uid, gid = int(user[2]), int(user[3])
    assert uid < 1000, "a system account"
    assert "battery-twin" in account(root, "group", "dialout")[3].split(",")

    etc = root / "etc/battery-twin"
    assert mode_owner(etc) == ("0750", 0, gid)
    assert mode_owner(etc / "certs") == ("0700", uid, gid)
    assert mode_owner(etc / "certs/private.pem.key") == ("0600", uid, gid)
    assert (etc / "certs/private.pem.key").read_bytes() == key.read_bytes()
    assert (etc / "certs/device.pem.crt").read_bytes() == cert.read_bytes()
    assert mode_owner(root / "var/lib/battery-twin") == ("0700", uid, gid)
    template = (ROOT / "systemd/config.toml.example").read_text()
    assert (etc / "config.toml").read_text() == template and mode_owner(etc / "config.toml") == ("0640", 0, gid)
    wants = root / "etc/systemd/system/multi-user.target.wants/battery-twin.service"
    assert os.readlink(wants) == "/etc/systemd/system/battery-twin.service"
    assert (root / "etc/systemd/system/battery-twin.service").read_text() == (
        ROOT / "systemd/battery-twin.service"
    ).read_text()

    # The installed package runs: its own config check and doctor on the template config.
    exe = root / "opt/battery-twin/venv/bin/battery-twin"
    assert sh(exe, "config", "check", etc / "config.toml").returncode == 0
    d = sh(exe, "doctor", "--config", etc / "config.toml")
    assert d.returncode == 0 and "FAIL" not in d.stdout, d.stdout + d.stderr

    # verify against the installed tree (ExecStart exists there now).
    make_verify_root(root)
    v = subprocess.run(
        [systemd_analyze(), "verify", f"--root={root}", "battery-twin.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert v.returncode == 0 and not (v.stdout + v.stderr).strip(), v.stdout + v.stderr

    # Second run (upgrade/repair): the edited config stays, a loosened key is tightened again, nothing duplicates.
    edited = template.replace('rig = "rig-01"', 'rig = "lab-a-rig-07"') + "\n# edited by the operator\n"
    (etc / "config.toml").write_text(edited)
    os.chmod(etc / "certs/private.pem.key", 0o644)
    accounts = digest(root / "etc" / f for f in ("passwd", "group", "shadow", "gshadow"))
    p = sh(INSTALL, "--root", root, "--no-start", "--pip-args", "--no-compile")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (etc / "config.toml").read_text() == edited and "keeping the existing" in p.stdout
    assert mode_owner(etc / "certs/private.pem.key") == ("0600", uid, gid)
    assert digest(root / "etc" / f for f in ("passwd", "group", "shadow", "gshadow")) == accounts

    # Uninstall keeps config, keys, store and user; twice is fine; --purge removes them.
    for _ in range(2):
        p = sh(UNINSTALL, "--root", root)
        assert p.returncode == 0, p.stdout + p.stderr
    assert not (root / "opt/battery-twin").exists() and not wants.is_symlink()
    assert not (root / "etc/systemd/system/battery-twin.service").exists()
    assert (etc / "config.toml").read_text() == edited and (etc / "certs/private.pem.key").exists()
    assert account(root, "passwd", "battery-twin")
    p = sh(UNINSTALL, "--root", root, "--purge")
    assert p.returncode == 0, p.stdout + p.stderr
    assert not etc.exists() and not (root / "var/lib/battery-twin").exists()
    assert account(root, "passwd", "battery-twin") is None and account(root, "group", "battery-twin") is None
    assert "battery-twin" not in account(root, "group", "dialout")[3].split(",")


@pytest.mark.parametrize(
    "os_id,arch,message",
    [
        ("fedora", "x86_64", "is not Debian, Ubuntu or Raspberry Pi OS"),
        ("debian", "armv7l", "32-bit ARM (armv7l) is not supported"),
        ("raspbian", "riscv64", "architecture riscv64 is not supported"),
    ],
)
def test_refuses_unsupported_platforms_before_changing_anything(tmp_path, os_id, arch, message, host_untouched):
    root = make_root(tmp_path / "root")
    (root / "etc/os-release").write_text(f'ID={os_id}\nPRETTY_NAME="{os_id} test"\n')
    before = sorted(str(p) for p in root.rglob("*"))
    p = sh(INSTALL, "--root", root, env={"BATTERY_TWIN_ARCH": arch})
    assert p.returncode != 0 and message in p.stderr, p.stdout + p.stderr
    assert sorted(str(p) for p in root.rglob("*")) == before


@pytest.mark.parametrize("os_id,arch", [("ubuntu", "x86_64"), ("raspbian", "aarch64"), ("debian", "arm64")])
def test_accepts_debian_ubuntu_and_raspberry_pi_os_on_x86_64_and_arm64(tmp_path, os_id, arch):
    root = make_root(tmp_path / "root")
    like = "ID_LIKE=debian" if os_id == "raspbian" else ""
    (root / "etc/os-release").write_text(f'ID={os_id}\n{like}\nPRETTY_NAME="{os_id} test"\n')
    before = sorted(str(p) for p in root.rglob("*"))
    p = sh(INSTALL, "--root", root, "--check", env={"BATTERY_TWIN_ARCH": arch})
    assert p.returncode == 0 and f"{os_id} test, {arch}" in p.stdout and "nothing changed" in p.stdout, p.stderr
    assert sorted(str(p) for p in root.rglob("*")) == before


def test_scripts_are_posix_sh_and_shellcheck_clean():
    """They run under /bin/sh (dash on Debian): no bashisms."""
    sc = shutil.which("shellcheck")
    assert sc, "shellcheck is not installed (apt-get install shellcheck)"
    p = sh(sc, "-s", "sh", INSTALL, UNINSTALL)
    assert p.returncode == 0, p.stdout
