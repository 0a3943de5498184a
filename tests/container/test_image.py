"""The container image, built offline (container/image.sh: cached mmdebstrap base + podman's layer cache) and run as
a user would run it: hardened (--read-only, --cap-drop=ALL, a non-root --user, no-new-privileges), the private key
as a podman secret, config and certificates mounted read-only, state in a named volume, publishing over mTLS to the
test mosquitto. SIGKILLed three times and restarted on the same volume, nothing is missing at the broker and no seq
is reused; nothing secret is in the image or the container's metadata; the image holds exactly the locked edge
install."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

import agent
from agent.healthfile import HEALTH_FILE_NAME
from tests.conftest import agent_config
from tests.container.support import (
    PROBE,
    TRAINING_PACKAGES,
    audit,
    build_image,
    host_probe,
    installed_vs_lock,
    max_abs_diff,
    podman,
    require_tools,
)
from tests.reliability.common import committed_max_seq, report
from tests.support.agentproc import to_toml

# A fresh machine builds the base and the dependency layer first (minutes; cached after).
pytestmark = pytest.mark.timeout(1800)
UID = 10001
SIZE_GOAL_BYTES = 250_000_000
LOG_LINE = re.compile(r'^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ level=(INFO|WARNING|ERROR|DEBUG) logger=\S+ msg=".*"$')
# A PEM private key with its body (source code that merely names the marker, like cryptography's, does not count).
PEM_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]{64,}")
HARDENED = ["--read-only", "--read-only-tmpfs=false", "--cap-drop=ALL", "--security-opt=no-new-privileges",
            f"--user={UID}:{UID}"]  # fmt: skip


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    require_tools("podman", "runc", "mmdebstrap")
    return build_image("amd64", "localhost/battery-twin:test", tmp_path_factory.mktemp("image"))


class Deployment:
    """One deployment of the image: a state volume, the key as a podman secret, config and certs read-only."""

    def __init__(self, image: str, tmp: Path, broker, pki, rig_cert):
        self.image = image
        self.name = f"bt-test-{uuid.uuid4().hex[:10]}"
        self.volume = f"{self.name}-state"
        self.secret = f"{self.name}-key"
        self.key_pem = Path(rig_cert[1]).read_text()
        certs = tmp / "certs"
        certs.mkdir()
        (certs / "device.pem.crt").write_bytes(Path(rig_cert[0]).read_bytes())
        (certs / "ca.pem").write_bytes(Path(pki.ca_cert).read_bytes())
        cfg = agent_config(tmp, broker, rig_cert, pki)
        cfg["store"]["path"] = "/var/lib/battery-twin/battery-twin.db"
        cfg["uplink"].update(
            cert="/etc/battery-twin/certs/device.pem.crt",
            key="/run/secrets/device.key",
            ca="/etc/battery-twin/certs/ca.pem",
        )
        self.config = tmp / "config.toml"
        self.config.write_text(to_toml(cfg))
        self.certs = certs
        podman("volume", "create", self.volume)
        podman("secret", "create", self.secret, str(rig_cert[1]))

    def run(self) -> None:
        podman(
            "run", "-d", "--name", self.name, "--network=host", *HARDENED,
            "-v", f"{self.volume}:/var/lib/battery-twin",
            "-v", f"{self.config}:/etc/battery-twin/config.toml:ro",
            "-v", f"{self.certs}:/etc/battery-twin/certs:ro",
            # The secret's mount point: a root-owned tmpfs (the root filesystem is read-only; uid 10001 cannot
            # write here).
            "--tmpfs", "/run/secrets:rw,size=64k,mode=0755",
            "--secret", f"{self.secret},type=mount,target=device.key,uid={UID},gid={UID},mode=0400",
            self.image,
        )  # fmt: skip

    def logs(self) -> str:
        p = podman("logs", self.name, check=False)
        return p.stdout + p.stderr

    def wait_log_count(self, text: str, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.logs().count(text) >= count:
                return
            time.sleep(0.3)
        raise AssertionError(f"{text!r} not logged {count} times within {timeout_s} s:\n{self.logs()[-3000:]}")

    def exec(self, *cmd: str) -> tuple[int, str]:
        p = podman("exec", self.name, *cmd, check=False)
        return p.returncode, p.stdout + p.stderr

    def state(self) -> dict:
        return json.loads(podman("inspect", self.name).stdout)[0]["State"]

    def stop(self) -> int:
        """SIGTERM (the image's STOPSIGNAL), 30 s like the unit's TimeoutStopSec; returns the exit code."""
        podman("stop", "-t", "30", self.name, timeout_s=60)
        return int(self.state()["ExitCode"])

    def volume_path(self) -> Path:
        return Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", self.volume).stdout.strip())

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)
        podman("volume", "rm", "-f", self.volume, check=False)
        podman("secret", "rm", self.secret, check=False)


@pytest.fixture()
def deployment(image, tmp_path, broker, pki, rig_cert):
    d = Deployment(image, tmp_path, broker, pki, rig_cert)
    yield d
    d.remove()
    # Nothing left behind: no container, no volume, no secret of this deployment.
    assert podman("ps", "-a", "--filter", f"name={d.name}", "--format", "{{.Names}}").stdout.strip() == ""
    assert d.volume not in podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert d.secret not in podman("secret", "ls", "--format", "{{.Name}}").stdout.split()


def test_hardened_container_publishes_and_writes_only_its_state_volume(deployment, subscriber):
    d = deployment
    d.run()
    d.wait_log_count("uplink connected", 1)
    subscriber.wait_for(lambda: len(subscriber.telemetry_seqs()) >= 40, 60, "40 readings at the broker")

    # PID 1 is the agent, as user 10001, with no capability at all and no way to gain one.
    code, status = d.exec("cat", "/proc/1/status")
    assert code == 0
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["Uid"].split()[0] == str(UID) and fields["Gid"].split()[0] == str(UID)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == 0, (cap, fields[cap])
    assert fields["NoNewPrivs"].strip() == "1"
    code, cmdline = d.exec("cat", "/proc/1/cmdline")
    assert "battery-twin\0run" in cmdline, cmdline
    # Writes: the state volume yes, anything else no (root filesystem read-only, no tmpfs, config mounted ro).
    assert d.exec("touch", "/var/lib/battery-twin/probe") == (0, "")
    for path in ("/probe", "/etc/probe", "/etc/battery-twin/probe", "/etc/battery-twin/config.toml", "/tmp/probe",
                 "/var/tmp/probe", "/opt/battery-twin/venv/probe", "/run/secrets/device.key"):  # fmt: skip
        code, out = d.exec("sh", "-c", f"echo x >> {path}")
        assert code != 0 and ("Read-only file system" in out or "Permission denied" in out), (path, code, out)
    # The key came in as a podman secret: readable by the agent only, not writable even by it, and nowhere in the
    # container's metadata or environment.
    assert d.exec("stat", "-c", "%a %u", "/run/secrets/device.key") == (0, f"400 {UID}\n")
    key_body = "".join(d.key_pem.strip().splitlines()[1:-1])
    inspect = podman("inspect", d.name).stdout
    assert len(key_body) > 40 and key_body[:40] not in inspect and "PRIVATE KEY" not in inspect
    env = json.loads(inspect)[0]["Config"]["Env"]
    assert not [e for e in env if re.search(r"(?i)(secret|token|password|key)=", e)], env
    assert d.exec("sh", "-c", "cat /proc/1/environ | tr '\\0' '\\n' | grep -ci private")[1].strip() == "0"
    # The HEALTHCHECK reads the health file the agent keeps in its state volume.
    deadline = time.monotonic() + 60
    while (hc := podman("healthcheck", "run", d.name, check=False)).returncode != 0:
        assert time.monotonic() < deadline, f"healthcheck never passed: {hc.stdout}{hc.stderr}"
        time.sleep(1)
    assert json.loads((d.volume_path() / HEALTH_FILE_NAME).read_text())["healthy"] is True
    # SIGTERM as the service gets it: drain, close the store cleanly, exit 0.
    assert d.stop() == 0, d.logs()[-3000:]
    logs = d.logs()
    assert "agent stopped" in logs
    assert not (d.volume_path() / "battery-twin.db-wal").exists()
    # Logs: the agent's key=value lines with UTC timestamps (no journald in a container), nothing else.
    lines = [ln for ln in logs.splitlines() if ln.strip()]
    assert lines and all(LOG_LINE.match(ln) for ln in lines), [ln for ln in lines if not LOG_LINE.match(ln)][:5]


def test_sigkill_three_times_nothing_missing_no_seq_reused(deployment, subscriber):
    d = deployment
    d.run()
    d.wait_log_count("uplink connected", 1)

    def distinct() -> int:  # a restart re-sends what was not acknowledged: count each seq once
        return len(set(subscriber.telemetry_seqs()))

    for kill in range(1, 4):
        have = distinct()
        subscriber.wait_for(lambda h=have: distinct() >= h + 30, 60, "new readings")
        podman("kill", "-s", "KILL", d.name)
        podman("wait", d.name, timeout_s=60)
        assert d.state()["ExitCode"] == 137
        podman("start", d.name)
        d.wait_log_count("agent started", kill + 1)
        d.wait_log_count("uplink connected", kill + 1)
    have = distinct()
    subscriber.wait_for(lambda: distinct() >= have + 30, 60, "readings after the last restart")
    assert d.stop() == 0, d.logs()[-3000:]
    upto = committed_max_seq(d.volume_path() / "battery-twin.db")
    subscriber.wait_for(lambda: not audit(subscriber, upto).missing, 60, f"every seq up to {upto} at the broker")
    a = audit(subscriber, upto)
    report("container_sigkill_3", kills=3, committed_upto=upto, received=a.received, duplicates=a.duplicates)
    assert upto >= 120 and a.missing == [] and a.reused == {}, (upto, a.missing[:20], list(a.reused.items())[:5])


def test_no_secret_in_any_image_layer_or_the_image_metadata(image):
    """Every layer as podman stores it (what a registry would get), read in place: no private key, nothing left
    from a build secret; the image's metadata and history hold no key either."""
    for what in (podman("image", "inspect", image).stdout, podman("history", "--no-trunc", image).stdout):
        assert not PEM_KEY.search(what.encode()) and "PRIVATE KEY" not in what
    driver = json.loads(podman("image", "inspect", image).stdout)[0]["GraphDriver"]
    assert driver["Name"] == "overlay", driver
    layers = [Path(d) for d in driver["Data"].get("LowerDir", "").split(":") if d] + [Path(driver["Data"]["UpperDir"])]
    assert len(layers) == len(json.loads(podman("image", "inspect", image).stdout)[0]["RootFS"]["Layers"]) >= 3
    scanned = 0
    for layer in layers:
        assert not (layer / "run" / "secrets").exists() or not any((layer / "run" / "secrets").iterdir()), layer
        for f in layer.rglob("*"):
            if f.is_file() and not f.is_symlink() and f.stat().st_size < 64 * 1024 * 1024:
                scanned += 1
                assert not PEM_KEY.search(f.read_bytes()), f"a private key in a layer of the image: {f}"
    assert scanned > 5000


def test_image_holds_exactly_the_locked_edge_install_and_runs_the_models(image):
    inspect = json.loads(podman("image", "inspect", image).stdout)[0]
    size = int(inspect["Size"])
    report("container_image", size_mb=round(size / 1e6, 1), goal_mb=SIZE_GOAL_BYTES / 1e6)
    assert size <= SIZE_GOAL_BYTES, f"the edge image is {size / 1e6:.0f} MB (goal <= {SIZE_GOAL_BYTES / 1e6:.0f})"
    cfg = inspect["Config"]
    assert cfg["User"] == f"{UID}:{UID}" and cfg["Entrypoint"] == ["battery-twin"] and cfg["Cmd"] == ["run"]
    hc = inspect["Healthcheck"]  # podman reports it beside Config
    assert hc["Test"][:4] == ["CMD", "python", "-m", "agent.healthfile"] and hc["Interval"] == 30e9, hc
    assert "/var/lib/battery-twin" in cfg["Volumes"]
    # One process in the image (hardened, no network): its packages are the lock, its models give the host's numbers.
    out = podman("run", "--rm", "-i", "--network=none", *HARDENED, "--entrypoint", "python", image, "-",
                 input=PROBE.read_text())  # fmt: skip
    got = json.loads(out.stdout)
    assert got["machine"] == "x86_64"
    diff = installed_vs_lock(got["distributions"], agent.__version__)
    assert diff == {"not locked": [], "locked, not installed": []}, diff
    assert not {canonicalize_name(n) for n in got["distributions"]} & {canonicalize_name(n) for n in TRAINING_PACKAGES}
    assert max_abs_diff(got, host_probe()) <= 1e-6
