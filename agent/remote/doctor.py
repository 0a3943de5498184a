"""``doctor`` lines for ``[remote]``: what the shadow last did, which models jobs installed, whether the state
directory can take them. Read from the state directory, so it works beside a running agent."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agent.config import AgentConfig
from agent.remote.layer import ShadowState, state_dir
from agent.remote.models import FAMILIES, ModelStore
from drivers.base import Check


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000)) if ms else "never"


def _writable(d: Path) -> bool:
    while not d.exists() and d != d.parent:
        d = d.parent
    return os.access(d, os.W_OK | os.X_OK)


def check_remote(cfg: AgentConfig) -> list[Check]:
    r = cfg.remote
    if not r.enabled:
        return [Check("remote", "ok", "off: no shadow, no jobs ([remote] shadow / jobs)")]
    out: list[Check] = []
    sd = state_dir(cfg)
    if not cfg.uplink.enabled:
        out.append(Check("remote", "fail", "[remote] is on but the uplink is off", "set [uplink] endpoint or turn off"))
    if not _writable(sd):
        out.append(
            Check(
                "remote.state",
                "fail",
                f"{sd} is not writable by uid {os.geteuid()}",
                f"chown to the service user: {sd}",
            )
        )
    else:
        out.append(Check("remote.state", "ok", f"state in {sd}"))
    if r.shadow:
        st = ShadowState.load(sd)
        last = st.last
        detail = (
            f"shadow '{r.shadow_name}': config version {st.version} confirmed {_when(st.confirmed_at_ms)}, "
            f"{len(st.layer)} section(s) from the shadow; allow {', '.join(r.allow)}"
        )
        outcome = last.get("outcome")
        if outcome in ("rejected", "rolled_back"):
            why = "; ".join(last.get("problems") or []) or last.get("reason", "")
            fix = "correct the desired state in the shadow (or remote.allow / the local file)"
            out.append(
                Check(
                    "remote.shadow",
                    "warn",
                    f"{detail}; last change (v{last.get('desired_version')}) {outcome}: {why}",
                    fix,
                )
            )
        else:
            out.append(Check("remote.shadow", "ok", detail + (f"; last change {outcome}" if outcome else "")))
    if r.jobs:
        store = ModelStore(sd)
        versions = store.versions()
        models = ", ".join(f"{f} {versions.get(f, 'shipped/configured')}" for f in FAMILIES)
        keys = ", ".join(sorted(r.keys()))
        out.append(
            Check(
                "remote.jobs", "ok", f"jobs on; {len(r.signing_keys)} signing key(s) pinned ({keys}); models: {models}"
            )
        )
    return out
