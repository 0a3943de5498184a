"""Model updates and diagnostics through IoT Jobs, with the agent running in this process: the jobs stand-in behind the
fake link (AWS IoT Jobs cannot run here), an HTTPS server with the test PKI standing in for S3's presigned URLs."""

from __future__ import annotations

import asyncio
import base64
import copy
import gzip
import json
import logging
import shutil
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.inference.soh import SohForecaster
from agent.logs import setup_logging
from agent.remote.models import ModelStore
from tests.conftest import RIG
from tests.remote.conftest import jobs_remote, running, write_config
from tests.remote.modelkit import serve_job, served_path, soh_canary_inputs, variant, version_of
from tests.support.awsiot import Services


def steps(execution) -> list[str]:
    return [d.get("step", s) for s, d in execution.history]


async def finished(rig, job_id: str, timeout_s: float = 30.0):
    def done():
        e = rig.services.jobs.execution(RIG, job_id)
        return e.status in ("SUCCEEDED", "FAILED")

    await rig.until(done, timeout_s, f"job {job_id} to finish")
    return rig.services.jobs.execution(RIG, job_id)


def test_a_signed_model_is_verified_canaried_swapped_and_used_by_the_twin_with_the_previous_kept(
    tmp_path, signing_key, files
):
    path = write_config(tmp_path, jobs_remote(signing_key, files))
    a, b = variant(tmp_path / "m", "a"), variant(tmp_path / "m", "b")
    store = ModelStore(tmp_path / "store")

    async def scenario():
        async with running(path, Services(files.presign)) as rig:
            shipped = rig.agent.model_versions()["soh"]
            rig.create_job("update-a", serve_job(a, signing_key, files))
            e = await finished(rig, "update-a")
            assert e.status == "SUCCEEDED", e.history
            assert steps(e) == [
                "received",
                "verifying",
                "downloading",
                "canary",
                "activating",
                "confirming",
                "SUCCEEDED",
            ]
            assert e.details == {"version": version_of(a), "previous": "shipped"}
            assert rig.agent.model_versions()["soh"] == version_of(a) != shipped
            assert store.current("soh").version == version_of(a)
            assert rig.remote.health_fields()["remote"]["models"]["soh"] == version_of(a)
            assert rig.kinds() == ["remote.model_updated"]
            # Presigned URLs only: the agent fetched exactly the two files, each once.
            assert sorted(p.split("?")[0] for _, p in files.requests) == sorted(
                served_path(serve_job(a, signing_key, files), w) for w in ("artifact", "metadata")
            )
            rig.create_job("update-b", serve_job(b, signing_key, files))
            e = await finished(rig, "update-b")
            assert e.status == "SUCCEEDED" and e.details["previous"] == version_of(a)
            assert rig.agent.model_versions()["soh"] == version_of(b)
            assert store.previous("soh").version == version_of(a)
        # A restart loads the installed model (the twin is built from the state directory).
        async with running(path, Services(files.presign)) as rig:
            assert rig.agent.model_versions()["soh"] == version_of(b)

    asyncio.run(scenario())


def test_every_bad_job_is_refused_with_its_reason_and_the_model_in_use_stays(tmp_path, signing_key, files):
    path = write_config(tmp_path, jobs_remote(signing_key, files))
    m = tmp_path / "m"
    good = variant(m, "good")
    other_key = Ed25519PrivateKey.generate()

    def doc(artifact=good, key=signing_key):
        return serve_job(artifact, key, files)

    bad_sig = doc()
    sig = bytearray(base64.b64decode(bad_sig["signature"]))
    sig[0] ^= 1
    bad_sig["signature"] = base64.b64encode(bytes(sig)).decode()
    swapped = doc(variant(m, "swap"))  # the artifact served is another model than the one signed
    files.files[served_path(swapped, "artifact")] = good.read_bytes()
    grown = doc(variant(m, "grown"))
    files.files[served_path(grown, "artifact")] += b"\0" * 4096  # announced bigger than signed
    streamed = doc(variant(m, "streamed"))
    files.files[served_path(streamed, "artifact")] += b"\0" * 4096
    files.faults[served_path(streamed, "artifact")] = "stream"  # no length announced: noticed while reading
    truncated = doc(variant(m, "truncated"))
    files.faults[served_path(truncated, "artifact")] = "truncate"
    tampered = copy.deepcopy(doc())
    tampered["manifest"]["version"] = "soh-v1-evil"
    plain_http = doc()
    plain_http["metadata_url"] = files.url(served_path(plain_http, "metadata")).replace("https://", "http://")
    cases = {
        "bad-signature": (bad_sig, "bad_signature"),
        "unknown-key": (doc(key=other_key), "unknown_key"),
        "tampered-manifest": (tampered, "bad_signature"),
        "wrong-hash": (swapped, "hash_mismatch"),
        "oversize": (grown, "oversize"),
        "oversize-streamed": (streamed, "oversize"),
        "truncated": (truncated, "truncated"),
        "canary-differs": (doc(variant(m, "wrong", canary="wrong")), "canary_mismatch"),
        "no-canary": (doc(variant(m, "nocanary", canary="none")), "no_canary"),
        "plain-http": (plain_http, "bad_url"),
        "not-a-model-job": ({"operation": "format-disk"}, "unknown_operation"),
        "no-manifest": ({"operation": "model-update"}, "malformed"),
    }

    async def scenario():
        async with running(path, Services(files.presign)) as rig:
            before = rig.agent.model_versions()
            for job_id, (document, _) in cases.items():
                rig.create_job(job_id, document)
            for job_id, (_, reason) in cases.items():
                e = await finished(rig, job_id)
                assert (e.status, e.details.get("reason")) == ("FAILED", reason), (job_id, e.details)
            assert rig.agent.model_versions() == before
            assert ModelStore(tmp_path / "store").current("soh") is None
            assert not list((tmp_path / "store" / "models" / ".staging").glob("*/*"))  # nothing half-downloaded
            assert all(d["state"] == "running" for d in rig.agent.drivers_status())
            assert rig.kinds().count("remote.model_refused") == len(cases) - 1  # the unknown operation is not a model
            # and after all that, a good one still goes through
            rig.create_job("good", doc())
            assert (await finished(rig, "good")).status == "SUCCEEDED"

    asyncio.run(scenario())


def test_a_model_that_passes_its_canary_but_fails_in_the_twin_is_rolled_back(tmp_path, signing_key, files, monkeypatch):
    remote = jobs_remote(signing_key, files, confirm_s=30.0)
    path = write_config(
        tmp_path,
        remote,
        drivers=[{"type": "simulator", "name": "sim", "cells": 4, "sample_hz": 0.05, "speed": 50000.0}],
        twin={"forecast_cycles": 20},
    )
    good, buggy = variant(tmp_path / "m", "good"), variant(tmp_path / "m", "buggy")
    # The SOH model is data (reference trajectories), so no file of it can carry a bug in code: the test injects one
    # that shows only on histories of another length than the canary's, as real shape bugs do.
    real_forecast = SohForecaster.forecast
    canary_len = soh_canary_inputs()["capacity_ah"].shape[1]

    def forecast(self: SohForecaster, cycle: Any, capacity_ah: Any, *args: Any, **kw: Any) -> Any:
        if self.version == version_of(buggy) and np.shape(capacity_ah)[1] != canary_len:
            raise ValueError("injected by the test: fails beyond the canary's shapes")
        return real_forecast(self, cycle, capacity_ah, *args, **kw)

    monkeypatch.setattr(SohForecaster, "forecast", forecast)
    store = ModelStore(tmp_path / "store")
    # "good" was installed by an earlier job (that path is the first test's): the rollback has a model to go back to.
    staged = store.staging("earlier")
    for f in (good, good.with_suffix(".json")):
        shutil.copy(f, staged / f.name)
    store.install("soh", version_of(good), staged, good.name, "earlier")

    async def scenario():
        async with running(path, Services(files.presign)) as rig:
            assert rig.agent.model_versions()["soh"] == version_of(good)
            rig.create_job("buggy", serve_job(buggy, signing_key, files))
            e = await finished(rig, "buggy", timeout_s=60)
            assert e.status == "FAILED" and e.details["reason"] == "unhealthy", e.details
            assert e.details["detail"].startswith(f"rolled back to {version_of(good)}")
            assert rig.agent.model_versions()["soh"] == version_of(good)
            assert store.current("soh").version == version_of(good)
            assert "remote.model_rolled_back" in rig.kinds()

    asyncio.run(scenario())


def test_diagnostics_bundle_is_uploaded_redacted(tmp_path, signing_key, files):
    secret = "dashboard-token-0123456789abcdef"
    path = write_config(tmp_path, jobs_remote(signing_key, files), dashboard={"enabled": False, "token": secret})

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("INFO")  # as `battery-twin run` does: the last lines are kept in memory for the bundle

    async def scenario():
        async with running(path, Services(files.presign)) as rig:
            rig.create_job(
                "diag-1", {"operation": "diagnostics", "upload_url": files.url("/bt/diag/r1.json.gz"), "log_lines": 50}
            )
            e = await finished(rig, "diag-1")
            assert e.status == "SUCCEEDED", e.details
            ctype, body = files.uploads["/bt/diag/r1.json.gz"]
            assert ctype == "application/gzip" and e.details["bytes"] == str(len(body))
            text = gzip.decompress(body).decode()
            assert secret not in text and "PRIVATE KEY" not in text
            bundle = json.loads(text)
            assert bundle["rig"] == RIG and bundle["config"]["dashboard"]["token"] == "**********"
            assert bundle["health"]["drivers"][0]["name"] == "sim" and "store_depth_readings" in bundle["store"]
            assert {c["name"] for c in bundle["doctor"]} >= {"store.integrity", "remote.jobs"}
            assert 0 < len(bundle["log"]) <= 50 and any("remote:" in line for line in bundle["log"])
            rig.create_job("diag-2", {"operation": "diagnostics", "upload_url": "https://evil.example.com/x"})
            e = await finished(rig, "diag-2")
            assert e.status == "FAILED" and e.details["reason"] == "bad_url"

    try:
        asyncio.run(scenario())
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
