"""AWS cost per cell-month of the cloud half, from message sizes measured with the agent's own encoder.

    python bench/cloud_cost.py                 # the tables in docs/cost-per-cell-month.md
    python bench/cloud_cost.py --cells 16 --linger-ms 60000

How many readings go into one message follows the uplink: it sends a message when it reaches
``message_target_bytes`` or when ``linger_ms`` has passed since the first unsent reading, whichever comes
first. The payload of such a message is encoded here with ``agent.uplink.envelope`` (realistic values, the
same envelope the agent publishes), so the bytes, and the 5 KB units AWS meters, are measured, not guessed.
Prices: PRICES below (us-east-1 list prices, with the date they were taken); update them and re-run.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.store.cursor import ReadingRows
from agent.uplink.envelope import pack_readings

SECONDS_PER_MONTH = 730 * 3600  # AWS bills a month as 730 hours
KB5 = 5 * 1024
PRICES_AS_OF = "2025-06, us-east-1 list prices from aws.amazon.com/<service>/pricing"
PRICES = {
    "iot_connect_per_million_minutes": 0.08,
    "iot_messages_per_million": 1.00,  # per 5 KB unit, first 1 billion messages a month
    "iot_rules_per_million": 0.15,  # rules triggered, per 5 KB unit of the message
    "iot_actions_per_million": 0.15,  # actions applied, per 5 KB unit
    "kinesis_shard_hour": 0.015,  # provisioned mode
    "kinesis_put_units_per_million": 0.014,  # 25 KB PUT payload units
    "firehose_per_gb": 0.029,  # first 500 TB/month; each record rounded up to 5 KB
    "redshift_rpu_hour": 0.375,  # Serverless, billed per second, 60 s minimum
    "redshift_storage_gb_month": 0.024,
    "cw_metric_month": 0.30,  # custom metric, first 10,000
    "cw_put_metric_per_thousand": 0.01,  # PutMetricData requests (one per IoT metric action)
    "cw_alarm_month": 0.10,  # standard resolution
    "cw_dashboard_month": 3.00,
    "kms_key_month": 1.00,
    "vpc_interface_endpoint_hour": 0.01,  # per endpoint per AZ
    "ec2_t3_small_hour": 0.0208,
    "ebs_gp3_gb_month": 0.08,
}


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


def message(cells: int, rate_hz: float, envelope: str, target_bytes: int, linger_ms: int) -> tuple[int, int]:
    """(readings per message, payload bytes) of the uplink's steady state."""
    per_linger = max(1, int(cells * rate_hz * linger_ms / 1000))
    rows = sample_rows(per_linger, cells, rate_hz)
    cell_ids = {c: f"cell-{c:02d}" for c in range(cells)}
    rows = rows.head(per_linger)
    hint = 32.0 if envelope == "compact" else 130.0
    for _ in range(6):  # the uplink adapts its bytes-per-reading guess the same way (Uplink._bpr)
        payload, n = pack_readings("rig-01", rows, cell_ids, envelope, target_bytes, hint)
        hint = 0.8 * hint + 0.2 * (len(payload) / n)
    return n, len(payload)


def per_cell_month(
    cells: int,
    rate_hz: float,
    envelope: str,
    target_bytes: int,
    linger_ms: int,
    basic_ingest: bool,
    rig_topic_bytes: int = 33,
) -> dict[str, float]:
    p = PRICES
    n, size = message(cells, rate_hz, envelope, target_bytes, linger_ms)
    readings = rate_hz * SECONDS_PER_MONTH  # of one cell
    msgs = readings / n
    units = math.ceil((size + rig_topic_bytes) / KB5)  # IoT meters payload + topic, per 5 KB
    record = size + 120  # + topic_rig, topic, received_ms added by the rule
    out = {
        "readings_per_msg": n,
        "msg_bytes": size,
        "bytes_per_reading": size / n,
        "iot_units_per_msg": units,
        "iot_messaging": 0.0 if basic_ingest else msgs * units * p["iot_messages_per_million"] / 1e6,
        "iot_rules_and_actions": msgs * units * (p["iot_rules_per_million"] + p["iot_actions_per_million"]) / 1e6,
        "kinesis_put": msgs * math.ceil(record / 25_600) * p["kinesis_put_units_per_million"] / 1e6,
        "redshift_storage": readings * record / n / 1e9 * p["redshift_storage_gb_month"],
        "iot_connectivity": 43_800 * p["iot_connect_per_million_minutes"] / 1e6 / cells,
    }
    out["total"] = sum(v for k, v in out.items() if k.startswith(("iot_m", "iot_r", "kinesis", "redshift", "iot_c")))
    # For comparison: Firehose with one record per message, and one record per reading (v1 + batch mode).
    out["firehose_per_message"] = msgs * math.ceil(record / KB5) * KB5 / 1e9 * p["firehose_per_gb"]
    out["firehose_per_reading"] = readings * KB5 / 1e9 * p["firehose_per_gb"]
    return out


def per_rig_month(health_interval_s: float, health_metrics: int = 5) -> dict[str, float]:
    p = PRICES
    msgs = SECONDS_PER_MONTH / health_interval_s
    return {
        "health_messages": msgs * p["iot_messages_per_million"] / 1e6,
        "health_rules_actions": msgs
        * (p["iot_rules_per_million"] + health_metrics * p["iot_actions_per_million"])
        / 1e6,
        "health_put_metric_data": msgs * health_metrics * p["cw_put_metric_per_thousand"] / 1000,
        "health_metrics": health_metrics * p["cw_metric_month"],
        "silent_alarm": p["cw_alarm_month"],
    }


def fixed_month(refresh_minutes: float, base_rpu: int = 8, shards: int = 1, ec2: bool = True) -> dict[str, float]:
    p = PRICES
    if refresh_minutes == 0:
        rpu_hours = base_rpu * 730.0  # a stream that never stops keeps an AUTO REFRESH view busy
    else:
        rpu_hours = (SECONDS_PER_MONTH / (refresh_minutes * 60)) * base_rpu * 60 / 3600  # 60 s minimum each
    out = {
        "redshift_compute": rpu_hours * p["redshift_rpu_hour"],
        "kinesis_shards": shards * 730 * p["kinesis_shard_hour"],
        "kinesis_vpc_endpoint": 730 * p["vpc_interface_endpoint_hour"],
        "kms_key": p["kms_key_month"],
        "cloudwatch_dashboard_alarms_event_metrics": p["cw_dashboard_month"]
        + 4 * p["cw_alarm_month"]
        + 4 * p["cw_metric_month"],
    }
    if ec2:
        out["ec2_simulated_rig"] = 730 * p["ec2_t3_small_hour"] + 16 * p["ebs_gp3_gb_month"] + 7 * p["cw_metric_month"]
    return out


def main(argv: list[str] | None = None) -> dict:
    """Print the tables; return the headline figures (bench/run_all.py collects them)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=8, help="cells per rig (default 8)")
    ap.add_argument("--target-bytes", type=int, default=14_848, help="uplink.message_target_bytes (default)")
    ap.add_argument("--linger-ms", type=int, nargs="*", default=[1000, 60_000], help="uplink.linger_ms values")
    ap.add_argument("--health-interval-s", type=float, default=30.0)
    args = ap.parse_args([] if argv is None else argv)
    print(f"prices: {PRICES_AS_OF}; {args.cells} cells per rig; message_target_bytes {args.target_bytes}")
    print("\nper cell-month (USD), variable costs")
    hdr = (
        f"{'rate':>6} {'envelope':>8} {'linger':>7} {'ingest':>7} {'rdg/msg':>7} {'B/msg':>6} {'B/rdg':>6} "
        f"{'units':>5} {'messaging':>9} {'rules':>7} {'kinesis':>8} {'storage':>8} {'connect':>7} {'TOTAL':>7}"
        f" | {'FH/msg':>7} {'FH/rdg':>7}"
    )
    print(hdr)
    for rate in (1.0, 10.0):
        for envelope in ("compact", "records"):
            for linger in args.linger_ms:
                for basic in (False, True):
                    c = per_cell_month(args.cells, rate, envelope, args.target_bytes, linger, basic)
                    print(
                        f"{rate:>4g}Hz {envelope:>8} {linger / 1000:>6g}s {'basic' if basic else 'broker':>7} "
                        f"{c['readings_per_msg']:>7d} {c['msg_bytes']:>6d} {c['bytes_per_reading']:>6.1f} "
                        f"{c['iot_units_per_msg']:>5d} {c['iot_messaging']:>9.4f} {c['iot_rules_and_actions']:>7.4f} "
                        f"{c['kinesis_put']:>8.4f} {c['redshift_storage']:>8.4f} {c['iot_connectivity']:>7.4f} "
                        f"{c['total']:>7.4f} | {c['firehose_per_message']:>7.4f} {c['firehose_per_reading']:>7.4f}"
                    )
    r = per_rig_month(args.health_interval_s)
    print(
        f"\nper rig-month (USD), health every {args.health_interval_s:g} s into 5 metrics + rig-silent alarm: "
        + ", ".join(f"{k} {v:.2f}" for k, v in r.items())
        + f"; total {sum(r.values()):.2f}"
        + f" = {sum(r.values()) / args.cells:.3f} per cell"
    )
    for refresh in (0, 15, 60):
        f = fixed_month(refresh)
        label = "AUTO REFRESH" if refresh == 0 else f"refresh every {refresh} min"
        print(
            f"\nfixed per deployment-month (USD), warehouse {label}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in f.items())
            + f"; total {sum(f.values()):.2f}"
        )
    figures: dict = {
        "conditions": f"USD, {PRICES_AS_OF}; {args.cells} cells per rig, compact envelope, Basic "
        f"Ingest, message_target_bytes {args.target_bytes}; message sizes from "
        "agent.uplink.envelope"
    }
    for rate in (1.0, 10.0):
        for linger in args.linger_ms:
            c = per_cell_month(args.cells, rate, "compact", args.target_bytes, linger, True)
            figures[f"per_cell_month_{rate:g}hz_linger_{linger // 1000}s"] = round(c["total"], 4)
    figures["per_rig_month_health"] = round(sum(r.values()), 2)
    figures["per_deployment_month_refresh_15min"] = round(sum(fixed_month(15).values()), 2)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
