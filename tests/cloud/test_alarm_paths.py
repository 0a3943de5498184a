"""The paths a user relies on, followed end to end through each example's rendered plan (terraform show -json
against moto): what the agent sends, on the topic it sends it, through the rule's SQL, into the log group or the
stream, through the metric filter or Contributor Insights rule, to the alarm and its SNS topic. AWS itself cannot
run here, so the rule SQL and the filter patterns are evaluated by tests/cloud/rules_eval.py (the subsets of IoT
SQL and CloudWatch Logs filter syntax the modules use; anything else makes these tests fail, not pass).

- every telemetry message still reaches the stream: rule SQL and topic filter as they were, nothing filtered;
- an over-temperature event (both kinds the agent raises) raises its alarm within two minutes;
- a rig that stops sending readings raises the rigs-silent alarm within silent_minutes, and the per-rig alarm
  stays possible;
- the events log and the health log take the rig from the topic, never from the payload (issue 14).
"""

from __future__ import annotations

import json

import pytest

from agent.config import UplinkConfig, ValidateConfig
from agent.healthcadence import HealthCadence
from agent.store import Store
from agent.uplink.envelope import encode_events, pack_readings
from agent.uplink.uplink import topic as agent_topic
from agent.validate import Validator
from drivers.base import Event, ReadingBatch
from tests.cloud import contracts as c
from tests.cloud import rules_eval as ev
from tests.cloud.conftest import PLAN_VARS, after, resources
from tests.cloud.test_contracts import plan_name, rules, rules_for_topic
from tests.cloud.tf import EXAMPLES

RIG, OTHER = "rig-01", "rig-02"
# The landing rules' SQL as it was before issue 18 touched the module: the stream contract must not move.
LANDING_SQL = (
    "SELECT *, topic(3) AS topic_rig, topic() AS topic, timestamp() AS received_ms FROM 'dt/battery-twin/+/{s}'"
)


@pytest.fixture(params=EXAMPLES)
def plan(request, plans) -> dict:
    return plans[request.param]


def rule_named(plan, suffix: str) -> dict:
    (r,) = [r for n, r in rules(plan).items() if n.endswith(suffix)]
    return r


def uplink_cfg(plan) -> UplinkConfig:
    """The agent's [uplink] as `battery-twin provision config` writes it for this example."""
    basic = PLAN_VARS[plan_name(plan)].get("basic_ingest", True)
    names = {n for n in rules(plan)}
    tel = next(n for n in names if n.endswith("_telemetry"))
    health = next(n for n in names if n.endswith("_health"))
    return UplinkConfig(basic_ingest_rule=tel if basic else "", basic_ingest_health_rule=health if basic else "")


def alarms(plan) -> dict[str, dict]:
    return {after(a)["alarm_name"]: after(a) for a in resources(plan, "aws_cloudwatch_metric_alarm")}


def sns_topic(plan) -> str:
    (t,) = resources(plan, "aws_sns_topic")
    return t["address"]


def notifies(plan, alarm_rc: dict) -> bool:
    """The alarm's actions point at the alarm topic (known after apply: compare the configuration reference)."""
    cfg = plan["configuration"]["root_module"]["module_calls"]["monitoring"]["module"]["resources"]
    res = next(r for r in cfg if r["address"] == alarm_rc["address"].split(".", 2)[-1].split("[")[0])
    refs = res["expressions"]["alarm_actions"]["references"]
    return "aws_sns_topic.alarms.arn" in refs


def log_group_of(plan, rule: dict) -> str:
    (logs,) = rule["cloudwatch_logs"]
    return logs["log_group_name"]


# ---------------------------------------------------------------------------------------------- telemetry
def test_every_telemetry_message_still_reaches_the_stream(plan):
    cfg = uplink_cfg(plan)
    landing = rule_named(plan, "_telemetry")
    assert landing["sql"] == LANDING_SQL.format(s="telemetry"), "the telemetry rule's SQL changed"
    assert "WHERE" not in landing["sql"].upper(), "a WHERE clause would drop telemetry messages"
    (kin,) = landing["kinesis"]
    (stream,) = resources(plan, "aws_kinesis_stream")
    assert kin["stream_name"] == after(stream)["name"] and kin["partition_key"] == "${topic(3)}"
    # The agent's own topic for telemetry, through Basic Ingest or not, reaches exactly this rule.
    telemetry = agent_topic(cfg, RIG, "readings")
    (name,) = rules_for_topic(plan, telemetry)
    assert rules(plan)[name] is not None and rules(plan)[name]["sql"] == landing["sql"]
    # A message the agent packs comes out whole, with the authenticated rig beside it.
    rows = _rows(64)
    payload, n = pack_readings(RIG, rows, {0: "c01", 1: "c02"}, "compact", 14_848, 32.0)
    out = ev.iot_sql(landing["sql"], json.loads(payload), telemetry)
    assert {k: v for k, v in out.items() if k not in ("topic_rig", "topic", "received_ms")} == json.loads(payload)
    assert out["topic_rig"] == RIG and n == 64


def _rows(n: int):
    from bench.cloud_cost import sample_rows

    return sample_rows(n, 2, 1.0)


# ---------------------------------------------------------------------------------------------- events
def _stored_events(tmp_path, events: list[Event]) -> list[dict]:
    """Events as the uplink reads them from the agent's store."""
    store = Store.open(tmp_path / "store.db")
    try:
        store.append_events(events)
        return store.unsent.events()
    finally:
        store.close()


def _over_temperature_events(tmp_path) -> list[dict]:
    """Both kinds of over-temperature event the agent raises: the twin's alarm, and a reading out of range."""
    validator = Validator(ValidateConfig.model_validate({"temperature_c": {"min": -40, "max": 60}}), "sim")
    batch = ReadingBatch.build(["c01"], [0], [1_760_000_000_000], [3.9], [2.0], [71.5])
    out_of_range = validator.check(batch)
    assert [e.kind for e in out_of_range] == ["validate.out_of_range"]
    twin = Event(
        "alarm.over_temperature",
        "cell c01: cell temperature above the limit (61.2 degC, limit 60)",
        level="alarm",
        source="twin",
        cell="c01",
        data={"value": 61.2, "limit": 60.0, "unit": "degC", "driver": "sim"},
    )
    return _stored_events(tmp_path, [twin, *out_of_range])


def test_the_events_log_takes_the_rig_from_the_topic_not_the_payload(plan, tmp_path):
    """A device can put another rig's id into its payload (issue 14); only its topic is authenticated."""
    rule = rule_named(plan, "_events_log")
    stored = _over_temperature_events(tmp_path)
    spoofed = json.loads(encode_events(OTHER, stored))  # published by RIG, claiming to be OTHER
    topic = f"dt/battery-twin/{RIG}/events"
    assert rules_for_topic(plan, topic) and rule["cloudwatch_logs"][0]["batch_mode"] is True
    logged = ev.iot_sql(rule["sql"], spoofed, topic)
    assert isinstance(logged, list) and len(logged) == len(stored)
    assert {e["rig"] for e in logged} == {RIG}, f"the events log believed the payload: {logged}"
    # Nothing else of an event is lost: every field of an events.v1 item is there, as sent.
    item_fields = set(c.row_fields("events.v1"))
    for sent, got in zip(spoofed["events"], logged):
        assert set(got) == item_fields
        assert {k: v for k, v in got.items() if k != "rig"} == {k: v for k, v in sent.items() if k != "rig"}


def test_an_over_temperature_event_raises_its_alarm_within_two_minutes(plan, tmp_path):
    rule = rule_named(plan, "_events_log")
    (events_group,) = [
        after(g)["name"] for g in resources(plan, "aws_cloudwatch_log_group") if "events" in after(g)["name"]
    ]
    assert log_group_of(plan, rule) == events_group
    filters = [
        after(f)
        for f in resources(plan, "aws_cloudwatch_log_metric_filter")
        if after(f)["log_group_name"] == events_group
    ]
    by_name = {
        a["metric_name"]: (a, rc)
        for rc in resources(plan, "aws_cloudwatch_metric_alarm")
        if (a := after(rc)).get("metric_name")
    }
    topic = f"dt/battery-twin/{RIG}/events"
    for event in _over_temperature_events(tmp_path):
        (log_event,) = ev.iot_sql(rule["sql"], json.loads(encode_events(RIG, [event])), topic)
        hits = [f for f in filters if ev.log_filter_matches(f["pattern"], log_event)]
        assert [f["metric_transformation"][0]["name"] for f in hits] == ["over_temperature"], (event["kind"], hits)
        (mt,) = hits[0]["metric_transformation"]
        alarm, rc = by_name[mt["name"]]
        assert alarm["namespace"] == mt["namespace"] and mt["value"] == "1"
        assert alarm["statistic"] == "Sum" and alarm["threshold"] <= 1
        assert alarm["comparison_operator"] == "GreaterThanOrEqualToThreshold"
        # One event is enough, and the alarm's evaluation window closes within two minutes of it.
        assert alarm["period"] * alarm["evaluation_periods"] <= 120 and alarm.get("datapoints_to_alarm") in (None, 1)
        assert notifies(plan, rc), f"{alarm['alarm_name']} notifies nobody"
    # A normal reading's event does not count as over-temperature.
    cool = {**event, "kind": "validate.out_of_range", "data": {"field": "temperature_c", "value": 45.0}}
    (log_event,) = ev.iot_sql(rule["sql"], json.loads(encode_events(RIG, [cool])), topic)
    assert not [
        f
        for f in filters
        if f["metric_transformation"][0]["name"] == "over_temperature"
        and ev.log_filter_matches(f["pattern"], log_event)
    ]


# ---------------------------------------------------------------------------------------------- silent rigs
def _health_message(flowing: bool) -> dict:
    """A health message as the agent publishes it: Agent.health() fields through HealthCadence."""
    schema = c.load_schema("health.v1")
    h = {
        "v": 1,
        "type": "health",
        "rig": OTHER,  # whatever the payload claims, the rig comes from the topic
        "ts": 1_760_000_000_000,
        "uptime_s": 900.0,
        "version": "0.1.0",
        "store_depth_readings": 480,
        "store_depth_events": 0,
        "store_depth_cycles": 0,
        "oldest_unsent_age_s": 58.0,
        "store_bytes": 1 << 20,
        "dropped_readings": 0,
        "publish_rate_msgs_s": 0.0,
        "readings_rate_s": 0.0,
        "acked_readings": 0,
        "publish_errors": 0,
        "uplink_state": "connected",
        "drivers": [{"name": "sim", "type": "simulator", "state": "running", "restarts": 0}],
    }
    assert set(h) == set(schema["required"])
    cadence = HealthCadence(30.0, 150.0)
    heartbeat = None
    for k in range(10):  # five minutes of checks every 30 s, publishing what the cadence asks for
        h = {**h, "acked_readings": h["acked_readings"] + (240 if flowing and k else 0)}
        msg = cadence.observe(h, 30.0 * k, 2 * k)
        if msg is not None:
            cadence.published(30.0 * k)
            heartbeat = msg if msg["reason"] == "heartbeat" else heartbeat
    assert heartbeat is not None
    return heartbeat


def test_a_silent_rig_raises_the_rigs_silent_alarm_within_silent_minutes(plan):
    cfg = uplink_cfg(plan)
    health = agent_topic(cfg, RIG, "health")
    (name,) = rules_for_topic(plan, health)
    rule = rules(plan)[name]
    group = log_group_of(plan, rule)
    (ci,) = [after(r) for r in resources(plan, "aws_cloudwatch_contributor_insight_rule")]
    definition = json.loads(ci["rule_definition"])
    assert definition["LogGroupNames"] == [group] and definition["LogFormat"] == "JSON"
    assert ci["rule_state"] == "ENABLED"
    (key,) = definition["Contribution"]["Keys"]

    def counted(msg: dict) -> str | None:
        """The contributor a health message adds to the rule, if any (its filters applied)."""
        record = ev.iot_sql(rule["sql"], msg, health)
        for f in definition["Contribution"].get("Filters", []):
            value = ev._get(record, f["Match"][2:])
            if not (isinstance(value, (int, float)) and value > f["GreaterThan"]):
                return None
        return ev._get(record, key[2:])

    assert counted(_health_message(flowing=True)) == RIG, "a live rig's heartbeat must count, as its topic's rig"
    assert counted(_health_message(flowing=False)) is None, "a rig whose readings stopped must not count"
    # The alarm: fewer rigs counted than deployed, over half of silent_minutes, no data = silent.
    (alarm,) = [a for a in alarms(plan).values() if a.get("metric_query")]
    (q,) = alarm["metric_query"]
    assert q["expression"] == f"INSIGHT_RULE_METRIC('{ci['rule_name']}', 'UniqueContributors')" and q["return_data"]
    assert alarm["comparison_operator"] == "LessThanThreshold"
    assert alarm["threshold"] == len(resources(plan, "aws_iot_thing")), "the alarm expects every rig of the deployment"
    assert alarm["treat_missing_data"] == "breaching" and alarm["evaluation_periods"] == 1
    silent_minutes = 10  # the monitoring module's default, which the examples keep
    assert q["period"] * 2 == silent_minutes * 60, (
        "a rig silent for a whole window is silent for at most silent_minutes"
    )
    # Heartbeats leave every window two chances: the agent's default heartbeat is at most half a window.
    assert UplinkConfig().health_heartbeat_s * 2 <= q["period"]
    # ... and report readings flowing although telemetry lingers (the rate covers a whole heartbeat).
    assert UplinkConfig().linger_ms / 1000 < UplinkConfig().health_heartbeat_s
    rc = next(r for r in resources(plan, "aws_cloudwatch_metric_alarm") if after(r).get("metric_query"))
    assert notifies(plan, rc)


def test_per_rig_silent_alarms_stay_possible(plans):
    plan = plans["fleet"]  # planned with per_rig_silent_alarms = true
    rigs = PLAN_VARS["fleet"]["rigs"]
    rule = rule_named(plan, "_health")
    (metric,) = rule["cloudwatch_metric"]
    assert metric["metric_name"] == "${topic(3)}.readings_rate_s" and metric["metric_value"] == "${readings_rate_s}"
    per_rig = {
        a["metric_name"]: a for a in alarms(plan).values() if (a.get("metric_name") or "").endswith(".readings_rate_s")
    }
    assert set(per_rig) == {f"{r}.readings_rate_s" for r in rigs}
    for a in per_rig.values():
        assert a["namespace"] == metric["metric_namespace"] and a["treat_missing_data"] == "breaching"
        assert a["period"] * a["evaluation_periods"] == 600 and a["threshold"] == 0
        # A heartbeat every 150 s puts a datapoint into every four of the alarm's one-minute periods.
        assert UplinkConfig().health_heartbeat_s < a["period"] * a["evaluation_periods"]
    # Without the option, no per-rig metric and no per-rig alarm: nothing per rig is billed.
    for name in ("complete", "small-lab"):
        assert not rule_named(plans[name], "_health").get("cloudwatch_metric")
        assert not [
            a for a in alarms(plans[name]).values() if (a.get("metric_name") or "").endswith(".readings_rate_s")
        ]


def test_the_health_record_is_what_the_cost_model_prices(plan):
    from bench.cloud_cost import HEALTH_LOG_FIELDS

    rule = rule_named(plan, "_health")
    record = ev.iot_sql(rule["sql"], _health_message(flowing=True), agent_topic(uplink_cfg(plan), RIG, "health"))
    extra = {m["metric_value"][2:-1] for m in rule.get("cloudwatch_metric") or []}
    assert set(record) == set(HEALTH_LOG_FIELDS) | extra
    assert record["rig"] == RIG
