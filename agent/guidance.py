"""What a person who just typed ``make run`` needs next, printed once after start-up (stderr, not the log).

The dashboard's address (the port it really bound), where the data is, whether any readings are a simulated past,
how to reach AWS IoT Core, and how to stop. README's "Two commands" section says the same; a test keeps them in
step.
"""

from __future__ import annotations

from typing import Any

from agent.config import AgentConfig


def first_run_text(cfg: AgentConfig, dashboard_url: str | None, config_path: str | None) -> str:
    sims = [d for d in cfg.drivers if d.enabled and d.type == "simulator"]
    past = [d for d in sims if getattr(d, "history_cycles", 0)]
    lines = [f"battery-twin is running: rig {cfg.rig}, config {config_path or 'the embedded default'}."]
    lines.append(f"  dashboard  {dashboard_url or 'off (set [dashboard] enabled = true)'}")
    lines.append(f"  data       {cfg.store.path} (SQLite: readings, events, cycles; the agent's only state)")
    if past:
        what = ", ".join(f"{d.name} {getattr(d, 'history_cycles', 0)}" for d in past)
        lines.append(
            f"  simulated  cycles of simulated history ({what}) are generated now and stored like live ones "
            "(health shows them as history); the dashboard fills within a minute"
        )
    if cfg.uplink.enabled:
        lines.append(f"  IoT Core   publishing to {cfg.uplink.endpoint}")
    else:
        lines.append(
            "  IoT Core   off: `battery-twin provision csr` makes a key and CSR; after `terraform apply`, "
            "`battery-twin provision config` writes [uplink] into your config (`battery-twin config default` "
            "prints one to start from)"
        )
    lines.append("  stop       Ctrl-C (or `kill -TERM <pid>`); readings not yet sent stay in the store")
    return "\n".join(lines) + "\n"


def dashboard_url(services: list[Any]) -> str | None:
    """The address the dashboard service bound, if it runs (services wrap it in a SectionService)."""
    for s in services:
        inner = getattr(s, "inner", s)
        url = getattr(inner, "url", None)
        if isinstance(url, str):
            return url
    return None
