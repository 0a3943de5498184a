"""IoT Jobs over MQTT (``$aws/things/{rig}/jobs/...``): one job at a time, as AWS's Jobs device API has it.

``notify-next`` (or a new connection) wakes the runner; ``start-next`` hands over the next QUEUED or IN_PROGRESS
execution (now IN_PROGRESS) with its document; ``{jobId}/update`` reports each step (IN_PROGRESS, ``step``) and the
outcome (SUCCEEDED, or FAILED with ``reason`` and ``detail``). Job types (``operation`` in the document):
``model-update`` (``update.py``) and ``diagnostics`` (``diagnostics.py``). An execution cut short by a disconnect or
a restart is offered again by start-next and run again; both job types are safe to repeat.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from agent.control import AgentControl
from agent.remote import diagnostics
from agent.remote.channel import Channel, Doc, RequestFailed
from agent.remote.config import RemoteConfig
from agent.remote.update import ModelUpdater, Outcome

log = logging.getLogger("agent.remote")

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # AWS's job id alphabet; anything else cannot be a topic level


class JobRunner:
    def __init__(self, control: AgentControl, channel: Channel, cfg: RemoteConfig, updater: ModelUpdater):
        self.control = control
        self.channel = channel
        self.cfg = cfg
        self.updater = updater
        self.prefix = f"$aws/things/{control.cfg.rig}/jobs"
        self.wake = asyncio.Event()
        self.current: str | None = None
        self.last: dict[str, Any] | None = None
        self._stuck: set[str] = set()  # finished here, but the service did not take the outcome
        channel.route(f"{self.prefix}/notify-next", self._on_notify)

    def filters(self) -> list[str]:
        p = self.prefix
        return [
            f"{p}/notify-next",
            f"{p}/start-next/accepted",
            f"{p}/start-next/rejected",
            f"{p}/+/update/accepted",
            f"{p}/+/update/rejected",
        ]

    def _on_notify(self, doc: Doc) -> None:
        if isinstance(doc.get("execution"), dict):
            self.wake.set()

    async def run(self) -> None:
        """Task: drain pending executions whenever woken (notify-next, a new connection)."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                await self.drain()
            except RequestFailed as exc:
                log.warning("remote: jobs: %s (tried again at the next notification or connection)", exc)

    async def drain(self) -> None:
        while True:
            answer = await self.channel.request(f"{self.prefix}/start-next", {"statusDetails": {"step": "received"}})
            execution = answer.get("execution")
            if not isinstance(execution, dict) or not isinstance(execution.get("jobId"), str):
                return
            if not JOB_ID.match(execution["jobId"]):
                log.error("remote: start-next offered a job id that is not one: %r; ignored", execution["jobId"][:80])
                return
            if execution["jobId"] in self._stuck:
                log.warning(
                    "remote: job %s is offered again after its outcome was refused; waiting", execution["jobId"]
                )
                return
            await self._process(execution)

    async def _process(self, execution: dict[str, Any]) -> None:
        job_id = str(execution["jobId"])
        doc = execution.get("jobDocument")
        self.current = job_id
        log.info("remote: job %s started (%s)", job_id, doc.get("operation") if isinstance(doc, dict) else "?")

        async def progress(step: str) -> None:
            try:
                await self._update(job_id, "IN_PROGRESS", {"step": step})
            except RequestFailed as exc:
                log.warning("remote: job %s: step %s not reported: %s", job_id, step, exc)

        try:
            outcome = await self._dispatch(job_id, doc, progress)
        finally:
            self.current = None
        self.last = {"job": job_id, "status": outcome.status, **outcome.details}
        try:
            await self._update(job_id, outcome.status, outcome.details)
        except RequestFailed as exc:
            if exc.doc.get("code"):  # refused (the job was cancelled, say): do not run it again and again
                self._stuck.add(job_id)
            raise
        log.info("remote: job %s %s %s", job_id, outcome.status, outcome.details)

    async def _dispatch(self, job_id: str, doc: Any, progress: Any) -> Outcome:
        op = doc.get("operation") if isinstance(doc, dict) else None
        if op == "model-update":
            return await self.updater.run(job_id, doc, progress)
        if op == "diagnostics":
            await progress("collecting")
            return await diagnostics.run(self.control, self.cfg, doc)
        return Outcome("FAILED", {"reason": "unknown_operation", "detail": f"operation {str(op)[:64]!r} is unknown"})

    async def _update(self, job_id: str, status: str, details: dict[str, str]) -> None:
        await self.channel.request(f"{self.prefix}/{job_id}/update", {"status": status, "statusDetails": details})

    def status(self) -> dict[str, Any]:
        return {"job": self.current, "last_job": self.last}
