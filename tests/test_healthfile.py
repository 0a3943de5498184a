"""health.json and `battery-twin health`: what a container HEALTHCHECK reads. The agent rewrites the file while its
tasks live and its store thread answers; the probe exits 1 (never 2: reserved by HEALTHCHECK) for a missing, broken,
stale or unhealthy file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent import healthfile
from agent.config import parse_config
from agent.runtime import build_agent
from tests.conftest import agent_config
from tests.support.agentproc import to_toml
from tests.support.waiting import wait_until


def probe(*args: str) -> tuple[int, str]:
    p = subprocess.run([sys.executable, "-m", "agent", "health", *args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def doc(**over) -> dict:
    base = {
        "v": 1,
        "ts": time.time_ns() // 1_000_000,
        "monotonic_s": time.monotonic(),
        "boot_id": healthfile.boot_id(),
        "pid": 1,
        "healthy": True,
        "state": "running",
        "problems": [],
        "rig": "r1",
        "status": "rig r1; drivers sim:running; uplink connected",
    }
    return {**base, **over}


def test_the_agent_keeps_the_file_current_and_says_what_is_wrong(tmp_path, monkeypatch):
    """In-process, the real Agent from build_agent: fresh and healthy while it runs; a stuck store thread and a dead
    internal task each make it unhealthy with the reason; stopping marks it stopped."""
    cfg = parse_config(agent_config(tmp_path, None, None, None))
    path = healthfile.health_file_path(cfg)
    assert path == cfg.store.path.parent / "health.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc()))  # a healthy-looking file from an earlier run
    monkeypatch.setattr(healthfile, "STORE_ANSWER_TIMEOUT_S", 0.3)

    def read() -> dict:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    async def scenario() -> None:
        agent = build_agent(cfg)
        assert not path.exists(), "the earlier run's health must not stand for this one"
        service = next(s for s in agent.services if isinstance(s, healthfile.HealthFile))
        service.interval_s = 0.1
        await agent.start()
        try:
            await asyncio.to_thread(wait_until, lambda: read().get("healthy") is True, 10, "a healthy health.json")
            d = read()
            assert d["pid"] == os.getpid() and d["rig"] == cfg.rig and d["boot_id"] == healthfile.boot_id()
            assert d["status"].startswith(f"rig {cfg.rig}; drivers sim:running; uplink off"), d
            assert healthfile.verdict(path, 5)[0] == healthfile.HEALTHY

            agent.worker._pool.submit(time.sleep, 1.5)  # the store thread is stuck
            await asyncio.to_thread(wait_until, lambda: read().get("healthy") is False, 5, "unhealthy (store)")
            assert "store thread did not answer" in read()["problems"][0]
            code, line = healthfile.verdict(path, 5)
            assert code == healthfile.UNHEALTHY and "store thread" in line
            await asyncio.to_thread(wait_until, lambda: read().get("healthy") is True, 5, "healthy again")

            next(t for t in agent.tasks if t.get_name() == "maintenance").cancel()
            await asyncio.to_thread(wait_until, lambda: read().get("healthy") is False, 5, "unhealthy (task)")
            assert read()["problems"] == ["internal task maintenance stopped"]
            writes = service.writes
        finally:
            await agent.stop(drain_timeout_s=0.1)
        assert service.writes > writes
        assert read()["state"] == "stopped" and read()["healthy"] is False
        assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")], "no temporary file left behind"

    asyncio.run(scenario())


def test_probe_exit_codes_for_every_kind_of_file(tmp_path):
    f = tmp_path / "health.json"
    code, out = probe("--file", str(f))
    assert code == 1 and "no health file" in out
    for bad in ("", "{not json", "[]", '{"ts": "yesterday"}', '"text"', "\x00\x01"):
        f.write_text(bad)
        code, out = probe("--file", str(f))
        assert code == 1 and out.startswith("unhealthy: cannot read"), (bad, out)
    f.write_text(json.dumps(doc()))
    code, out = probe("--file", str(f))
    assert code == 0 and out.startswith("healthy: rig r1") and "sim:running" in out, out
    # Stale: written 100 s ago in this boot (monotonic), or in another boot (the wall clock decides).
    f.write_text(json.dumps(doc(monotonic_s=time.monotonic() - 100)))
    code, out = probe("--file", str(f), "--max-age-s", "30")
    assert code == 1 and "agent stalled" in out, out
    f.write_text(json.dumps(doc(boot_id="another-boot", monotonic_s=0, ts=time.time_ns() // 1_000_000 - 100_000)))
    assert probe("--file", str(f), "--max-age-s", "30")[0] == 1
    f.write_text(json.dumps(doc(boot_id="another-boot", monotonic_s=0)))
    assert probe("--file", str(f), "--max-age-s", "30")[0] == 0
    # A wall clock that jumped (NTP on a Pi without RTC) does not matter within one boot.
    f.write_text(json.dumps(doc(ts=0)))
    assert probe("--file", str(f))[0] == 0
    f.write_text(json.dumps(doc(healthy=False, problems=["internal task uplink stopped"])))
    code, out = probe("--file", str(f))
    assert code == 1 and "internal task uplink stopped" in out
    # The light entry point the container HEALTHCHECK runs says the same.
    light = subprocess.run(
        [sys.executable, "-m", "agent.healthfile", "--file", str(f)], capture_output=True, text=True, timeout=60
    )
    assert (light.returncode, light.stdout) == (code, out)


def test_probe_finds_the_file_through_the_config_and_a_broken_config_is_unhealthy_not_2(tmp_path, monkeypatch):
    cfg = agent_config(tmp_path, None, None, None)
    conf = tmp_path / "agent.toml"
    conf.write_text(to_toml(cfg))
    health = Path(cfg["store"]["path"]).parent / "health.json"
    health.parent.mkdir(parents=True)
    health.write_text(json.dumps(doc()))
    assert probe("--config", str(conf))[0] == 0
    monkeypatch.setenv("BATTERY_TWIN_CONFIG", str(conf))
    assert probe()[0] == 0
    conf.write_text("rig = [broken")
    code, out = probe("--config", str(conf))
    assert code == 1 and out.startswith("unhealthy: config"), out


def test_a_stopped_process_goes_stale_and_a_terminated_one_says_so(tmp_path, agent_proc):
    """A real agent process: SIGSTOP (what a hung event loop looks like from outside) makes the file stale."""
    cfg = agent_config(tmp_path, None, None, None)
    agent = agent_proc(cfg).start()
    agent.wait_started()
    health = Path(cfg["store"]["path"]).parent / "health.json"
    wait_until(health.exists, 20, "health.json")
    assert probe("--config", str(agent.config_path))[0] == 0
    agent.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(1.5)
        code, out = probe("--config", str(agent.config_path), "--max-age-s", "1")
        assert code == 1 and "agent stalled" in out, out
    finally:
        agent.proc.send_signal(signal.SIGCONT)
    assert agent.stop() == 0
    code, out = probe("--config", str(agent.config_path))
    assert code == 1 and "unhealthy (stopped)" in out, out
