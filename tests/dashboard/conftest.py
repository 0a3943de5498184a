"""Dashboard test support: headless Debian chromium driven by Playwright, store seeding, artifact folder.

Browser tests FAIL (never skip) when chromium or playwright is missing: ``make test`` installs both (chromium from
apt when root; playwright from the [dev] extra). Playwright's own browser download is never used.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.store import Store
from drivers.base import Event

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
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


def chromium_path() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        pytest.fail(
            "the dashboard browser tests need Debian's chromium at /usr/bin/chromium: "
            "`sudo apt-get install -y chromium` (make test installs it when run as root)",
            pytrace=False,
        )
    return path


def run_async(coro: Any) -> Any:
    """``asyncio.run`` on a thread of its own: Playwright's sync API keeps an event loop running on the main
    thread while a browser is open, and asyncio.run refuses to nest."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=target, name="test-asyncio")
    t.start()
    t.join(120)
    assert not t.is_alive(), "coroutine did not finish within 120 s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# Module scope: Playwright's sync API runs an event loop on the main thread while open; closing it after each
# module keeps that loop out of other test modules (which may use asyncio.run).
@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the dashboard browser tests need the Python package playwright: "
            "`.venv/bin/pip install -e '.[dev]'` (never `playwright install`: chromium comes from apt)",
            pytrace=False,
        )
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        except Exception as exc:  # noqa: BLE001 - turn it into a message naming what to install
            pytest.fail(f"could not launch chromium ({exe}) with playwright: {exc}", pytrace=False)
        yield b
        b.close()


@pytest.fixture()
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def dashboard_port(agent: Any, timeout_s: float = 30.0) -> int:
    """The port the agent's dashboard listens on, from its start-up log line (configs use port 0)."""
    agent.wait_log("dashboard listening on", timeout_s)
    m = re.search(r"dashboard listening on https?://[^\s]*?:(\d+)/", agent.log())
    assert m, agent.log()[-2000:]
    return int(m.group(1))


def seed_cycles(
    store_path: Path, cells: list[str], n_cycles: int, seed: int = 7, model_version: str = "soh-test-1"
) -> list[dict[str, Any]]:
    """Per-cycle summaries shaped like cycles.v1 (capacity fade with noise, temperatures, forecasts on the newest
    cycle), written through the store's own API; plus one active alarm. Stands in for the twin's output."""
    rng = np.random.default_rng(seed)
    now_ms = time.time_ns() // 1_000_000
    rows: list[dict[str, Any]] = []
    for k, cell in enumerate(cells):
        cap0 = 5.0 * (1 + 0.01 * rng.standard_normal())
        fade = 2.5e-4 * (1 + 0.3 * k)
        for c in range(1, n_cycles + 1):
            cap = cap0 * (1 - fade * c - 2e-7 * c * c) + 0.004 * rng.standard_normal()
            t_mean = 27 + 1.5 * rng.standard_normal() + 0.01 * c
            row = {
                "rig": "test-rig-01",
                "cell": cell,
                "cycle": c,
                "ts": now_ms - (n_cycles - c) * 3_600_000,
                "start_ts": now_ms - (n_cycles - c + 1) * 3_600_000,
                "duration_s": 3600.0,
                "discharge_ah": round(cap, 5),
                "charge_ah": round(cap * 1.002, 5),
                "soh": round(cap / 5.0, 5),
                "temperature_mean_c": round(t_mean, 3),
                "temperature_max_c": round(t_mean + 4 + rng.random(), 3),
                "model_version": model_version,
            }
            if c == n_cycles:
                horizon = np.arange(1, 41)
                row["predicted_capacity_ah"] = [round(cap0 * (1 - fade * (c + h)), 5) for h in horizon]
                row["predicted_capacity_lower_ah"] = [round(cap0 * (1 - 1.2 * fade * (c + h)), 5) for h in horizon]
                row["predicted_capacity_upper_ah"] = [round(cap0 * (1 - 0.8 * fade * (c + h)), 5) for h in horizon]
                row["predicted_eol_cycle"] = float(round(0.2 / fade))
                row["predicted_cycle_life"] = float(round(0.19 / fade))
            rows.append(row)
    store = Store.open(store_path)
    store.append_cycles(rows)
    store.append_events(
        [
            Event(
                "alarm.over_temperature",
                f"{cells[1]} above 45 °C",
                level="alarm",
                source="twin",
                cell=cells[1],
                data={"temperature_c": 46.2},
                ts_ms=now_ms,
            )
        ]
    )
    store.close()
    return rows
