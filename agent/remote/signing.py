"""What a model update's signature covers, and its check against the keys pinned in ``[remote] signing_keys``.

The signed bytes are the *manifest* in canonical JSON (keys sorted, no spaces, ASCII with ``\\uXXXX`` escapes, UTF-8):

    {"artifact_sha256":"<64 hex>","artifact_size":<int>,"family":"soh","file":"soh.onnx","format":"onnx",
     "metadata_sha256":"<64 hex>","metadata_size":<int>,"schema":"battery-twin.model-manifest/1","version":"<v>"}

The artifact's hash and size and the hash and size of the metadata file (the model's JSON, byte for byte) are inside,
so neither file can be swapped for another, nor one model's metadata paired with another's artifact. The metadata
travels as its own file because a job document is limited to 32 KB. ``docs/ota.md`` has the whole procedure;
``cloud/signing.py`` makes the signature with the same ``manifest_bytes``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.remote.config import SigningKey

SCHEMA = "battery-twin.model-manifest/1"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
FIELDS: dict[str, Any] = {
    "schema": str,
    "family": str,
    "version": str,
    "format": str,
    "file": str,
    "artifact_sha256": str,
    "artifact_size": int,
    "metadata_sha256": str,
    "metadata_size": int,
}


class VerifyError(Exception):
    """A job that must not be installed; ``reason`` is a short code for the job's status details."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def check_manifest(manifest: Any) -> dict[str, Any]:
    """The manifest if every field is there with its type and form; VerifyError('malformed') otherwise."""
    if not isinstance(manifest, dict):
        raise VerifyError("malformed", "the job document has no manifest object")
    missing = sorted(set(FIELDS) - set(manifest))
    extra = sorted(set(manifest) - set(FIELDS))
    if missing or extra:
        raise VerifyError("malformed", f"manifest fields missing {missing} or unknown {extra}")
    for k, t in FIELDS.items():
        v = manifest[k]
        if type(v) is not t:  # bool is not an int here
            raise VerifyError("malformed", f"manifest.{k} must be a {t.__name__}, got {type(v).__name__}")
    if manifest["schema"] != SCHEMA:
        raise VerifyError("malformed", f"manifest.schema {manifest['schema']!r}, this agent reads {SCHEMA!r}")
    for k in ("artifact_sha256", "metadata_sha256"):
        if not HEX64.match(manifest[k]):
            raise VerifyError("malformed", f"manifest.{k} is not 64 lower-case hex digits")
    for k in ("family", "version", "format", "file"):
        if not NAME.match(manifest[k]):
            raise VerifyError("malformed", f"manifest.{k} {manifest[k][:40]!r} is not a plain name")
    if manifest["artifact_size"] <= 0 or manifest["metadata_size"] <= 0:
        raise VerifyError("malformed", "manifest sizes must be positive")
    return manifest


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The exact bytes the signature covers."""
    return canonical(check_manifest(manifest))


def verify(doc: dict[str, Any], keys: dict[str, SigningKey]) -> dict[str, Any]:
    """The manifest of a job document whose signature a pinned key verifies; VerifyError otherwise."""
    signed = manifest_bytes(doc.get("manifest"))  # type: ignore[arg-type]
    kid = doc.get("key_id")
    if not isinstance(kid, str) or kid not in keys:
        pinned = ", ".join(sorted(keys)) or "none"
        raise VerifyError("unknown_key", f"signed with key {str(kid)[:32]!r}, which is not pinned here ({pinned})")
    try:
        sig = base64.b64decode(str(doc.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise VerifyError("bad_signature", "the signature is not base64") from None
    try:
        Ed25519PublicKey.from_public_bytes(keys[kid].raw).verify(sig, signed)
    except InvalidSignature:
        raise VerifyError("bad_signature", f"the signature does not verify with key {kid}") from None
    return dict(doc["manifest"])
