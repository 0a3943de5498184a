"""Session fixtures for the cloud tests: one terraform setup, one moto server, one plan per example."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.provision import make_key_and_csr
from tests.cloud import tf

# What each example is planned with. complete: two physical rigs (only rig-01 has posted its CSR), the EC2
# simulated rig, QuickSight, Basic Ingest, a scheduled warehouse refresh, the fleet rigs-silent alarm only.
# fleet: an existing VPC, both rigs with CSRs, no Basic Ingest, AUTO REFRESH, per-rig silent alarms as well,
# remote config and model jobs (with their artifacts bucket).
# small-lab: its defaults (4 RPU, two-hourly refresh, no endpoint), three rigs.
PLAN_VARS = {
    "complete": {
        "rigs": ["rig-01", "rig-02"],
        "csr_rigs": ["rig-01"],
        "quicksight": True,
        "ec2_rig": True,
        "ec2_ami_id": "ami-0123456789abcdef0",
        "alarm_emails": ["ops@example.com"],
        "agent_repo_url": "https://git.example.invalid/battery-twin.git",
        "agent_ref": "v1.2.3",
        "quicksight_principal_arns": ["arn:aws:quicksight:eu-west-1:123456789012:user/default/analyst"],
        "remote": True,
    },
    "fleet": {
        "rigs": ["lab-a", "lab-b"],
        "csr_rigs": ["lab-a", "lab-b"],
        "basic_ingest": False,
        "vpc_id": "vpc-0a1b2c3d4e5f60718",
        "vpc_cidr": "10.20.0.0/16",
        "redshift_refresh_minutes": 0,
        "private_subnet_ids": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2", "subnet-0aaaaaaaaaaaaaaa3"],
        "per_rig_silent_alarms": True,
        "remote": True,
    },
    "small-lab": {
        "rigs": ["lab-01", "lab-02", "lab-03"],
        "csr_rigs": ["lab-01"],
        "alarm_emails": ["lab@example.com"],
        "quicksight_principal_arns": ["arn:aws:quicksight:eu-west-1:123456789012:user/default/analyst"],
    },
}


def _need(fn):
    try:
        return fn()
    except tf.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def terraform(tmp_path_factory) -> tf.Terraform:
    return _need(lambda: tf.Terraform(tmp_path_factory.mktemp("tf-cli")))


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    server = _need(lambda: tf.MotoServer(tmp_path_factory.mktemp("moto")).start())
    yield server
    server.stop()


class Plans(dict):
    """Plans made when a test first asks for them, so that no single test's setup plans every example (each
    plan takes a minute or more on a busy machine, and pytest-timeout counts a fixture's time to its test)."""

    def __init__(self, make):
        super().__init__()
        self._make = make

    def __missing__(self, example: str) -> dict:
        self[example] = plan = self._make(example)
        return plan


@pytest.fixture(scope="session")
def plans(terraform, moto, tmp_path_factory) -> dict[str, dict]:
    """`terraform show -json` of a plan of each example against moto, with CSRs made by `provision csr`."""

    def make(example: str) -> dict:
        work = tmp_path_factory.mktemp(f"plan-{example}")
        tree = tf.copy_tree(work)
        example_dir = tree / "examples" / example
        (example_dir / "zz_moto_override.tf").write_text(tf.moto_override(moto.url))
        tfvars = dict(PLAN_VARS[example])
        csr_dir = work / "csr"
        for rig in tfvars.pop("csr_rigs"):
            _, csr, _ = make_key_and_csr(rig, work / "devices" / rig)
            csr_dir.mkdir(exist_ok=True)
            (csr_dir / csr.name).write_bytes(csr.read_bytes())
        tfvars["csr_dir"] = str(csr_dir)
        return tf.plan_json(terraform, example_dir, tfvars)

    return Plans(make)


def resources(plan: dict, rtype: str) -> list[dict]:
    """Planned resources of a type (from resource_changes, so values are the rendered ones)."""
    return [rc for rc in plan["resource_changes"] if rc["type"] == rtype and "create" in rc["change"]["actions"]]


def after(rc: dict) -> dict:
    return rc["change"]["after"] or {}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return tf.ROOT
