"""install.sh against what a compromised service user or a hostile tree can plant (issue 14.1 and the os-release
item): links and hard links in certs/, key paths that lead out of /etc/battery-twin, shell in os-release. Root must
never hand a file outside its own tree to the service user, nor run what it reads.

One install in a throwaway root (as tests/service/test_install.py does), then install.sh again per planted case.
The package goes in from a wheel built here without its dependencies (`--no-deps`): install.sh's key handling
does not need them (its `--version` check still runs, `config check` only warns), and a case costs seconds
instead of a full dependency install; tests/service/test_install.py proves the real install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.test_install import INSTALL, account, make_root, mode_owner, sh

PIP_FAST = ["--pip-args", "--no-compile --no-deps --no-index"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(root, uid, gid, wheel): the agent installed once from a wheel built here."""
    base = tmp_path_factory.mktemp("hostile")
    wheels = base / "wheels"
    root_src = INSTALL.parents[1]
    p = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(root_src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    (wheel,) = wheels.glob("battery_twin-*.whl")
    root = make_root(base / "root")
    (root / "etc/resolv.conf").write_text(
        "# from DHCP\nnameserver 192.168.1.1\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\n"
        "nameserver 10.0.0.2;reboot\noptions edns0\n"
    )
    p = sh(INSTALL, "--root", root, "--no-start", "--source", wheel, *PIP_FAST)
    assert p.returncode == 0, p.stdout + p.stderr
    user = account(root, "passwd", "battery-twin")
    return root, int(user[2]), int(user[3]), wheel


def reinstall(installed, *extra) -> subprocess.CompletedProcess:
    root, _, _, wheel = installed
    return sh(INSTALL, "--root", root, "--no-start", "--source", wheel, *PIP_FAST, *extra)


def test_the_dns_servers_of_resolv_conf_get_a_drop_in(installed):
    """The unit denies the LAN; a LAN resolver must stay reachable (only well-formed addresses, not loopback)."""
    root = installed[0]
    dropin = root / "etc/systemd/system/battery-twin.service.d/50-dns.conf"
    lines = dropin.read_text().splitlines()
    assert "[Service]" in lines
    assert [ln for ln in lines if ln.startswith("IPAddress")] == [
        "IPAddressAllow=192.168.1.1",
        "IPAddressAllow=fe80::1",
    ]
    assert mode_owner(dropin)[0] == "0644"


@pytest.fixture()
def victim(installed):
    """A root-owned file and folder in the same tree but outside /etc/battery-twin (/srv/victim/secret, 0640 and
    0750, as /etc/shadow would be): what a planted link or key path leads to."""
    root = installed[0]
    d = root / "srv/victim"
    d.mkdir(parents=True)
    os.chmod(d, 0o750)
    f = d / "secret"
    f.write_text("root's secret\n")
    os.chmod(f, 0o640)
    before = (mode_owner(f), mode_owner(d))
    try:
        yield f
        assert (mode_owner(f), mode_owner(d)) == before, "install.sh changed a file outside its tree"
    finally:
        etc = root / "etc/battery-twin"
        for p in [*etc.glob("planted*"), *(etc / "certs").glob("planted*")]:
            p.unlink()
        set_config_key(root, None)
        shutil.rmtree(root / "srv")


def set_config_key(root: Path, key: str | None) -> None:
    """Set (or remove) uplink.key in the installed config, as an operator (or a bad copy-paste) would."""
    cfg = root / "etc/battery-twin/config.toml"
    lines = [ln for ln in cfg.read_text().splitlines() if not ln.startswith("key = ") or "# planted" not in ln]
    if key is not None:
        lines.insert(lines.index("[uplink]") + 1, f'key = "{key}"  # planted')
    cfg.write_text("\n".join(lines) + "\n")


def plant(root: Path, case: str, victim: Path) -> None:
    etc = root / "etc/battery-twin"
    certs = etc / "certs"
    inside = "/" + str(victim.relative_to(root))  # the victim's path as the installed system sees it
    if case == "key link in certs":
        (certs / "planted.key").symlink_to(victim)
    elif case == "key hard link in certs":
        os.link(victim, certs / "planted.key")
    elif case == "hard link under another name in certs":
        os.link(victim, certs / "planted-ca.pem")
    elif case == "config key outside /etc/battery-twin":
        set_config_key(root, inside)
    elif case == "config key through a linked folder":
        (etc / "planted-keys").symlink_to(victim.parent)
        set_config_key(root, f"planted-keys/{victim.name}")
    elif case == "config key climbing out with .., and a link in certs under another name":
        set_config_key(root, f"certs/../../..{inside}")
        (certs / "planted-ca.pem").symlink_to(victim)
    else:
        raise AssertionError(case)


CASES = [
    # (case, install fails?, what it says)
    ("key link in certs", True, "is a symbolic link"),
    ("key hard link in certs", True, "has other hard links"),
    ("hard link under another name in certs", True, "hard-linked files"),
    ("config key outside /etc/battery-twin", False, "not changed"),
    ("config key through a linked folder", True, "is a symbolic link"),
    ("config key climbing out with .., and a link in certs under another name", False, "not changed"),
]


@pytest.mark.parametrize("case,fails,says", CASES, ids=[c[0] for c in CASES])
def test_install_never_changes_a_file_outside_its_tree(installed, victim, case, fails, says):
    root, uid, gid, _ = installed
    plant(root, case, victim)
    p = reinstall(installed)
    assert (p.returncode != 0) == fails, p.stdout + p.stderr
    assert says in p.stdout + p.stderr, p.stdout + p.stderr
    certs = root / "etc/battery-twin/certs"
    if fails:  # refused: certs/ stays root's (the service cannot read its key) until fixed and run again
        assert mode_owner(certs) == ("0700", 0, 0)
    else:  # the legitimate parts were done: certs/ back with the service user, 0700
        assert mode_owner(certs) == ("0700", uid, gid)


# ---------------------------------------------------------------------------------------------- os-release
OS_RELEASES = [
    # (content, accepted, pretty name shown)
    ("ID=debian\n$(touch {m})\n", True, None),
    ('ID="debian"\nPRETTY_NAME="Debian $(touch {m})"\n', True, "Debian $(touch {m})"),
    ("ID=`touch {m}`\n", False, None),
    ("ID=debian; touch {m}\n", False, None),
    ("ID='ubuntu'\nID_LIKE='debian'\nPRETTY_NAME='Ubuntu 24.04'\n", True, "Ubuntu 24.04"),
    ('ID=raspbian\nPRETTY_NAME="Raspbian \\"12\\" \\`x\\`"\n', True, 'Raspbian "12" `x`'),
    ("ID=fedora\nID=debian\n", True, None),  # the last assignment wins, as in a shell
    ("NAME=x\nexport ID=debian\nID_LIKE=$(touch {m})debian\n", False, None),
]


@pytest.mark.parametrize("content,accepted,pretty", OS_RELEASES)
def test_os_release_is_parsed_not_run(tmp_path, content, accepted, pretty):
    marker = tmp_path / "ran"
    root = make_root(tmp_path / "root")
    (root / "etc/os-release").write_text(content.format(m=marker))
    p = sh(INSTALL, "--root", root, "--check", env={"BATTERY_TWIN_ARCH": "x86_64"})
    assert not marker.exists(), "install.sh ran a command from os-release"
    assert (p.returncode == 0) == accepted, p.stdout + p.stderr
    if pretty is not None:
        assert f"{pretty.format(m=marker)}, x86_64" in p.stdout, p.stdout
