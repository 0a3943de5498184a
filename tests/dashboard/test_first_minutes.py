"""What a newcomer sees (issue 19): the agent on the embedded default config, the dashboard in a real browser.

Within 60 s of start the simulated past must fill the page: a completed cycle for every shown cell, a capacity
forecast (with its band once the SOH model gives one), a predicted end of life drawn on the fade chart. At 1280x800
and 1920x1080 no title, legend or table cell may be clipped (scrollWidth <= clientWidth) and no two chart titles
may overlap; time axes print one label per tick. Screenshots of both sizes go to test-artifacts/dashboard/.
"""

from __future__ import annotations

import json
import sqlite3
import time
import tomllib
from pathlib import Path
from typing import Any

from agent.config import DEFAULT_CONFIG_TOML
from tests.dashboard.conftest import dashboard_port

ROOT = Path(__file__).resolve().parents[2]
SIZES = [(1280, 800), (1920, 1080)]
READY_TIMEOUT_S = 180
# the SOH model in use publishes forecast bounds exactly when the cycles contract has them
BOUNDS = "predicted_capacity_lower_ah" in (ROOT / "agent" / "schemas" / "cycles.v1.json").read_text()

READY = """() => {
  const S = btDash.S;  // the default picks cells of both kinds once both drivers reported (nmc01, lfp01, ...)
  if (new Set(S.selected.map((id) => id.slice(0, 3))).size < 2) return false;
  if (!S.selected.length || !S.selected.every((id) => S.cycles.get(id) && S.cycles.get(id).size > 0)) return false;
  const snap = btDash.snapshot();
  const withForecast = S.selected.filter((id) => [...S.cycles.get(id).values()].some((c) => c.predicted_capacity_ah));
  return withForecast.length > 0 && snap.eol.some((e) => e.shown);
}"""

# Every text element that must fit its box, and the chart titles' boxes (for overlaps).
LAYOUT = """() => {
  const sel = ".u-title, .u-legend th, .u-legend td, table.data th, table.data td, h1, h2, h3, p.small, #temp-summary";
  const clipped = [];
  for (const e of document.querySelectorAll(sel)) {
    if (!e.offsetParent) continue;  // not shown
    if (e.scrollWidth > e.clientWidth + 1) clipped.push([e.className || e.tagName, e.textContent.slice(0, 80), e.scrollWidth, e.clientWidth]);
  }
  const titles = [...document.querySelectorAll(".u-title")].map((e) => {
    const r = e.getBoundingClientRect(), root = e.closest(".uplot").getBoundingClientRect();
    return { text: e.textContent, x: r.x, y: r.y, w: r.width, h: r.height, inside: r.left >= root.left - 1 && r.right <= root.right + 1 };
  });
  return { clipped, titles, pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth };
}"""


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
    )


def check_layout(page: Any, size: tuple[int, int]) -> None:
    got = page.evaluate(LAYOUT)
    assert not got["clipped"], f"{size}: text cut off (class, text, scrollWidth, clientWidth): {got['clipped']}"
    assert got["pageWidth"] <= got["viewport"], f"{size}: the page scrolls sideways ({got['pageWidth']} px)"
    titles = got["titles"]
    assert len(titles) >= 7
    for t in titles:
        assert t["inside"], f"{size}: title {t['text']!r} sticks out of its chart"
        assert t["text"][:1].isupper() and t["text"].endswith(".") and "|" not in t["text"], t["text"]
    for i, a in enumerate(titles):
        for b in titles[i + 1 :]:
            assert not overlap(a, b), f"{size}: titles overlap: {a['text']!r} and {b['text']!r}"


def test_newcomer_sees_the_twin_within_a_minute(tmp_path, agent_proc, browser, artifacts):
    cfg = tomllib.loads(DEFAULT_CONFIG_TOML)
    cfg["dashboard"]["port"] = 0  # the embedded default, on a free port (8080 may be taken on a shared machine)
    agent = agent_proc(cfg)
    t0 = time.monotonic()
    agent.start()
    base = f"http://127.0.0.1:{dashboard_port(agent, 60)}"
    page = browser.new_page(viewport={"width": SIZES[0][0], "height": SIZES[0][1]})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(base + "/")
        # The figure is 60 s on an idle machine; the suite runs on a shared one, and tests do not assert on
        # wall time (team rule): wait up to 180 s and print the figure (seconds_to_ready) for the record.
        left_ms = max(1000, int((READY_TIMEOUT_S - (time.monotonic() - t0)) * 1000))
        try:
            page.wait_for_function(READY, timeout=left_ms, polling=500)
        except Exception as exc:  # noqa: BLE001 - say what the page had when time ran out
            state = page.evaluate(
                "() => ({ selected: btDash.S.selected, auto: btDash.S.auto, cycles: btDash.S.selected.map((id) => "
                "[id, btDash.S.cycles.get(id) ? btDash.S.cycles.get(id).size : null]), eol: btDash.snapshot().eol })"
            )
            raise AssertionError(
                f"not ready {READY_TIMEOUT_S} s after start: {exc}\npage: {state}\nlog: {agent.log()[-3000:]}"
            )
        ready_s = round(time.monotonic() - t0, 1)
        S = page.evaluate(
            "() => ({ selected: btDash.S.selected, health: btDash.S.health, cycles: Object.fromEntries("
            "btDash.S.selected.map((id) => [id, [...btDash.S.cycles.get(id).values()]])) })"
        )
        assert not errors, errors
        # both chemistries on show by default, each with completed cycles stamped in the past
        assert {c[:3] for c in S["selected"]} == {"nmc", "lfp"}, S["selected"]
        now_ms = time.time() * 1000
        for cell, rows in S["cycles"].items():
            assert rows and min(r["ts"] for r in rows) < now_ms - 86_400_000, f"{cell}: no simulated past"
        forecasts = [r for rows in S["cycles"].values() for r in rows if r.get("predicted_capacity_ah")]
        assert forecasts and all(r.get("predicted_eol_cycle") is not None for r in forecasts[-1:])
        if BOUNDS:
            assert any(r.get("predicted_capacity_lower_ah") and r.get("predicted_capacity_upper_ah") for r in forecasts)
        # the store holds those cycles (read independently), and health says the past is simulated
        db = sqlite3.connect((agent.dir / "var" / "battery-twin.db").resolve().as_uri() + "?mode=ro", uri=True)
        stored = dict(db.execute("SELECT cell, COUNT(*) FROM cycles GROUP BY cell"))
        db.close()
        assert all(stored.get(c, 0) >= len(S["cycles"][c]) for c in S["selected"]), stored
        hist = [d["detail"].get("history") for d in S["health"]["drivers"]]
        assert all(h and h["simulated"] is True and h["cycles"] > 0 for h in hist), hist
        # the time axes get their ticks once live readings are drawn (the past's replay may still be running)
        page.wait_for_function(
            "() => ['voltage', 'cap-time'].every((k) => (btDash.charts[k].axes[0]._values || []).length > 0)",
            timeout=120_000,
            polling=500,
        )
        snap = page.evaluate("btDash.snapshot()")
        for key, labels in snap["timeTicks"].items():
            assert labels and all("\n" not in str(x) for x in labels), (key, labels)
            assert len(set(labels)) == len(labels), f"{key}: two ticks with one label: {labels}"
        for w, h in SIZES:
            page.set_viewport_size({"width": w, "height": h})
            page.wait_for_timeout(300)  # charts follow their panels' width (ResizeObserver)
            check_layout(page, (w, h))
            page.screenshot(path=str(artifacts / f"newcomer-{w}x{h}.png"), full_page=True)
    finally:
        page.close()
    # first-run guidance on the terminal: where to look, where the data is, how to reach IoT Core, how to stop
    log = agent.log()
    assert f"dashboard  {base}/" in log and "battery-twin provision csr" in log and "Ctrl-C" in log, log[-3000:]
    print(json.dumps({"seconds_to_ready": ready_s, "cycles": stored}))
