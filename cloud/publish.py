"""Ship to the rigs: ``battery-twin model publish`` (signed model update through IoT Jobs), ``battery-twin fleet
diagnostics`` (ask rigs for a diagnostics bundle) and ``battery-twin provision signing-key``. Needs the ``[cloud]``
extra (boto3); credentials come from the usual AWS chain (profile, environment, instance role).

publish: sign the manifest of the model's two files, upload both to the artifacts bucket, create a job for a thing
group (or one thing) with a rollout rate and an abort threshold. The job document carries
``${aws:iot:s3-presigned-url:...}`` placeholders: IoT Jobs replaces them with short-lived presigned URLs (made with
the presign role) when a rig asks for the document, so rigs never hold S3 credentials.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from cloud.signing import SigningError, job_document, load_key, make_key, manifest_for, public_line

EXIT_USAGE = 2
CLOUD_EXTRA_HINT = "pip install 'battery-twin[cloud]'"


def _clients(region: str | None, endpoint_url: str | None) -> tuple[Any, Any]:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=region)
    # SigV4 for presigned URLs: the bucket is SSE-KMS encrypted, which SigV2 URLs cannot read or write.
    s3 = session.client("s3", endpoint_url=endpoint_url, config=Config(signature_version="s3v4"))
    return s3, session.client("iot", endpoint_url=endpoint_url)


def target_arn(iot: Any, target: str) -> str:
    """A thing group's ARN by name, else a thing's; an ARN is taken as it is."""
    if target.startswith("arn:"):
        return target
    try:
        return str(iot.describe_thing_group(thingGroupName=target)["thingGroupArn"])
    except iot.exceptions.ResourceNotFoundException:
        pass
    try:
        return str(iot.describe_thing(thingName=target)["thingArn"])
    except iot.exceptions.ResourceNotFoundException:
        raise SigningError(f"{target!r} is neither a thing group nor a thing in this account and region") from None


def placeholder(region: str, bucket: str, key: str) -> str:
    return f"${{aws:iot:s3-presigned-url:https://s3.{region}.amazonaws.com/{bucket}/{key}}}"


def publish(
    model: Path,
    signing_key: Path,
    bucket: str,
    target: str,
    presign_role_arn: str,
    *,
    prefix: str = "models/",
    job_id: str | None = None,
    expires_s: int = 3600,
    rate_per_minute: int = 10,
    abort_failure_pct: float = 10.0,
    abort_min_executed: int = 3,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> dict[str, Any]:
    key = load_key(signing_key)
    manifest = manifest_for(model, model.with_suffix(".json"))
    s3, iot = _clients(region, endpoint_url)
    region = region or s3.meta.region_name
    base = f"{prefix.strip('/')}/{manifest['family']}/{manifest['version']}/".lstrip("/")
    keys = {"artifact": base + model.name, "metadata": base + model.with_suffix(".json").name}
    for what, path in (("artifact", model), ("metadata", model.with_suffix(".json"))):
        s3.put_object(
            Bucket=bucket,
            Key=keys[what],
            Body=path.read_bytes(),
            ContentType="application/json" if what == "metadata" else "application/octet-stream",
            Metadata={"sha256": manifest[f"{what}_sha256"]},
        )
    doc = job_document(
        manifest, key, placeholder(region, bucket, keys["artifact"]), placeholder(region, bucket, keys["metadata"])
    )
    job_id = job_id or f"model-{manifest['family']}-{manifest['version']}-{int(time.time())}"[:64]
    job = iot.create_job(
        jobId=job_id,
        targets=[target_arn(iot, target)],
        document=json.dumps(doc),
        description=f"battery-twin {manifest['family']} model {manifest['version']}",
        presignedUrlConfig={"roleArn": presign_role_arn, "expiresInSec": expires_s},
        targetSelection="SNAPSHOT",
        jobExecutionsRolloutConfig={"maximumPerMinute": rate_per_minute},
        abortConfig={
            "criteriaList": [
                {
                    "failureType": "FAILED",
                    "action": "CANCEL",
                    "thresholdPercentage": abort_failure_pct,
                    "minNumberOfExecutedThings": abort_min_executed,
                }
            ]
        },
    )
    return {
        "job_id": job["jobId"],
        "job_arn": job["jobArn"],
        "bucket": bucket,
        "keys": keys,
        "key_id": doc["key_id"],
        "manifest": manifest,
    }


def request_diagnostics(
    bucket: str,
    target: str,
    *,
    prefix: str = "diagnostics/",
    expires_s: int = 3600,
    log_lines: int = 500,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> dict[str, Any]:
    """One job per thing (each needs its own upload URL): a presigned PUT for ``<prefix><thing>/<time>.json.gz``."""
    s3, iot = _clients(region, endpoint_url)
    arn = target_arn(iot, target)
    things = [arn.rsplit("/", 1)[-1]] if ":thing/" in arn else _members(iot, target)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = []
    for thing in things:
        key = f"{prefix.strip('/')}/{thing}/{stamp}.json.gz"
        url = s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": bucket, "Key": key, "ContentType": "application/gzip"},
            ExpiresIn=expires_s,
        )
        doc = {"operation": "diagnostics", "upload_url": url, "log_lines": log_lines}
        thing_arn = iot.describe_thing(thingName=thing)["thingArn"]
        job = iot.create_job(jobId=f"diag-{thing}-{stamp}"[:64], targets=[thing_arn], document=json.dumps(doc))
        out.append({"thing": thing, "job_id": job["jobId"], "key": key})
    return {"bucket": bucket, "jobs": out}


def _members(iot: Any, group: str) -> list[str]:
    things: list[str] = []
    for page in iot.get_paginator("list_things_in_thing_group").paginate(thingGroupName=group):
        things += page["things"]
    return things


# ---------------------------------------------------------------------------------------------- CLI
def _aws_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    p.add_argument("--endpoint-url", help=argparse.SUPPRESS)  # tests point boto3 at moto


def register_publish(msub: argparse._SubParsersAction) -> None:
    p = msub.add_parser("publish", help="sign a model, upload it to S3 and roll it out to rigs through IoT Jobs")
    p.add_argument("--model", type=Path, required=True, help="the model file (its metadata: same name, .json)")
    p.add_argument("--signing-key", type=Path, required=True, help="Ed25519 private key (provision signing-key)")
    p.add_argument("--bucket", required=True, help="the artifacts bucket (Terraform output ota_bucket)")
    p.add_argument("--target", required=True, help="thing group (or thing) name, or its ARN")
    p.add_argument("--presign-role-arn", required=True, help="role IoT Jobs presigns with (output ota_presign_role)")
    p.add_argument("--prefix", default="models/")
    p.add_argument("--job-id")
    p.add_argument("--expires-s", type=int, default=3600, help="presigned URL lifetime, 60..3600")
    p.add_argument("--rate-per-minute", type=int, default=10, help="rigs notified per minute at most")
    p.add_argument("--abort-failure-pct", type=float, default=10.0, help="cancel the rollout above this failure rate")
    p.add_argument("--abort-min-executed", type=int, default=3, help="... once this many rigs have finished")
    _aws_args(p)
    p.set_defaults(func=_cli(cmd_publish))


def register_fleet(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet", help="cloud-side requests to rigs through IoT Jobs (needs the [cloud] extra)")
    fsub = p.add_subparsers(dest="fleet_command", metavar="ACTION")
    fsub.required = True
    d = fsub.add_parser("diagnostics", help="ask a thing (or each thing of a group) for a diagnostics bundle")
    d.add_argument("--target", required=True)
    d.add_argument("--bucket", required=True, help="where bundles are uploaded (the artifacts bucket)")
    d.add_argument("--log-lines", type=int, default=500)
    _aws_args(d)
    d.set_defaults(func=_cli(cmd_diagnostics))


def register_signing_key(psub: argparse._SubParsersAction) -> None:
    p = psub.add_parser("signing-key", help="make the Ed25519 key pair that signs model updates")
    p.add_argument("--out", type=Path, required=True, help="private key file to create (mode 0600, never printed)")
    p.set_defaults(func=cmd_signing_key)


def _cli(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except ImportError as exc:
            print(
                f"battery-twin: needs {exc.name or exc}; install the cloud extra: {CLOUD_EXTRA_HINT}", file=sys.stderr
            )
            return EXIT_USAGE
        except SigningError as exc:
            print(f"battery-twin: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return run


def cmd_publish(args: argparse.Namespace) -> int:
    out = publish(
        args.model,
        args.signing_key,
        args.bucket,
        args.target,
        args.presign_role_arn,
        prefix=args.prefix,
        job_id=args.job_id,
        expires_s=args.expires_s,
        rate_per_minute=args.rate_per_minute,
        abort_failure_pct=args.abort_failure_pct,
        abort_min_executed=args.abort_min_executed,
        region=args.region,
        endpoint_url=args.endpoint_url,
    )
    print(json.dumps(out, indent=2))
    return 0


def cmd_diagnostics(args: argparse.Namespace) -> int:
    out = request_diagnostics(
        args.bucket, args.target, log_lines=args.log_lines, region=args.region, endpoint_url=args.endpoint_url
    )
    print(json.dumps(out, indent=2))
    return 0


def cmd_signing_key(args: argparse.Namespace) -> int:
    try:
        key = make_key(args.out)
    except (SigningError, OSError) as exc:
        print(f"battery-twin provision signing-key: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from agent.remote.config import parse_public_key

    line = public_line(key)
    print(f"wrote the private key to {args.out} (mode 0600; keep it where models are published, never on a rig)")
    print(f"key id {parse_public_key(line).key_id}; pin it on every rig, in [remote]:")
    print(f'signing_keys = ["{line}"]')
    return 0
