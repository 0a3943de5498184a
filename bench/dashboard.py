"""What the dashboard costs the agent: CPU of the agent process at N cells and 1 update/s, with and without a
browser watching.

Each phase starts a fresh agent process (simulator driver, uplink off, own store in a temp dir), lets it warm up,
then reads the process's CPU time (utime + stime from /proc/PID/stat) over a measurement window:
  off        dashboard disabled                       (baseline)
  idle       dashboard enabled, nobody connected
  browser    one headless chromium showing the page   (default selection: 4 cells)
  browser16  one headless chromium showing 16 cells   (the most one page plots)
The figure the issue asks for is browser - off, in % of one core (goal: <= 2 %).

    .venv/bin/python bench/dashboard.py [--cells 64] [--seconds 30] [--warmup 5] [--repeat 1]

Needs chromium (apt) and playwright (the [dev] extra). Timings are noisy on a shared 2-core machine: the agent's own
CPU time is what is measured (not wall-clock), but cache and scheduler effects remain; repeat to see the spread.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.agentproc import AgentProcess

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TCK


def config(workdir: Path, cells: int, dashboard: bool) -> dict:
    return {
        "rig": "bench-rig",
        "store": {"path": str(workdir / "store.db")},
        "drivers": [{"type": "simulator", "name": "sim", "cells": cells, "sample_hz": 1.0, "speed": 1.0}],
        "log": {"level": "WARNING" if not dashboard else "INFO"},
        "dashboard": {"enabled": dashboard, "port": 0},
    }


def phase(name: str, cells: int, seconds: float, warmup: float, browser=None, selected: int = 0) -> float:
    with tempfile.TemporaryDirectory(prefix=f"bench-dash-{name}-") as tmp:
        agent = AgentProcess(Path(tmp), config(Path(tmp), cells, name != "off"), name).start()
        page = None
        try:
            if name == "off":
                time.sleep(2.0)
            else:
                agent.wait_log("dashboard listening on", 30)
                port = int(re.search(r"dashboard listening on http://[^\s]*?:(\d+)/", agent.log()).group(1))
                if browser is not None:
                    page = browser.new_page(viewport={"width": 1500, "height": 1100})
                    width = len(str(cells))
                    ids = ",".join(f"c{k:0{max(2, width)}d}" for k in range(1, selected + 1))
                    page.goto(f"http://127.0.0.1:{port}/" + (f"#cells={ids}" if ids else ""))
                    page.wait_for_function("() => window.btDash && btDash.S.ticks >= 2", timeout=30_000)
            time.sleep(warmup)
            t0, c0 = time.monotonic(), cpu_s(agent.proc.pid)
            time.sleep(seconds)
            t1, c1 = time.monotonic(), cpu_s(agent.proc.pid)
            if page is not None:
                ticks = page.evaluate("btDash.S.ticks")
                assert ticks >= seconds * 0.8, f"the page got only {ticks} updates"
        finally:
            if page is not None:
                page.close()
            agent.stop()
        return 100.0 * (c1 - c0) / (t1 - t0)


def main(cells: int = 64, seconds: float = 30.0, warmup: float = 5.0, repeat: int = 1) -> dict:
    """Figures for bench/run_all.py (and printed when run directly)."""
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {"off": [], "idle": [], "browser": [], "browser16": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        for _ in range(repeat):
            results["off"].append(phase("off", cells, seconds, warmup))
            results["idle"].append(phase("idle", cells, seconds, warmup))
            results["browser"].append(phase("browser", cells, seconds, warmup, browser, 0))
            results["browser16"].append(phase("browser16", cells, seconds, warmup, browser, 16))
        browser.close()
    conditions = (
        f"{cells} cells, simulator at 1 sample/s per cell, 1 dashboard update/s, uplink off; agent process "
        f"CPU over {seconds:.0f} s after {warmup:.0f} s warm-up, median of {repeat}; {os.cpu_count()} "
        f"cores (shared), Python {sys.version.split()[0]}"
    )
    print(f"dashboard CPU cost: {conditions}")
    base = statistics.median(results["off"])
    out: dict = {"conditions": conditions}
    for name, vals in results.items():
        med = statistics.median(vals)
        spread = f" (runs: {', '.join(f'{v:.2f}' for v in vals)})" if len(vals) > 1 else ""
        extra = "" if name == "off" else f"   added vs off: {med - base:+.2f} % of one core"
        print(f"  {name:10s} {med:6.2f} % of one core{spread}{extra}")
        out[f"agent_cpu_pct_{name}"] = round(med, 2)
    out["added_cpu_pct_one_browser"] = round(statistics.median(results["browser"]) - base, 2)
    out["added_cpu_pct_one_browser_16_cells"] = round(statistics.median(results["browser16"]) - base, 2)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    main(a.cells, a.seconds, a.warmup, a.repeat)
