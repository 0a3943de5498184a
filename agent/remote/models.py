"""Models installed by jobs, in the state directory; which file the twin loads for each family.

    <state>/models/<family>/current.json        {"version", "file", "previous": {"version", "file"} | null, ...}
    <state>/models/<family>/<version>/<file>     the artifact (ONNX or another format) ...
    <state>/models/<family>/<version>/<stem>.json  ... and its metadata
    <state>/models/.staging/<job>/               downloads and checks happen here

The swap is one atomic rename of ``current.json`` (written beside, fsynced): before it the old model is in force,
after it the new one, and the previous model's folder stays for rollback. At start ``recover`` removes what a power
cut left half done (staging, a version folder no pointer names). A family with no usable installed model uses the
file from the config or the shipped one: there is always a model.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.faultpoints import faultpoint
from agent.files import fsync_dir, read_json, write_json_atomic

log = logging.getLogger("agent.remote")

# Model family -> the [twin] key that names its file
FAMILIES = {"cycle-life": "cycle_life_model", "soh": "soh_model"}
STAGING = ".staging"


@dataclass(frozen=True)
class Installed:
    family: str
    version: str
    file: str
    path: Path  # the artifact

    @property
    def meta_path(self) -> Path:
        return self.path.with_suffix(".json")


class ModelStore:
    def __init__(self, state_dir: Path):
        self.root = Path(state_dir) / "models"

    def _pointer(self, family: str) -> Path:
        return self.root / family / "current.json"

    def _read(self, family: str) -> dict[str, Any]:
        try:
            doc = read_json(self._pointer(family))
        except ValueError as exc:
            log.error("remote: %s; using the configured or shipped %s model", exc, family)
            return {}
        return doc if isinstance(doc, dict) else {}

    def _installed(self, family: str, entry: Any) -> Installed | None:
        if not isinstance(entry, dict) or not isinstance(entry.get("version"), str):
            return None
        path = self.root / family / entry["version"] / str(entry.get("file", ""))
        if not path.is_file() or not path.with_suffix(".json").is_file():
            return None
        return Installed(family, entry["version"], path.name, path)

    def current(self, family: str) -> Installed | None:
        """The model in force for ``family``: the current one, else the previous one if the current's files are
        gone; None: none installed (the config's or the shipped file is used)."""
        doc = self._read(family)
        return self._installed(family, doc) or self._installed(family, doc.get("previous"))

    def previous(self, family: str) -> Installed | None:
        return self._installed(family, self._read(family).get("previous"))

    def apply(self, cfg: AgentConfig) -> AgentConfig:
        """``cfg`` with each family's twin model set to the installed one, where there is one."""
        update = {key: inst.path for fam, key in FAMILIES.items() if (inst := self.current(fam)) is not None}
        if not update:
            return cfg
        return cfg.model_copy(update={"twin": cfg.twin.model_copy(update=update)})

    def versions(self) -> dict[str, str]:
        return {fam: inst.version for fam in FAMILIES if (inst := self.current(fam)) is not None}

    # ---------------------------------------------------------------- install, roll back, recover
    def staging(self, job_id: str) -> Path:
        """An empty folder for one job's downloads."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in job_id)[:100] or "job"
        d = self.root / STAGING / safe
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True, mode=0o700)
        return d

    def install(self, family: str, version: str, staged: Path, file: str, job_id: str) -> Installed:
        """Move the checked files into place and make them current (one atomic rename); the model in force so
        far becomes ``previous``. Older versions are removed."""
        fam_dir = self.root / family
        fam_dir.mkdir(parents=True, exist_ok=True)
        before = self._read(family)
        target = fam_dir / version
        if target.exists() and before.get("version") != version:
            shutil.rmtree(target)  # a leftover of an interrupted install of this same version
        if not target.exists():
            staged.rename(target)
            fsync_dir(fam_dir)
        faultpoint("remote.before_swap")
        old = self._installed(family, before)
        previous = (
            {"version": old.version, "file": old.file} if old and old.version != version else before.get("previous")
        )
        write_json_atomic(
            self._pointer(family),
            {
                "version": version,
                "file": file,
                "previous": previous,
                "job": job_id,
                "activated_at_ms": time.time_ns() // 1_000_000,
            },
        )
        faultpoint("remote.after_swap")
        self._prune(family)
        inst = self._installed(family, {"version": version, "file": file})
        assert inst is not None
        return inst

    def rollback(self, family: str, reason: str) -> Installed | None:
        """Make the previous model current again (None: back to the configured or shipped file)."""
        doc = self._read(family)
        prev = doc.get("previous")
        if isinstance(prev, dict) and self._installed(family, prev) is not None:
            write_json_atomic(self._pointer(family), {**prev, "previous": None, "rolled_back": reason[:300]})
        else:
            self._pointer(family).unlink(missing_ok=True)
            fsync_dir(self.root / family)
        self._prune(family)
        return self.current(family)

    def _prune(self, family: str) -> None:
        doc = self._read(family)
        keep = {doc.get("version"), (doc.get("previous") or {}).get("version")}
        for d in (self.root / family).iterdir():
            if d.is_dir() and d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)

    def recover(self) -> list[str]:
        """After a restart: remove staging and version folders no pointer names (a power cut mid-install).
        Returns what was removed, for the log."""
        removed: list[str] = []
        if (self.root / STAGING).exists():
            shutil.rmtree(self.root / STAGING, ignore_errors=True)
            removed.append(STAGING)
        for family in FAMILIES:
            fam_dir = self.root / family
            if not fam_dir.is_dir():
                continue
            for tmp in fam_dir.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
            before = {d.name for d in fam_dir.iterdir() if d.is_dir()}
            self._prune(family)
            removed += [f"{family}/{n}" for n in sorted(before - {d.name for d in fam_dir.iterdir() if d.is_dir()})]
        return removed
