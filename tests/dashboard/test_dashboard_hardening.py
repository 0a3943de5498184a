"""Issue 14.5 and 14.7: the dashboard beyond loopback (HTTPS or an explicit opt-out), its resume ids, its stream
admission, its backfill and health bounds. Each test feeds the bad input and fails on the code before the fix."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sqlite3
import time
from types import SimpleNamespace

import numpy as np
import pytest

from agent.config import ConfigError, DashboardConfig, parse_config
from agent.dashboard import DashboardService
from agent.dashboard.hub import Hub
from agent.dashboard.reader import StoreReader
from agent.dashboard.server import Cached
from agent.pipeline import Agent, StartupError
from agent.store import Store
from drivers.base import ReadingBatch
from tests.conftest import agent_config
from tests.dashboard.conftest import dashboard_port, run_async

SIM = [{"type": "simulator", "name": "sim", "cells": 4, "sample_hz": 2.0}]
TOKEN = "t" * 24


# ---------------------------------------------------------------------------------------------- config (14.5)
@pytest.mark.parametrize(
    "dashboard,problem",
    [
        ({"host": "0.0.0.0", "token": TOKEN}, "set dashboard.tls_cert and dashboard.tls_key"),
        ({"host": "192.0.2.10", "token": TOKEN}, "set dashboard.tls_cert and dashboard.tls_key"),
        ({"host": "rig-gateway.local", "token": TOKEN}, "set dashboard.tls_cert and dashboard.tls_key"),
        ({"host": "0.0.0.0", "token": TOKEN, "tls_cert": "c.pem"}, "go together"),
        ({"host": "127.0.0.1", "tls_key": "k.pem"}, "go together"),
        ({"host": "0.0.0.0", "token": TOKEN, "allow_plain_http": "yes please"}, "allow_plain_http"),
    ],
)
def test_config_refuses_the_dashboard_beyond_loopback_in_clear(dashboard, problem):
    with pytest.raises(ConfigError) as err:
        parse_config({"rig": "r1", "dashboard": {"enabled": True, **dashboard}})
    assert problem in str(err.value)


@pytest.mark.parametrize(
    "dashboard",
    [
        {"host": "127.0.0.1"},
        {"host": "::1", "token": TOKEN},
        {"host": "0.0.0.0", "token": TOKEN, "tls_cert": "c.pem", "tls_key": "k.pem"},
        {"host": "0.0.0.0", "token": TOKEN, "allow_plain_http": True},
    ],
)
def test_config_accepts_loopback_https_or_the_explicit_opt_out(dashboard):
    assert parse_config({"rig": "r1", "dashboard": {"enabled": True, **dashboard}}).dashboard.enabled


def test_tls_paths_are_relative_to_the_config_file(tmp_path):
    from agent.config import load_config

    (tmp_path / "agent.toml").write_text(
        'rig = "r1"\n[dashboard]\nenabled = true\nhost = "0.0.0.0"\ntoken = "' + TOKEN + '"\n'
        'tls_cert = "tls/dash.crt"\ntls_key = "tls/dash.key"\n'
    )
    d = load_config(tmp_path / "agent.toml").dashboard
    assert d.tls_cert == tmp_path / "tls/dash.crt" and d.tls_key == tmp_path / "tls/dash.key"


def test_service_refuses_plain_http_beyond_loopback_even_if_validation_was_bypassed():
    cfg = DashboardConfig.model_construct(
        enabled=True,
        host="0.0.0.0",
        port=0,
        token=DashboardConfig(token=TOKEN).token,
        tls_cert=None,
        tls_key=None,
        allow_plain_http=False,
    )
    with pytest.raises(StartupError, match="refusing to serve the token in clear"):
        run_async(DashboardService(cfg).start(agent=None))


# ---------------------------------------------------------------------------------------------- raw HTTP helpers
def request(port: int, path: str, headers: dict[str, str] | None = None, read_body: bool = False) -> tuple[int, bytes]:
    """One HTTP/1.1 request over a plain socket (headers sent as UTF-8, as a hostile client may); status, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        headers = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        head = f"GET {path} HTTP/1.1\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall((head + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data or read_body:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data


@pytest.fixture()
def loopback_agent(tmp_path, agent_proc):
    cfg = agent_config(
        tmp_path, None, None, None, drivers=SIM, dashboard={"enabled": True, "port": 0, "max_clients": 2}
    )
    agent = agent_proc(cfg).start()
    port = dashboard_port(agent)
    agent.wait_log("agent started")
    yield agent, port
    assert agent.stop() == 0, agent.log()[-2000:]


# ---------------------------------------------------------------------------------------------- resume ids (Low)
BAD_IDS = [
    "\u00b2",  # SUPERSCRIPT TWO: str.isdigit() says yes, int() raises
    "\u0663",  # ARABIC-INDIC DIGIT THREE: isdigit() and int() both accept it
    "\uff11\uff12",  # FULLWIDTH DIGITS: the same
    "9" * 5000,  # isdigit(), but int() refuses more than 4300 digits
    str(2**63),  # does not fit SQLite's INTEGER
    "-1",
    "1e3",
    "1 2",
    "0x10",
]


def test_a_malformed_resume_id_is_a_400(loopback_agent):
    """Every id of the table, as the Last-Event-ID header and as ?after= (one agent for the whole table)."""
    from urllib.parse import quote

    agent, port = loopback_agent
    got = {}
    for bad in BAD_IDS:
        for where in ("header", "query"):
            headers = {"Last-Event-ID": bad} if where == "header" else None
            path = "/api/stream" if where == "header" else f"/api/stream?after={quote(bad)}"
            got[(bad[:20], where)] = request(port, path, headers)[0]
    assert set(got.values()) == {400}, {k: v for k, v in got.items() if v != 400}
    assert "Traceback" not in agent.log() and "Error handling request" not in agent.log()
    status, data = request(port, "/api/stream", {"Last-Event-ID": "1"})
    assert status == 200, data[:300]


# ---------------------------------------------------------------------------------------------- admission (14.7)
def test_a_burst_of_streams_admits_exactly_max_clients(loopback_agent):
    """Twelve stream requests sent at once with max_clients = 2: two streams, ten 503s. (Before the fix the check
    ran before subscribe's awaits, so a burst all passed it.) Slots come back when the streams end."""
    _agent, port = loopback_agent
    socks = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(12)]
    try:
        req = f"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        for s in socks:
            s.sendall(req)
        statuses = []
        for s in socks:
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                assert chunk, "connection closed without a status line"
                data += chunk
            statuses.append(int(data.split(b" ", 2)[1]))
    finally:
        for s in socks:
            s.close()
    assert sorted(statuses) == [200] * 2 + [503] * 10, statuses
    deadline = time.monotonic() + 20  # the server notices the closed streams at its next tick (1 s)
    while time.monotonic() < deadline:
        if request(port, "/api/stream")[0] == 200:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("stream slots were not released after the streams closed")


@pytest.fixture()
def store_agent(tmp_path):
    cfg = parse_config(
        {"rig": "r1", "store": {"path": str(tmp_path / "s.db")}, "dashboard": {"enabled": True, "max_clients": 3}}
    )
    a = SimpleNamespace(cfg=cfg, store=Store.open(cfg.store.path), control=Agent(cfg))
    yield a
    a.store.close()


def test_admission_counts_slots_without_awaiting(store_agent):
    rd = StoreReader(store_agent.cfg.store.path)
    try:
        hub = Hub(store_agent.control, rd, store_agent.cfg.dashboard)
        assert [hub.admit() for _ in range(5)] == [True, True, True, False, False]
        hub.release()
        assert hub.admit() and not hub.admit()
    finally:
        rd.close()


# ---------------------------------------------------------------------------------------------- backfill in SQL (14.7)
class CountingReader(StoreReader):
    """The real reader, counting the rows that cross from SQLite into Python."""

    rows = 0

    @property
    def conn(self):  # type: ignore[override]
        real = super().conn
        outer = self

        class Conn:
            def execute(self, *args):
                cur = real.execute(*args)

                class Cur:
                    def fetchall(self):
                        got = cur.fetchall()
                        outer.rows += len(got)
                        return got

                    def fetchone(self):
                        got = cur.fetchone()
                        outer.rows += got is not None
                        return got

                    def __iter__(self):
                        return iter(self.fetchall())

                return Cur()

        return Conn()


def fill(store, cells: tuple[str, ...], ticks: int, t0_ms: int, step_ms: int = 100) -> None:
    n = len(cells)
    ts = np.repeat(t0_ms + step_ms * np.arange(ticks, dtype=np.int64), n)
    cell = np.tile(np.arange(n), ticks)
    store.append(ReadingBatch.build(cells, cell, ts, 3.5 + np.zeros(ticks * n), np.zeros(ticks * n), 25.0 + ts * 0))


def test_the_backfill_is_thinned_before_it_leaves_sqlite(store_agent):
    cells = tuple(f"c{i:02d}" for i in range(16))
    now = time.time_ns() // 1_000_000
    fill(store_agent.store, cells, 2000, now - 200_000)  # 32,000 readings in the window
    rd = CountingReader(store_agent.cfg.store.path)
    try:
        idx = sorted(rd.cells())
        rd.rows = 0
        r = rd.readings_for_cells(idx, 0, 10**12, 100)
        assert rd.rows <= 1 + 16 * 100, f"{rd.rows} rows fetched into Python for a view of 16 x 100 points"
        db = sqlite3.connect(store_agent.cfg.store.path)
        for c in idx:
            mine = r.seq[r.cell == c]
            assert 95 <= len(mine) <= 100 and (np.diff(mine) > 0).all()
            assert mine[-1] == db.execute("SELECT max(seq) FROM readings WHERE cell = ?", (c,)).fetchone()[0]
        # A short range (a browser resuming after a blip) comes back whole.
        hi = int(r.seq.max())
        short = rd.readings_for_cells(idx[:2], hi - 50, hi, 100)
        want = db.execute("SELECT seq FROM readings WHERE seq > ? AND cell IN (?, ?) ORDER BY seq", (hi - 50, *idx[:2]))
        assert short.seq.tolist() == [s for (s,) in want]
    finally:
        rd.close()


# ---------------------------------------------------------------------------------------------- /api/health (14.7)
def test_health_is_computed_at_most_once_a_second_however_many_ask():
    calls = []

    async def compute() -> bytes:
        calls.append(time.monotonic())
        await asyncio.sleep(0.05)  # a store query on the reader thread
        return str(len(calls)).encode()

    async def main() -> None:
        cache = Cached(compute, 1.0)
        got = await asyncio.gather(*(cache.get() for _ in range(50)))
        assert set(got) == {b"1"} and len(calls) == 1
        await asyncio.sleep(1.05)
        assert await cache.get() == b"2" and len(calls) == 2

    run_async(main())


# ---------------------------------------------------------------------------------------------- TLS files (14.5)
def test_an_unusable_tls_key_keeps_the_dashboard_off_and_the_agent_collecting(tmp_path, agent_proc, pki):
    cert, key = pki.issue("dashboard-loose", server=True)
    loose = tmp_path / "loose.key"
    loose.write_bytes(key.read_bytes())
    os.chmod(loose, 0o644)
    cfg = agent_config(
        tmp_path,
        None,
        None,
        None,
        drivers=SIM,
        dashboard={
            "enabled": True,
            "host": "0.0.0.0",
            "port": 0,
            "token": TOKEN,
            "tls_cert": str(cert),
            "tls_key": str(loose),
        },
    )
    agent = agent_proc(cfg).start()
    agent.wait_log("agent started")
    agent.wait_log("dashboard not started: dashboard.tls_key")
    assert "other users can read the private key" in agent.log() and "chmod 600" in agent.log()
    assert "dashboard listening" not in agent.log()
    db = cfg["store"]["path"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            if c.execute("SELECT count(*) FROM readings").fetchone()[0] >= 8:
                break
        time.sleep(0.2)
    assert agent.stop() == 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        assert c.execute("SELECT count(*) FROM readings").fetchone()[0] >= 8, "the agent stopped collecting"
        assert c.execute("SELECT count(*) FROM events WHERE kind = 'dashboard.unavailable'").fetchone()[0] == 1


def test_plain_http_beyond_loopback_only_with_the_opt_out(tmp_path, agent_proc, browser):
    """allow_plain_http = true: served in clear (the user chose it); the cookie is Secure only where a browser keeps
    a Secure cookie on plain HTTP (loopback names)."""
    token = secrets.token_urlsafe(24)
    cfg = agent_config(
        tmp_path,
        None,
        None,
        None,
        drivers=SIM,
        dashboard={"enabled": True, "host": "0.0.0.0", "port": 0, "token": token, "allow_plain_http": True},
    )
    agent = agent_proc(cfg).start()
    port = dashboard_port(agent)
    assert "dashboard listening on http://" in agent.log()
    status, data = request(port, f"/?token={token}", {"Host": "rig-gateway.local"})
    cookie = next(ln for ln in data.decode().split("\r\n") if ln.lower().startswith("set-cookie:"))
    assert status == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    status, data = request(port, f"/?token={token}")
    assert status == 303 and "Secure" in data.decode()
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{port}/?token={token}")
        page.wait_for_function("() => window.btDash && btDash.S.ticks >= 1", timeout=30_000)
    finally:
        ctx.close()
    assert agent.stop() == 0, agent.log()[-2000:]
