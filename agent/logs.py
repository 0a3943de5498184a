"""Journald-friendly logging to stderr: ``key=value`` lines or JSON objects, one per record.

No timestamps by default under systemd (journald adds its own); the agent never passes key material to a logger,
and as a second line of defence any PEM private-key block in a record is replaced before it is written. Under
journald each line starts with its syslog priority (``<3>``..``<7>``), which journald turns into the entry's level
(``journalctl -p warning`` works) and strips from the message.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import sys
import time

PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----.*?(-----END[A-Z0-9 ]*PRIVATE KEY-----|$)", re.DOTALL
)
SYSLOG_PRIORITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}


def redact(text: str) -> str:
    """Replace PEM private-key blocks (even truncated ones) so key material never reaches a log."""
    return PEM_PRIVATE_KEY.sub("[private key redacted]", text) if "PRIVATE KEY" in text else text


class _Redacting(logging.Formatter):
    """Wraps a formatter: redacts key material and, under journald, prefixes the syslog priority."""

    def __init__(self, inner: logging.Formatter, level_prefix: bool):
        super().__init__()
        self.inner = inner
        self.level_prefix = level_prefix

    def format(self, record: logging.LogRecord) -> str:
        text = redact(self.inner.format(record))
        if self.level_prefix:
            return f"<{SYSLOG_PRIORITY.get(record.levelname, 6)}>{text}"
        return text


class KeyValueFormatter(logging.Formatter):
    def __init__(self, with_time: bool):
        super().__init__()
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        head = f"ts={time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created))}Z " if self.with_time else ""
        return f"{head}level={record.levelname} logger={record.name} msg={json.dumps(msg)}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


_RECENT: collections.deque[str] = collections.deque(maxlen=1000)


class _Recent(logging.Handler):
    """The last log lines in memory, as written (redacted, with time), for a diagnostics bundle (agent/remote)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _RECENT.append(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def recent_lines() -> list[str]:
    return list(_RECENT)


def setup_logging(level: str = "INFO", fmt: str = "kv") -> None:
    under_journald = bool(os.environ.get("JOURNAL_STREAM"))
    handler = logging.StreamHandler(sys.stderr)
    inner = JsonFormatter() if fmt == "json" else KeyValueFormatter(with_time=not under_journald)
    handler.setFormatter(_Redacting(inner, level_prefix=under_journald))
    recent = _Recent()
    recent.setFormatter(_Redacting(KeyValueFormatter(with_time=True), level_prefix=False))
    root = logging.getLogger()
    root.handlers[:] = [handler, recent]
    root.setLevel(level)
    for noisy in ("pymodbus", "can", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
