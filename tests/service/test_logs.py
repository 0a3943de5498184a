"""Logs: journald priorities, and no key material in anything the agent or doctor writes, even when an operator
pastes a key into the wrong config field."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from agent.logs import redact
from tests.conftest import agent_config
from tests.support.agentproc import to_toml


def key_fragments(key_path: Path) -> list[str]:
    """Every base64 line of the PEM body: any of them in a log means key material leaked."""
    lines = key_path.read_text().strip().splitlines()
    body = [ln for ln in lines if not ln.startswith("-----")]
    assert body and all(len(ln) >= 16 for ln in body[:-1])
    return [ln for ln in body if len(ln) >= 16] + [body[-1]]


def assert_no_key_material(text: str, key_path: Path) -> None:
    leaked = [f for f in key_fragments(key_path) if f in text or f.replace("/", "\\/") in text]
    assert not leaked, f"key material in the output: {leaked[:2]}"
    assert "BEGIN PRIVATE KEY" not in text and "BEGIN EC PRIVATE KEY" not in text


def test_redact_removes_whole_and_truncated_pem_keys(rig_cert):
    pem = rig_cert[1].read_text()
    assert redact(f"got {pem!r} here") == "got '[private key redacted]\\n' here"
    assert redact("x " + pem[:60]) == "x [private key redacted]"
    assert redact(pem.replace("\n", "\\n")) == "[private key redacted]\\n"
    certificate = rig_cert[0].read_text()
    assert redact(certificate) == certificate  # certificates are public
    assert redact("plain line") == "plain line"


def _log_lines(env_extra: dict[str, str], fmt: str) -> list[str]:
    code = (
        f"import logging; from agent.logs import setup_logging; setup_logging('DEBUG', {fmt!r}); "
        "log = logging.getLogger('t'); log.debug('d'); log.info('i'); log.warning('w'); log.error('e')"
    )
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, **env_extra}, timeout=60
    )
    return p.stderr.strip().splitlines()


def test_journald_gets_syslog_priorities_and_no_timestamps():
    for fmt in ("kv", "json"):
        lines = _log_lines({"JOURNAL_STREAM": "8:12345"}, fmt)
        assert [ln[:3] for ln in lines] == ["<7>", "<6>", "<4>", "<3>"], lines
        assert not any("ts=" in ln for ln in lines if fmt == "kv")
        plain = _log_lines({}, fmt)
        assert not any(ln.startswith("<") for ln in plain)
    assert all(ln.startswith("ts=") for ln in _log_lines({}, "kv"))


def test_agent_and_doctor_output_never_contain_the_key(tmp_path, broker, rig_cert, pki, agent_proc):
    keydir = tmp_path / "keys"
    keydir.mkdir()
    key = keydir / "device.key"
    shutil.copy(rig_cert[1], key)
    os.chmod(key, 0o644)  # the agent refuses it (naming the file and the fix, never its content)
    cfg = agent_config(tmp_path, broker, (rig_cert[0], key), pki, log={"level": "DEBUG"})
    refused = agent_proc(cfg, "refused").start()
    assert refused.proc.wait(60) == 2 and "mode 0644" in refused.log() and f"chmod 600 {key}" in refused.log()
    assert_no_key_material(refused.log(), key)
    os.chmod(key, 0o600)
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink connected")
    # An operator pastes the key into a config field; the reload is rejected and the problem is logged.
    pasted = to_toml({**cfg, "rig": "PASTED"}).replace('rig = "PASTED"', f'rig = """{key.read_text()}"""')
    agent.config_path.write_text(pasted)
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_log("reload rejected: 1 problem(s)")
    assert agent.stop() == 0
    log = agent.log()
    assert "[private key redacted]" in log, "the rejected value should have been logged, redacted"
    assert_no_key_material(log, key)

    # The same bad file at start: the error goes to stderr (the journal under systemd).
    bad = tmp_path / "pasted.toml"
    bad.write_text(pasted)
    p = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 2 and "rig:" in p.stderr
    assert_no_key_material(p.stdout + p.stderr, key)

    # doctor loads the key to compare it with the certificate and prints every finding.
    os.chmod(key, 0o644)  # a finding for doctor too
    good = tmp_path / "good.toml"
    good.write_text(to_toml(cfg))
    for conf in (good, bad):
        p = subprocess.run(
            [sys.executable, "-m", "agent", "doctor", "--config", str(conf)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 1  # the 0644 key, or the pasted key
        assert_no_key_material(p.stdout + p.stderr, key)
