"""The systemd unit: `systemd-analyze security` exposure <= 2.0, `systemd-analyze verify` clean, and the hardening
still lets the agent do its job. No systemd runs here, so the parts of the sandbox that could break the agent's own
libraries (MemoryDenyWriteExecute, SystemCallFilter, RestrictAddressFamilies, ProtectSystem=strict, PrivateTmp,
ProtectProc) are rebuilt with the kernel's
PR_SET_MDWE and a mount namespace, and the agent runs inside them."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import agent_config
from tests.service import sandbox
from tests.service.conftest import ROOT, UNIT, unit_settings
from tests.support.agentproc import to_toml

MAX_EXPOSURE = 2.0


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    assert path, "systemd-analyze is not installed (apt-get install systemd): the unit tests need it"
    return path


def security(unit: Path) -> tuple[int, float, str]:
    """(exit code with --threshold at MAX_EXPOSURE, exposure, output); the threshold is in tenths."""
    p = subprocess.run(
        [
            systemd_analyze(),
            "security",
            "--offline=yes",
            f"--threshold={int(MAX_EXPOSURE * 10)}",
            "--no-pager",
            str(unit),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout)
    assert m, p.stdout + p.stderr
    return p.returncode, float(m.group(1)), p.stdout


def test_exposure_is_at_most_two(tmp_path):
    rc, exposure, out = security(UNIT)
    print(f"systemd-analyze security --offline=yes: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE and rc == 0, out


def test_the_threshold_check_fails_for_a_weaker_unit(tmp_path):
    """The same check on the unit without its sandboxing must fail: the test above can catch a regression."""
    weak = tmp_path / "battery-twin.service"
    keep = ("Type", "ExecStart", "User", "Group", "Restart", "WatchdogSec", "Description", "WantedBy")
    lines = [ln for ln in UNIT.read_text().splitlines() if not ln or ln.startswith("[") or ln.split("=")[0] in keep]
    weak.write_text("\n".join(lines) + "\n")
    rc, exposure, _ = security(weak)
    assert exposure > MAX_EXPOSURE and rc != 0


def test_verify_is_clean(tmp_path):
    """`systemd-analyze verify` in a throwaway root holding the unit, an ExecStart stand-in and systemd's own units
    (verify checks that ExecStart exists, and the real one lives in /opt only after install.sh)."""
    root = tmp_path / "root"
    exe = root / "opt/battery-twin/venv/bin/battery-twin"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    make_verify_root(root)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/battery-twin.service")
    p = subprocess.run(
        [systemd_analyze(), "verify", f"--root={root}", "battery-twin.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), p.stdout + p.stderr


def make_verify_root(root: Path) -> None:
    """systemd's unit files and /bin/kill (ExecReload) copied into ``root`` for `verify --root`."""
    units = Path("/usr/lib/systemd/system")
    assert units.is_dir(), "systemd's unit files are missing (/usr/lib/systemd/system): install systemd"
    (root / "usr/lib/systemd").mkdir(parents=True, exist_ok=True)
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(shutil.which("kill") or "/bin/kill", root / "usr/bin/kill")
    if not (root / "bin").exists():
        (root / "bin").symlink_to("usr/bin")


def test_hardening_keeps_what_the_agent_needs():
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert int(s["WatchdogSec"][0]) >= 10 and s["Restart"] == ["on-failure"]
    assert int(s["StartLimitBurst"][0]) >= 1 and int(s["StartLimitIntervalSec"][0]) > 0
    assert s["User"] == ["battery-twin"] and "dialout" in s["SupplementaryGroups"][0].split()
    assert s["StateDirectory"] == ["battery-twin"] and s["ConfigurationDirectory"] == ["battery-twin"]
    assert s["ExecStart"][0].split()[:3] == ["/opt/battery-twin/venv/bin/battery-twin", "run", "--config"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    families = s["RestrictAddressFamilies"][0].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6", "AF_CAN", "AF_NETLINK"} <= set(families)
    assert not any(f.startswith("~") for f in families)
    devices = {d.split()[0] for d in s["DeviceAllow"]}
    assert {"char-ttyUSB", "char-ttyACM", "char-ttyAMA", "char-ttyS"} <= devices
    assert all(d.split()[1] == "rw" for d in s["DeviceAllow"])
    assert "PrivateDevices" not in s and "PrivateNetwork" not in s
    assert s["ProtectSystem"] == ["strict"] and s["NoNewPrivileges"] == ["yes"]
    # The agent's own exit code for configuration problems must not loop through restarts.
    assert s["RestartPreventExitStatus"] == ["2"]


def parse_size(value: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)", value)
    assert m, value
    return int(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)]


def test_resources_are_capped():
    """MemoryMax= far above what the agent uses (80-90 MB in bench/results.json) but bounded; TasksMax= likewise."""
    s = unit_settings()
    high, top = parse_size(s["MemoryHigh"][-1]), parse_size(s["MemoryMax"][-1])
    assert 256 * 1024**2 <= high < top <= 1024**3
    assert 64 <= int(s["TasksMax"][-1]) <= 512


def address_policy(settings: dict[str, list[str]]) -> tuple[list, list]:
    """(allow, deny) networks as systemd reads IPAddressAllow=/IPAddressDeny= (space-separated, repeatable; the
    special names it knows expanded)."""
    names = {
        "any": ["0.0.0.0/0", "::/0"],
        "localhost": ["127.0.0.0/8", "::1/128"],
        "link-local": ["169.254.0.0/16", "fe80::/64"],
        "multicast": ["224.0.0.0/4", "ff00::/8"],
    }

    def nets(key: str) -> list:
        out = []
        for line in settings.get(key, []):
            if not line:  # an empty assignment resets the list
                out = []
                continue
            for item in line.split():
                out += [ipaddress.ip_network(n) for n in names.get(item, [item])]
        return out

    return nets("IPAddressAllow"), nets("IPAddressDeny")


def reachable(addr: str, allow: list, deny: list) -> bool:
    """systemd.resource-control(5): an address on the allow list passes; otherwise one on the deny list is dropped;
    anything else passes."""
    a = ipaddress.ip_address(addr)
    if any(a in n for n in allow if n.version == a.version):
        return True
    return not any(a in n for n in deny if n.version == a.version)


# IoT Core ATS endpoints of a few regions as resolved at the time of writing, and other public addresses.
PUBLIC = [
    "3.248.11.30",
    "18.202.250.12",
    "52.57.217.34",
    "54.239.31.1",
    "13.32.0.1",
    "99.80.1.1",
    "8.8.8.8",
    "2a05:d018:1234::1",
    "2600:1f18::1",
]
LAN = [
    "10.0.0.7",
    "172.16.5.5",
    "172.31.255.254",
    "192.168.1.10",
    "100.64.0.1",
    "169.254.169.254",
    "169.254.1.1",
    "fd00::1",
    "fe80::1",
    "224.0.0.251",
    "ff02::fb",
    "0.0.0.0",
]


def test_address_filter_allows_loopback_and_the_internet_and_denies_the_lan():
    s = unit_settings()
    assert s["IPAddressDeny"] == ["any"]
    allow, deny = address_policy(s)
    for addr in ["127.0.0.1", "127.0.0.53", "::1", *PUBLIC]:
        assert reachable(addr, allow, deny), f"{addr} is blocked by the unit"
    for addr in LAN:
        assert not reachable(addr, allow, deny), f"{addr} (LAN, link-local or multicast) passes the unit's filter"
    # The IPv4 allow list is exactly the public space: what is not in it is one of the documented ranges.
    documented = [
        ipaddress.ip_network(n)
        for n in (
            "0.0.0.0/8",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "224.0.0.0/3",
        )
    ]
    v4 = [n for n in allow if n.version == 4 and not n.subnet_of(ipaddress.ip_network("127.0.0.0/8"))]
    assert sum(n.num_addresses for n in v4) + sum(n.num_addresses for n in documented) == 2**32
    assert not any(n.overlaps(d) for n in v4 for d in documented)


@pytest.mark.parametrize(
    "dropin,opens,still_closed",
    [
        ("[Service]\nIPAddressAllow=192.168.1.1\n", ["192.168.1.1"], ["192.168.1.2", "10.0.0.1"]),
        ("[Service]\nIPAddressAllow=192.168.10.0/24\n", ["192.168.10.20", "192.168.10.254"], ["192.168.11.1"]),
    ],
)
def test_a_drop_in_opens_exactly_one_lan_address_or_subnet(tmp_path, dropin, opens, still_closed):
    """What systemd/README.md tells a user to write for a LAN DNS server, a Modbus TCP device or dashboard clients."""
    d = tmp_path / "battery-twin.service.d"
    d.mkdir()
    (d / "lan.conf").write_text(dropin)
    s = unit_settings()
    for k, v in unit_settings(d / "lan.conf").items():
        s.setdefault(k, []).extend(v)
    allow, deny = address_policy(s)
    assert all(reachable(a, allow, deny) for a in opens)
    assert not any(reachable(a, allow, deny) for a in still_closed)
    assert all(reachable(a, allow, deny) for a in PUBLIC)


PROBE = r"""
import errno, mmap, os, socket, numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper
assert os.path.exists("/proc/cpuinfo")  # onnxruntime's cpuinfo reads it: the unit must not hide it
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
assert status["Seccomp"].strip() == "2" and status["NoNewPrivs"].strip() == "1", status
assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
try:
    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)  # needs no capability: only the filter can refuse it
    raise SystemExit("AF_VSOCK allowed: RestrictAddressFamilies= is not in force")
except PermissionError:
    pass
except OSError as exc:
    assert exc.errno == errno.EAFNOSUPPORT, exc  # no vsock in this kernel: the Seccomp line above must do
try:
    os.setuid(0)  # allowed without privileges when already uid 0: only the filter (@privileged) can refuse it
    raise SystemExit("setuid allowed: SystemCallFilter= is not in force")
except PermissionError:
    pass
try:
    open("/usr/bt-sandbox-probe", "w")
    raise SystemExit("/usr is writable: ProtectSystem=strict is not in force")
except OSError:
    pass
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    raise SystemExit("W+X mapping allowed: MDWE is not in force")
except PermissionError:
    pass
import awscrt, cantools, can, serial, pymodbus, cryptography.x509
g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
                      [helper.make_tensor("w", TensorProto.FLOAT, [3, 1], [1.0, 2.0, 3.0])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
m.ir_version = 8
o = ort.SessionOptions()
o.intra_op_num_threads = 1
s = ort.InferenceSession(m.SerializeToString(), o, providers=["CPUExecutionProvider"])
print(float(s.run(None, {"x": np.array([[1, 1, 1]], np.float32)})[0][0, 0]))
"""


def test_a_checkout_under_tmp_survives_the_private_tmp(tmp_path):
    """PrivateTmp= gives the sandbox an empty /tmp; a checkout (or venv) that lives under /tmp must still be there,
    read-only, while everything else of the real /tmp stays hidden. Before the fix the script below vanished."""
    checkout = Path(tempfile.mkdtemp(prefix="bt-clone-", dir="/tmp"))
    other = Path(tempfile.mkdtemp(prefix="bt-other-", dir="/tmp"))
    state = Path(tempfile.mkdtemp(prefix="bt-state-", dir="/var/tmp"))
    try:
        (other / "private").write_text("not for the service")
        probe = checkout / "src" / "probe.py"
        probe.parent.mkdir()
        probe.write_text(
            "import os, sys\n"
            f"assert not os.path.exists({str(other / 'private')!r}), 'the real /tmp leaks into the sandbox'\n"
            "try:\n"
            f"    open({str(checkout / 'src' / 'x')!r}, 'w')\n"
            "    sys.exit('the checkout is writable')\n"
            "except OSError:\n"
            "    pass\n"
            "print('ok')\n"
        )
        cmd, extra = sandbox.command(state, UNIT, [sys.executable, str(probe)])
        env = {**os.environ, **extra, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)}
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=state)
        assert p.returncode == 0 and p.stdout.strip() == "ok", p.stdout + p.stderr
    finally:
        for d in (checkout, other, state):
            shutil.rmtree(d, ignore_errors=True)


def test_runs_inside_the_units_sandbox(broker, subscriber, rig_cert, pki):
    """MemoryDenyWriteExecute=yes breaks JITs and libffi trampolines, the syscall filter and address families
    refuse what the unit does not list, ProtectProc= hides processes, ProtectSystem=strict makes every path but the
    state directory read-only. Rebuilt here (tests/service/sandbox.py), the agent still
    publishes over TLS and onnxruntime runs a model."""
    base = Path(tempfile.mkdtemp(prefix="bt-sandbox-", dir="/var/tmp"))  # /tmp is replaced inside the sandbox
    try:
        state = base / "state"
        state.mkdir()
        cmd, extra = sandbox.command(state, UNIT, [sys.executable, "-c", PROBE])
        env = {**os.environ, **extra, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=state)
        assert p.returncode == 0 and p.stdout.strip() == "6.0", p.stdout + p.stderr
        assert "cpuinfo" not in p.stderr, p.stderr  # onnxruntime found its CPU features (ProcSubset=pid hid them)

        certs = base / "certs"
        certs.mkdir(mode=0o700)
        for src in (*rig_cert, pki.ca_cert):
            shutil.copy2(src, certs / src.name)
        cfg = agent_config(base, broker, (certs / rig_cert[0].name, certs / rig_cert[1].name), pki)
        cfg["uplink"]["ca"] = str(certs / pki.ca_cert.name)
        cfg["store"]["path"] = str(state / "battery-twin.db")
        conf = base / "agent.toml"
        conf.write_text(to_toml(cfg))
        with open(base / "agent.log", "wb") as log:
            cmd, _ = sandbox.command(state, UNIT, [sys.executable, "-m", "agent", "run", "--config", str(conf)])
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=state)
            try:
                subscriber.wait_for(
                    lambda: len(subscriber.telemetry_seqs()) >= 50 or proc.poll() is not None,
                    30,
                    "readings from the sandboxed agent",
                )
                assert proc.poll() is None, (base / "agent.log").read_text()[-2000:]
                proc.send_signal(signal.SIGTERM)  # unshare and sh exec: the agent is this very pid
                assert proc.wait(30) == 0, (base / "agent.log").read_text()[-2000:]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert (state / "battery-twin.db").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
