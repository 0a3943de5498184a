"""End to end in a real browser: agent (separate process) on the simulator -> dashboard -> headless chromium.

Each view is checked against the store, read independently here (read-only sqlite3): what the charts plot and
the tables show must be what the agent committed. Screenshots land in test-artifacts/dashboard/.
"""

from __future__ import annotations

import http.client
import json
import math
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import agent_config
from tests.dashboard.conftest import dashboard_port, seed_cycles

CELLS = 256
SHOWN = ["c001", "c002", "c003"]
PICKED = "c200"
N_CYCLES = 120


def ro(path: str) -> sqlite3.Connection:
    return sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)


def check_live(snap: dict[str, Any], db: sqlite3.Connection) -> int:
    """Every selected cell's plotted V/I/T points are exactly its stored readings up to the page's seq."""
    idx = dict(db.execute("SELECT id, idx FROM cells"))
    ch = snap["charts"]
    xs = ch["voltage"][0]
    assert ch["current"][0] == xs and ch["temperature"][0] == xs
    checked = 0
    for j, cell in enumerate(snap["selected"], start=1):
        rows = db.execute(
            "SELECT ts_ms, voltage_v, current_a, temperature_c FROM readings WHERE cell = ? AND seq <= ? ORDER BY seq",
            (idx[cell], snap["seq"]),
        ).fetchall()
        plotted = {
            round(x * 1000): (v, i, t)
            for x, v, i, t in zip(xs, ch["voltage"][j], ch["current"][j], ch["temperature"][j])
            if v is not None
        }
        assert len(rows) >= 2, f"no readings stored for {cell}"
        assert sorted(plotted) == [r[0] for r in rows], f"{cell}: plotted times differ from the store's"
        for ts, v, i, t in rows:
            pv, pi, pt = plotted[ts]
            assert math.isclose(pv, v, abs_tol=1e-6) and math.isclose(pi, i, abs_tol=1e-6), (cell, ts)
            assert math.isclose(pt, t, abs_tol=1e-4), (cell, ts)
        checked += len(rows)
    return checked


def series_pairs(chart: list[list[Any]], j: int) -> list[tuple[float, float]]:
    return [(x, y) for x, y in zip(chart[0], chart[j]) if y is not None]


def check_cycles(snap: dict[str, Any], db: sqlite3.Connection, page) -> None:
    ch = snap["charts"]
    hist_mean: Counter = Counter()
    hist_max: Counter = Counter()
    for j, cell in enumerate(snap["selected"], start=1):
        rows = [
            json.loads(p) for (p,) in db.execute("SELECT payload FROM cycles WHERE cell = ? ORDER BY cycle", (cell,))
        ]
        assert rows, f"the store has no cycles for {cell}"
        # (2) capacity over cycle number and over time
        assert series_pairs(ch["cap-cycle"], j) == [(r["cycle"], r["discharge_ah"]) for r in rows]
        assert series_pairs(ch["cap-time"], j) == [(r["ts"] / 1000, r["discharge_ah"]) for r in rows]
        # (3) actual vs predicted fade: actual series, then per cell the forecast and its 10 % and 90 % bounds,
        # and the table's predictions
        last = rows[-1]
        assert series_pairs(ch["fade"], j) == [(r["cycle"], r["discharge_ah"]) for r in rows]
        first = len(snap["selected"]) + 3 * (j - 1) + 1
        for offset, key in enumerate(
            ("predicted_capacity_ah", "predicted_capacity_lower_ah", "predicted_capacity_upper_ah")
        ):
            got = series_pairs(ch["fade"], first + offset)
            assert got == [(last["cycle"] + 1 + k, y) for k, y in enumerate(last[key])], key
        cells = page.locator(f'#fade-table tr[data-cell="{cell}"] td').all_inner_texts()
        assert cells[0] == cell and int(cells[1]) == last["cycle"]
        assert float(cells[2]) == pytest.approx(last["discharge_ah"], abs=1e-4)
        assert float(cells[3]) == pytest.approx(last["soh"], abs=1e-3)
        assert float(cells[4]) == pytest.approx(last["predicted_eol_cycle"], abs=0.5)
        assert float(cells[5]) == pytest.approx(last["predicted_cycle_life"], abs=0.5)
        assert cells[6] == last["model_version"]
        for r in rows:
            hist_mean[math.floor(r["temperature_mean_c"])] += 1
            hist_max[math.floor(r["temperature_max_c"])] += 1
    # (4) temperature distribution across cycles: 1 degree bins of the per-cycle mean and max temperatures
    x, mean, mx = ch["temp-hist"]
    assert {int(b): int(n) for b, n in zip(x, mean) if n} == dict(hist_mean)
    assert {int(b): int(n) for b, n in zip(x, mx) if n} == dict(hist_max)
    assert int(page.locator("#temp-summary").get_attribute("data-cycles")) == sum(hist_mean.values())


def check_events_and_health(page, db: sqlite3.Connection) -> None:
    stored = {s: (k, lvl, msg) for s, k, lvl, msg in db.execute("SELECT seq, kind, level, message FROM events")}
    shown = page.locator("#events-table tbody tr")
    assert shown.count() >= 1
    for k in range(shown.count()):
        tr = shown.nth(k)
        seq = int(tr.get_attribute("data-seq"))
        tds = tr.locator("td").all_inner_texts()
        assert (tds[2], tds[1], tds[5]) == stored[seq]
    alarm_seq = max(s for s, (k, _, _) in stored.items() if k == "alarm.over_temperature")
    alarm = page.locator(f'#alarms li[data-seq="{alarm_seq}"]')
    assert alarm.count() == 1 and "c002" in alarm.inner_text()
    assert page.locator('#health dd[data-key="uplink_state"]').inner_text() == "off"
    depth = int(page.locator('#health dd[data-key="store_depth_readings"]').inner_text())
    assert 0 < depth <= db.execute("SELECT count(*) FROM readings WHERE sent = 0").fetchone()[0]
    driver = page.locator('#drivers-table tr[data-driver="sim"] td').all_inner_texts()
    assert driver[:3] == ["sim", "simulator", "running"]


def wait(page, expr: str, what: str, errors: list[str], agent, timeout_ms: int = 30_000) -> None:
    try:
        page.wait_for_function(expr, timeout=timeout_ms)
    except Exception as exc:  # noqa: BLE001 - say what the page and the agent were doing
        state = page.evaluate(
            "() => window.btDash ? {ticks: btDash.S.ticks, sel: btDash.S.selected, "
            "status: document.getElementById('status').textContent} : 'no btDash'"
        )
        raise AssertionError(
            f"dashboard never showed {what}: {exc}\npage: {state}\npage errors: {errors}\n"
            f"agent log:\n{agent.log()[-2000:]}"
        ) from None


def test_dashboard_views_match_store(tmp_path, agent_proc, browser, artifacts):
    cfg = agent_config(
        tmp_path,
        None,
        None,
        None,
        drivers=[{"type": "simulator", "name": "sim", "cells": CELLS, "sample_hz": 1.0}],
        dashboard={"enabled": True, "port": 0},
    )
    seed_cycles(Path(cfg["store"]["path"]), [*SHOWN, PICKED], N_CYCLES)
    agent = agent_proc(cfg).start()
    port = dashboard_port(agent)
    base = f"http://127.0.0.1:{port}"

    # A page from elsewhere reaching the loopback dashboard by DNS rebinding carries a foreign Host: refused.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/", headers={"Host": "dashboard.example.com"})
    assert conn.getresponse().status == 403
    conn.close()

    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{base}/#cells={','.join(SHOWN)}")
        wait(
            page,
            "() => window.btDash && btDash.S.ticks >= 4 && btDash.charts.voltage.data[0].length >= 4",
            "live data",
            errors,
            agent,
        )
        assert page.locator("#status").inner_text() == "live"
        db = ro(cfg["store"]["path"])
        snap = page.evaluate("btDash.snapshot()")
        assert snap["selected"] == SHOWN
        check_live(snap, db)
        check_cycles(snap, db, page)
        check_events_and_health(page, db)
        # The live table shows each cell's newest reading: the stored row with that seq.
        for cell in SHOWN:
            # seq and cells read in one call: the table is redrawn every tick, so two reads may see two rows
            seq, *texts = page.locator(f'#live-table tr[data-cell="{cell}"]').evaluate(
                "tr => [tr.dataset.seq, ...Array.from(tr.cells, (td) => td.innerText)]"
            )
            v, i, t = (float(x) for x in texts[1:4])
            row = db.execute(
                "SELECT voltage_v, current_a, temperature_c FROM readings WHERE seq = ?", (int(seq),)
            ).fetchone()
            assert (v, i, t) == pytest.approx(row, abs=1e-2)
        page.screenshot(path=str(artifacts / "dashboard-initial.png"), full_page=True)

        # Live: more seconds of data arrive over the same stream (no polling, no second request for history).
        newest = max(snap["charts"]["voltage"][0])
        wait(page, f"() => btDash.S.ticks >= {snap['ticks'] + 3}", "three more updates", errors, agent)
        later = page.evaluate("btDash.snapshot()")
        assert max(later["charts"]["voltage"][0]) >= newest + 2.0
        check_live(later, db)
        assert all(u.startswith(base + "/") for u in requests), [u for u in requests if not u.startswith(base)]
        assert sum("/api/stream" in u for u in requests) == 1

        # Cell picker: all cells listed; filter narrows it; a click brings the cell's data (via a new stream).
        assert page.locator("#cells .tile").count() == CELLS
        page.fill("#cell-filter", PICKED)
        visible = page.locator("#cells .tile:visible")
        assert visible.count() == 1
        visible.first.click()
        wait(
            page,
            f"() => btDash.S.selected.includes('{PICKED}') && btDash.S.ticks > {later['ticks']} "
            f"&& btDash.S.series.get('{PICKED}') && btDash.S.series.get('{PICKED}').ts.length >= 3",
            f"the picked cell {PICKED}",
            errors,
            agent,
        )
        picked = page.evaluate("btDash.snapshot()")
        assert picked["selected"] == [*SHOWN, PICKED]
        assert page.locator(f'#cells .tile[data-cell="{PICKED}"]').get_attribute("aria-selected") == "true"
        assert check_live(picked, db) > 0
        check_cycles(picked, db, page)
        assert sum("/api/stream" in u for u in requests) == 2
        page.fill("#cell-filter", "")
        page.screenshot(path=str(artifacts / "dashboard-picked-c200.png"), full_page=True)
        assert not errors, errors
    finally:
        page.close()
    assert agent.stop() == 0, agent.log()[-2000:]
