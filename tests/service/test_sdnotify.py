"""sd_notify against a real AF_UNIX datagram socket as $NOTIFY_SOCKET: READY after the store is open, WATCHDOG
pings only while the pipeline is healthy, RELOADING/READY around SIGHUP, STOPPING on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

from agent import sdnotify
from agent.config import parse_config
from agent.runtime import build_agent
from tests.conftest import RIG, agent_config
from tests.support.agentproc import to_toml


def test_notify_reaches_path_and_abstract_sockets(notify_socket):
    assert sdnotify.notify("READY=1", "STATUS=hello", env={"NOTIFY_SOCKET": str(notify_socket.path)})
    assert notify_socket.wait_for("READY", "1", 2) == {"READY": "1", "STATUS": "hello"}
    name = f"battery-twin-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind("\0" + name)
        abstract.settimeout(2)
        assert sdnotify.notify("WATCHDOG=1", env={"NOTIFY_SOCKET": "@" + name})
        assert abstract.recv(100) == b"WATCHDOG=1"
    # Not under systemd: a no-op, never an error.
    assert not sdnotify.notify("READY=1", env={})
    assert not sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": "/nonexistent/dir/sock"})


def test_watchdog_interval_is_a_third_and_only_for_our_pid():
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 10.0
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 10.0
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval_s({}) is None


def test_ready_after_store_open_pings_only_while_healthy(tmp_path, notify_socket, monkeypatch):
    """In-process: the real Agent from build_agent, its store and simulator driver; the pipeline is then made
    unhealthy twice: an internal task dies (Agent.healthy() false), and the store thread is stuck."""
    for k, v in notify_socket.env(watchdog_usec=600_000).items():  # a ping every 0.2 s
        monkeypatch.setenv(k, v)
    cfg = parse_config(agent_config(tmp_path, None, None, None))
    db = cfg.store.path

    async def scenario() -> None:
        agent = build_agent(cfg)
        await agent.start()
        try:
            ready = await asyncio.to_thread(notify_socket.wait_for, "READY", "1", 20)
            # READY came after the store was opened and the driver's first open attempt.
            assert (
                db.exists()
                and sqlite3.connect(db).execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] >= 1
            )
            assert all(r.state == "running" for r in agent.runners.values())
            assert "sim:running" in ready["STATUS"] and ready["MAINPID"] == str(os.getpid())
            pings = [m for m in await asyncio.to_thread(notify_socket.collect, 1.5) if m.get("WATCHDOG") == "1"]
            assert len(pings) >= 3, pings

            # 1. The store thread is stuck: pings stop while it is, and resume after.
            agent.worker._pool.submit(time.sleep, 2.5)
            await asyncio.sleep(0.5)
            stuck = await asyncio.to_thread(notify_socket.collect, 1.5)
            assert not [m for m in stuck if m.get("WATCHDOG")], stuck
            await asyncio.to_thread(notify_socket.wait_for, "WATCHDOG", "1", 5)

            # 2. An internal task dies: Agent.healthy() is false and no ping goes out any more.
            health = next(t for t in agent.tasks if t.get_name() == "health")
            health.cancel()
            await asyncio.sleep(0.05)
            assert not agent.healthy()
            unhealthy = await asyncio.to_thread(notify_socket.wait_for, "STATUS", None, 5)
            while not unhealthy["STATUS"].startswith("unhealthy"):
                unhealthy = await asyncio.to_thread(notify_socket.wait_for, "STATUS", None, 5)
            assert "health" in unhealthy["STATUS"]
            later = await asyncio.to_thread(notify_socket.collect, 1.5)
            assert not [m for m in later if m.get("WATCHDOG")], later
            notifier = next(s for s in agent.services if isinstance(s, sdnotify.SystemdNotifier))
            assert notifier.withheld >= 5
        finally:
            await agent.stop(drain_timeout_s=0.5)
        stopping = await asyncio.to_thread(notify_socket.wait_for, "STOPPING", "1", 5)
        assert stopping["STATUS"].startswith("stopping")

    asyncio.run(scenario())


def test_agent_process_notifies_ready_reload_and_stopping(tmp_path, notify_socket):
    """The agent as a separate process, as systemd starts it: READY=1 only once its store exists, WATCHDOG=1
    pings, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 then exit 0 on SIGTERM."""
    cfg = agent_config(tmp_path, None, None, None)
    conf = tmp_path / "agent.toml"
    conf.write_text(to_toml(cfg))
    env = {**os.environ, **notify_socket.env(watchdog_usec=1_500_000), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(conf)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        ready = notify_socket.wait_for("READY", "1", 30)
        db = tmp_path / "store" / "agent.db"
        assert db.exists(), "READY=1 arrived before the store was created"
        assert sqlite3.connect(db).execute("SELECT count(*) FROM meta").fetchone()[0] > 0
        assert ready["MAINPID"] == str(proc.pid) and f"rig {RIG}" in ready["STATUS"]
        notify_socket.wait_for("WATCHDOG", "1", 5)
        notify_socket.wait_for("WATCHDOG", "1", 5)
        proc.send_signal(signal.SIGHUP)
        reloading = notify_socket.wait_for("RELOADING", "1", 10)
        assert int(reloading["MONOTONIC_USEC"]) > 0
        again = notify_socket.wait_for("READY", "1", 10)
        assert "last reload: kept=sim" in again["STATUS"]
        proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING", "1", 10)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
