"""Config: one TOML file, validated by pydantic; errors name the file, the key and what is expected (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60)


def test_default_config_runs_simulator_with_uplink_off():
    cfg = load_config(None)
    assert cfg.drivers[0].type == "simulator" and not cfg.uplink.enabled
    assert cfg.store.synchronous == "FULL" and str(cfg.store.path).startswith("var")


def test_config_check_prints_effective_config(tmp_path):
    f = tmp_path / "rig.toml"
    f.write_text(
        'rig = "lab-a:rig_3"\n[store]\npath = "db/x.db"\nsynchronous = "normal"\n'
        '[[drivers]]\ntype = "simulator"\ncells = 3\n'
    )
    r = run_cli("config", "check", str(f))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["rig"] == "lab-a:rig_3"
    assert doc["store"]["synchronous"] == "NORMAL"
    assert doc["store"]["path"] == str(tmp_path / "db" / "x.db")  # relative to the config file
    assert doc["drivers"][0]["cells"] == 3 and doc["drivers"][0]["name"] == "simulator"
    assert doc["drivers"][0]["sample_hz"] == 1.0  # driver defaults are part of the effective config
    assert doc["uplink"]["max_in_flight"] == 100


@pytest.mark.parametrize(
    "body, expected",
    [
        ('rig = "bad rig!"\n', ["rig:", "thing name"]),
        ('rig = "r"\n[store]\nsynchronous = "SOMETIMES"\n', ["store.synchronous:", "'FULL'"]),
        (
            'rig = "r"\n[[drivers]]\ntype = "simulator"\ncells = -3\n',
            ["drivers[0].cells:", "greater than or equal to 1"],
        ),
        ('rig = "r"\n[[drivers]]\ntype = "simulator"\ncellz = 3\n', ["drivers[0].cellz:", "Extra inputs"]),
        ('rig = "r"\n[[drivers]]\ntype = "warp-drive"\n', ["drivers", "unknown driver type 'warp-drive'", "simulator"]),
        ('rig = "r"\n[uplink]\nendpoint = "x.iot.eu-west-1.amazonaws.com"\n', ["uplink", "uplink.cert", "uplink.key"]),
        ('rig = "r"\n[uplink]\nport = 70000\n', ["uplink.port:", "less than or equal to 65535"]),
        ('rig = "r"\n[validate.voltage_v]\nmin = 5\nmax = 1\n', ["validate.voltage_v:", "must be below"]),
        ("[store]\npath = 3\n", ["rig:", "Field required", "store.path:"]),
        ('rig = "r"\nrig = "s"\n', ["not valid TOML"]),
    ],
)
def test_bad_config_exits_2_naming_file_and_key(tmp_path, body, expected):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    r = run_cli("config", "check", str(f))
    assert r.returncode == 2, (r.stdout, r.stderr)
    for text in expected:
        assert text in r.stderr, (text, r.stderr)
    assert str(f) in r.stderr


def test_every_problem_is_listed_not_just_the_first(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('rig = "?"\n[store]\nsynchronous = "X"\nmax_bytes = 5\n[uplink]\nlinger_ms = -1\n')
    with pytest.raises(ConfigError) as e:
        load_config(f)
    keys = {p.split(":")[0] for p in e.value.problems}
    assert {"rig", "store.synchronous", "store.max_bytes", "uplink.linger_ms"} <= keys


def test_run_with_bad_config_exits_2(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('rig = "r"\n[[drivers]]\ntype = "simulator"\nsample_hz = 0\n')
    r = run_cli("run", "--config", str(f))
    assert r.returncode == 2 and "drivers[0].sample_hz" in r.stderr


def test_missing_config_file_is_a_clear_error(tmp_path):
    r = run_cli("config", "check", str(tmp_path / "nope.toml"))
    assert r.returncode == 2 and "cannot read the file" in r.stderr


def test_relative_driver_paths_resolve_against_the_config_file(tmp_path):
    """A service's working directory is not the config's folder: a profile named relative to the config file
    must be found from anywhere."""
    import shutil

    conf_dir = tmp_path / "etc"
    (conf_dir / "profiles").mkdir(parents=True)
    shutil.copy(
        Path(__file__).resolve().parents[1] / "drivers/modbus/profiles/bms16.toml",
        conf_dir / "profiles" / "my-bms.toml",
    )
    f = conf_dir / "rig.toml"
    f.write_text(
        'rig = "r"\n[[drivers]]\ntype = "modbus"\n'
        '[[drivers.devices]]\nname = "bms1"\nprofile = "profiles/my-bms.toml"\ntcp = "127.0.0.1:5020"\n'
    )
    r = subprocess.run(
        [sys.executable, "-m", "agent", "config", "check", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )  # cwd is not the config's folder
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["drivers"][0]["devices"][0]["profile"] == "profiles/my-bms.toml"
