"""Health on change plus a heartbeat (agent/healthcadence.py): what goes out, when, with which rates; the config
refuses settings under which a healthy rig would read as silent."""

from __future__ import annotations

import itertools
import json

import jsonschema
import pytest

from agent.config import ConfigError, UplinkConfig, load_config
from agent.healthcadence import HealthCadence, cadence_problem
from agent.uplink.envelope import schema_path
from agent.uplink.uplink import topic


def snapshot(acked: int = 0, **over) -> dict:
    """What Agent.health() returns (every field of health.v1)."""
    h = {
        "v": 1,
        "type": "health",
        "rig": "rig-01",
        "ts": 1_760_000_000_000,
        "uptime_s": 10.0,
        "version": "0.1.0",
        "store_depth_readings": 100,
        "store_depth_events": 0,
        "store_depth_cycles": 0,
        "oldest_unsent_age_s": 12.5,
        "store_bytes": 4096,
        "dropped_readings": 0,
        "publish_rate_msgs_s": 0.0,
        "readings_rate_s": 0.0,
        "acked_readings": acked,
        "publish_errors": 0,
        "uplink_state": "connected",
        "drivers": [{"name": "sim", "type": "simulator", "state": "running", "restarts": 0}],
    }
    h.update(over)
    return h


def run(cadence: HealthCadence, snapshots, start_s: float = 0.0, step_s: float = 30.0, connected=lambda t: True):
    """Drive the cadence like Agent._health_loop: one snapshot per check; publish what it returns if connected."""
    sent = []
    t = start_s
    for k, h in enumerate(snapshots):
        msg = cadence.observe(h, t, acked_msgs=k)
        if msg is not None and connected(t):
            cadence.published(t)
            sent.append((t, msg))
        t += step_s
    return sent


def test_steady_rig_sends_one_heartbeat_per_period_with_rates_over_the_period():
    cad = HealthCadence(30.0, 150.0)
    # 8 readings/s acknowledged in bursts every ~60 s (a long linger): per-check rates would flap to 0.
    acked = [0]
    for k in range(1, 41):
        acked.append(acked[-1] + (480 if k % 2 == 0 else 0))
    sent = run(cad, [snapshot(a) for a in acked])
    reasons = [m["reason"] for _, m in sent]
    assert reasons[0] == "start"
    # Between heartbeats nothing changes once readings flow: one message per 150 s, not one per 30 s check.
    heartbeats = [t for t, m in sent if m["reason"] == "heartbeat"]
    assert len(heartbeats) >= 6 and all(b - a == 150.0 for a, b in itertools.pairwise(heartbeats))
    assert len(sent) <= 2 + len(heartbeats)  # start, the first "readings flowing" change, then heartbeats only
    for t, m in sent:
        if m["reason"] == "heartbeat":
            assert m["rate_window_s"] >= 150.0 - 0.5 and m["readings_rate_s"] == pytest.approx(8.0, abs=1.7)
            assert m["heartbeat_s"] == 150.0


def test_changes_go_out_at_the_next_check_not_the_next_heartbeat():
    cad = HealthCadence(30.0, 150.0)
    snaps = [snapshot(i * 240) for i in range(6)]
    snaps.append(snapshot(6 * 240, uplink_state="disconnected"))
    snaps.append(snapshot(6 * 240, uplink_state="disconnected", publish_errors=3))
    driver_restarted = [{"name": "sim", "type": "simulator", "state": "backoff", "restarts": 1}]
    snaps.append(snapshot(6 * 240, drivers=driver_restarted))
    snaps.append(snapshot(6 * 240, drivers=driver_restarted, dropped_readings=50))
    snaps.append(snapshot(6 * 240, drivers=[*driver_restarted, {**driver_restarted[0], "name": "can"}]))
    sent = {t: m for t, m in run(cad, snaps)}
    for k in range(6, 11):
        assert sent.get(30.0 * k, {}).get("reason") == "change", (k, sorted(sent))


def test_readings_stopping_is_a_change_and_reads_zero():
    cad = HealthCadence(30.0, 150.0)
    acked = [k * 240 for k in range(10)] + [2160] * 10  # flowing, then stuck
    sent = run(cad, [snapshot(a) for a in acked])
    stop = [(t, m) for t, m in sent if m["reason"] == "change" and m["readings_rate_s"] == 0.0]
    assert stop, [(t, m["reason"], m["readings_rate_s"]) for t, m in sent]
    # It goes out once the whole rate window has seen no readings, not before.
    assert stop[0][0] - 270.0 >= 150.0 - 0.5


def test_a_message_that_could_not_go_out_is_offered_again_at_each_check():
    cad = HealthCadence(30.0, 150.0)
    down = {30.0, 60.0, 90.0, 270.0, 300.0}
    sent = run(cad, [snapshot(k * 240) for k in range(14)], connected=lambda t: t not in down)
    assert [(t, m["reason"]) for t, m in sent] == [
        (0.0, "start"),
        (120.0, "change"),  # readings started flowing at 30 s; offered at every check until one could send it
        (330.0, "heartbeat"),  # due at 270 s, link down twice, out at the next check
    ]


def test_the_loop_sleeps_until_the_heartbeat_and_never_spins():
    cad = HealthCadence(30.0, 100.0)
    assert cad.sleep_s(0.0) == 30.0
    assert cad.observe(snapshot(), 0.0, 0) is not None
    cad.published(0.0)
    assert cad.sleep_s(90.0) == pytest.approx(10.0)  # the heartbeat falls due before the next interval
    assert cad.sleep_s(100.0) == 30.0  # due now but not sent (link down): retry each interval, do not spin
    assert cad.sleep_s(250.0) == 30.0


def test_published_messages_are_health_v1_with_the_additions():
    validator = jsonschema.Draft202012Validator(json.loads(schema_path("health.v1").read_text()))
    cad = HealthCadence(30.0, 150.0)
    for _, m in run(cad, [snapshot(k * 240) for k in range(12)]):
        validator.validate(m)
        assert {"reason", "rate_window_s", "heartbeat_s"} <= set(m)
    # The additions are optional: an older agent's message (without them) is still valid.
    validator.validate(snapshot())


def test_health_topic_through_basic_ingest_or_the_broker():
    assert topic(UplinkConfig(), "rig-01", "health") == "dt/battery-twin/rig-01/health"
    cfg = UplinkConfig(basic_ingest_health_rule="bt_health", topic_prefix="dt/lab")
    assert topic(cfg, "rig-01", "health") == "$aws/rules/bt_health/dt/lab/rig-01/health"


@pytest.mark.parametrize(
    "uplink,message",
    [
        ({"linger_ms": 150_000}, "must be shorter than the health heartbeat (150 s"),
        ({"linger_ms": 60_000, "health_heartbeat_s": 60}, "must be shorter than the health heartbeat (60 s"),
        ({"linger_ms": 60_000, "health_heartbeat_s": 10, "health_interval_s": 45}, "heartbeat (45 s"),
        ({"health_heartbeat_s": 0}, "health_heartbeat_s"),
        ({"health_heartbeat_s": "often"}, "health_heartbeat_s"),
        ({"basic_ingest_health_rule": "bt/health"}, "basic_ingest_health_rule"),
        ({"basic_ingest_health_rule": "x#"}, "basic_ingest_health_rule"),
    ],
)
def test_config_refuses_cadences_that_would_read_as_silent(tmp_path, uplink, message):
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in uplink.items())
    f = tmp_path / "c.toml"
    f.write_text(f'rig = "rig-01"\n[[drivers]]\ntype = "simulator"\nname = "sim"\n\n[uplink]\n{lines}\n')
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert message in str(err.value)


def test_a_heartbeat_below_the_check_interval_means_one_message_per_check():
    cfg = UplinkConfig(health_interval_s=3600, health_heartbeat_s=150)  # an older config: health hourly
    cad = HealthCadence.from_config(cfg)
    assert cad.heartbeat_s == 3600
    sent = run(cad, [snapshot(0)] * 4, step_s=3600.0)
    assert [m["reason"] for _, m in sent] == ["start", "heartbeat", "heartbeat", "heartbeat"]


def test_defaults_fit_together():
    cfg = UplinkConfig()
    assert cadence_problem(cfg.linger_ms, cfg.health_interval_s, cfg.health_heartbeat_s) is None
    assert cfg.linger_ms == 120_000 and cfg.health_heartbeat_s == 150.0 and cfg.health_interval_s == 30.0
