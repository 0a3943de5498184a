"""The access rule: beyond loopback only with a token (constant-time compare); loopback without one.

The agent runs as a process bound to 0.0.0.0 (every interface); the test talks to it on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import secrets
import ssl

import pytest

from agent.config import ConfigError, DashboardConfig, parse_config
from agent.dashboard import DashboardService
from agent.dashboard.auth import token_matches
from agent.pipeline import StartupError
from tests.conftest import agent_config
from tests.dashboard.conftest import dashboard_port, run_async

SIM = [{"type": "simulator", "name": "sim", "cells": 4, "sample_hz": 1.0}]


def get(
    port: int, path: str, headers: dict[str, str] | None = None, tls: ssl.SSLContext | None = None
) -> http.client.HTTPResponse:
    conn = (
        http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=tls)
        if tls
        else http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    )
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    resp.body = resp.read(2048) if "event-stream" not in (resp.getheader("Content-Type") or "") else resp.read(200)
    conn.close()
    return resp


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "rig-gateway.local"])
def test_config_refuses_beyond_loopback_without_token(host):
    with pytest.raises(ConfigError) as err:
        parse_config({"rig": "r1", "dashboard": {"enabled": True, "host": host, "allow_plain_http": True}})
    assert "dashboard.token must be set" in str(err.value)
    ok = parse_config(
        {"rig": "r1", "dashboard": {"enabled": True, "host": host, "token": "x" * 16, "allow_plain_http": True}}
    )
    assert ok.dashboard.token.get_secret_value() == "x" * 16
    assert "x" * 16 not in ok.model_dump_json()  # the token never appears in dumps (config check, logs)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "::1"])
def test_config_loopback_needs_no_token(host):
    assert parse_config({"rig": "r1", "dashboard": {"enabled": True, "host": host}}).dashboard.host == host


def test_config_refuses_short_token():
    with pytest.raises(ConfigError, match="at least 16 characters"):
        parse_config(
            {"rig": "r1", "dashboard": {"enabled": True, "host": "0.0.0.0", "token": "short", "allow_plain_http": True}}
        )


def test_service_refuses_even_if_validation_was_bypassed():
    """Defence in depth: a config built without validation still cannot expose the dashboard tokenless."""
    cfg = DashboardConfig.model_construct(enabled=True, host="0.0.0.0", port=0, token=DashboardConfig().token)
    with pytest.raises(StartupError, match="refusing to start the dashboard"):
        run_async(DashboardService(cfg).start(agent=None))


def test_token_compare():
    t = secrets.token_urlsafe(24)
    assert token_matches(t, t)
    assert not token_matches(None, t) and not token_matches("", t)
    assert not token_matches(t[:-1] + ("A" if t[-1] != "A" else "B"), t)  # same length, last char differs
    assert not token_matches(t + "x", t) and not token_matches("é" * 5, t)


def test_agent_exits_without_token_beyond_loopback(tmp_path, agent_proc):
    cfg = agent_config(
        tmp_path, None, None, None, drivers=SIM, dashboard={"enabled": True, "host": "0.0.0.0", "port": 0}
    )
    agent = agent_proc(cfg).start()
    assert agent.proc.wait(30) == 2
    assert "dashboard.token must be set" in agent.log()
    assert "dashboard listening" not in agent.log()


def test_token_required_beyond_loopback(tmp_path, agent_proc, browser, pki):
    """Bound to every interface with a token and HTTPS (a certificate from the test CA): every path needs the token,
    the query token counts only on the page, the cookie is Secure, and plain HTTP gets no answer at all."""
    token = secrets.token_urlsafe(24)
    cert, key = pki.issue("dashboard", server=True)
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
            "token": token,
            "tls_cert": str(cert),
            "tls_key": str(key),
        },
    )
    agent = agent_proc(cfg).start()
    port = dashboard_port(agent)
    assert "dashboard listening on https://" in agent.log() and token not in agent.log()
    tls = ssl.create_default_context(cafile=str(pki.ca_cert))
    wrong_same_len = token[:-1] + ("A" if token[-1] != "A" else "B")
    for path in ("/", "/api/stream", "/api/health", "/static/app.js", "/static/vendor/uplot/uPlot.iife.min.js"):
        assert get(port, path, tls=tls).status == 401, path
        assert get(port, path, {"Authorization": f"Bearer {wrong_same_len}"}, tls).status == 401, path
        assert get(port, path, {"Authorization": "Bearer nope"}, tls).status == 401, path
        assert get(port, path, {"Cookie": f"bt_token={wrong_same_len}"}, tls).status == 401, path
        assert get(port, f"{path}?token={wrong_same_len}", tls=tls).status == 401, path
    for path in ("/", "/api/health", "/static/app.js"):
        assert get(port, path, {"Authorization": f"Bearer {token}"}, tls).status == 200, path
        assert get(port, path, {"Cookie": f"bt_token={token}"}, tls).status == 200, path
    # The right token in the query is refused everywhere but on the page load that turns it into a cookie: it
    # would otherwise sit in logs, history and Referer headers of every API call.
    for path in ("/api/health", "/api/stream", "/static/app.js"):
        assert get(port, f"{path}?token={token}", tls=tls).status == 401, path
    health = get(port, "/api/health", {"Authorization": f"Bearer {token}"}, tls)
    assert b'"uplink_state":"off"' in health.body
    # ?token= once on the page: a cookie (Secure, HttpOnly, SameSite=Strict) and a redirect without the token.
    r = get(port, f"/?token={token}", tls=tls)
    assert r.status == 303 and r.getheader("Location") == "/"
    cookie = r.getheader("Set-Cookie")
    assert cookie.startswith(f"bt_token={token}") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" in cookie.split("; "), cookie
    # A tokened dashboard may be reached under any host name (it is meant to be reached from the network).
    assert get(port, "/", {"Authorization": f"Bearer {token}", "Host": "rig-gateway.local"}, tls).status == 200
    # Plain HTTP to the HTTPS port: no HTTP answer, so nothing (token, cookie, data) crosses in clear.
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        get(port, "/", {"Authorization": f"Bearer {token}"})

    # In a real browser (the test CA is not in chromium's store, hence ignore_https_errors): the token link works,
    # and the live stream (EventSource sends the Secure cookie) delivers data.
    ctx = browser.new_context(ignore_https_errors=True)
    page = ctx.new_page()
    try:
        page.goto(f"https://127.0.0.1:{port}/?token={token}")
        assert page.url == f"https://127.0.0.1:{port}/" or page.url.startswith(f"https://127.0.0.1:{port}/#")
        page.wait_for_function("() => window.btDash && btDash.S.ticks >= 2 && btDash.S.seq > 0", timeout=30_000)
        (stored,) = ctx.cookies()
        assert stored["secure"] and stored["httpOnly"] and stored["sameSite"] == "Strict"
        bare = browser.new_context(ignore_https_errors=True).new_page()  # no cookie: refused
        assert bare.goto(f"https://127.0.0.1:{port}/").status == 401
        bare.context.close()
    finally:
        ctx.close()
    assert agent.stop() == 0, agent.log()[-2000:]
