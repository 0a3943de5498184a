"""``battery-twin provision signing-key``, ``model publish`` and ``fleet diagnostics`` as a user runs them, against
moto's server (S3, IoT: AWS itself cannot run here). What publish signs is checked with the agent's own verifier."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest

from agent.remote.config import parse_public_key
from agent.remote.signing import verify
from tests.remote.modelkit import variant

REGION = "eu-west-1"
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV}
    env.pop("AWS_PROFILE", None)
    p = subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env, timeout=120)
    assert (p.returncode == 0) == ok, (p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture()
def aws(moto, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name=REGION)
    iot = boto3.client("iot", endpoint_url=moto.url, region_name=REGION)
    return s3, iot


def test_signing_key_is_0600_never_printed_and_never_overwritten(tmp_path):
    key = tmp_path / "keys" / "signing.pem"
    out = cli("provision", "signing-key", "--out", str(key)).stdout
    assert key.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in out and key.read_text().strip().splitlines()[1] not in out
    line = next(x for x in out.splitlines() if x.startswith("signing_keys = ")).split('"')[1]
    assert parse_public_key(line).key_id in out
    again = cli("provision", "signing-key", "--out", str(key), ok=False)
    assert "never overwritten" in again.stderr


def test_publish_signs_uploads_and_creates_a_rollout_job_the_agent_would_accept(tmp_path, aws, moto):
    s3, iot = aws
    key = tmp_path / "signing.pem"
    line = cli("provision", "signing-key", "--out", str(key)).stdout.split('signing_keys = ["', 1)[1].split('"')[0]
    s3.create_bucket(Bucket="bt-artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    iot.create_thing(thingName="rig-01")
    iot.create_thing_group(thingGroupName="bt-rigs")
    iot.add_thing_to_thing_group(thingGroupName="bt-rigs", thingName="rig-01")
    model = variant(tmp_path / "m", "pub")
    role = "arn:aws:iam::123456789012:role/bt-ota-presign"
    args = ["model", "publish", "--model", str(model), "--signing-key", str(key), "--bucket", "bt-artifacts"]
    args += ["--target", "bt-rigs", "--presign-role-arn", role, "--endpoint-url", moto.url, "--region", REGION]
    out = json.loads(cli(*args, "--rate-per-minute", "5").stdout)
    # Both files in S3, byte for byte.
    for what, path in (("artifact", model), ("metadata", model.with_suffix(".json"))):
        body = s3.get_object(Bucket="bt-artifacts", Key=out["keys"][what])["Body"].read()
        assert body == path.read_bytes(), what
    job = iot.describe_job(jobId=out["job_id"])["job"]
    assert job["targets"] == [iot.describe_thing_group(thingGroupName="bt-rigs")["thingGroupArn"]]
    assert job["presignedUrlConfig"] == {"roleArn": role, "expiresInSec": 3600}
    assert job["jobExecutionsRolloutConfig"]["maximumPerMinute"] == 5
    doc = json.loads(iot.get_job_document(jobId=out["job_id"])["document"])
    # Placeholders only (rigs never hold S3 credentials) and a signature the agent verifies with the pinned key.
    assert doc["artifact_url"].startswith("${aws:iot:s3-presigned-url:https://s3.eu-west-1.amazonaws.com/bt-artifacts/")
    m = verify(doc, {parse_public_key(line).key_id: parse_public_key(line)})
    assert m["version"] == json.loads(model.with_suffix(".json").read_text())["version"]
    # A key readable by others is refused before anything is uploaded.
    key.chmod(0o644)
    bad = cli(*args, "--job-id", "never", ok=False)
    assert "chmod 600" in bad.stderr
    assert "never" not in [j["jobId"] for j in iot.list_jobs()["jobs"]]


def test_fleet_diagnostics_makes_one_job_per_thing_with_a_presigned_put(aws, moto):
    s3, iot = aws
    s3.create_bucket(Bucket="bt-diag", CreateBucketConfiguration={"LocationConstraint": REGION})
    iot.create_thing_group(thingGroupName="lab")
    for t in ("lab-a", "lab-b"):
        iot.create_thing(thingName=t)
        iot.add_thing_to_thing_group(thingGroupName="lab", thingName=t)
    out = json.loads(
        cli("fleet", "diagnostics", "--target", "lab", "--bucket", "bt-diag", "--endpoint-url", moto.url).stdout
    )
    assert sorted(j["thing"] for j in out["jobs"]) == ["lab-a", "lab-b"]
    for j in out["jobs"]:
        doc = json.loads(iot.get_job_document(jobId=j["job_id"])["document"])
        assert doc["operation"] == "diagnostics" and "X-Amz-Signature" in doc["upload_url"]
        assert f"/diagnostics/{j['thing']}/" in doc["upload_url"]
