"""The cost model behind docs/cost-per-cell-month.md: it prices what the agent's defaults and the Terraform examples
deploy, it meets issue 18's targets, and the page quotes what the script computes (so neither drifts alone)."""

from __future__ import annotations

import json
import re

import pytest

import bench.cloud_cost as cost
from agent.config import UplinkConfig
from tests.cloud.conftest import after, resources
from tests.cloud.tf import ROOT

PAGE = ROOT / "docs" / "cost-per-cell-month.md"


def test_the_defaults_meet_the_targets_of_issue_18(tmp_path, capsys):
    out_file = tmp_path / "cost.json"
    figures = cost.main(["--json", str(out_file)])
    printed = capsys.readouterr().out
    written = json.loads(out_file.read_text())
    assert written == figures
    assert written["all_in_variable_usd_per_cell_month"] <= 0.01
    assert written["small_lab_fixed_usd_per_month"] <= 60
    # What a user deployed before: the issue measured 0.88 USD per cell-month with the same prices.
    assert written["all_in_variable_usd_per_cell_month_before"] == pytest.approx(0.88, abs=0.006)
    # Every line item is printed, before and after.
    for item in cost.variable_per_cell_month(cost.AFTER_AGENT, cost.AFTER_CLOUD, cost.Workload()):
        assert item in printed
    for item in cost.fixed_month(cost.SMALL_LAB):
        assert item in printed
    assert cost.PRICES_AS_OF in printed


def test_the_model_prices_the_agents_defaults():
    d = UplinkConfig()
    a = cost.AFTER_AGENT
    assert (a.linger_ms, a.target_bytes, a.heartbeat_s) == (d.linger_ms, d.message_target_bytes, d.health_heartbeat_s)
    from agent.uplink.uplink import FULL_FRACTION

    assert a.full_fraction == FULL_FRACTION


def test_batching_basic_ingest_and_envelope_move_the_cost_the_way_the_page_says():
    w = cost.Workload()
    before = cost.variable_per_cell_month(cost.BEFORE_AGENT, cost.BEFORE_CLOUD, w)
    longer = cost.variable_per_cell_month(cost.AFTER_AGENT, cost.BEFORE_CLOUD, w)
    broker = cost.variable_per_cell_month(cost.AFTER_AGENT, cost.AFTER_CLOUD, cost.Workload(basic_ingest=False))
    after = cost.variable_per_cell_month(cost.AFTER_AGENT, cost.AFTER_CLOUD, w)
    tel = "telemetry: IoT rule + Kinesis action"
    assert longer[tel] < before[tel] / 15  # the linger fills 5 KB units
    assert broker["telemetry: IoT messaging"] > 0 == after["telemetry: IoT messaging"]
    health = [k for k in after if k.startswith(("health", "alarms"))]
    assert sum(after[k] for k in health) < sum(before[k] for k in health) / 100
    n, size = cost.message(8, 10.0, "records", 14_848, 120_000)
    n2, size2 = cost.message(8, 10.0, "compact", 14_848, 120_000)
    assert size / n > 3 * size2 / n2  # the compact envelope is a quarter of flat records per reading
    # A message goes when full (>= FULL_FRACTION of the target) or at the linger, never above the target.
    assert 0.97 * 14_848 <= size2 <= 14_848
    n_short, _ = cost.message(8, 1.0, "compact", 14_848, 10_000)
    assert n_short == 80  # ten one-second batches of eight readings


def test_the_model_prices_what_the_examples_deploy(plans):
    for name, d in (("complete", cost.COMPLETE_AFTER), ("small-lab", cost.SMALL_LAB)):
        plan = plans[name]
        (wg,) = resources(plan, "aws_redshiftserverless_workgroup")
        assert after(wg)["base_capacity"] == d.base_rpu, name
        (sched,) = resources(plan, "aws_scheduler_schedule")
        assert after(sched)["schedule_expression"] == f"rate({d.refresh_minutes} minutes)", name
        endpoints = [r for r in resources(plan, "aws_vpc_endpoint") if after(r)["vpc_endpoint_type"] == "Interface"]
        assert bool(endpoints) == d.kinesis_endpoint, name
        assert after(wg)["enhanced_vpc_routing"] is d.kinesis_endpoint, name
        assert bool(resources(plan, "aws_instance")) == d.ec2_rig, name
        assert len(resources(plan, "aws_quicksight_data_set")) == 4, f"{name} keeps the four QuickSight views"
        (stream,) = resources(plan, "aws_kinesis_stream")
        assert after(stream)["shard_count"] == d.shards and after(stream)["stream_mode_details"] == [
            {"stream_mode": "PROVISIONED"}
        ]
        assert len(resources(plan, "aws_cloudwatch_contributor_insight_rule")) == 1
        fleet = [f for f in resources(plan, "aws_cloudwatch_log_metric_filter") if "fleet" in after(f)["name"]]
        assert len(fleet) == d.fleet_metrics, name


def _page_number(label: str) -> float:
    m = re.search(
        rf"^\|\s*{re.escape(label)}\s*\|\s*\**([\d.,]+)\**\s*\|\s*\**([\d.,]+)\**\s*\|", PAGE.read_text(), re.MULTILINE
    )
    assert m, f"no row '{label}' in {PAGE.name}"
    return float(m.group(1).replace(",", "")), float(m.group(2).replace(",", ""))


def test_the_page_quotes_the_models_figures():
    w = cost.Workload()
    before = cost.variable_per_cell_month(cost.BEFORE_AGENT, cost.BEFORE_CLOUD, w)
    after = cost.variable_per_cell_month(cost.AFTER_AGENT, cost.AFTER_CLOUD, w)
    assert _page_number("all in, per cell-month") == (
        pytest.approx(sum(before.values()), abs=0.0006),
        pytest.approx(sum(after.values()), abs=0.00006),
    )
    for label, group in (
        ("telemetry", "telemetry"),
        ("health and its alarm", ("health", "alarms")),
        ("events and cycles", ("events", "cycles")),
    ):
        b = sum(v for k, v in before.items() if k.startswith(group))
        a = sum(v for k, v in after.items() if k.startswith(group))
        assert _page_number(label) == (pytest.approx(b, abs=0.0006), pytest.approx(a, abs=0.00006)), label
    fixed = {
        k: sum(cost.fixed_month(d).values())
        for k, d in (("before", cost.COMPLETE_BEFORE), ("after", cost.COMPLETE_AFTER))
    }
    assert _page_number("complete, fixed per month") == (
        pytest.approx(fixed["before"], abs=0.006),
        pytest.approx(fixed["after"], abs=0.006),
    )
    small = sum(cost.fixed_month(cost.SMALL_LAB).values())
    assert re.search(rf"small-lab[\s\S]{{0,300}}\*\*{small:.2f}\*\*", PAGE.read_text()), f"the page lacks {small:.2f}"


def test_the_page_lists_the_prices_the_model_uses():
    rows = dict(re.findall(r"^\| (\w+) \| ([\d.]+) \|$", PAGE.read_text(), re.MULTILINE))
    assert {k: float(v) for k, v in rows.items() if k in cost.PRICES} == cost.PRICES
    assert "June 2025" in PAGE.read_text() and "2025-06" in cost.PRICES_AS_OF
