"""A model update job, step by step: verify the signature, download and check both files, load and canary the model,
swap it in, rebuild the twin with it, watch it for ``confirm_s``; any failure refuses or rolls back.

Each step is reported to the job (IN_PROGRESS with ``step``); the outcome is SUCCEEDED (``version``, ``previous``)
or FAILED (``reason`` code, ``detail``). Power cuts: files are checked in staging and made current by one atomic
rename (``models.ModelStore.install``), so a cut at any step leaves the old or the new model; after a restart the
job is offered again (start-next returns IN_PROGRESS executions) and either finds its model already in force or
starts over.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.control import AgentControl
from agent.faultpoints import faultpoint
from agent.remote import canary
from agent.remote.config import RemoteConfig
from agent.remote.models import FAMILIES, ModelStore
from agent.remote.signing import VerifyError, verify
from agent.remote.transfer import download
from drivers.base import Event

log = logging.getLogger("agent.remote")

MAX_METADATA_BYTES = 8 * 1024**2
HASH_KEYS = ("model_sha256", "onnx_sha256")  # where a model's metadata names its artifact's hash
Progress = Callable[[str], Awaitable[None]]


@dataclass
class Outcome:
    status: str  # SUCCEEDED | FAILED
    details: dict[str, str] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check_metadata(meta: Any, m: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise VerifyError("metadata_mismatch", "the metadata file is not a JSON object")
    named = next((meta[k] for k in HASH_KEYS if k in meta), None)
    wrong = [
        f"{k} {have!r} != {want!r}"
        for k, have, want in (
            ("family", meta.get("family"), m["family"]),
            ("version", meta.get("version"), m["version"]),
            ("artifact sha256", named, m["artifact_sha256"]),
            ("format", meta.get("model_format", m["format"]), m["format"]),
        )
        if have != want
    ]
    if wrong:
        raise VerifyError(
            "metadata_mismatch", "the metadata does not describe the signed artifact: " + "; ".join(wrong)
        )
    return meta


class ModelUpdater:
    def __init__(self, control: AgentControl, cfg: RemoteConfig, store: ModelStore):
        self.control = control
        self.cfg = cfg
        self.store = store

    async def run(self, job_id: str, doc: dict[str, Any], progress: Progress) -> Outcome:
        staged: Path | None = None
        try:
            await progress("verifying")
            m = verify(doc, self.cfg.keys())
            family, version = m["family"], m["version"]
            self._admissible(m)
            previous = self.store.current(family)
            if previous is not None and previous.version == version and _sha256(previous.path) == m["artifact_sha256"]:
                log.info("remote: job %s: %s %s is already in force (restart after the swap)", job_id, family, version)
                if self.control.model_versions().get(family) != version:
                    await self.control.rebuild_processors()
                previous = self.store.previous(family)
            else:
                staged = self.store.staging(job_id)
                meta = await self._fetch(doc, m, staged, progress)
                await progress("canary")
                await asyncio.to_thread(canary.check, staged / m["file"], meta, family, m["format"])
                faultpoint("remote.after_canary")
                await progress("activating")
                await asyncio.to_thread(self.store.install, family, version, staged, m["file"], job_id)
                staged = None
                versions = await self.control.rebuild_processors()
                if versions.get(family) != version:
                    return await self._roll_back(job_id, family, version, "load_failed", "the twin did not load it")
            await progress("confirming")
            why = await self._watch(family, version)
            if why is not None:
                return await self._roll_back(job_id, family, version, "unhealthy", why)
        except VerifyError as exc:
            log.error("remote: job %s refused: %s: %s", job_id, exc.reason, exc)
            self.control.emit(
                Event(
                    "remote.model_refused",
                    f"model update {job_id} refused ({exc.reason}): {exc}"[:1500],
                    source="remote",
                    data={"job": job_id, "reason": exc.reason},
                )
            )
            return Outcome("FAILED", {"reason": exc.reason, "detail": str(exc)[:1000]})
        finally:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)
        before = previous.version if previous is not None else "shipped"
        log.info("remote: job %s: %s model %s in force (previous %s)", job_id, family, version, before)
        self.control.emit(
            Event(
                "remote.model_updated",
                f"{family} model {version} in force (previous {before})",
                level="info",
                source="remote",
                data={"job": job_id, "family": family, "version": version, "previous": before},
            )
        )
        return Outcome("SUCCEEDED", {"version": version, "previous": before})

    def _admissible(self, m: dict[str, Any]) -> None:
        if m["family"] not in FAMILIES:
            raise VerifyError(
                "unknown_family", f"this agent has no model family {m['family']!r} ({', '.join(FAMILIES)})"
            )
        if Path(m["file"]).suffix == ".json":
            raise VerifyError("malformed", "the artifact's file name must not end in .json (that is its metadata's)")
        if m["artifact_size"] > self.cfg.max_model_bytes:
            raise VerifyError(
                "oversize",
                f"the model is {m['artifact_size']} bytes, remote.max_model_bytes is {self.cfg.max_model_bytes}",
            )
        if m["metadata_size"] > MAX_METADATA_BYTES:
            raise VerifyError("oversize", f"the metadata is {m['metadata_size']} bytes (at most {MAX_METADATA_BYTES})")

    async def _fetch(self, doc: dict[str, Any], m: dict[str, Any], staged: Path, progress: Progress) -> dict[str, Any]:
        urls = {k: doc.get(k) for k in ("artifact_url", "metadata_url")}
        if not all(isinstance(u, str) for u in urls.values()):
            raise VerifyError("malformed", "the job document needs artifact_url and metadata_url")
        await progress("downloading")
        meta_path = staged / Path(m["file"]).with_suffix(".json").name
        await asyncio.to_thread(
            download, str(urls["metadata_url"]), meta_path, m["metadata_size"], m["metadata_sha256"], self.cfg
        )
        meta = _check_metadata(json.loads(meta_path.read_bytes()), m)
        await asyncio.to_thread(
            download, str(urls["artifact_url"]), staged / m["file"], m["artifact_size"], m["artifact_sha256"], self.cfg
        )
        faultpoint("remote.after_download")
        return meta

    async def _watch(self, family: str, version: str) -> str | None:
        """None if the twin keeps the model and fails on no batch for ``confirm_s``; else why not."""
        faults = self.control.processor_faults()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.confirm_s
        while True:
            if self.control.processor_faults() > faults:
                return f"the twin failed on {self.control.processor_faults() - faults} batch(es) with it"
            if self.control.model_versions().get(family) != version:
                return "the twin no longer runs it"
            left = deadline - loop.time()
            if left <= 0:
                return None
            await asyncio.sleep(min(0.2, left))

    async def _roll_back(self, job_id: str, family: str, version: str, reason: str, why: str) -> Outcome:
        back = await asyncio.to_thread(self.store.rollback, family, f"{version}: {why}")
        await self.control.rebuild_processors()
        now = back.version if back is not None else "shipped"
        log.error("remote: job %s: %s model %s rolled back to %s: %s", job_id, family, version, now, why)
        self.control.emit(
            Event(
                "remote.model_rolled_back",
                f"{family} model {version} rolled back to {now}: {why}"[:1500],
                source="remote",
                data={"job": job_id, "family": family, "version": version, "now": now, "reason": reason},
            )
        )
        return Outcome("FAILED", {"reason": reason, "detail": f"rolled back to {now}: {why}"[:1000]})
