"""AWS cost of the cloud half: all-in variable cost per cell-month, and fixed cost per deployment-month.

    python bench/cloud_cost.py                       # the tables in docs/cost-per-cell-month.md
    python bench/cloud_cost.py --json results.json   # the headline figures as JSON as well ('-': stdout)
    python bench/cloud_cost.py --cells 16 --rate-hz 10 --events-per-cell-day 20

Every message is encoded with the agent's own encoders (``agent.uplink.envelope``), so bytes and the 5 KB units
AWS meters are measured, not guessed. How many readings go into a telemetry message follows the uplink's rule
(``agent.uplink.uplink``): a message goes when it reaches ``FULL_FRACTION`` of ``message_target_bytes`` or when
``linger_ms`` has passed since its first reading. ``tests/test_uplink_fill.py`` checks this model against the
real uplink publishing to the test broker.

"Before" is what a user deployed until issue 18 (1 s linger, health every 30 s into five per-rig CloudWatch
metrics and a per-rig alarm); "after" is today's defaults. Prices: PRICES below, one table with its date.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import UplinkConfig
from agent.store.cursor import ReadingRows
from agent.uplink.envelope import encode_cycles, encode_events, pack_readings
from agent.uplink.jobs import FULL_FRACTION

SECONDS_PER_MONTH = 730 * 3600  # AWS bills a month as 730 hours
DAYS_PER_MONTH = 730 / 24
KB5 = 5 * 1024
GB = 1e9
PRICES_AS_OF = "2025-06, us-east-1 list prices from aws.amazon.com/<service>/pricing (not re-fetched: offline)"
PRICES = {
    "iot_connect_per_million_minutes": 0.08,
    "iot_messages_per_million": 1.00,  # per 5 KB unit, first billion a month; 0 through Basic Ingest
    "iot_rules_per_million": 0.15,  # rules triggered, per 5 KB unit of the message
    "iot_actions_per_million": 0.15,  # actions applied, per 5 KB unit
    "kinesis_shard_hour": 0.015,  # provisioned mode
    "kinesis_put_units_per_million": 0.014,  # 25 KB PUT payload units
    "kinesis_on_demand_stream_hour": 0.04,
    "kinesis_on_demand_ingest_per_gb": 0.08,
    "kinesis_on_demand_retrieval_per_gb": 0.04,
    "kinesis_extended_retention_shard_hour": 0.02,  # retention beyond 24 h
    "redshift_rpu_hour": 0.375,  # Serverless, billed per second, 60 s minimum per period of activity
    "redshift_storage_gb_month": 0.024,
    "cw_metric_month": 0.30,  # custom metric, first 10,000
    "cw_put_metric_per_thousand": 0.01,  # PutMetricData requests (one per IoT metric action)
    "cw_alarm_month": 0.10,  # standard resolution, per metric in the alarm
    "cw_dashboard_month": 3.00,
    "cw_logs_ingest_per_gb": 0.50,  # standard log class; each log event counts 26 bytes more
    "cw_logs_storage_gb_month": 0.03,
    "cw_contributor_insights_rule_month": 0.50,
    "cw_contributor_insights_per_million_events": 0.02,  # log events matched by a rule
    "kms_key_month": 1.00,
    "kms_per_10k_requests": 0.03,
    "secrets_manager_secret_month": 0.40,  # the Redshift-managed admin secret
    "scheduler_per_million": 1.00,  # EventBridge Scheduler invocations
    "vpc_interface_endpoint_hour": 0.01,  # per endpoint per AZ
    "ec2_t3_small_hour": 0.0208,
    "ebs_gp3_gb_month": 0.08,
    "quicksight_author_month": 24.00,  # Enterprise, month to month; per user, not part of the fixed cost
}
LOG_EVENT_OVERHEAD_B = 26


# ---------------------------------------------------------------------------------------------- what is deployed
@dataclass(frozen=True)
class Agent:
    """The agent's side of it (agent/config/sections.py [uplink])."""

    linger_ms: int
    target_bytes: int
    full_fraction: float
    heartbeat_s: float  # a health message at least this often (before: every health_interval_s)
    health_on_change: bool  # and one on each change between heartbeats
    health_basic_ingest: bool


@dataclass(frozen=True)
class Cloud:
    """The Terraform side: what the rules do with a health message, and how rigs are watched."""

    health_metric_actions: int  # per-rig CloudWatch metrics fed by the health rule (<rig>.<field>)
    health_to_logs: bool  # health record into a log group (fleet alarm and fleet metrics read it)
    per_rig_silent_alarm: bool


@dataclass(frozen=True)
class Workload:
    cells: int = 8
    rate_hz: float = 1.0
    events_per_cell_day: float = 4.0  # assumption: the simulated rig raised none in 5 simulated hours
    cycles_per_cell_day: float = 5.0  # measured: the simulator's default protocol, one cycle in about 5 h
    health_changes_per_rig_day: float = 12.0  # assumption: reconnects, driver restarts, readings stopping
    basic_ingest: bool = True  # telemetry through Basic Ingest (terraform/examples: basic_ingest = true)


UPLINK = UplinkConfig()
BEFORE_AGENT = Agent(
    1000, 14_848, full_fraction=0.85, heartbeat_s=30.0, health_on_change=False, health_basic_ingest=False
)
AFTER_AGENT = Agent(
    linger_ms=UPLINK.linger_ms,
    target_bytes=UPLINK.message_target_bytes,
    full_fraction=FULL_FRACTION,
    heartbeat_s=UPLINK.health_heartbeat_s,
    health_on_change=True,
    health_basic_ingest=True,
)
BEFORE_CLOUD = Cloud(health_metric_actions=5, health_to_logs=False, per_rig_silent_alarm=True)
AFTER_CLOUD = Cloud(health_metric_actions=0, health_to_logs=True, per_rig_silent_alarm=False)
# The option the monitoring module keeps (per_rig_silent_alarms = true): one metric <rig>.readings_rate_s per rig.
PER_RIG_CLOUD = Cloud(health_metric_actions=1, health_to_logs=True, per_rig_silent_alarm=True)

# The record the health rule writes to the health log group (terraform/modules/ingest: health rule SQL);
# tests/cloud/test_contracts.py checks the rule selects exactly these.
HEALTH_LOG_FIELDS = (
    "rig",
    "ts",
    "reason",
    "uplink_state",
    "readings_rate_s",
    "oldest_unsent_age_s",
    "store_depth_readings",
    "dropped_readings",
    "publish_errors",
)


# ---------------------------------------------------------------------------------------------- message sizes
def sample_rows(n: int, cells: int, rate_hz: float, seed: int = 7) -> ReadingRows:
    """n readings of a rig cycling its cells: plausible voltages, currents and temperatures with noise."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    cell = i % cells
    t_ms = 1_760_000_000_000 + (i // cells) * int(1000 / rate_hz) + rng.integers(0, 3, n)
    phase = (i // cells) / (3600 * rate_hz)
    return ReadingRows(
        seq=1_000_000 + i,
        ts_ms=t_ms.astype(np.int64),
        cell=cell.astype(np.int64),
        voltage_v=3.7 + 0.4 * np.sin(phase + cell) + rng.normal(0, 0.002, n),
        current_a=np.where(np.sin(phase) > 0, 2.5, -5.0) + rng.normal(0, 0.01, n),
        temperature_c=28 + 6 * np.sin(phase / 2 + cell) + rng.normal(0, 0.05, n),
        flags=np.zeros(n, dtype=np.int64),
    )


def message(
    cells: int, rate_hz: float, envelope: str, target_bytes: int, linger_ms: int, full_fraction: float = FULL_FRACTION
) -> tuple[int, int]:
    """(readings per message, payload bytes) in the uplink's steady state: one driver batch (a sample of every
    cell) arrives per sample period; the message goes once it is full (``full_fraction`` of the target, or more
    pending than fits) or once ``linger_ms`` has passed since its first reading."""
    batch = max(1, cells)
    batches_per_linger = max(1, math.ceil(linger_ms / 1000 * rate_hz))
    cap = int(target_bytes / 20) + batch  # more readings than any target holds at >= 20 B per reading
    rows = sample_rows(min(cap, batch * batches_per_linger), cells, rate_hz)
    cell_ids = {c: f"cell-{c:02d}" for c in range(cells)}
    hint = 32.0 if envelope == "compact" else 130.0
    pending = 0
    for k in range(1, batches_per_linger + 1):
        pending = min(k * batch, len(rows))
        payload, n = pack_readings("rig-01", rows.head(pending), cell_ids, envelope, target_bytes, hint)
        if n < pending or len(payload) >= full_fraction * target_bytes or pending == len(rows):
            return n, len(payload)
    return n, len(payload)


def health_record_bytes() -> int:
    """Bytes of one health record in the log group (the rule's selection of a health message)."""
    rec = {
        "rig": "rig-01",
        "ts": 1_760_000_000_000,
        "reason": "heartbeat",
        "uplink_state": "connected",
        "readings_rate_s": 8.0,
        "oldest_unsent_age_s": 61.3,
        "store_depth_readings": 488,
        "dropped_readings": 0,
        "publish_errors": 0,
    }
    assert tuple(rec) == HEALTH_LOG_FIELDS
    return len(orjson.dumps(rec))


def event_bytes() -> tuple[int, int]:
    """(message bytes, log event bytes) of one over-temperature event, as the agent encodes it."""
    ev = {
        "seq": 12_345,
        "ts": 1_760_000_000_000,
        "kind": "alarm.over_temperature",
        "level": "alarm",
        "source": "twin",
        "cell": "cell-03",
        "message": "cell-03 at 61.2 degC, above the 60.0 degC limit",
        "data": {"temperature_c": 61.2, "limit_c": 60.0},
    }
    msg = encode_events("rig-01", [ev])
    return len(msg), len(orjson.dumps({"rig": "rig-01", **ev}))


def cycle_bytes() -> int:
    cyc = {
        "seq": 812,
        "ts": 1_760_000_000_000,
        "cell": "cell-03",
        "cycle": 143,
        "start_ts": 1_759_982_000_000,
        "duration_s": 18_012.0,
        "charge_ah": 2.5012,
        "discharge_ah": 2.4871,
        "charge_wh": 9.42,
        "discharge_wh": 9.01,
        "coulombic_efficiency": 0.99436,
        "temperature_mean_c": 29.4,
        "temperature_max_c": 34.1,
        "dc_resistance_ohm": 0.0312,
        "soh": 0.9712,
        "model_version": "soh-1.0.0",
    }
    return len(encode_cycles("rig-01", [cyc]))


def units(payload_and_topic: int) -> int:
    return math.ceil(payload_and_topic / KB5)


# ---------------------------------------------------------------------------------------------- variable costs
def variable_per_cell_month(agent: Agent, cloud: Cloud, w: Workload, envelope: str = "compact") -> dict[str, float]:
    """Every variable line item, USD per cell-month (per-rig items divided by the rig's cells)."""
    p = PRICES
    rule = p["iot_rules_per_million"] / 1e6
    action = p["iot_actions_per_million"] / 1e6
    msg_price = p["iot_messages_per_million"] / 1e6
    out: dict[str, float] = {}
    # telemetry
    n, size = message(w.cells, w.rate_hz, envelope, agent.target_bytes, agent.linger_ms, agent.full_fraction)
    readings = w.rate_hz * SECONDS_PER_MONTH
    msgs = readings / n
    u = units(size + 62)  # topic: $aws/rules/battery_twin_telemetry/dt/battery-twin/<rig>/telemetry
    record = size + 120  # + topic_rig, topic, received_ms added by the rule
    out["telemetry: IoT messaging"] = 0.0 if w.basic_ingest else msgs * u * msg_price
    out["telemetry: IoT rule + Kinesis action"] = msgs * u * (rule + action)
    out["telemetry: Kinesis PUT units"] = msgs * math.ceil(record / 25_600) * p["kinesis_put_units_per_million"] / 1e6
    out["telemetry: Redshift storage (a month's data, one month)"] = (
        readings / n * record / GB * p["redshift_storage_gb_month"]
    )
    out["IoT connectivity (per rig)"] = 43_800 * p["iot_connect_per_million_minutes"] / 1e6 / w.cells
    # events: each in a message of its own (upper bound), two rules (landing, events log), two actions
    ev_msg, ev_log = event_bytes()
    ev = w.events_per_cell_day * DAYS_PER_MONTH
    out["events: IoT messaging + 2 rules + 2 actions"] = ev * units(ev_msg + 40) * (msg_price + 2 * rule + 2 * action)
    out["events: Logs ingestion + Kinesis PUT"] = ev * (
        (ev_log + LOG_EVENT_OVERHEAD_B) / GB * p["cw_logs_ingest_per_gb"] + p["kinesis_put_units_per_million"] / 1e6
    )
    # cycles: one message per cycle (upper bound: cells finishing together share one)
    cy = w.cycles_per_cell_day * DAYS_PER_MONTH
    out["cycles: IoT messaging + rule + action + Kinesis PUT"] = cy * (
        units(cycle_bytes() + 40) * (msg_price + rule + action) + p["kinesis_put_units_per_million"] / 1e6
    )
    # health, per rig
    per_rig = 1 / w.cells
    hmsgs = SECONDS_PER_MONTH / agent.heartbeat_s + (
        w.health_changes_per_rig_day * DAYS_PER_MONTH if agent.health_on_change else 0.0
    )
    actions = cloud.health_metric_actions + (1 if cloud.health_to_logs else 0)
    out["health: IoT messaging"] = 0.0 if agent.health_basic_ingest else hmsgs * msg_price * per_rig
    out["health: IoT rule + actions"] = hmsgs * (rule + actions * action) * per_rig
    out["health: PutMetricData (metric actions)"] = (
        hmsgs * cloud.health_metric_actions * p["cw_put_metric_per_thousand"] / 1000 * per_rig
    )
    out["health: per-rig custom metrics"] = cloud.health_metric_actions * p["cw_metric_month"] * per_rig
    log_b = (health_record_bytes() + LOG_EVENT_OVERHEAD_B) if cloud.health_to_logs else 0
    out["health: Logs ingestion + storage"] = (
        hmsgs * log_b / GB * (p["cw_logs_ingest_per_gb"] + p["cw_logs_storage_gb_month"]) * per_rig
    )
    out["health: Contributor Insights events"] = (
        (hmsgs * p["cw_contributor_insights_per_million_events"] / 1e6 * per_rig) if cloud.health_to_logs else 0.0
    )
    out["alarms: per-rig silent alarm"] = (p["cw_alarm_month"] * per_rig) if cloud.per_rig_silent_alarm else 0.0
    return out


# ---------------------------------------------------------------------------------------------- fixed costs
@dataclass(frozen=True)
class Deployment:
    """A Terraform example's fixed, per-deployment choices."""

    name: str
    refresh_minutes: float  # 0: AUTO REFRESH
    base_rpu: int
    quicksight_sessions_month: float  # dashboard sessions (direct query wakes the workgroup)
    session_busy_minutes: float
    kinesis_endpoint: bool
    ec2_rig: bool
    fleet_health: bool  # contributor insights rule + fleet alarm + fleet metrics (after issue 18)
    fleet_metrics: int = 3
    shards: int = 1
    flow_logs_gb: float = 0.1  # assumption: a quiet VPC (refreshes, QuickSight) writes ~100 MB of flow logs


COMPLETE_BEFORE = Deployment("complete (before)", 15, 8, 44, 5, True, True, False, fleet_metrics=0)
COMPLETE_AFTER = Deployment("complete", 15, 8, 44, 5, True, True, True)
SMALL_LAB = Deployment("small-lab", 120, 4, 44, 5, False, False, True)


def fixed_month(d: Deployment, stream_mode: str = "provisioned") -> dict[str, float]:
    p = PRICES
    rpu_h = p["redshift_rpu_hour"]
    if d.refresh_minutes == 0:
        active_h = 730.0  # a stream that never stops keeps an AUTO REFRESH view busy
    else:
        active_h = SECONDS_PER_MONTH / (d.refresh_minutes * 60) * 60 / 3600  # 60 s minimum per refresh
    out = {
        "Redshift Serverless: refreshes": active_h * d.base_rpu * rpu_h,
        "Redshift Serverless: QuickSight direct queries": d.quicksight_sessions_month
        * d.session_busy_minutes
        / 60
        * d.base_rpu
        * rpu_h,
    }
    if stream_mode == "provisioned":
        out["Kinesis: shard-hours"] = d.shards * 730 * p["kinesis_shard_hour"]
    else:
        out["Kinesis: on-demand stream-hours"] = 730 * p["kinesis_on_demand_stream_hour"]
    out["Kinesis VPC interface endpoint"] = 730 * p["vpc_interface_endpoint_hour"] if d.kinesis_endpoint else 0.0
    out["KMS key + requests"] = p["kms_key_month"] + 3 * (SECONDS_PER_MONTH / 300) / 1e4 * p["kms_per_10k_requests"]
    out["Secrets Manager: Redshift admin secret"] = p["secrets_manager_secret_month"]
    refreshes = 0 if d.refresh_minutes == 0 else SECONDS_PER_MONTH / (d.refresh_minutes * 60)
    out["EventBridge Scheduler: refresh invocations"] = refreshes * p["scheduler_per_million"] / 1e6
    out["CloudWatch dashboard"] = p["cw_dashboard_month"]
    out["CloudWatch: 4 cell-event alarms + their 4 metrics"] = 4 * (p["cw_alarm_month"] + p["cw_metric_month"])
    if d.fleet_health:
        out["CloudWatch: rigs-silent alarm + Contributor Insights rule"] = (
            p["cw_alarm_month"] + p["cw_contributor_insights_rule_month"]
        )
        out["CloudWatch: fleet health metrics"] = d.fleet_metrics * p["cw_metric_month"]
    out["VPC flow logs"] = d.flow_logs_gb * p["cw_logs_ingest_per_gb"]
    if d.ec2_rig:
        out["EC2 simulated rig (t3.small, 16 GB gp3, 7 metrics)"] = (
            730 * p["ec2_t3_small_hour"] + 16 * p["ebs_gp3_gb_month"] + 7 * p["cw_metric_month"]
        )
    return out


# ---------------------------------------------------------------------------------------------- printing
def _table(title: str, cols: dict[str, dict[str, float]], fmt: str = "{:>10.4f}") -> None:
    names = list(cols)
    keys = list(dict.fromkeys(k for c in cols.values() for k in c))
    width = max(len(k) for k in keys) + 2
    col = max(12, *(len(n) + 2 for n in names))
    fmt = fmt.replace("{:>10", "{:>" + str(col - 2))
    print(f"\n{title}")
    print(" " * width + "".join(f"{n:>{col}}" for n in names))
    for k in keys:
        print(f"{k:<{width}}" + "".join("  " + fmt.format(cols[n].get(k, 0.0)) for n in names))
    print(f"{'TOTAL':<{width}}" + "".join("  " + fmt.format(sum(cols[n].values())) for n in names))


def figures(w: Workload) -> dict[str, Any]:
    before = variable_per_cell_month(BEFORE_AGENT, BEFORE_CLOUD, w)
    after = variable_per_cell_month(AFTER_AGENT, AFTER_CLOUD, w)
    n_after, size_after = message(w.cells, w.rate_hz, "compact", AFTER_AGENT.target_bytes, AFTER_AGENT.linger_ms)
    return {
        "conditions": f"USD, {PRICES_AS_OF}; {w.cells} cells per rig at {w.rate_hz:g} Hz, compact envelope, "
        f"Basic Ingest; {w.events_per_cell_day:g} events and {w.cycles_per_cell_day:g} cycles per cell-day; "
        "message sizes from agent.uplink.envelope",
        "all_in_variable_usd_per_cell_month": round(sum(after.values()), 5),
        "all_in_variable_usd_per_cell_month_before": round(sum(before.values()), 4),
        "small_lab_fixed_usd_per_month": round(sum(fixed_month(SMALL_LAB).values()), 2),
        "complete_fixed_usd_per_month": round(sum(fixed_month(COMPLETE_AFTER).values()), 2),
        "complete_fixed_usd_per_month_before": round(sum(fixed_month(COMPLETE_BEFORE).values()), 2),
        "telemetry_readings_per_message": n_after,
        "telemetry_message_bytes": size_after,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print every line item; return the headline figures (bench/run_all.py collects them)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=8, help="cells per rig (default 8)")
    ap.add_argument("--rate-hz", type=float, default=1.0, help="samples per cell per second (default 1)")
    ap.add_argument("--events-per-cell-day", type=float, default=Workload.events_per_cell_day)
    ap.add_argument("--cycles-per-cell-day", type=float, default=Workload.cycles_per_cell_day)
    ap.add_argument("--json", metavar="PATH", help="also write the headline figures as JSON ('-': stdout)")
    args = ap.parse_args([] if argv is None else argv)
    w = Workload(args.cells, args.rate_hz, args.events_per_cell_day, args.cycles_per_cell_day)

    print(f"prices ({PRICES_AS_OF}):")
    for k, v in PRICES.items():
        print(f"  {k:<42} {v:>9g}")
    print(
        f"\nworkload: {w.cells} cells per rig at {w.rate_hz:g} Hz; {w.events_per_cell_day:g} events and "
        f"{w.cycles_per_cell_day:g} cycles per cell-day; {w.health_changes_per_rig_day:g} health changes per rig-day"
    )
    for label, a in (("before", BEFORE_AGENT), ("after", AFTER_AGENT)):
        n, size = message(w.cells, w.rate_hz, "compact", a.target_bytes, a.linger_ms, a.full_fraction)
        print(
            f"  {label}: linger {a.linger_ms / 1000:g} s, full at {a.full_fraction:.0%} of {a.target_bytes} B -> "
            f"{n} readings per message, {size} B ({size / n:.1f} B/reading, {units(size + 62)} x 5 KB units, "
            f"{(size + 62) / (units(size + 62) * KB5):.0%} full); health every {a.heartbeat_s:g} s"
            + (" through Basic Ingest" if a.health_basic_ingest else "")
        )
    before = variable_per_cell_month(BEFORE_AGENT, BEFORE_CLOUD, w)
    after = variable_per_cell_month(AFTER_AGENT, AFTER_CLOUD, w)
    opt = variable_per_cell_month(AFTER_AGENT, PER_RIG_CLOUD, w)
    _table(
        "variable cost, USD per cell-month, all in",
        {"before": before, "after": after, "after+per-rig": opt},
        fmt="{:>10.5f}",
    )
    print(
        "  (after+per-rig: the option of a silent alarm per rig, per_rig_silent_alarms = true in the examples: "
        "one custom metric <rig>.readings_rate_s and one alarm per rig)"
    )
    deployments = {"complete/bef": COMPLETE_BEFORE, "complete": COMPLETE_AFTER, "small-lab": SMALL_LAB}
    _table(
        "fixed cost, USD per deployment-month (QuickSight licences not included: per user)",
        {k: fixed_month(d) for k, d in deployments.items()},
        fmt="{:>10.2f}",
    )
    print(f"  QuickSight Enterprise author (per user, month to month): {PRICES['quicksight_author_month']:.2f}")
    print("\nsmall-lab choices, USD per month:")
    alt = {
        "Kinesis on-demand instead of one provisioned shard": sum(fixed_month(SMALL_LAB, "on-demand").values()),
        "base capacity 8 RPU instead of 4": sum(fixed_month(replace(SMALL_LAB, base_rpu=8)).values()),
        "refresh every 60 min instead of 120": sum(fixed_month(replace(SMALL_LAB, refresh_minutes=60)).values()),
        "refresh every 15 min instead of 120": sum(fixed_month(replace(SMALL_LAB, refresh_minutes=15)).values()),
        "with the Kinesis VPC endpoint (enhanced VPC routing)": sum(
            fixed_month(replace(SMALL_LAB, kinesis_endpoint=True)).values()
        ),
        "hourly by day, paused 12 h a night (+ stream retention 48 h)": sum(
            fixed_month(replace(SMALL_LAB, refresh_minutes=120)).values()
        )
        + 730 * PRICES["kinesis_extended_retention_shard_hour"],
    }
    base = sum(fixed_month(SMALL_LAB).values())
    print(f"  {'as deployed':<64} {base:>8.2f}")
    for k, v in alt.items():
        print(f"  {k:<64} {v:>8.2f}")
    out = figures(w)
    print(
        f"\nall-in variable: {out['all_in_variable_usd_per_cell_month_before']:.4f} -> "
        f"{out['all_in_variable_usd_per_cell_month']:.4f} USD per cell-month; fixed: complete "
        f"{out['complete_fixed_usd_per_month_before']:.2f} -> {out['complete_fixed_usd_per_month']:.2f}, "
        f"small-lab {out['small_lab_fixed_usd_per_month']:.2f} USD per month"
    )
    if args.json:
        text = json.dumps(out, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
