"""``[remote]``: what the cloud may change on this rig, and the rules a remote layer must follow.

The shadow's desired document is a *layer* over the local file: the same shape as the file, except that drivers are
an object keyed by driver name (``{"drivers": {"sim": {"sample_hz": 5}}}``), because a shadow merges objects and
replaces arrays. Only paths under an ``allow`` entry may be set; identity, endpoint, certificates, the store, model
files (those come only through signed jobs) and ``[remote]`` itself are never remote, whatever ``allow`` says.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.base import config_relative

# Sections a remote layer may touch at all; the rest of AgentConfig (rig, store, remote) never.
REMOTE_SECTIONS = ("drivers", "validate", "log", "supervisor", "dashboard", "twin", "uplink")
NEVER_REMOTE = (
    "rig",
    "store",
    "remote",
    "uplink.endpoint",
    "uplink.port",
    "uplink.cert",
    "uplink.key",
    "uplink.ca",
    "uplink.topic_prefix",
    "dashboard.host",
    "dashboard.token",
    "twin.cycle_life_model",
    "twin.soh_model",
)
KEY_PREFIX = "ed25519:"
ALLOW_ENTRY = re.compile(r"^[a-z_]+(\.[A-Za-z0-9_-]+)*$")


class SigningKey(BaseModel):
    """A pinned Ed25519 public key: ``key_id`` is the first 16 hex digits of SHA-256 over the raw 32 bytes."""

    key_id: str
    raw: bytes


def parse_public_key(line: str) -> SigningKey:
    """``ed25519:<base64 of the 32-byte raw public key>`` (what ``battery-twin provision signing-key`` prints)."""
    if not line.startswith(KEY_PREFIX):
        raise ValueError(f"a signing key is written '{KEY_PREFIX}<base64>', got {line[:24]!r}")
    try:
        raw = base64.b64decode(line[len(KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"signing key {line[:24]!r}...: not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"signing key {line[:24]!r}...: an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return SigningKey(key_id=key_id(raw), raw=raw)


def key_id(raw_public_key: bytes) -> str:
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def _never(path: str) -> str | None:
    """The forbidden key that ``path`` is, or lies under, or contains; None if it is not forbidden."""
    for f in NEVER_REMOTE:
        if path == f or path.startswith(f + ".") or f.startswith(path + "."):
            return f
    return None


class RemoteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    shadow: bool = Field(False, description="apply the desired state of the named shadow as a layer over this file")
    shadow_name: str = Field("config", pattern=r"^[A-Za-z0-9:_-]{1,64}$", description="named shadow to follow")
    allow: list[str] = Field(
        default_factory=list,
        description="sections or dotted keys the shadow may set, e.g. ['drivers', 'twin.alarms', 'uplink.linger_ms']",
    )
    confirm_s: float = Field(
        30.0, ge=0, le=3600, description="a remote change is kept only if the pipeline stays healthy this long"
    )
    jobs: bool = Field(False, description="accept IoT Jobs: signed model updates and diagnostics requests")
    signing_keys: list[str] = Field(
        default_factory=list,
        description="pinned Ed25519 public keys ('ed25519:<base64>'); more than one while a key is rotated",
    )
    state_dir: Path | None = Field(
        None, description="where the confirmed remote layer and installed models live (default: the store's folder)"
    )
    max_model_bytes: int = Field(64 * 1024**2, ge=1024, le=2 * 1024**3, description="larger model files are refused")
    hosts: list[str] = Field(
        default_factory=lambda: ["*.amazonaws.com"],
        description="HTTPS hosts a job may download from or upload to ('*.' matches any subdomain)",
    )
    ca: Path | None = Field(None, description="CA bundle for those HTTPS downloads (default: the system's)")
    download_timeout_s: float = Field(300.0, gt=0, le=7200, description="a download slower than this fails")

    @field_validator("allow")
    @classmethod
    def _allow_entries(cls, v: list[str]) -> list[str]:
        problems = []
        for entry in v:
            root = entry.split(".", 1)[0]
            if not ALLOW_ENTRY.match(entry):
                problems.append(f"{entry!r} is not a section or dotted key")
            elif (hit := _never(entry)) is not None and not hit.startswith(entry + "."):
                problems.append(f"{entry!r}: {hit} is never set remotely (identity, endpoint, certificates, store)")
            elif root not in REMOTE_SECTIONS:
                problems.append(f"{entry!r}: not a section the shadow can set ({', '.join(REMOTE_SECTIONS)})")
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("signing_keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        ids = [parse_public_key(k.strip()).key_id for k in v]
        if len(set(ids)) != len(ids):
            raise ValueError("the same signing key is listed twice")
        return [k.strip() for k in v]

    @field_validator("state_dir", "ca")
    @classmethod
    def _relative_to_file(cls, v: Path | None) -> Path | None:
        return config_relative(v) if v is not None else None

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        bad = [h for h in v if not re.match(r"^(\*\.)?[A-Za-z0-9.-]+$", h)]
        if bad:
            raise ValueError(f"hosts are names or '*.domain' patterns, got {bad}")
        return [h.lower() for h in v]

    @model_validator(mode="after")
    def _coherent(self) -> RemoteConfig:
        if self.shadow and not self.allow:
            raise ValueError(
                "remote.shadow is on but remote.allow is empty: list the sections or keys the shadow may set"
            )
        if self.jobs and not self.signing_keys:
            raise ValueError(
                "remote.jobs is on but remote.signing_keys is empty: pin the public key that "
                "`battery-twin provision signing-key` printed (models are accepted only with a valid signature)"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.shadow or self.jobs

    def keys(self) -> dict[str, SigningKey]:
        """Pinned keys by key id."""
        return {k.key_id: k for k in (parse_public_key(line) for line in self.signing_keys)}

    def state_path(self, store_path: Path) -> Path:
        return self.state_dir if self.state_dir is not None else Path(store_path).parent

    def host_allowed(self, host: str) -> bool:
        host = host.lower()
        return any(host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in self.hosts)


# ---------------------------------------------------------------------------------------------- layers
def leaf_paths(doc: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every value a layer sets (tables are walked, arrays and scalars are leaves)."""
    out: list[str] = []
    for k, v in doc.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(leaf_paths(v, path + "."))
        elif v is not None:
            out.append(path)
    return out


def layer_problems(layer: dict[str, Any], allow: list[str]) -> list[str]:
    """One problem per path of ``layer`` that the shadow may not set (never remote, or not under ``allow``), and
    for a malformed drivers table; empty when the layer may be merged and validated."""
    drivers = layer.get("drivers")
    if drivers is not None and not (isinstance(drivers, dict) and all(isinstance(v, dict) for v in drivers.values())):
        return ["drivers: a remote layer sets drivers by name, as an object {name: {key: value}}"]
    problems = []
    for path in leaf_paths(layer):
        hit = _never(path)
        if hit is not None:
            problems.append(f"{path}: never set remotely ({hit} stays in the local file)")
        elif not any(path == a or path.startswith(a + ".") for a in allow):
            problems.append(f"{path}: not in remote.allow (the shadow may set: {', '.join(allow) or 'nothing'})")
    return problems


def _driver_index(drivers: list[Any], name: str) -> int | None:
    """The file's [[drivers]] entry a layer's ``drivers.<name>`` refers to: by ``name``, else by ``type`` for an
    unnamed driver that is the only one of its type (its default name is its type)."""
    for i, d in enumerate(drivers):
        if isinstance(d, dict) and d.get("name") == name:
            return i
    unnamed = [i for i, d in enumerate(drivers) if isinstance(d, dict) and "name" not in d and d.get("type") == name]
    return unnamed[0] if len(unnamed) == 1 else None


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if v is not None:
                out[k] = _merge(base.get(k), v)
        return out
    return over


def merge_layer(file_data: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """The file's parsed TOML with ``layer`` merged over it (tables merge, other values replace; a driver by name,
    a new name adds a driver). Pure: neither argument is changed. A layer is checked by ``layer_problems`` first;
    driver sections that are not tables are left out here."""
    out: dict[str, Any] = _merge(file_data, {k: v for k, v in layer.items() if k != "drivers"})
    over = layer.get("drivers")
    if not isinstance(over, dict) or not over:
        return out
    drivers = [dict(d) if isinstance(d, dict) else d for d in out.get("drivers", [])]
    for name, section in over.items():
        if not isinstance(section, dict):
            continue
        i = _driver_index(drivers, name)
        if i is None:
            drivers.append({"name": name, **section})
        else:
            drivers[i] = _merge(drivers[i], section)
    return {**out, "drivers": drivers}
