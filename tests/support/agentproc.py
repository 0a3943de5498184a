"""Run the agent as a separate process with a config written by the test (as a user or systemd would)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parents[2]


def _plain(v: Any) -> Any:
    """Values as tomli-w takes them: paths as strings, tuples as lists, None keys left out."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return str(v) if isinstance(v, Path) else v


def to_toml(cfg: dict[str, Any]) -> str:
    """A config dict as TOML (tomli-w, as the project writes every TOML file)."""
    return tomli_w.dumps(_plain(cfg))


class AgentProcess:
    def __init__(self, workdir: Path, config: dict[str, Any], name: str = "agent"):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / f"{name}.toml"
        self.config_path.write_text(to_toml(config))
        self.log_path = self.dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> AgentProcess:
        self.runs += 1
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("JOURNAL_STREAM", None)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start #{self.runs}\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(self.config_path)],
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        return self

    def wait_log(self, text: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"agent exited with {self.proc.returncode} before logging {text!r}:\n{self.log()[-3000:]}"
                )
            time.sleep(0.1)
        raise AssertionError(f"agent did not log {text!r} within {timeout_s} s:\n{self.log()[-3000:]}")

    def wait_started(self, timeout_s: float = 60.0) -> None:
        """Wait until the current run (not an earlier one) logged 'agent started'."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            current = self.log().rsplit(f"--- start #{self.runs}", 1)[-1]
            if "agent started" in current:
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode} before starting:\n{current[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"agent run #{self.runs} did not start within {timeout_s} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGUSR1)  # the agent dumps every thread's stack into its log
                time.sleep(1.0)
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"agent did not stop within {timeout_s} s of SIGTERM:\n{self.log()[-3000:]}")
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
