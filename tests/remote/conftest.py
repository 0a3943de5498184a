"""Fixtures for the remote tests: an agent in this process whose remote parts talk through the in-process fake link
to the shadow and jobs stand-ins (AWS cannot run here), and signing keys made on the spot."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import AgentConfig, load_config
from agent.pipeline import Agent
from agent.remote.service import RemoteService
from agent.runtime import build_agent
from drivers.base import Event
from tests.conftest import RIG, agent_config
from tests.support.agentproc import to_toml
from tests.support.awsiot import Services
from tests.support.fakelink import FakeLink

SIM = {"type": "simulator", "name": "sim", "cells": 4, "sample_hz": 10.0, "speed": 1.0}


def public_line(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode()


@pytest.fixture(scope="session")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write_config(tmp_path: Path, remote: dict[str, Any], **over: Any) -> Path:
    cfg = agent_config(tmp_path, None, None, None, **{"drivers": [dict(SIM)], "remote": remote, **over})
    cfg.pop("uplink")
    path = tmp_path / "agent.toml"
    path.write_text(to_toml(cfg))
    return path


class Rig:
    """A running agent, its fake link and the AWS stand-ins behind it."""

    def __init__(self, agent: Agent, link: FakeLink, services: Services, path: Path):
        self.agent, self.link, self.services, self.path = agent, link, services, path
        self.events: list[Event] = []  # every event the agent's parts emitted (they are stored and published too)
        emit = agent.emit

        def record(event: Event) -> None:
            self.events.append(event)
            emit(event)

        agent.emit = record  # type: ignore[method-assign]

    def kinds(self, prefix: str = "remote.") -> list[str]:
        return [e.kind for e in self.events if e.kind.startswith(prefix)]

    @property
    def remote(self) -> RemoteService:
        return next(s for s in self.agent.services if isinstance(s, RemoteService))

    def set_desired(self, desired: dict[str, Any] | None) -> int:
        """UpdateThingShadow from the cloud side; the broker delivers what the service publishes."""
        out = self.services.shadow.update_desired(RIG, "config", desired)
        for topic, payload in out:
            self.link.deliver(topic, payload)
        return int(__import__("json").loads(out[0][1])["version"])

    def create_job(self, job_id: str, document: dict[str, Any]) -> None:
        for topic, payload in self.services.jobs.create_job(RIG, job_id, document):
            self.link.deliver(topic, payload)

    def reported(self) -> dict[str, Any]:
        sh = self.services.shadow.document(RIG, "config")
        return dict(sh.reported or {}) if sh else {}

    async def until(self, cond: Callable[[], object], timeout_s: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not cond():
            assert loop.time() < deadline, f"timed out after {timeout_s} s waiting for {what}"
            await asyncio.sleep(0.02)


@asynccontextmanager
async def running(path: Path, services: Services | None = None, cfg: AgentConfig | None = None) -> AsyncIterator[Rig]:
    """The agent as ``battery-twin run`` builds it (twin, remote service), with the fake link for its remote parts."""
    from agent.remote.layer import load_effective

    cfg = cfg or load_effective(path)[0]
    services = services or Services()
    link = FakeLink(peer=services.handle)
    agent = build_agent(cfg, str(path))
    for i, svc in enumerate(agent.services):
        if isinstance(svc, RemoteService):
            agent.services[i] = RemoteService(cfg, path, link=link)
    rig = Rig(agent, link, services, path)
    await agent.start()
    try:
        yield rig
    finally:
        await agent.stop(drain_timeout_s=0.2)


def loaded(path: Path) -> AgentConfig:
    return load_config(path)


@pytest.fixture()
def files(pki):
    """The HTTPS stand-in for S3 (presigned GETs and PUTs), with a certificate from the test PKI."""
    from tests.support.https import FileServer

    server = FileServer(pki).start()
    yield server
    server.stop()


def jobs_remote(key: Ed25519PrivateKey, files, **over: Any) -> dict[str, Any]:
    """[remote] for job tests: the test key pinned, downloads from the HTTPS stand-in trusted."""
    return {
        "jobs": True,
        "signing_keys": [public_line(key)],
        "hosts": ["127.0.0.1"],
        "ca": str(files.ca),
        "confirm_s": 0.5,
        **over,
    }
