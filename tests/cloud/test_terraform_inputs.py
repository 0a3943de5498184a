"""Hostile Terraform inputs (issue 14.6): every ec2_rig variable, and topic_prefix in every module that takes it.

The table below becomes one ``terraform test`` file per module: a run per bad value, each expecting that variable's
validation to fail, and runs with the edge of what is allowed, which must pass. The runs plan a harness that holds
the module's own variables.tf, verbatim and alone (a validation block may only refer to its own variable, so it
means the same there): no provider, no resources, so a hundred runs take seconds. That the module plans with good
values is the examples' plan (tests/cloud/test_contracts.py). A value that slipped through would reach the
instance's cloud-init (run as root) or widen the IoT policy.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cloud import tf

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "terraform" / "modules" / "ec2_rig" / "bootstrap.sh"

GOOD = {
    "ec2_rig": {
        "name_prefix": "battery-twin",
        "rig": "sim-rig-ec2",
        "vpc_id": "vpc-0a1b2c3d4e5f60718",
        "subnet_id": "subnet-0aaaaaaaaaaaaaaa1",
        "ami_id": "ami-0123456789abcdef0",
        "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        "kms_key_alias": "alias/battery-twin",
        "iot_endpoint": "abc123-ats.iot.eu-west-1.amazonaws.com",
        "agent_repo_url": "https://git.example.invalid/battery-twin.git",
        "agent_ref": "v1.2.3",
    },
    "iot": {"name_prefix": "battery-twin", "rigs": ["rig-01"]},
    "ingest": {
        "name_prefix": "battery-twin",
        "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    },
}

SHELL = ["$(reboot)", "`reboot`", "x; reboot", "x\nreboot", 'x" && reboot "']
# topic_prefix: wildcards widen the IoT policy and rules; empty levels and depth break IoT Core's topic limits.
BAD_TOPIC_PREFIXES = [
    "dt/#",
    "dt/+/x",
    "dt/*",
    "dt/battery?",
    "#",
    "+",
    "dt//x",
    "/dt",
    "dt/",
    "a/b/c/d/e/f/g",
    "x" * 97,
    "$aws/rules/x",
    *(f"dt/{s}" for s in SHELL),
]
BAD = {
    "ec2_rig": {
        "rig": ["", "r" * 129, "rig\n", "rig/01", *(f"rig{s}" for s in SHELL)],
        "name_prefix": ["Bt", "bt", "battery-twin$(x)", "battery_twin"],
        "vpc_id": ["vpc-123", "vpc-0a1b2c3d; reboot", "subnet-0aaaaaaaaaaaaaaa1"],
        "subnet_id": ["subnet-$(reboot)", "vpc-0a1b2c3d4e5f60718"],
        "instance_type": ["t3.small; reboot", "t3 small", "t3"],
        "ami_id": ["ami-$(reboot)", "ami-XYZ12345", "ami-0123"],
        "kms_key_arn": ["arn:aws:kms:eu-west-1:123456789012:key/$(reboot)", "alias/battery-twin"],
        "kms_key_alias": ["alias/$(reboot)", "battery-twin", "alias/a b"],
        "iot_endpoint": ["abc-ats.iot.eu-west-1.amazonaws.com$(reboot)", "evil.example.com", "abc.iot.x.com"],
        "topic_prefix": BAD_TOPIC_PREFIXES,
        "basic_ingest_rule": ["rule-with-dash", "r$(reboot)", "r" * 129],
        "certificate_pem": ["not a pem", "-----BEGIN CERTIFICATE-----\n$(reboot)\n-----END CERTIFICATE-----\n"],
        "agent_repo_url": [
            "http://git.example.invalid/battery-twin.git",
            "https://user:pw@git.example/x.git",
            "https://git.example/x.git?x=1",
            "file:///etc/passwd",
            "https://git.example/x.git$(reboot)",
            "https://git.example/x .git",
            "git@github.com:o/r.git",
        ],
        "agent_ref": [
            "main",
            "master",
            "feature/x",
            "HEAD",
            "",
            "abc1234",
            "v1.2.3$(reboot)",
            "--upload-pack=x",
            "v1.2.3 ",
            "0" * 39,
        ],
        "tags": [{"Name": "x\ny"}, {"k$(x)": "v"}, {"Owner": "`id`"}, {"": "v"}],
    },
    "iot": {"topic_prefix": BAD_TOPIC_PREFIXES},
    "ingest": {"topic_prefix": BAD_TOPIC_PREFIXES},
}
# The edge of what is allowed must still plan.
OK = {
    "ec2_rig": {
        "agent_ref": ["0123456789abcdef0123456789abcdef01234567", "v1.2.3", "1.2", "v2.0.0-rc.1"],
        "topic_prefix": ["dt/battery-twin", "a/b/c/d/e/f", "x" * 96],
        "tags": [{"Project": "battery twin", "cost-center": "lab/a:1"}],
        "basic_ingest_rule": ["", "battery_twin_telemetry"],
        "iot_endpoint": ["abc123.iot.cn-north-1.amazonaws.com.cn"],
    },
    "iot": {"topic_prefix": ["dt/battery-twin", "a/b/c/d/e/f"]},
    "ingest": {"topic_prefix": ["dt/battery-twin", "a/b/c/d/e/f"]},
}


def hcl(value) -> str:
    return json.dumps(value)  # JSON values are HCL expressions (strings, lists, objects)


def tftest_file(module: str) -> str:
    out = ["variables {"]
    out += [f"  {k} = {hcl(v)}" for k, v in GOOD[module].items()]
    out.append("}\n")
    n = 0
    for var, values in OK[module].items():
        for v in values:
            n += 1
            out.append(f'run "ok_{n}_{var}" {{\n  command = plan\n  variables {{\n    {var} = {hcl(v)}\n  }}\n}}\n')
    for var, values in BAD[module].items():
        for v in values:
            n += 1
            out.append(
                f'run "bad_{n}_{var}" {{\n  command = plan\n  variables {{\n    {var} = {hcl(v)}\n  }}\n'
                f"  expect_failures = [var.{var}]\n}}\n"
            )
    return "\n".join(out)


@pytest.mark.parametrize("module", sorted(BAD))
def test_module_refuses_hostile_inputs(terraform, tmp_path, module):
    assert set(tf.MODULES) >= set(BAD), "a module of the table is gone"
    d = tmp_path / module
    (d / "tests").mkdir(parents=True)
    shutil.copy(ROOT / "terraform/modules" / module / "variables.tf", d / "variables.tf")
    (d / "tests" / "inputs.tftest.hcl").write_text(tftest_file(module))
    terraform.init(d)
    p = terraform.run(d, "test", "-no-color", check=False, timeout_s=240)
    runs = sum(len(v) for v in BAD[module].values()) + sum(len(v) for v in OK[module].values())
    failed = re.findall(r'run "([^"]+)"\.\.\. fail', p.stdout)
    assert p.returncode == 0 and f"Success! {runs} passed" in p.stdout, (
        f"runs that did not go as the table says: {failed}\n{p.stdout[-6000:]}\n{p.stderr[-3000:]}"
    )


def test_every_ec2_rig_variable_has_a_validation_block_and_a_bad_value():
    text = (ROOT / "terraform/modules/ec2_rig/variables.tf").read_text()
    blocks = re.findall(r'variable "(\w+)" \{(.*?)\n\}', text, re.DOTALL)
    assert blocks
    for name, body in blocks:
        assert "validation {" in body, f"ec2_rig variable {name} has no validation block"
        typ = re.search(r"type\s+=\s+(\S+)", body).group(1)
        assert typ == "bool" or name in BAD["ec2_rig"], f"no hostile value for ec2_rig variable {name}"


def test_topic_prefix_is_validated_in_every_module_that_takes_it():
    takers = sorted(
        m
        for m in tf.MODULES
        if 'variable "topic_prefix"' in (ROOT / "terraform/modules" / m / "variables.tf").read_text()
    )
    assert takers == sorted(BAD), takers


@pytest.mark.parametrize("prefix", BAD_TOPIC_PREFIXES)
def test_the_agent_refuses_the_same_topic_prefixes(prefix):
    from agent.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="uplink.topic_prefix"):
        parse_config({"rig": "r1", "uplink": {"topic_prefix": prefix}})
    for ok in OK["iot"]["topic_prefix"]:
        assert parse_config({"rig": "r1", "uplink": {"topic_prefix": ok}}).uplink.topic_prefix == ok


# ---------------------------------------------------------------------------------------------- bootstrap.sh
SETTINGS = {
    "RIG": "sim-rig-ec2",
    "REGION": "eu-west-1",
    "CSR_PARAM": "/bt/rigs/sim-rig-ec2/csr",
    "CERT_PARAM": "/bt/rigs/sim-rig-ec2/certificate",
    "KMS_KEY_ID": "alias/bt",
    "ENDPOINT": "abc-ats.iot.eu-west-1.amazonaws.com",
    "TOPIC_PREFIX": "dt/battery-twin",
    "BASIC_INGEST_RULE": "bt_telemetry",
    "REPO_URL": "https://git.example.invalid/battery-twin.git",
    "REPO_REF": "v1.2.3",
}


def run_bootstrap(tmp_path: Path, step: str, settings: dict, extra_env: dict | None = None):
    conf = tmp_path / "bootstrap.json"
    conf.write_text(json.dumps(settings))
    shims = tmp_path / "shims"
    shims.mkdir(exist_ok=True)
    for tool in ("aws", "systemctl"):  # AWS and systemd cannot run here: stand-ins that only record their call
        (shims / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {tmp_path}/calls.log\n')
        (shims / tool).chmod(0o755)
    env = {
        "PATH": f"{shims}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "BOOTSTRAP_CONF": str(conf),
        "CERT_DIR": str(tmp_path / "certs"),
        "CONFIG": str(tmp_path / "config.toml"),
        "SRC_DIR": str(tmp_path / "src"),
        "SERVICE_USER": "no-such-user-bt",
        "HOME": str(tmp_path),
        **(extra_env or {}),
    }
    return subprocess.run(["bash", str(BOOTSTRAP), step], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("key", ["RIG", "REGION", "KMS_KEY_ID", "CSR_PARAM"])
@pytest.mark.parametrize("payload", SHELL)
def test_bootstrap_parses_its_settings_and_never_runs_them(tmp_path, key, payload):
    """Whatever reaches bootstrap.json (a bypassed validation, an edited file) is data: checked, refused, never run.
    Before the fix the file was sourced by root, so `$(...)` and backticks in a value ran."""
    marker = tmp_path / "ran"
    evil = payload.replace("reboot", f"touch {marker}")
    p = run_bootstrap(tmp_path, "csr", {**SETTINGS, key: SETTINGS[key] + evil})
    assert p.returncode != 0 and f"{key} = " in p.stderr and "refusing" in p.stderr, p.stdout + p.stderr
    assert not marker.exists(), "a setting ran as a shell command"
    assert not (tmp_path / "certs").exists() and not (tmp_path / "calls.log").exists(), "it went on regardless"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_bootstrap_fetches_a_commit_or_a_tag_and_refuses_a_branch(tmp_path):
    """The instance installs exactly agent_ref: a commit id, or refs/tags/<ref>; a branch of the same name as the
    ref does not count. (The https URL is redirected to a local repository with git's own url.insteadOf.)"""
    assert shutil.which("git"), "git is not installed"
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", "tagged", cwd=repo)
    tagged = git("rev-parse", "HEAD", cwd=repo)
    git("tag", "v1.2.3", cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", "later", cwd=repo)
    later = git("rev-parse", "HEAD", cwd=repo)
    git("branch", "v9.9.9", cwd=repo)  # a branch that looks like a version
    redirect = {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": f"url.file://{repo}.insteadOf",
        "GIT_CONFIG_VALUE_0": SETTINGS["REPO_URL"],
        "GIT_CONFIG_KEY_1": "protocol.file.allow",
        "GIT_CONFIG_VALUE_1": "always",
    }
    for ref, want in (("v1.2.3", tagged), (later, later)):
        p = run_bootstrap(tmp_path, "fetch", {**SETTINGS, "REPO_REF": ref}, redirect)
        assert p.returncode == 0, p.stderr
        assert git("rev-parse", "HEAD", cwd=tmp_path / "src") == want
    p = run_bootstrap(tmp_path, "fetch", {**SETTINGS, "REPO_REF": "v9.9.9"}, redirect)
    assert p.returncode != 0 and "no commit or tag v9.9.9" in p.stderr, p.stdout + p.stderr
    p = run_bootstrap(tmp_path, "fetch", {**SETTINGS, "REPO_REF": "main"}, redirect)
    assert p.returncode != 0 and "REPO_REF = 'main'" in p.stderr, p.stdout + p.stderr
