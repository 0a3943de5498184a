"""Stand-ins for the AWS IoT Device Shadow and Jobs MQTT protocols (AWS itself cannot run here).

They follow the protocols as AWS documents them (developer guide: "Device Shadow MQTT topics", "Jobs device MQTT
API"), for what the agent uses:

- named shadows: ``$aws/things/{thing}/shadow/name/{name}/update`` -> ``/update/accepted`` | ``/update/rejected``,
  then ``/update/delta`` (desired keys that differ from reported) and ``/update/documents``; ``/get`` ->
  ``/get/accepted`` (desired, reported, delta, version) | ``/get/rejected`` (404 when there is no shadow). A null
  deletes a key; objects merge, arrays replace; ``version`` in a request must match (409); the state document is
  limited to 8 KB (413);
- jobs: ``$aws/things/{thing}/jobs/notify-next`` (published when the next pending execution changes), ``start-next``
  -> ``/start-next/accepted`` (the next QUEUED or IN_PROGRESS execution, now IN_PROGRESS, or none), and
  ``{jobId}/update`` -> ``/update/accepted`` | ``/update/rejected`` (a terminal execution cannot change:
  InvalidStateTransition; statusDetails values must be strings: InvalidRequest). A job document's
  ``${aws:iot:s3-presigned-url:URL}`` placeholders are replaced when it is delivered, as IoT Jobs does with a
  presigned-URL role (here by a function the test gives, pointing at a local HTTPS server).

The classes are the protocol only: ``handle(topic, payload)`` returns the messages to publish. ``IotCloud``
(``tests/support/iotcloud.py``) wires them to mosquitto with TLS client certificates; ``FakeLink(peer=...)`` wires
them to the in-process fake link. Cloud-side calls (UpdateThingShadow, CreateJob) are methods here.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Out = list[tuple[str, bytes]]
SHADOW = re.compile(r"^\$aws/things/([^/]+)/shadow/name/([^/]+)/(update|get)$")
JOBS = re.compile(r"^\$aws/things/([^/]+)/jobs/(start-next|([^/]+)/update)$")
PRESIGN = re.compile(r"\$\{aws:iot:s3-presigned-url:([^}]+)\}")
TERMINAL = {"SUCCEEDED", "FAILED", "REJECTED", "REMOVED", "CANCELED", "TIMED_OUT"}
MAX_SHADOW_BYTES = 8192


def _now() -> int:
    return int(time.time())


def _msg(topic: str, doc: dict[str, Any]) -> tuple[str, bytes]:
    return topic, json.dumps(doc).encode()


def _object(payload: bytes) -> dict[str, Any] | None:
    try:
        req = json.loads(payload) if payload else {}
    except ValueError:
        return None
    return req if isinstance(req, dict) else None


def merge_state(base: dict[str, Any] | None, update: dict[str, Any] | None) -> dict[str, Any] | None:
    """Shadow merge: objects merge recursively, a null deletes, anything else replaces; None if nothing is left."""
    if update is None:
        return None
    out = dict(base or {})
    for k, v in update.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            merged = merge_state(out[k], v)
            if merged:
                out[k] = merged
            else:
                out.pop(k, None)
        else:
            out[k] = copy.deepcopy(v)
    return out or None


def delta_of(desired: dict[str, Any] | None, reported: dict[str, Any] | None) -> dict[str, Any]:
    """Desired attributes that differ from reported (objects compared key by key, arrays as a whole)."""
    out: dict[str, Any] = {}
    rep = reported or {}
    for k, v in (desired or {}).items():
        if isinstance(v, dict) and isinstance(rep.get(k), dict):
            sub = delta_of(v, rep[k])
            if sub:
                out[k] = sub
        elif rep.get(k) != v:
            out[k] = v
    return out


@dataclass
class Shadow:
    desired: dict[str, Any] | None = None
    reported: dict[str, Any] | None = None
    version: int = 0


class ShadowService:
    def __init__(self) -> None:
        self.shadows: dict[tuple[str, str], Shadow] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (topic, request) as received, for tests
        self._lock = threading.Lock()

    def _prefix(self, thing: str, name: str) -> str:
        return f"$aws/things/{thing}/shadow/name/{name}"

    def handle(self, topic: str, payload: bytes) -> Out:
        m = SHADOW.match(topic)
        if m is None:
            return []
        thing, name, op = m.groups()
        prefix = self._prefix(thing, name)
        req = _object(payload)
        if req is None:
            return [_msg(f"{prefix}/{op}/rejected", {"code": 400, "message": "Payload contains invalid json"})]
        with self._lock:
            self.requests.append((topic, req))
            if op == "get":
                return self._get(thing, name, req)
            return self._update(thing, name, req.get("state"), req.get("version"), req.get("clientToken"))

    def _get(self, thing: str, name: str, req: dict[str, Any]) -> Out:
        prefix = self._prefix(thing, name)
        sh = self.shadows.get((thing, name))
        token = {"clientToken": req["clientToken"]} if "clientToken" in req else {}
        if sh is None:
            msg = f"No shadow exists with name: '{thing}~{name}'"
            return [_msg(f"{prefix}/get/rejected", {"code": 404, "message": msg, "timestamp": _now(), **token})]
        state: dict[str, Any] = {}
        if sh.desired:
            state["desired"] = sh.desired
        if sh.reported:
            state["reported"] = sh.reported
        delta = delta_of(sh.desired, sh.reported)
        if delta:
            state["delta"] = delta
        doc = {"state": state, "metadata": {}, "version": sh.version, "timestamp": _now(), **token}
        return [_msg(f"{prefix}/get/accepted", doc)]

    def _update(self, thing: str, name: str, state: Any, version: Any, token: Any) -> Out:
        prefix = self._prefix(thing, name)
        tok = {"clientToken": token} if token is not None else {}

        def rejected(code: int, message: str) -> Out:
            return [_msg(f"{prefix}/update/rejected", {"code": code, "message": message, "timestamp": _now(), **tok})]

        if not isinstance(state, dict) or not set(state) <= {"desired", "reported"}:
            return rejected(400, "Missing required node: state")
        sh = self.shadows.get((thing, name)) or Shadow()
        if version is not None and version != sh.version:
            return rejected(409, "Version conflict")
        before = copy.deepcopy(sh)
        new = Shadow(
            merge_state(sh.desired, state["desired"]) if "desired" in state else sh.desired,
            merge_state(sh.reported, state["reported"]) if "reported" in state else sh.reported,
            sh.version + 1,
        )
        if len(json.dumps({"desired": new.desired, "reported": new.reported})) > MAX_SHADOW_BYTES:
            return rejected(413, "The payload exceeds the maximum size allowed")
        self.shadows[(thing, name)] = new
        now = _now()
        out = [
            _msg(
                f"{prefix}/update/accepted",
                {"state": state, "metadata": {}, "version": new.version, "timestamp": now, **tok},
            )
        ]
        delta = delta_of(new.desired, new.reported)
        if delta:
            out.append(
                _msg(
                    f"{prefix}/update/delta",
                    {"state": delta, "metadata": {}, "version": new.version, "timestamp": now, **tok},
                )
            )
        docs = {
            "previous": {"state": {"desired": before.desired, "reported": before.reported}, "version": before.version},
            "current": {"state": {"desired": new.desired, "reported": new.reported}, "version": new.version},
            "timestamp": now,
            **tok,
        }
        out.append(_msg(f"{prefix}/update/documents", docs))
        return out

    # ---------------------------------------------------------------- the cloud side (UpdateThingShadow)
    def update_desired(self, thing: str, name: str, desired: dict[str, Any] | None) -> Out:
        """What an operator's ``aws iot-data update-thing-shadow`` does: returns the messages AWS would publish."""
        with self._lock:
            return self._update(thing, name, {"desired": desired}, None, None)

    def document(self, thing: str, name: str) -> Shadow | None:
        with self._lock:
            sh = self.shadows.get((thing, name))
            return copy.deepcopy(sh) if sh is not None else None


@dataclass
class Execution:
    job_id: str
    document: dict[str, Any]
    status: str = "QUEUED"
    details: dict[str, str] = field(default_factory=dict)
    version: int = 1
    queued_at: int = field(default_factory=_now)
    started_at: int | None = None
    history: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # every accepted update, in order


class JobsService:
    def __init__(self, presign: Callable[[str], str] = lambda url: url) -> None:
        self.presign = presign
        self.executions: dict[str, list[Execution]] = {}  # per thing, in queue order
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _doc(self, e: Execution) -> dict[str, Any]:
        text = PRESIGN.sub(lambda m: self.presign(m.group(1)), json.dumps(e.document))
        return json.loads(text)

    def _summary(self, thing: str, e: Execution, full: bool) -> dict[str, Any]:
        s: dict[str, Any] = {
            "jobId": e.job_id,
            "status": e.status,
            "queuedAt": e.queued_at,
            "lastUpdatedAt": _now(),
            "versionNumber": e.version,
            "executionNumber": 1,
            "jobDocument": self._doc(e),
        }
        if full:
            s.update({"thingName": thing, "statusDetails": dict(e.details), "startedAt": e.started_at})
        return s

    def _next(self, thing: str) -> Execution | None:
        pending = [e for e in self.executions.get(thing, []) if e.status in ("QUEUED", "IN_PROGRESS")]
        return pending[0] if pending else None

    def _notify(self, thing: str) -> Out:
        nxt = self._next(thing)
        doc: dict[str, Any] = {"timestamp": _now()}
        if nxt is not None:
            doc["execution"] = self._summary(thing, nxt, full=False)
        return [_msg(f"$aws/things/{thing}/jobs/notify-next", doc)]

    def handle(self, topic: str, payload: bytes) -> Out:
        m = JOBS.match(topic)
        if m is None:
            return []
        thing, op, job_id = m.groups()
        req = _object(payload)
        if req is None:
            return [_msg(f"{topic}/rejected", {"code": "InvalidJson", "message": "invalid json", "timestamp": _now()})]
        tok = {"clientToken": req["clientToken"]} if "clientToken" in req else {}
        with self._lock:
            self.requests.append((topic, req))
            if op == "start-next":
                e = self._next(thing)
                doc: dict[str, Any] = {"timestamp": _now(), **tok}
                if e is not None:
                    if e.status == "QUEUED":
                        e.status, e.started_at, e.version = "IN_PROGRESS", _now(), e.version + 1
                        e.details = {str(k): str(v) for k, v in (req.get("statusDetails") or {}).items()}
                        e.history.append((e.status, dict(e.details)))
                    doc["execution"] = self._summary(thing, e, full=True)
                return [_msg(f"{topic}/accepted", doc)]
            return self._update(thing, job_id, req, tok)

    def _update(self, thing: str, job_id: str, req: dict[str, Any], tok: dict[str, Any]) -> Out:
        base = f"$aws/things/{thing}/jobs/{job_id}/update"
        e = next((x for x in self.executions.get(thing, []) if x.job_id == job_id), None)

        def rejected(code: str, message: str) -> Out:
            return [_msg(f"{base}/rejected", {"code": code, "message": message, "timestamp": _now(), **tok})]

        if e is None:
            return rejected("ResourceNotFound", f"job {job_id} has no execution for {thing}")
        status, details = req.get("status"), req.get("statusDetails") or {}
        if status not in ("IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"):
            return rejected("InvalidRequest", f"status {status!r}")
        if not isinstance(details, dict) or not all(isinstance(v, str) for v in details.values()):
            return rejected("InvalidRequest", "statusDetails values must be strings")
        if "expectedVersion" in req and req["expectedVersion"] != e.version:
            return rejected("VersionMismatch", "expectedVersion does not match")
        if e.status in TERMINAL:
            return rejected("InvalidStateTransition", f"execution is {e.status}")
        e.status, e.details, e.version = status, dict(details), e.version + 1
        e.history.append((status, dict(details)))
        state = {"status": e.status, "statusDetails": e.details, "versionNumber": e.version}
        out = [_msg(f"{base}/accepted", {"executionState": state, "timestamp": _now(), **tok})]
        if status in TERMINAL:
            out += self._notify(thing)
        return out

    # ---------------------------------------------------------------- the cloud side (CreateJob, DescribeJobExecution)
    def create_job(self, thing: str, job_id: str, document: dict[str, Any]) -> Out:
        """Queue an execution for ``thing``; returns notify-next if it became the next one."""
        with self._lock:
            queue = self.executions.setdefault(thing, [])
            first = self._next(thing) is None
            queue.append(Execution(job_id, copy.deepcopy(document)))
            return self._notify(thing) if first else []

    def execution(self, thing: str, job_id: str) -> Execution:
        with self._lock:
            e = next(x for x in self.executions.get(thing, []) if x.job_id == job_id)
            return copy.deepcopy(e)


class Services:
    """Both stand-ins behind one ``handle`` (a FakeLink peer or an IotCloud's dispatcher)."""

    def __init__(self, presign: Callable[[str], str] = lambda url: url) -> None:
        self.shadow = ShadowService()
        self.jobs = JobsService(presign)

    def handle(self, topic: str, payload: bytes) -> Out:
        return self.shadow.handle(topic, payload) + self.jobs.handle(topic, payload)
