"""The ``cycler`` driver: follows the files a commercial cycler writes as a test runs, one file per channel/cell.

Every ``poll_interval_s`` each file is asked for what was appended (complete lines of a text export; a native
file re-read when it changed) and one file's new rows become one batch, with their origin (ledger key, row
numbers, the cycler's cycle and step). Restarts: a checkpoint file keeps, per file, the test identity, byte
offset and row reached by the last batch the agent *stored* (the agent asks for the next batch only after the
previous one is committed, so the checkpoint is written at the start of the next ``read``); after a SIGKILL the
driver resumes from it and the store's ledger drops the few rows it already has. A file rewritten or replaced
starts over from its top with an event; a file that stops growing goes down after ``down_after_s`` (the
shared ``DeviceHealth``), unreadable input raises an event and never stops the other files.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from drivers.base import Driver, DriverConfig, DriverContext, ReadingBatch, config_relative
from drivers.cycler.formats import FormatError
from drivers.cycler.readers import FORMAT_CHOICES, Source, open_source
from drivers.cycler.text import Parsed, zone
from drivers.profiles import CELL_ID
from drivers.stale import DeviceHealth

CycleFormat = Literal[FORMAT_CHOICES]  # type: ignore[valid-type]


class CyclerFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="the file the cycler writes for this channel (relative to the config file)")
    cell: str = Field(pattern=CELL_ID.pattern, description="cell id of this channel's rows")
    format: CycleFormat = "auto"


class CyclerConfig(DriverConfig):
    type: Literal["cycler"] = "cycler"
    files: list[CyclerFile] = Field(min_length=1, max_length=1024)
    tz: str = Field("UTC", description="zone of the cycler PC's clock (files stamp local time without a zone)")
    start: str | None = Field(None, description="test start, ISO 8601, for files without a wall clock (BDF)")
    poll_interval_s: float = Field(1.0, gt=0, le=3600)
    down_after_s: float = Field(600.0, gt=0, description="a file that has not grown for this long is down")
    state_path: str = Field("", description="checkpoint file (default: var/cycler-<name>.json beside the config)")
    max_batch_rows: int = Field(
        5000, ge=100, le=1_000_000, description="rows per batch: a catch-up on a long file goes in slices"
    )

    native_min_reread_s: float = Field(
        60.0,
        ge=0,
        le=86_400,
        description="a native file (.mpr/.ndax/.res) is read whole on change: at most this often (0: every poll)",
    )

    _start_ms: int | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _check(self) -> CyclerConfig:
        tz = zone(self.tz)  # an unknown zone is a config error, not a run-time one
        cells = [f.cell for f in self.files]
        if len(set(cells)) != len(cells):
            raise ValueError("each file needs its own cell id")
        if self.native_min_reread_s >= self.down_after_s:
            raise ValueError("native_min_reread_s must be below down_after_s (a file read less often looks down)")
        if self.start:
            import datetime as dt

            when = dt.datetime.fromisoformat(self.start)
            when = when if when.tzinfo else when.replace(tzinfo=tz)
            self._start_ms = int(when.timestamp() * 1000)
        return self


class CyclerDriver(Driver):
    config_model = CyclerConfig
    config: CyclerConfig

    def __init__(self, config: CyclerConfig, ctx: DriverContext):
        super().__init__(config, ctx)
        self._cells = tuple(f.cell for f in config.files)
        self.paths = [config_relative(f.path) for f in config.files]
        state = config.state_path or f"var/cycler-{self.name}.json"
        self.state_path = config_relative(state)
        self.sources: list[Source] = []
        self.health: list[DeviceHealth] = []
        self.checkpoint: dict[str, dict[str, Any]] = {}
        self._pending: tuple[str, dict[str, Any]] | None = None  # the last batch's checkpoint, once stored
        self._next = 0  # round robin over the files
        self._rest: dict[int, Parsed] = {}  # rows read and not yet handed out (at most one read's worth per file)
        self._errors: dict[int, str] = {}
        self.rows = 0
        self._max_bytes = config.max_batch_rows * 256  # text: about a batch's rows per read (lines < 256 bytes)

    @property
    def cells(self) -> tuple[str, ...]:
        return self._cells

    async def open(self) -> None:
        now = self.ctx.clock_ms()
        cfg = self.config
        self.checkpoint = await asyncio.to_thread(self._load_checkpoint)
        for k, (f, path) in enumerate(zip(cfg.files, self.paths)):
            src = open_source(path, f.cell, f.format, cfg.tz, cfg._start_ms, cfg.native_min_reread_s)
            saved = self.checkpoint.get(str(path))
            if saved and path.exists():
                try:
                    await asyncio.to_thread(src.resume, saved["identity"], int(saved["offset"]), int(saved["row"]))
                except (OSError, FormatError, KeyError, ValueError) as exc:
                    self._fault(k, f"cannot resume {path.name}: {exc}")
            self.sources.append(src)
            self.health.append(DeviceHealth(f"{self.name}:{f.cell}", self.emit, cfg.down_after_s * 1000, now))

    def _load_checkpoint(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.state_path.read_text())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.emit("cycler.checkpoint_unreadable", f"{self.state_path}: {exc}; reading files from the top")
            return {}

    def _save_checkpoint(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.checkpoint))
        os.replace(tmp, self.state_path)

    async def read(self) -> ReadingBatch:
        if self._pending is not None:  # the agent stored the last batch before asking again: checkpoint it
            path, mark = self._pending
            self.checkpoint[path] = mark
            self._pending = None
            await asyncio.to_thread(self._save_checkpoint)
        while True:
            batch = await self._poll_round()
            if batch is not None:
                return batch
            await asyncio.sleep(self.config.poll_interval_s)

    async def _poll_round(self) -> ReadingBatch | None:
        """One pass over the files from where the last batch came: the first with new rows gives the batch."""
        n = len(self.sources)
        for step in range(n):
            k = (self._next + step) % n
            parsed = self._rest.pop(k, None) or await self._poll(k)
            if parsed is not None and len(parsed):
                src, cap = self.sources[k], self.config.max_batch_rows
                if len(parsed) > cap:  # the twin runs on the loop: hand it slices, keep the rest for next time
                    self._rest[k] = parsed.select(np.arange(len(parsed)) >= cap)
                    parsed = parsed.select(np.arange(len(parsed)) < cap)
                else:
                    self._next = (k + 1) % n
                self.rows += len(parsed)
                self._pending = (str(self.paths[k]), _mark(src, parsed, k in self._rest))
                return src.batch(parsed, self._cells, k)
        return None

    async def _poll(self, k: int) -> Parsed | None:
        src, health, path = self.sources[k], self.health[k], self.paths[k]
        now = self.ctx.clock_ms()
        try:
            parsed, progress = await asyncio.to_thread(src.poll, self._max_bytes)
        except FileNotFoundError:
            self._fault(k, f"{path} does not exist (yet)")
            return None
        except (OSError, FormatError) as exc:
            self._fault(k, f"{path.name}: {exc}")
            return None
        self._errors.pop(k, None)
        if progress.restarted:
            self.emit(
                f"cycler.file_{progress.restarted}",
                f"{path.name} was {progress.restarted}: reading it again from its top (rows already stored are "
                "not stored twice)",
                cell=src.cell,
                file=str(path),
            )
        if progress.bad_rows:
            self.emit(
                "cycler.bad_rows",
                f"{path.name}: {len(progress.bad_rows)} line(s) not readable, skipped (rows {progress.bad_rows[:5]})",
                cell=src.cell,
                file=str(path),
                rows=progress.bad_rows[:20],
            )
        for note in progress.notes:
            self.emit(note.kind, note.message[:1000], cell=src.cell, **note.data)
        if parsed is not None and len(parsed):
            health.ok(now)
        else:
            health.check(now)
        return parsed

    def _fault(self, k: int, message: str) -> None:
        if self._errors.get(k) != message:  # one event per new problem, not one per poll
            self._errors[k] = message
            self.emit("cycler.file_fault", message[:1000], cell=self._cells[k])
        self.health[k].report(self.ctx.clock_ms(), False)

    def status(self) -> dict[str, Any]:
        now = self.ctx.clock_ms()
        return {"rows": self.rows, "files": {h.name: h.status(now) for h in self.health}}


def _mark(src: Source, handed: Parsed, partial: bool) -> dict[str, Any]:
    """Where to resume once ``handed`` is stored: after the read, or (rows of the read still held back) at the
    top of the file up to the last row handed out (a text resume then re-reads; the ledger drops the repeats)."""
    if not partial:
        return {"identity": src.identity, "offset": src.offset, "row": src.row}
    return {"identity": src.identity, "offset": 0, "row": int(handed.row[-1]) + 1}
