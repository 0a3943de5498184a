"""Journald-friendly logging to stderr: ``key=value`` lines or JSON objects, one per record.

No timestamps by default under systemd (journald adds its own); the agent never passes key material to a logger.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time


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
        doc = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str = "INFO", fmt: str = "kv") -> None:
    under_journald = bool(os.environ.get("JOURNAL_STREAM"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter(with_time=not under_journald))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("pymodbus", "can", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
