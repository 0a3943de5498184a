"""The agent's health as a file, for probes that cannot ask the process: a container ``HEALTHCHECK``, a cron job.

Every ``HEALTH_FILE_INTERVAL_S`` the agent writes ``health.json`` beside its store (the state directory, the one
place it may write), atomically: a temporary file in the same directory, then ``os.replace``, so a reader never
sees half a document. No fsync: the file is rewritten every few seconds, and one lost to a power cut reads as
"not written yet" until the next write. A file left by an earlier run is removed when the agent is built, so a
restarted agent never shows the health of the process before it.

Healthy means what the systemd watchdog checks: every internal task alive and the store thread answering. An
uplink outage is not unhealthy (the store grows, nothing is lost, restarting would not help); the file says how
the uplink is doing for anyone who reads it.

``battery-twin health`` (or, lighter, ``python -m agent.healthfile``) reads the file and exits 0 (fresh and
healthy) or 1 (missing, unreadable, stale or unhealthy), printing one line that says which: the exit codes a
container ``HEALTHCHECK`` expects (2 is reserved there). Staleness uses ``CLOCK_MONOTONIC`` when the file was
written during this boot (it does not jump when NTP sets the wall clock of a Raspberry Pi that has no RTC), the
wall clock otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.control import AgentControl

log = logging.getLogger("agent.healthfile")

HEALTH_FILE_NAME = "health.json"
HEALTH_FILE_INTERVAL_S = 5.0  # a stalled agent is seen within --max-age-s of its last write
DEFAULT_MAX_AGE_S = 30.0
STORE_ANSWER_TIMEOUT_S = 5.0
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
HEALTHY, UNHEALTHY = 0, 1


def health_file_path(cfg: AgentConfig) -> Path:
    """Where an agent with this config writes its health: beside its store."""
    return Path(cfg.store.path).parent / HEALTH_FILE_NAME


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def write_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` as JSON to ``path`` so that a reader sees the old file or the new one, never a mix."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # already renamed or never created: nothing to clean up
        raise


class HealthFile:
    """The agent ``Service`` that keeps ``health.json`` current while the agent runs."""

    def __init__(self, path: Path, interval_s: float = HEALTH_FILE_INTERVAL_S):
        self.path = path
        self.interval_s = interval_s
        self.writes = 0
        self.source: AgentControl | None = None
        self._task: asyncio.Task[None] | None = None
        self._boot_id = boot_id()
        try:
            path.unlink()  # the last run's health says nothing about this one
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove the previous health file %s: %s", path, exc)

    async def start(self, agent: AgentControl) -> None:
        self.source = agent
        self._task = asyncio.create_task(self._run(), name="healthfile")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._write({**self._stamp(), "healthy": False, "state": "stopped", "problems": ["the agent stopped"]})

    async def snapshot(self) -> dict[str, Any]:
        """The document to write now: the liveness verdict the systemd watchdog uses, and the agent's status."""
        source = self.source
        assert source is not None
        problems = [f"internal task {name} stopped" for name in source.dead_tasks()]
        if not await source.store_answers(STORE_ANSWER_TIMEOUT_S):
            problems.append(f"the store thread did not answer within {STORE_ANSWER_TIMEOUT_S:.1f} s")
        return {
            **self._stamp(),
            "healthy": not problems,
            "state": "running",
            "problems": problems,
            "rig": source.cfg.rig,
            "status": source.status_line(),
        }

    def _stamp(self) -> dict[str, Any]:
        return {
            "v": 1,
            "ts": time.time_ns() // 1_000_000,
            "monotonic_s": round(time.monotonic(), 3),
            "boot_id": self._boot_id,
            "pid": os.getpid(),
            "interval_s": self.interval_s,
        }

    def _write(self, doc: dict[str, Any]) -> None:
        try:
            write_atomic(self.path, doc)
            self.writes += 1
        except OSError as exc:  # a full disk must not stop the agent; the probe then sees a stale file
            log.warning("cannot write the health file %s: %s", self.path, exc)

    async def _run(self) -> None:
        while True:
            doc = await self.snapshot()
            await asyncio.to_thread(self._write, doc)
            await asyncio.sleep(self.interval_s)


# ---------------------------------------------------------------- the probe: `battery-twin health`
def age_s(doc: dict[str, Any], now_wall_ms: int, now_monotonic_s: float, this_boot: str) -> float:
    """Seconds since ``doc`` was written (monotonic within one boot, wall clock across boots)."""
    if this_boot and doc.get("boot_id") == this_boot and isinstance(doc.get("monotonic_s"), (int, float)):
        return now_monotonic_s - float(doc["monotonic_s"])
    return (now_wall_ms - int(doc["ts"])) / 1000.0


def verdict(path: Path, max_age_s: float) -> tuple[int, str]:
    """(exit code, one line) for the health file at ``path``."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return UNHEALTHY, f"unhealthy: no health file at {path} (agent not running, or still starting)"
    except (OSError, ValueError) as exc:
        return UNHEALTHY, f"unhealthy: cannot read {path}: {exc}"
    if not isinstance(doc, dict) or not isinstance(doc.get("ts"), int):
        return UNHEALTHY, f"unhealthy: cannot read {path}: not a health document (no integer ts)"
    age = age_s(doc, time.time_ns() // 1_000_000, time.monotonic(), boot_id())
    if age > max_age_s:
        return UNHEALTHY, f"unhealthy: {path} was last written {age:.0f} s ago (> {max_age_s:.0f} s): agent stalled"
    if doc.get("healthy") is not True:
        problems = "; ".join(str(p) for p in doc.get("problems") or []) or "no reason given"
        return UNHEALTHY, f"unhealthy ({doc.get('state', '?')}): {problems}"
    return HEALTHY, f"healthy: {doc.get('status') or 'rig ' + str(doc.get('rig'))} (written {max(age, 0.0):.0f} s ago)"


def _arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--config", "-c", help="the agent's config (default: $BATTERY_TWIN_CONFIG); finds its store")
    g.add_argument("--file", help=f"the health file itself (default: {HEALTH_FILE_NAME} beside the store)")
    p.add_argument("--max-age-s", type=float, default=DEFAULT_MAX_AGE_S, help="older than this is unhealthy")
    p.set_defaults(func=cmd_health)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _arguments(
        sub.add_parser(
            "health", help="exit 0 if the running agent's health file is fresh and healthy, else 1 (for HEALTHCHECK)"
        )
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m agent.healthfile --file PATH``: the same probe without the CLI, which loads every subcommand's
    plugin (numpy, pydantic: about half a second of CPU); a HEALTHCHECK runs it every 30 s for the agent's life."""
    p = argparse.ArgumentParser(prog="python -m agent.healthfile", description="the agent's health, from its file")
    _arguments(p)
    return cmd_health(p.parse_args(argv))


def cmd_health(args: argparse.Namespace) -> int:
    if args.file:
        path = Path(args.file)
    else:
        from agent.config import ConfigError, load_config

        try:
            path = health_file_path(load_config(args.config or os.environ.get("BATTERY_TWIN_CONFIG") or None))
        except ConfigError as exc:
            print(f"unhealthy: config {exc.source}: {'; '.join(exc.problems)}")
            return UNHEALTHY
    code, line = verdict(path, args.max_age_s)
    print(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
