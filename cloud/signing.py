"""Signing model updates: the Ed25519 key pair, the manifest of a model's two files and its signature.

The private key stays with whoever publishes models (a laptop, a CI secret); the rigs pin the public key in
``[remote] signing_keys``. What is signed is ``agent.remote.signing.manifest_bytes`` (the agent's own definition, so
the two sides cannot drift): the artifact's and the metadata file's SHA-256 and size, family, version, format and
file name. ``docs/ota.md`` writes the bytes out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.remote.config import KEY_PREFIX, key_id
from agent.remote.signing import SCHEMA, manifest_bytes

HASH_KEYS = ("model_sha256", "onnx_sha256")


class SigningError(Exception):
    """A problem the user can fix; the message says how."""


def public_line(key: Ed25519PrivateKey) -> str:
    """The line for the agents' ``[remote] signing_keys``."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode()


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def make_key(path: Path) -> Ed25519PrivateKey:
    """A new key pair; the private key is written to ``path`` with mode 0600 from the start and never printed. An
    existing file is never overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningError(f"{path} exists; a signing key is never overwritten (move it away yourself)") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read the signing key {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise SigningError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SigningError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path} is not an Ed25519 key (make one with `battery-twin provision signing-key`)")
    return key


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_for(artifact: Path, metadata: Path, require_canary: bool = True) -> dict[str, Any]:
    """The manifest of a model's artifact and metadata files; SigningError if they do not belong together (or carry
    no canary: rigs would refuse it anyway)."""
    data, meta_bytes = artifact.read_bytes(), metadata.read_bytes()
    meta = json.loads(meta_bytes)
    named = next((meta[k] for k in HASH_KEYS if k in meta), None)
    if named != _sha256(data):
        raise SigningError(f"{metadata.name} does not name {artifact.name}'s sha256 ({HASH_KEYS}): not a pair")
    if artifact.suffix == ".json" or metadata.name != artifact.with_suffix(".json").name:
        raise SigningError(
            f"the metadata must be the artifact's name with .json ({artifact.with_suffix('.json').name})"
        )
    fmt = meta.get("model_format") or ("onnx" if artifact.suffix == ".onnx" else None)
    if fmt is None:
        raise SigningError(f"{metadata.name} does not name its model_format (only .onnx files imply one)")
    if require_canary and not isinstance(meta.get("canary"), dict):
        raise SigningError(
            f"{metadata.name} has no canary: rigs refuse an update without one (export it again; cloud/canary.py)"
        )
    manifest = {
        "schema": SCHEMA,
        "family": str(meta.get("family", "")),
        "version": str(meta.get("version", "")),
        "format": str(fmt),
        "file": artifact.name,
        "artifact_sha256": _sha256(data),
        "artifact_size": len(data),
        "metadata_sha256": _sha256(meta_bytes),
        "metadata_size": len(meta_bytes),
    }
    manifest_bytes(manifest)  # the agent's own check of every field
    return manifest


def sign(manifest: dict[str, Any], key: Ed25519PrivateKey) -> tuple[str, str]:
    """(key id, base64 signature) over the manifest's canonical bytes."""
    return key_id(raw_public(key)), base64.b64encode(key.sign(manifest_bytes(manifest))).decode()


def job_document(manifest: dict[str, Any], key: Ed25519PrivateKey, artifact_url: str, metadata_url: str) -> dict:
    kid, sig = sign(manifest, key)
    return {
        "operation": "model-update",
        "manifest": manifest,
        "key_id": kid,
        "signature": sig,
        "artifact_url": artifact_url,
        "metadata_url": metadata_url,
    }
